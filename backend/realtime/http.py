"""A small HTTP/1.1 server on asyncio streams: health, readiness, metrics, the demo page.

It speaks enough HTTP/1.1 for probes, Prometheus and browsers: persistent connections,
``Content-Length`` bodies (no chunked uploads: 411/501), HEAD, bounded request sizes and an
idle timeout. Routing is a plain callable from :class:`Request` to :class:`Response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

logger = logging.getLogger(__name__)

MAX_LINE = 8192
MAX_HEADERS = 64
MAX_BODY = 16 * 1024
IDLE_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class HttpServer:
    """Serves ``handler`` on ``host:port``; ``port`` 0 picks a free port (see ``.port``)."""

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._client, self._host, self._port, limit=MAX_LINE
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("http server listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=1)
        await self._server.wait_closed()
        self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            keep_alive = True
            while keep_alive:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        request = await _read_request(reader)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                except _BadRequest as exc:
                    _write(writer, Response.text(exc.status, exc.detail + "\n"), "HTTP/1.1", False)
                    await writer.drain()
                    return
                if request is None:
                    return
                version, req = request
                keep_alive = _keep_alive(version, req.headers)
                try:
                    response = await self._handler(req)
                except Exception:
                    logger.error("http handler failed", exc_info=True)
                    response = Response.text(500, "internal error\n")
                _write(writer, response, version, keep_alive, head=req.method == "HEAD")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, Request] | None:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(414, "request line too long") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    while True:
        try:
            raw = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "header line too long") from None
        if raw == b"\r\n":
            break
        if len(headers) >= MAX_HEADERS:
            raise _BadRequest(431, "too many headers")
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise _BadRequest(501, "transfer-encoding is not supported, send content-length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _BadRequest(400, f"invalid content-length {length_text[:20]!r}")
    length = int(length_text)
    if length > MAX_BODY:
        raise _BadRequest(413, f"body too large: {length} bytes, at most {MAX_BODY}")
    body = await reader.readexactly(length) if length else b""
    path, _, query = target.partition("?")
    return version, Request(method, path, query, headers, body)


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def _write(
    writer: asyncio.StreamWriter,
    response: Response,
    version: str,
    keep_alive: bool,
    *,
    head: bool = False,
) -> None:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"{version} {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        *(f"{name}: {value}" for name, value in response.headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head:
        writer.write(response.body)
