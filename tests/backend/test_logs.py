"""Logs through structlog: every field kept, stdlib and structlog call sites in one format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp.http_exceptions import BadHttpMessage
from realtime.logs import configure


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """configure() writing to a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# fields the code base passes today (broker/redis/reader.py passes offset and delivered), and others
FIELDS: dict[str, Any] = {
    "conn": "c1",
    "user": "alice",
    "room": "lobby",
    "code": 4008,
    "reason": "rate",
    "port": 8080,
    "count": 3,
    "offset": 41,
    "delivered": 2,
    "epoch": "e-1",
    "anything_new": [1, "two"],
}


def test_every_extra_field_of_a_stdlib_call_reaches_the_json_line(output: io.StringIO) -> None:
    """``logging ... extra={...}`` (server.py, the brokers): each field is in the line."""
    configure("INFO", "json", output)
    logging.getLogger("realtime.broker.redis").info("relayed %s", "x", extra=FIELDS)
    (entry,) = _lines(output)
    assert {k: entry[k] for k in FIELDS} == FIELDS
    assert (entry["level"], entry["logger"], entry["msg"]) == (
        "info",
        "realtime.broker.redis",
        "relayed x",
    )
    assert entry["ts"].endswith("Z")


def test_every_field_of_a_structlog_call_and_the_context_reach_the_line(
    output: io.StringIO,
) -> None:
    """structlog keyword fields and contextvars-bound fields are all in the line."""
    configure("INFO", "json", output)
    structlog.contextvars.bind_contextvars(request_id="r-9")
    structlog.stdlib.get_logger("realtime.app").warning("closing", **FIELDS)
    (entry,) = _lines(output)
    assert {k: entry[k] for k in FIELDS} == FIELDS
    assert entry["request_id"] == "r-9"
    assert (entry["level"], entry["logger"], entry["msg"]) == (
        "warning",
        "realtime.app",
        "closing",
    )


def test_tracebacks_go_to_exc(output: io.StringIO) -> None:
    """Both kinds of logger put the traceback under ``exc``."""
    configure("INFO", "json", output)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("realtime.server").exception("failed", extra={"conn": "c2"})
        structlog.stdlib.get_logger("realtime.app").exception("failed too", conn="c3")
    first, second = _lines(output)
    assert "ValueError: boom" in first["exc"]
    assert "ValueError: boom" in second["exc"]
    assert (first["conn"], second["conn"]) == ("c2", "c3")


def test_the_level_filters_both_kinds(output: io.StringIO) -> None:
    """LOG_LEVEL=WARNING drops info lines from stdlib and structlog loggers alike."""
    configure("WARNING", "json", output)
    logging.getLogger("realtime.server").info("quiet")
    structlog.stdlib.get_logger("realtime.app").info("quiet too")
    logging.getLogger("websockets.server").warning("loud")
    assert [e["msg"] for e in _lines(output)] == ["loud"]


def test_text_lines_show_the_message_and_every_field(output: io.StringIO) -> None:
    """LOG_FORMAT=text: one readable line with key=value for each field."""
    configure("INFO", "text", output)
    logging.getLogger("realtime.server").info("closing", extra={"conn": "c1", "offset": 7})
    line = output.getvalue()
    assert line.count("\n") == 1
    assert "closing" in line
    assert "[realtime.server]" in line
    assert "conn=c1" in line
    assert "offset=7" in line


def test_malformed_requests_are_one_warning_without_traceback(output: io.StringIO) -> None:
    """aiohttp's error+traceback for a client's bad request becomes a one-line warning."""
    configure("INFO", "json", output)
    try:
        raise BadHttpMessage("Duplicate Content-Length:\n\n  b'Content-Length: 5'")
    except BadHttpMessage as exc:
        logging.getLogger("aiohttp.server").exception("Error handling request", exc_info=exc)
    (entry,) = _lines(output)
    assert entry["level"] == "warning"
    assert entry["msg"] == "malformed http request refused"
    assert (entry["status"], entry["error"]) == (400, "Duplicate Content-Length:")
    assert "exc" not in entry
