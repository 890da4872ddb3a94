"""Log formats: JSON lines with context fields, readable text with key=value."""

from __future__ import annotations

import json
import logging
import sys

from realtime.logs import JsonFormatter, TextFormatter


def _record(exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "realtime.server", logging.INFO, __file__, 1, "closing %s", ("x",), exc_info
    )
    record.conn = "c1"
    record.user = "alice"
    record.code = 4008
    return record


def test_json_lines_carry_context_and_traceback() -> None:
    """A JSON line has ts, level, logger, msg, the context fields and the traceback."""
    entry = json.loads(JsonFormatter().format(_record(exc=True)))
    assert entry["level"] == "info"
    assert entry["logger"] == "realtime.server"
    assert entry["msg"] == "closing x"
    assert (entry["conn"], entry["user"], entry["code"]) == ("c1", "alice", 4008)
    assert "ValueError: boom" in entry["exc"]
    assert entry["ts"].endswith("Z")
    assert "room" not in entry


def test_text_lines_append_context() -> None:
    """A text line ends its first line with key=value context."""
    line = TextFormatter().format(_record())
    assert line.endswith("realtime.server: closing x conn=c1 user=alice code=4008")
