"""The backend's WebSocket pings are what keep an idle client alive behind an idle-timing edge

Two private edges cut a tunnel idle for 3 s (``timeout tunnel 3s``): one in front of a backend
pinging every second (``PING_INTERVAL=1``), one in front of a backend whose first ping would
come after a day (``PING_INTERVAL=86400``: pings are off for the length of the test; the
setting refuses 0). A client joins a room through each, then stays silent for 9 s, three times
the edge's timeout; a third silent client talks to the non-pinging backend directly, without an
edge. The clients never ping themselves (``ping_interval=None``), so the only traffic is the
server's. Fly removed its own 60 s idle timeout in 2023, but other proxies in the path still
cut idle connections: this is why the backend pings (docs/EDGE_FINDINGS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.edge_fixtures import Edge, dev_fly_config, running_edge

pytestmark = pytest.mark.integration

EDGE_IDLE = "3s"
IDLE_SECONDS = 9.0
PINGING = {"PING_INTERVAL": "1", "PING_TIMEOUT": "5"}
NOT_PINGING = {"PING_INTERVAL": "86400", "PING_TIMEOUT": "5"}


def _idle_timing_edge(
    factory: pytest.TempPathFactory, name: str, backend_env: dict[str, str]
) -> contextlib.AbstractContextManager[Edge]:
    return running_edge(
        factory.mktemp(name),
        fly=dev_fly_config(),
        backend_env=backend_env,
        tunnel_timeout=EDGE_IDLE,
    )


@pytest.fixture(scope="module")
def pinging_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with _idle_timing_edge(tmp_path_factory, "keepalive-ping", PINGING) as edge:
        yield edge


@pytest.fixture(scope="module")
def silent_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with _idle_timing_edge(tmp_path_factory, "keepalive-silent", NOT_PINGING) as edge:
        yield edge


async def _next(ws: ClientConnection, kind: str) -> dict[str, object]:
    while True:
        frame: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert frame.get("type") != "error", frame
        if frame.get("type") == kind:
            return frame


async def _joined(edge: Edge, *, direct: bool, room: str) -> tuple[ClientConnection, float]:
    """A client in ``room`` that never pings, through ``edge`` or straight to its backend;
    with the heartbeat interval the server announced in its welcome."""
    token = await asyncio.to_thread(edge.dev_token, f"idle-{uuid.uuid4().hex[:6]}")
    if direct:
        ws = await connect(f"ws://127.0.0.1:{edge.backend_ws_port}/", ping_interval=None)
    else:
        ws = await connect(edge.wss_url, ssl=edge.client_tls(), ping_interval=None)
    await ws.send(json.dumps({"type": "hello", "v": [1], "token": token}))
    welcome = await _next(ws, "welcome")
    await ws.send(json.dumps({"type": "join", "room": room}))
    await _next(ws, "joined")
    heartbeat = welcome["heartbeat"]
    assert isinstance(heartbeat, int | float)
    return ws, float(heartbeat)


async def _idle(ws: ClientConnection) -> float | None:
    """Stay silent for IDLE_SECONDS; how long until the connection closed, or None if open."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(ws.wait_closed(), timeout=IDLE_SECONDS)
    except TimeoutError:
        return None
    return time.monotonic() - started


async def _still_chats(ws: ClientConnection, room: str) -> None:
    await ws.send(json.dumps({"type": "message", "room": room, "id": "after-idle", "body": "hi"}))
    await _next(ws, "ack")


async def test_server_pings_keep_an_idle_client_through_an_idle_timing_edge(
    pinging_edge: Edge, silent_edge: Edge
) -> None:
    """Idle 3x the edge's timeout: kept alive by pings, cut (1006) without them."""
    room = f"idle-{uuid.uuid4().hex[:8]}"
    kept, kept_heartbeat = await _joined(pinging_edge, direct=False, room=room)
    cut, cut_heartbeat = await _joined(silent_edge, direct=False, room=room)
    direct, _ = await _joined(silent_edge, direct=True, room=room)
    assert (kept_heartbeat, cut_heartbeat) == (1.0, 86400.0)
    try:
        kept_closed, cut_closed, direct_closed = await asyncio.gather(
            _idle(kept), _idle(cut), _idle(direct)
        )
        print(f"without pings the edge cut the idle client after {cut_closed}s")
        assert kept_closed is None, f"the pinged client was closed after {kept_closed}s"
        await _still_chats(kept, room)
        assert cut_closed is not None, "the edge kept a silent client for 9 s (tunnel 3s)"
        assert cut.close_code == 1006  # no close frame: the edge dropped the TCP connection
        with pytest.raises(ConnectionClosed):
            await cut.send("{}")
        # the backend alone keeps a silent client: the edge's idle timeout is what cut it
        assert direct_closed is None, f"the backend closed a silent client after {direct_closed}s"
        await _still_chats(direct, room)
    finally:
        for ws in (kept, cut, direct):
            await ws.close()
