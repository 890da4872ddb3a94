"""The Redis broker against a real redis-server: the shared contract and Redis specifics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from realtime.broker import Broker, BrokerError, Kind, OnEvent, create_broker
from realtime.broker.redis import RedisBroker, RedisOptions
from realtime.encode import encode_message, encode_presence, encode_typing
from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User, UserId
from realtime.settings import Settings, SettingsError
from redis.asyncio import Redis

from tests.backend.broker_contract import (
    ALICE,
    BOB,
    ROOM,
    BrokerContract,
    BrokerFactory,
    Inbox,
    wait_for,
)
from tests.backend.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def options(redis_server: RedisServer) -> RedisOptions:
    return RedisOptions(
        url=redis_server.url, history_size=500, presence_ttl=1.0, presence_heartbeat=0.2
    )


Started = Callable[..., Awaitable[RedisBroker]]


@pytest.fixture
async def started(options: RedisOptions) -> AsyncIterator[Started]:
    """``await started(inbox, **option_changes)``: a started broker on an empty Redis,
    closed after the test."""
    async with Redis.from_url(options.url) as admin:
        await admin.flushall()
    async with redis_brokers(options) as factory:
        yield factory


@contextlib.asynccontextmanager
async def redis_brokers(options: RedisOptions) -> AsyncIterator[Started]:
    """``await factory(inbox, **option_changes)``: started brokers, all closed on exit."""
    made: list[Broker] = []

    async def factory(on_event: OnEvent, **changes: Any) -> RedisBroker:
        broker = RedisBroker(on_event, dataclasses.replace(options, **changes))
        made.append(broker)
        await broker.start()
        return broker

    try:
        yield factory
    finally:
        for broker in made:
            await broker.close()


@pytest.fixture
def broker_factory(started: Started) -> BrokerFactory:
    async def factory(on_event: OnEvent) -> Broker:
        return await started(on_event)

    return factory


class TestRedisBroker(BrokerContract):
    shared = True


def test_factory_selects_redis_broker_with_redis_url(redis_server: RedisServer) -> None:
    """With REDIS_URL set the factory builds the Redis broker."""
    settings = Settings(dev_tokens=True, redis_url=redis_server.url)
    assert isinstance(create_broker(settings, Inbox()), RedisBroker)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PRESENCE_TTL": "0"}, "PRESENCE_TTL must be a positive number, got '0'"),
        ({"HISTORY_TTL": "1.5"}, "HISTORY_TTL must be a positive integer, got '1.5'"),
        (
            {"PRESENCE_TTL": "4", "PRESENCE_HEARTBEAT": "3"},
            "PRESENCE_HEARTBEAT must be at most half of PRESENCE_TTL, got 3 and 4",
        ),
    ],
)
def test_options_name_the_bad_variable(env: dict[str, str], message: str) -> None:
    """A bad broker variable is refused with its name and value (by Settings, which reads
    every variable of the backend)."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"DEV_TOKENS": "1", "REDIS_URL": "redis://127.0.0.1:1", **env})
    assert str(info.value) == message


def test_options_defaults_are_production_defaults() -> None:
    """Without variables: 20 s presence TTL, 5 s heartbeat, one day of history."""
    options = RedisOptions.from_settings(
        Settings.from_env({"DEV_TOKENS": "1", "REDIS_URL": "redis://x"})
    )
    assert (options.presence_ttl, options.presence_heartbeat) == (20.0, 5.0)
    assert (options.history_ttl, options.idempotency_ttl) == (86_400, 600)
    assert options.key_prefix == "rt"
    assert options == RedisOptions(url="redis://x")


def test_options_come_from_settings() -> None:
    """Every broker variable reaches the options (REDIS_KEY_PREFIX included)."""
    settings = Settings.from_env(
        {
            "DEV_TOKENS": "1",
            "REDIS_URL": "redis://x",
            "HISTORY_TTL": "60",
            "IDEMPOTENCY_TTL": "30",
            "PRESENCE_TTL": "3",
            "PRESENCE_HEARTBEAT": "1.5",
            "REDIS_KEY_PREFIX": "stage",
            "HISTORY_SIZE": "7",
        }
    )
    options = RedisOptions.from_settings(settings)
    assert (options.history_ttl, options.idempotency_ttl) == (60, 30)
    assert (options.presence_ttl, options.presence_heartbeat) == (3.0, 1.5)
    assert (options.key_prefix, options.history_size) == ("stage", 7)


