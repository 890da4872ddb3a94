"""The smoke check fails with the check's name when an edge misbehaves.

Real TLS servers on loopback (certificates from the development CA) stand in for a broken edge:
one that negotiates h2 on the WebSocket port, and one that answers the upgrade with 426.
The success path runs in every local deploy (tests/infra/test_local_deploy.py, the engine tests).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infra.deploy.smoke import SmokeError, run_smoke
from infra.local.certs import ensure_certificates


async def _answer_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer /readyz with 200 and anything else (the WebSocket upgrade) with 426."""
    request = await reader.readuntil(b"\r\n\r\n")
    if request.startswith(b"GET /readyz"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    else:
        writer.write(
            b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    await writer.drain()
    writer.close()


async def _serve(tmp_path: Path, alpn: list[str]) -> tuple[asyncio.Server, int, Path]:
    certs = ensure_certificates(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.edge)
    context.set_alpn_protocols(alpn)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _answer_http(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    return server, port, certs.ca


async def _smoke_at(port: int, ca: Path, *, wait: float = 5) -> list[str]:
    """The smoke check against an edge answering both URLs on ``port``."""
    return await run_smoke(
        wss_url=f"wss://localhost:{port}/",
        https_url=f"https://localhost:{port}/",
        ca_file=str(ca),
        signing_key=None,
        wait=wait,
    )


@pytest.fixture
async def h2_edge(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    server, port, ca = await _serve(tmp_path, ["h2", "http/1.1"])
    async with server:
        yield port, ca


@pytest.fixture
async def refusing_edge(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    server, port, ca = await _serve(tmp_path, ["http/1.1"])
    async with server:
        yield port, ca


async def test_an_edge_negotiating_h2_fails_the_alpn_check(h2_edge: tuple[int, Path]) -> None:
    """h2 on the WebSocket port is the failure the ALPN pin prevents: the check names it."""
    port, ca = h2_edge
    with pytest.raises(SmokeError, match=r"alpn: .* negotiated h2"):
        await _smoke_at(port, ca)


async def test_an_upgrade_answered_without_101_fails_the_handshake_check(
    refusing_edge: tuple[int, Path],
) -> None:
    """A 426 (or the PU02 close) instead of 101 fails the deploy, naming the status."""
    port, ca = refusing_edge
    with pytest.raises(SmokeError, match=r"handshake: .* answered 426 instead of 101"):
        await _smoke_at(port, ca)


async def test_an_edge_that_never_gets_ready_fails_the_readiness_check(tmp_path: Path) -> None:
    """Nothing listening: the check waits, then names the readiness URL."""
    certs = ensure_certificates(tmp_path / "tls")
    with pytest.raises(SmokeError, match=r"readiness: https://localhost:9/readyz"):
        await _smoke_at(9, certs.ca, wait=1)
