"""The protocol's order under coalesced fan-out: the sender gets its own copy of a message
before the ``ack`` (docs/PROTOCOL.md, ``message``), on the memory broker and on Redis.

Several senders pipeline messages into one room while other members read; every sender
checks, for every one of its ids, that the ``message`` frame came before the ``ack``, and
every member that it got every message once, in offset order. On Redis the delivery comes
through pub/sub on another connection than the append's reply, so without the hub holding
the ack back this fails within a few hundred messages (the ack overtakes the copy).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from realtime.app import App
from websockets.asyncio.client import ClientConnection, connect

from tests.backend.conftest import TEST_SETTINGS
from tests.backend.redis_server import RedisServer, running_redis

SENDERS = 4
PER_SENDER = 150
READERS = 6


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def _hello(app: App, user: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{app.ws.port}/", close_timeout=1, max_queue=None)
    token = app.verifier.issue(user, user)
    await ws.send(json.dumps({"type": "hello", "v": [1], "token": token}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    await ws.send(json.dumps({"type": "join", "room": "order"}))
    while json.loads(await ws.recv())["type"] != "joined":
        pass
    return ws


@pytest.fixture(params=["memory", "redis"])
async def apps(request: pytest.FixtureRequest) -> AsyncIterator[list[App]]:
    """One instance on the memory broker, or two instances sharing one redis-server."""
    settings = dataclasses.replace(
        TEST_SETTINGS, rate_limit_per_second=10_000, rate_limit_burst=10_000
    )
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        settings = dataclasses.replace(settings, redis_url=server.url, redis_key_prefix="order")
        count = 2
    else:
        count = 1
    async with AsyncExitStack() as stack:
        started: list[App] = []
        for _ in range(count):
            app = App(settings)
            await app.start()
            stack.push_async_callback(app.http.stop)
            stack.push_async_callback(app.ws.stop)
            started.append(app)
        yield started


async def _read(ws: ClientConnection, user: str, total: int) -> dict[str, Any]:
    """Frames until ``total`` messages and (for a sender) its acks arrived."""
    messages: list[tuple[int, str, str]] = []
    acked: list[str] = []
    early: list[str] = []
    seen_own: set[str] = set()
    own = PER_SENDER if user.startswith("sender") else 0
    async with asyncio.timeout(30):
        while len(messages) < total or len(acked) < own:
            frame = json.loads(await ws.recv())
            if frame["type"] == "message":
                messages.append((frame["offset"], frame["user"]["id"], frame["id"]))
                if frame["user"]["id"] == user:
                    seen_own.add(frame["id"])
            elif frame["type"] == "ack":
                acked.append(frame["id"])
                if frame["id"] not in seen_own:
                    early.append(frame["id"])
    return {"messages": messages, "acked": acked, "early": early}


async def test_ack_never_precedes_the_senders_own_copy(apps: list[App]) -> None:
    sockets: dict[str, ClientConnection] = {}
    for i in range(SENDERS):
        sockets[f"sender{i}"] = await _hello(apps[i % len(apps)], f"sender{i}")
    for i in range(READERS):
        sockets[f"reader{i}"] = await _hello(apps[i % len(apps)], f"reader{i}")
    total = SENDERS * PER_SENDER
    readers = {user: asyncio.create_task(_read(ws, user, total)) for user, ws in sockets.items()}

    async def send(user: str) -> None:
        ws = sockets[user]
        for n in range(PER_SENDER):
            frame = {"type": "message", "room": "order", "id": f"{user}-{n}", "body": f"{n}"}
            await ws.send(json.dumps(frame))
            if n % 10 == 9:
                await asyncio.sleep(0)

    await asyncio.gather(*(send(user) for user in sockets if user.startswith("sender")))
    results = {user: await task for user, task in readers.items()}
    for ws in sockets.values():
        await ws.close()

    for user, result in results.items():
        assert result["early"] == [], f"{user}: ack before its own copy"
        offsets = [offset for offset, _, _ in result["messages"]]
        assert offsets == sorted(offsets), f"{user}: messages out of offset order"
        assert len(set(offsets)) == total, f"{user}: a message missing or twice"
        if user.startswith("sender"):
            assert sorted(result["acked"]) == sorted(f"{user}-{n}" for n in range(PER_SENDER))
