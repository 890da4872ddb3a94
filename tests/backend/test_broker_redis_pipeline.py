"""Appends of one loop turn go to a real redis-server as one pipeline, with the same results
as one call each: offsets in issue order, idempotency inside a batch, a lost script cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from realtime.broker import Appended
from realtime.broker.redis import RedisBroker, RedisOptions
from realtime.ids import ClientMessageId, User, UserId
from redis.asyncio import Redis

from tests.backend.broker_contract import ROOM, Inbox, wait_for
from tests.backend.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.integration

SENDERS = [User(UserId(f"u-{n}"), f"user{n}") for n in range(20)]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBroker, Inbox]]:
    async with Redis.from_url(redis_server.url) as admin:
        await admin.flushall()
    inbox = Inbox()
    made = RedisBroker(inbox, RedisOptions(url=redis_server.url))
    await made.start()
    await made.subscribe(ROOM)
    yield made, inbox
    await made.close()


async def one_turn(made: RedisBroker, ids: list[tuple[User, str]]) -> list[Appended]:
    """Every append issued in the same loop turn (as connections woken together do)."""
    return await asyncio.gather(
        *(made.append(ROOM, user, ClientMessageId(cid), f"from {user.name}") for user, cid in ids)
    )


async def test_one_turn_is_one_pipeline_in_issue_order(
    broker: tuple[RedisBroker, Inbox],
) -> None:
    """20 appends of one turn: one pipeline, offsets 1..20 in issue order, delivered in that
    order; a retry inside the same batch is answered as a duplicate of its first send."""
    made, inbox = broker
    ids = [(user, "m1") for user in SENDERS] + [(SENDERS[3], "m1")]
    results = await one_turn(made, ids)
    assert made._history.pipelines == 1
    assert [r.offset for r in results[:20]] == list(range(1, 21))
    assert not any(r.duplicate for r in results[:20])
    assert results[20].duplicate
    assert results[20].offset == results[3].offset == 4
    await wait_for(lambda: len(inbox.events) == 20)
    delivered = [json.loads(frame) for _, frame in inbox.events]
    assert [f["offset"] for f in delivered] == list(range(1, 21))
    assert [f["user"]["id"] for f in delivered] == [u.id for u in SENDERS]
    assert [r.frame for r in results[:20]] == [frame for _, frame in inbox.events]


async def test_each_connection_keeps_its_order_across_batches(
    broker: tuple[RedisBroker, Inbox],
) -> None:
    """Connections that await each append (as the hub does) see their offsets increase and
    the room's offsets have no gap and no repeat."""
    made, _ = broker

    async def connection(user: User) -> list[int]:
        return [
            (await made.append(ROOM, user, ClientMessageId(f"m{n}"), str(n))).offset
            for n in range(10)
        ]

    per_connection = await asyncio.gather(*(connection(user) for user in SENDERS[:8]))
    assert made._history.pipelines >= 5
    for offsets in per_connection:
        assert offsets == sorted(offsets)
    assert sorted(o for offsets in per_connection for o in offsets) == list(range(1, 81))


async def test_a_lost_script_cache_is_reloaded_inside_a_batch(
    broker: tuple[RedisBroker, Inbox], redis_server: RedisServer
) -> None:
    """After SCRIPT FLUSH (as after a Redis restart) a batch still appends every message,
    in issue order, exactly once."""
    made, inbox = broker
    await one_turn(made, [(SENDERS[0], "warm")])
    async with Redis.from_url(redis_server.url) as admin:
        await admin.script_flush()
    results = await one_turn(made, [(user, "m1") for user in SENDERS[:5]])
    assert [r.offset for r in results] == [2, 3, 4, 5, 6]
    assert not any(r.duplicate for r in results)
    await wait_for(lambda: len(inbox.events) == 6)
    assert [json.loads(frame)["offset"] for _, frame in inbox.events] == list(range(1, 7))
