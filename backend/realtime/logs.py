"""Logging setup with structlog: JSON lines (LOG_FORMAT=json) or readable text, every field kept.

Two kinds of call sites render through one ``structlog.stdlib.ProcessorFormatter`` on stderr:

- structlog loggers (``structlog.stdlib.get_logger(__name__).info("msg", room=...)``), with the
  fields bound in ``structlog.contextvars`` merged in;
- stdlib loggers (``logging.getLogger(__name__).info("msg", extra={...})``: server.py, the
  brokers, websockets, aiohttp): every ``extra`` field reaches the output (``ExtraAdder``).

A JSON line holds ``ts``, ``level``, ``logger``, ``msg``, every field, and ``exc`` (the
traceback) when there is one. Nothing here filters fields: tokens, the signing key, the Redis
URL and message bodies stay out of the logs because no call site passes them (tested through a
real process in tests/backend/test_log_secrets.py).
"""

from __future__ import annotations

import logging
import sys
from typing import Final, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import EventDict, Processor, WrappedLogger


def _exc_key(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """format_exc_info writes ``exception``; the documented key is ``exc``."""
    if "exception" in event:
        event["exc"] = event.pop("exception")
    return event


_HEAD = ("ts", "level", "logger", "msg")


def _head_first(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """``ts``, ``level``, ``logger``, ``msg`` lead each JSON line; the fields follow."""
    head = {key: event.pop(key) for key in _HEAD if key in event}
    return {**head, **event}


class _ClientErrors(logging.Filter):
    """aiohttp logs a client's malformed request at error with a traceback; it is the client's
    fault, so make it one warning line naming the problem (anyone could flood tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "malformed http request refused", ()
            record.exc_info, record.exc_text = None, None
            record.status = exc.code
            record.error = exc.message.split("\n", 1)[0][:200]
            return logging.getLogger().isEnabledFor(logging.WARNING)
        return True


_TIMESTAMPER: Final = structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts")
_SHARED: Final[list[Processor]] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _TIMESTAMPER,
]

# structlog loggers hand their events to the stdlib logger of the same name, from import on
# (so levels, handlers and pytest's capture apply before and after configure())
structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        *_SHARED,
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger routed through the stdlib logger ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def configure(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Install one handler (stderr unless ``stream``) on the root logger for both kinds."""
    renderer: list[Processor]
    if fmt == "json":
        renderer = [
            structlog.processors.format_exc_info,
            _exc_key,
            structlog.processors.EventRenamer("msg"),
            _head_first,
            structlog.processors.JSONRenderer(default=str),
        ]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=False, timestamp_key="ts")]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_SHARED],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_ClientErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # websockets logs every failed handshake at info; keep it at warning
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))
