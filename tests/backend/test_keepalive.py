"""realtime.keepalive through the real server: one task pings every authenticated
connection every PING_INTERVAL (no task per connection), pongs keep a connection open, a
missing pong closes it with 1011 ``keepalive ping timeout`` (tests/backend/test_edges.py
checks that close from a raw client and its metric)."""

from __future__ import annotations

import asyncio

from realtime.app import App
from realtime.keepalive import SLOTS

from tests.backend.conftest import ClientFactory, with_settings


@with_settings(ping_interval=0.4, ping_timeout=0.3)
async def test_every_connection_is_pinged_each_interval_and_answering_keeps_it_open(
    app: App, client: ClientFactory
) -> None:
    """Clients that answer pings (websockets answers them by itself) stay open over several
    intervals, and each of them saw a ping per interval (the pong updates its latency)."""
    clients = [await client(f"user{i}", ping_interval=None) for i in range(30)]
    assert len(app.ws.keepalive) == 30
    await asyncio.sleep(0.4 * 3.5)
    for c in clients:
        assert c.ws.protocol.state.name == "OPEN"
    # the server measured each connection's round trip from its own pings
    server_side = [s.ws for s in app.ws._sessions]
    assert len(server_side) == 30
    assert all(ws.latency > 0 for ws in server_side)


@with_settings(ping_interval=60.0)
async def test_no_task_per_connection(app: App, client: ClientFactory) -> None:
    """websockets' own keepalive would add a task per connection (about 2.5 KiB each when
    idle): with 40 more connections the server gains their 40 handler tasks only."""
    before = len(asyncio.all_tasks())
    clients = [await client(f"user{i}", ping_interval=None) for i in range(40)]
    await asyncio.sleep(0.1)
    # each client connection has no task of its own (ping_interval=None on the client side)
    assert len(asyncio.all_tasks()) - before == 40
    assert len(clients) == 40


@with_settings(ping_interval=0.5, ping_timeout=0.4)
async def test_pings_are_spread_over_the_interval(app: App, client: ClientFactory) -> None:
    """One group of connections is pinged at a time: the first pongs of 60 connections,
    as the server sees them, do not all come at once; a closed connection leaves its group."""
    for i in range(60):
        await client(f"user{i}", ping_interval=None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    first: dict[object, float] = {}
    while len(first) < 60 and loop.time() < deadline:
        for session in app.ws._sessions:
            if session.ws not in first and session.ws.latency > 0:
                first[session.ws] = loop.time()
        await asyncio.sleep(0.005)
    assert len(first) == 60
    spread = max(first.values()) - min(first.values())
    assert spread >= 2 * 0.5 / SLOTS, sorted(first.values())
    await next(iter(app.ws._sessions)).ws.close()
    await asyncio.sleep(0.1)
    assert len(app.ws.keepalive) == 59
