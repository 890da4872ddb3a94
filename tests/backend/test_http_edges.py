"""Hostile HTTP on port 8080 (aiohttp): each request is refused and the server keeps serving.

Request smuggling shapes (two ``Content-Length`` headers, a non-ASCII digit, ``Content-Length``
with ``Transfer-Encoding``), oversized heads, a slowloris client, a slow body and path
traversal on the static files, all through real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
import realtime.app
from realtime.app import App

from tests.backend.conftest import TEST_SETTINGS

SHORT_IDLE = 0.6


@pytest.fixture
async def app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    """An instance with DEV_TOKENS=1 (a route that reads bodies) and a short idle timeout."""
    monkeypatch.setattr(realtime.app, "IDLE_TIMEOUT", SHORT_IDLE)
    instance = App(dataclasses.replace(TEST_SETTINGS, dev_tokens=True, metrics_port=0))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.ws.stop()
        await instance.http.stop()


async def exchange(app: App, request: bytes, timeout: float = 3.0) -> bytes:
    """Send ``request`` on a new connection; read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
    try:
        writer.write(request)
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()


async def assert_still_serving(app: App) -> None:
    answer = await exchange(app, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nok\n")


POST = b"POST /dev/token HTTP/1.1\r\nHost: x\r\n"
BODY = b'{"user":"alice"}'


@pytest.mark.parametrize(
    ("request_bytes", "status", "detail"),
    [
        pytest.param(
            POST + b"Content-Length: 16\r\nContent-Length: 3\r\n\r\n" + BODY,
            b"400 Bad Request",
            b"Duplicate Content-Length",
            id="two-content-lengths",
        ),
        pytest.param(
            POST + b"Content-Length: 16\r\nContent-Length: 16\r\n\r\n" + BODY,
            b"400 Bad Request",
            b"Duplicate Content-Length",
            id="two-equal-content-lengths",
        ),
        pytest.param(
            POST + "Content-Length: \u00b2\r\n\r\n".encode() + BODY,
            b"400 Bad Request",
            b"Invalid character in Content-Length",
            id="superscript-two",
        ),
        pytest.param(
            POST + b"Content-Length: +16\r\n\r\n" + BODY,
            b"400 Bad Request",
            b"Invalid character in Content-Length",
            id="signed-length",
        ),
        pytest.param(
            POST + b"Content-Length: 16\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + BODY,
            b"400 Bad Request",
            b"Transfer-Encoding can't be present with Content-Length",
            id="content-length-and-transfer-encoding",
        ),
        pytest.param(
            POST + b"Transfer-Encoding: chunked\r\n\r\n10\r\n" + BODY + b"\r\n0\r\n\r\n",
            b"501 Not Implemented",
            b"transfer-encoding is not supported, send content-length",
            id="chunked-upload",
        ),
        pytest.param(
            POST + b"Content-Length: 16385\r\n\r\n",
            b"413 Request Entity Too Large",
            b"body too large: 16385 bytes, at most 16384",
            id="body-over-16-KiB",
        ),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            b"400 Bad Request",
            b"Got more than 8190 bytes when reading",
            id="header-line-over-8190",
        ),
        pytest.param(
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"400 Bad Request",
            b"Got more than 8190 bytes when reading",
            id="request-line-over-8190",
        ),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(65))
            + b"\r\n",
            b"400 Bad Request",
            b"Too many headers received",
            id="65-headers",
        ),
        pytest.param(
            b"NONSENSE\r\n\r\n",
            b"400 Bad Request",
            b"Invalid method encountered",
            id="not-http",
        ),
    ],
)
async def test_bad_framing_is_refused_and_the_server_keeps_serving(
    app: App, request_bytes: bytes, status: bytes, detail: bytes
) -> None:
    """Each request gets its error status, the connection is closed (no second request is
    read from a stream whose framing is in doubt), and a new client is served."""
    answer = await exchange(app, request_bytes + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ", 1)[1] == status, answer[:300]
    assert detail in body, answer[:300]
    assert answer.count(b"HTTP/1.") == 1, "a second request was read after a refused one"
    await assert_still_serving(app)


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fsettings.py",
        "/static/../app.py",
        "/%2e%2e/realtime/settings.py",
        "/index.html/../../../app.py",
        "//etc/passwd",
        "/app.js%00.html",
        "/static/index.html",
        "/realtime/app.py",
    ],
)
async def test_path_traversal_reaches_no_file(app: App, path: str) -> None:
    """Only the four named assets are served (from memory): anything else is a 404."""
    answer = await exchange(
        app, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer[:200]
    assert b"root:" not in answer
    assert b"import" not in answer
    await assert_still_serving(app)


async def test_slowloris_is_cut_off_at_the_idle_timeout(app: App) -> None:
    """A client trickling header bytes is closed IDLE_TIMEOUT after it connected, however
    often it sends; another client is served meanwhile."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
    started = time.monotonic()

    async def trickle() -> int:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing():
                await asyncio.sleep(0.05)
                writer.write(b"X-%d: 1\r\n" % sent)
                await writer.drain()
                sent += 1
        return sent

    trickler = asyncio.create_task(trickle())
    try:
        await asyncio.sleep(0.2)
        await assert_still_serving(app)
        async with asyncio.timeout(SHORT_IDLE + 3):
            answer = await reader.read(-1)
        closed_after = time.monotonic() - started
    finally:
        writer.close()
        sent = await trickler
    assert answer == b""
    assert sent >= 5
    assert SHORT_IDLE - 0.05 <= closed_after <= SHORT_IDLE + 1.0
    await assert_still_serving(app)


async def test_a_slow_body_gets_408(app: App) -> None:
    """A POST whose body does not arrive within IDLE_TIMEOUT is answered 408 and closed
    (after at most LINGERING_TIME more for the rest of the body)."""
    started = time.monotonic()
    answer = await exchange(app, POST + b'Content-Length: 16\r\n\r\n{"us')
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b"body not received in time\n")
    assert time.monotonic() - started < SHORT_IDLE + realtime.app.LINGERING_TIME + 0.8
    await assert_still_serving(app)


async def test_an_idle_keep_alive_connection_is_closed(app: App) -> None:
    """After a response, a keep-alive connection with no next request closes at IDLE_TIMEOUT."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        async with asyncio.timeout(SHORT_IDLE + 2):
            answer = await reader.read(-1)
        assert answer.endswith(b"\r\n\r\nok\n")
        assert SHORT_IDLE - 0.05 <= time.monotonic() - started <= SHORT_IDLE + 1.0
    finally:
        writer.close()