async def test_frame_built_by_script_equals_encode_message(
    broker_factory: BrokerFactory,
) -> None:
    """The script fills offset and epoch into exactly what encode_message would produce."""
    broker = await broker_factory(Inbox())
    body = 'quotes " and \\ and "offset":0,"epoch":"" and ünïcode'
    appended = await broker.append(ROOM, ALICE, ClientMessageId("m1"), body)
    frame = json.loads(appended.frame)
    assert frame["body"] == body
    expected = encode_message(
        ROOM,
        offset=1,
        epoch=appended.epoch,
        user=ALICE,
        client_id=ClientMessageId("m1"),
        body=body,
        ts=frame["ts"],
    )
    assert appended.frame == expected


async def test_history_is_bounded_and_expires(started: Started, options: RedisOptions) -> None:
    """The room's stream is trimmed to history_size and every room key has a TTL."""
    broker = await started(Inbox(), history_size=3)
    for i in range(5):
        await broker.append(ROOM, ALICE, ClientMessageId(f"m{i}"), "x")
    await broker.presence_join(ROOM, ALICE, ConnId("c1"))
    async with Redis.from_url(options.url, decode_responses=True) as admin:
        assert await admin.xlen("rt:{lobby}:log") == 3
        keys = await admin.keys("rt:{lobby}:*")
        assert keys
        ttls = {key: await admin.ttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def test_expired_presence_is_reaped_with_one_leave(
    broker_factory: BrokerFactory,
) -> None:
    """A crashed instance's entries expire; exactly one leave per user reaches the others."""
    inbox = Inbox()
    survivor = await broker_factory(inbox)
    await survivor.subscribe(ROOM)
    crashed = await broker_factory(Inbox())
    assert await crashed.presence_join(ROOM, ALICE, ConnId("c1"))
    assert not await crashed.presence_join(ROOM, ALICE, ConnId("c2"))
    assert await crashed.presence_join(ROOM, BOB, ConnId("c3"))
    assert not await survivor.presence_join(ROOM, BOB, ConnId("c4"))
    # simulate the crash: stop refreshing without leaving
    assert isinstance(crashed, RedisBroker)
    crashed._presence.owned.clear()
    await wait_for(lambda: len(inbox.events) >= 1, timeout=5.0)
    await asyncio.sleep(0.5)
    leaves = [json.loads(frame) for _, frame in inbox.events]
    assert leaves == [
        {
            "type": "presence",
            "room": ROOM,
            "event": "leave",
            "user": {"id": "u-alice", "name": "alice"},
        }
    ]
    assert inbox.kinds == [Kind.PRESENCE]
    assert await survivor.presence_snapshot(ROOM) == [BOB]


async def test_redis_restart_recovers_and_refuses_meanwhile(
    started: Started, redis_server: RedisServer
) -> None:
    """While Redis is down appends raise and ready is false; afterwards a new epoch starts,
    presence is re-added and deliveries resume."""
    inbox = Inbox()
    broker = await started(inbox)
    await broker.subscribe(ROOM)
    await broker.presence_join(ROOM, ALICE, ConnId("c1"))
    before = await broker.append(ROOM, ALICE, ClientMessageId("m1"), "before")
    redis_server.stop(kill=True)
    await wait_for(lambda: not broker.ready)
    with pytest.raises(BrokerError, match="redis"):
        await broker.append(ROOM, ALICE, ClientMessageId("m2"), "during")
    redis_server.start()
    await wait_for(lambda: broker.ready, timeout=10.0)
    after = await broker.append(ROOM, ALICE, ClientMessageId("m3"), "after")
    assert after.epoch != before.epoch
    assert after.offset == 1
    await wait_for(lambda: after.frame in [frame for _, frame in inbox.events])
    assert await broker.presence_snapshot(ROOM) == [ALICE]
    recovery = await broker.history(ROOM, before.offset, before.epoch)
    assert (recovery.recovered, recovery.frames) == (False, [after.frame])


async def test_join_handover_has_no_gap_or_duplicate(broker_factory: BrokerFactory) -> None:
    """history() returns when the reader delivered exactly up to the offset it reports."""
    inbox = Inbox()
    reader = await broker_factory(inbox)
    writer = await broker_factory(Inbox())
    await reader.subscribe(ROOM)
    epoch, _ = await reader.last(ROOM)

    async def send() -> None:
        for i in range(200):
            await writer.append(ROOM, BOB, ClientMessageId(f"m{i}"), "x")

    sending = asyncio.create_task(send())
    for _ in range(20):
        recovery = await reader.history(ROOM, 0, Epoch(epoch))
        delivered = [json.loads(frame)["offset"] for _, frame in inbox.events]
        # everything delivered so far is exactly what the history read reported
        assert delivered == list(range(1, recovery.offset + 1))
        await asyncio.sleep(0.005)
    await sending


async def test_lost_subscription_replays_missed_messages_in_order(
    broker_factory: BrokerFactory, options: RedisOptions
) -> None:
    """When the subscription connection is killed, the reader reconnects and delivers the
    messages published meanwhile from history: each once, in offset order."""
    inbox = Inbox()
    reader = await broker_factory(inbox)
    writer = await broker_factory(Inbox())
    await reader.subscribe(ROOM)
    await writer.append(ROOM, BOB, ClientMessageId("m0"), "x")
    await wait_for(lambda: len(inbox.events) == 1)
    assert isinstance(reader, RedisBroker)
    async with Redis.from_url(options.url, decode_responses=True) as admin:
        clients = await admin.client_list()
        (sub,) = [c for c in clients if c["name"] == f"rt:sub:{reader.instance}"]
        await admin.client_kill_filter(_id=sub["id"])
    for i in range(1, 30):
        await writer.append(ROOM, BOB, ClientMessageId(f"m{i}"), "x")
    await wait_for(lambda: len(inbox.events) >= 30)
    await asyncio.sleep(0.2)
    offsets = [json.loads(frame)["offset"] for _, frame in inbox.events]
    assert offsets == list(range(1, 31))
    assert reader.ready


async def test_resubscribes_every_room_in_batches(
    started: Started, options: RedisOptions, redis_server: RedisServer
) -> None:
    """After a Redis restart every subscribed room is subscribed again (batches of 10 here)."""
    inbox = Inbox()
    broker = await started(inbox, subscribe_batch=10)
    rooms = [RoomName(f"room-{i}") for i in range(25)]
    for room in rooms:
        await broker.subscribe(room)
    redis_server.restart()
    await wait_for(lambda: not broker.ready)
    await wait_for(lambda: broker.ready, timeout=10.0)
    async with Redis.from_url(options.url) as admin:
        assert await admin.pubsub_numsub(*(f"rt:room:{r}" for r in rooms)) == [
            (f"rt:room:{r}".encode(), 1) for r in rooms
        ]
    for room in rooms:
        await broker.publish_ephemeral(room, Kind.TYPING, '{"type":"typing"}')
    await wait_for(lambda: {room for room, _ in inbox.events} == set(rooms))


async def test_reaper_covers_every_room(broker_factory: BrokerFactory) -> None:
    """Expired entries in more rooms than one pipelined batch all produce their leave."""
    inbox = Inbox()
    survivor = await broker_factory(inbox)
    crashed = await broker_factory(Inbox())
    rooms = [RoomName(f"room-{i}") for i in range(150)]
    for room in rooms:
        await survivor.subscribe(room)
        assert await crashed.presence_join(room, ALICE, ConnId(f"c-{room}"))
    assert isinstance(crashed, RedisBroker)
    crashed._presence.owned.clear()  # the crash: its heartbeat stops refreshing the entries
    await wait_for(lambda: len(inbox.events) >= len(rooms), timeout=5.0)
    await asyncio.sleep(0.5)
    assert sorted(room for room, _ in inbox.events) == sorted(rooms)
    assert all('"event":"leave"' in frame for _, frame in inbox.events)


async def test_starts_not_ready_while_redis_is_down(
    started: Started, redis_server: RedisServer
) -> None:
    """A broker started without Redis reports not ready, refuses appends, and becomes ready
    when Redis comes up."""
    redis_server.stop()
    try:
        broker = await started(Inbox(), command_timeout=0.5)
        assert not broker.ready
        with pytest.raises(BrokerError, match="redis is unavailable"):
            await broker.append(ROOM, ALICE, ClientMessageId("m1"), "x")
        redis_server.start()
        await wait_for(lambda: broker.ready, timeout=10.0)
        assert (await broker.append(ROOM, ALICE, ClientMessageId("m1"), "x")).offset == 1
    finally:
        if not redis_server.running:
            redis_server.start()


async def test_silent_redis_makes_the_broker_unready(
    started: Started, redis_server: RedisServer
) -> None:
    """Redis stops answering without closing sockets: after three silent heartbeats the
    broker is not ready; when Redis answers again it reconnects."""
    broker = await started(Inbox(), command_timeout=0.5)
    assert broker.ready
    redis_server.pause()
    try:
        await wait_for(lambda: not broker.ready, timeout=5.0)
    finally:
        redis_server.resume()
    await wait_for(lambda: broker.ready, timeout=10.0)


async def test_heartbeat_never_races_joins_and_leaves(started: Started) -> None:
    """With a heartbeat every 10 ms, each join still reports the user online, each leave
    offline, and the heartbeat neither re-adds a left entry nor announces anything."""
    inbox = Inbox()
    broker = await started(inbox, presence_ttl=0.5, presence_heartbeat=0.01)
    await broker.subscribe(ROOM)
    for i in range(150):
        user = User(UserId(f"u{i}"), f"user {i}")
        assert await broker.presence_join(ROOM, user, ConnId(f"c{i}"))
        await asyncio.sleep(0)
        assert await broker.presence_leave(ROOM, user, ConnId(f"c{i}"))
    await asyncio.sleep(1.0)  # longer than the TTL: a ghost entry would be reaped by now
    assert inbox.events == []
    assert await broker.presence_snapshot(ROOM) == []


# a rolling deploy from the release before the events channel (a6bda4a)


async def test_older_release_presence_and_typing_are_dropped_quietly(
    started: Started, options: RedisOptions, caplog: pytest.LogCaptureFixture
) -> None:
    """The previous release published presence and typing as bare frames on the room's
    message channel: this release drops them without a warning and counts them, and still
    delivers the previous release's messages (same channel, same ``m<epoch>:<offset>|``)."""
    inbox = Inbox()
    broker = await started(inbox)
    await broker.subscribe(ROOM)
    epoch, offset = await broker.last(ROOM)
    message = encode_message(
        ROOM,
        offset=offset + 1,
        epoch=epoch,
        user=ALICE,
        client_id=ClientMessageId("m1"),
        body="hi",
        ts=1,
    )
    async with Redis.from_url(options.url, decode_responses=True) as old_instance:
        # exactly what the previous release's _publish and append script sent
        await old_instance.publish("rt:room:lobby", encode_presence(ROOM, ALICE, online=True))
        await old_instance.publish("rt:room:lobby", encode_typing(ROOM, ALICE, active=True))
        await old_instance.publish("rt:room:lobby", f"m{epoch}:{offset + 1}|{message}")
    with caplog.at_level(logging.WARNING, logger="realtime.broker.redis"):
        await wait_for(lambda: len(inbox.events) == 1)
        await asyncio.sleep(0.1)
    assert inbox.kinds == [Kind.MESSAGE]
    assert inbox.events == [(ROOM, message)]
    assert broker.legacy_payloads == 2
    assert caplog.records == []


async def test_older_release_sees_only_messages_on_the_room_channel(
    started: Started, options: RedisOptions
) -> None:
    """What a previous-release instance subscribes (the room's message channel) carries only
    messages in its format; presence, typing and the reaper's leaves go elsewhere."""
    broker = await started(Inbox())
    await broker.subscribe(ROOM)
    async with (
        Redis.from_url(options.url, decode_responses=True) as old_instance,
        old_instance.pubsub() as pubsub,
    ):
        await pubsub.subscribe("rt:room:lobby")
        await pubsub.get_message(timeout=1.0)
        await broker.publish_ephemeral(ROOM, Kind.TYPING, encode_typing(ROOM, BOB, active=True))
        assert await broker.presence_join(ROOM, BOB, ConnId("c1"))
        await broker._presence.publish(ROOM, BOB, online=True)
        appended = await broker.append(ROOM, ALICE, ClientMessageId("m1"), "hi")
        seen = []
        while not any(data.startswith("m") for data in seen):
            got = await pubsub.get_message(timeout=2.0)
            assert got is not None, seen
            if got["type"] == "message":
                seen.append(got["data"])
    # the previous release's reader: "m<epoch>:<offset>|frame", anything else forwarded raw
    (data,) = seen
    head, _, frame = data.partition("|")
    assert head == f"m{appended.epoch}:{appended.offset}"
    assert frame == appended.frame


async def test_history_that_went_back_is_delivered_again_from_where_it_diverged(
    broker_factory: BrokerFactory, options: RedisOptions
) -> None:
    """A failover can lose the last acknowledged messages (replication is asynchronous) and
    the promoted replica hands their offsets out again. Simulated here on one Redis: offsets
    4 and 5 vanish from the room's state while the reader's subscription is down; the
    messages that then get offsets 4 and 5 are delivered, not dropped as already seen."""
    inbox = Inbox()
    reader = await broker_factory(inbox)
    writer = await broker_factory(Inbox())
    await reader.subscribe(ROOM)
    for i in range(1, 6):
        await writer.append(ROOM, BOB, ClientMessageId(f"old{i}"), "x")
    await wait_for(lambda: len(inbox.events) == 5)
    assert isinstance(reader, RedisBroker)
    async with Redis.from_url(options.url, decode_responses=True) as admin:
        # what the promoted replica holds: the master died before sending offsets 4 and 5
        kept = await admin.xrange("rt:{lobby}:log", "-", "3-0")
        await admin.delete("rt:{lobby}:log")
        for entry_id, fields in kept:
            await admin.xadd("rt:{lobby}:log", fields, id=entry_id)
        await admin.hset("rt:{lobby}:meta", "offset", 3)
        clients = await admin.client_list()
        (sub,) = [c for c in clients if c["name"] == f"rt:sub:{reader.instance}"]
        await admin.client_kill_filter(_id=sub["id"])
    for i in range(4, 7):
        appended = await writer.append(ROOM, BOB, ClientMessageId(f"new{i}"), "x")
        assert appended.offset == i
    await wait_for(lambda: len(inbox.events) == 8)
    await asyncio.sleep(0.2)
    delivered = [(json.loads(f)["offset"], json.loads(f)["id"]) for _, f in inbox.events]
    assert delivered == [
        *((i, f"old{i}") for i in range(1, 6)),
        *((i, f"new{i}") for i in range(4, 7)),
    ]
    assert reader.ready


async def test_cluster_mode_on_a_single_redis_stays_unready_and_says_why(
    started: Started, caplog: pytest.LogCaptureFixture
) -> None:
    """REDIS_CLUSTER=1 against a Redis that is not in cluster mode: never ready, refuses
    appends, and warns naming the error class (redis-py's RedisClusterException is not a
    RedisError, so it is caught by name)."""
    with caplog.at_level(logging.WARNING, logger="realtime.broker.redis"):
        broker = await started(Inbox(), cluster=True, command_timeout=0.3)
        assert not broker.ready
        with pytest.raises(BrokerError, match="redis is unavailable"):
            await broker.append(ROOM, ALICE, ClientMessageId("m1"), "x")
    assert any("redis cluster unavailable" in r.getMessage() for r in caplog.records)
