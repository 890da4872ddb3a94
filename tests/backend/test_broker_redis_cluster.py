"""The Redis broker on a real 3+3 Redis Cluster: the shared contract, the slot layout, and
faults (SIGKILL of a master, a live slot migration) with their measurements printed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from realtime.broker import BrokerError, Kind, create_broker
from realtime.broker.redis import RedisBroker, RedisOptions
from realtime.ids import ClientMessageId, ConnId, RoomName
from realtime.settings import Settings

from tests.backend.broker_contract import (
    ALICE,
    BOB,
    BrokerContract,
    Inbox,
    wait_for,
)
from tests.backend.redis_cluster import RedisClusterNodes, running_cluster, slot_of
from tests.backend.test_broker_redis import Started, broker_factory, redis_brokers

__all__ = ["broker_factory"]  # the contract suite's fixture, shared with test_broker_redis.py

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def options(redis_cluster: RedisClusterNodes) -> RedisOptions:
    return RedisOptions(
        url=redis_cluster.url,
        cluster=True,
        history_size=500,
        presence_ttl=1.0,
        presence_heartbeat=0.2,
    )


@pytest.fixture
async def started(
    options: RedisOptions, redis_cluster: RedisClusterNodes
) -> AsyncIterator[Started]:
    """``await started(inbox, **option_changes)``: a started broker on an empty cluster."""
    redis_cluster.wait_ok()
    redis_cluster.flush()
    async with redis_brokers(options) as factory:
        yield factory


class TestRedisClusterBroker(BrokerContract):
    shared = True


def test_redis_cluster_setting_selects_the_cluster_client(redis_cluster: RedisClusterNodes) -> None:
    settings = Settings.from_env(
        {"REDIS_URL": redis_cluster.url, "REDIS_CLUSTER": "1", "DEV_TOKENS": "1"}
    )
    broker = create_broker(settings, Inbox())
    assert isinstance(broker, RedisBroker)
    assert broker.options.cluster


def test_redis_cluster_setting_is_0_or_1() -> None:
    from realtime.settings import SettingsError

    with pytest.raises(SettingsError, match="REDIS_CLUSTER"):
        Settings.from_env({"REDIS_CLUSTER": "yes", "DEV_TOKENS": "1"})


async def test_rooms_spread_over_the_masters_each_in_its_own_slot(
    started: Started, redis_cluster: RedisClusterNodes
) -> None:
    """Every key and both channels of a room share its slot; rooms land on all three masters;
    each room is one sharded subscription on its master's connection."""
    inbox = Inbox()
    broker = await started(inbox)
    rooms = [RoomName(f"room-{i}") for i in range(12)]
    readiness: list[bool] = []

    async def sample() -> None:
        while True:
            readiness.append(broker.ready)
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    for room in rooms:
        await broker.subscribe(room)
    sampler.cancel()
    # a room on a master new to this instance opens a link without making it unready
    assert readiness
    assert all(readiness)
    for room in rooms:
        await broker.append(room, ALICE, ClientMessageId("m1"), "x")
        assert await broker.presence_join(room, BOB, ConnId(f"c-{room}"))
        await broker.publish_ephemeral(room, Kind.TYPING, '{"type":"typing"}')
    await wait_for(lambda: len(inbox.events) == 2 * len(rooms))
    owners = set()
    for room in rooms:
        owner = redis_cluster.owner(f"{{{room}}}")
        owners.add(owner.address)
        keys = owner.client().keys(f"rt:{{{room}}}:*")
        assert {slot_of(key) for key in keys} == {slot_of(f"{{{room}}}")}, keys
        assert len(keys) >= 3  # meta, log, idempotency, presence hashes
        numsub = owner.client().execute_command(
            "PUBSUB SHARDNUMSUB", f"rt:{{{room}}}:room", f"rt:{{{room}}}:events"
        )
        assert numsub == [(f"rt:{{{room}}}:room", 1), (f"rt:{{{room}}}:events", 1)]
    assert len(owners) == 3
    assert sorted(broker._reader.links) == sorted(owners)
    # no global key: the previous release's presence index is not written
    assert redis_cluster.owner("rt:presence-rooms").client().exists("rt:presence-rooms") == 0


async def _sender(
    broker: RedisBroker, room: RoomName, acked: dict[int, tuple[float, str]], stop: asyncio.Event
) -> int:
    """Append one message every 10 ms until ``stop``; record each acknowledged offset with
    when and its client id; return how many appends failed."""
    loop = asyncio.get_running_loop()
    failed = 0
    i = 0
    while not stop.is_set():
        i += 1
        try:
            appended = await broker.append(room, ALICE, ClientMessageId(f"m{i}"), str(i))
            acked[appended.offset] = (loop.time(), f"m{i}")
        except BrokerError:  # counted: the client gets an error frame, no ack
            failed += 1
        await asyncio.sleep(0.01)
    return failed


def _offsets(inbox: Inbox) -> list[int]:
    return [json.loads(frame)["offset"] for _, frame in inbox.events]


async def test_master_sigkill_fails_over_without_losing_acknowledged_messages(
    started: Started, redis_cluster: RedisClusterNodes
) -> None:
    """SIGKILL the master of an active room: its replica is promoted; messages flow again
    within seconds; every message acknowledged after the failover is delivered, once, in
    order, and so is every acknowledged one before it that survived."""
    room = RoomName("failover")
    inbox = Inbox()
    reader = await started(inbox, reconnect_max=0.5)
    writer = await started(Inbox(), reconnect_max=0.5)
    await reader.subscribe(room)
    acked: dict[int, tuple[float, str]] = {}
    stop = asyncio.Event()
    sending = asyncio.create_task(_sender(writer, room, acked, stop))
    await wait_for(lambda: len(inbox.events) >= 20)
    loop = asyncio.get_running_loop()
    master = redis_cluster.owner(f"{{{room}}}")
    killed_at = loop.time()
    before_kill = len(inbox.events)
    redis_cluster.kill(master)
    await wait_for(lambda: redis_cluster.owner(f"{{{room}}}") is not master, timeout=20.0)
    promoted_at = loop.time()
    await wait_for(lambda: any(t > promoted_at for t, _ in acked.values()), timeout=20.0)
    flowing_at = min(t for t, _ in acked.values() if t > promoted_at)
    await wait_for(lambda: len(inbox.events) > before_kill + 1, timeout=20.0)
    delivering_at = loop.time()
    await asyncio.sleep(1.0)
    stop.set()
    failed = await sending
    after = sorted(o for o, (t, _) in acked.items() if t > promoted_at)
    await wait_for(lambda: set(after) <= set(_offsets(inbox)), timeout=10.0)
    delivered = _offsets(inbox)
    assert delivered == sorted(set(delivered)), "duplicates or disorder"
    # what the promoted master holds: an acknowledged message is lost if its offset holds
    # another message (or none)
    recovery = await writer.history(room, 0, None)
    stored = {json.loads(f)["offset"]: json.loads(f)["id"] for f in recovery.frames}
    lost = sorted(o for o, (_, cid) in acked.items() if stored.get(o) != cid)
    lost_after = [o for o in lost if o in after]
    print(
        f"\nfailover: replica promoted {promoted_at - killed_at:.2f}s after the SIGKILL; "
        f"appends acknowledged again after {flowing_at - killed_at:.2f}s, the subscriber "
        f"delivering again after <= {delivering_at - killed_at:.2f}s; {failed} appends refused "
        f"meanwhile (no ack); {len(acked)} acknowledged, {len(after)} after the promotion; "
        f"lost: {len(lost_after)} of those, {len(lost) - len(lost_after)} acknowledged before "
        f"it (asynchronous replication) {lost}"
    )
    assert lost_after == []
    assert all(o in delivered for o in after)
    await wait_for(lambda: reader.ready and writer.ready, timeout=10.0)


async def test_slot_migration_while_a_room_is_active(
    started: Started, redis_cluster: RedisClusterNodes
) -> None:
    """``redis-cli --cluster reshard`` moves an active room's slot to another master: the
    subscriber follows it; no duplicate, and no gap once the move is over. The room holds
    about 1,000 keys (one idempotency key per message) moved one per MIGRATE, so appends run
    into the move (a script's keys split between two masters answer TRYAGAIN, redis-py
    retries)."""
    redis_cluster.wait_ok()
    masters = redis_cluster.masters()
    source_address = min(masters, key=lambda a: min(start for start, _ in masters[a]))
    first_slot = min(start for start, _ in masters[source_address])
    room = next(
        RoomName(f"move-{i}") for i in range(100_000) if slot_of(f"{{move-{i}}}") == first_slot
    )
    source = redis_cluster.owner(f"{{{room}}}")
    target = next(n for n in redis_cluster.live() if n.address in masters and n is not source)
    inbox = Inbox()
    reader = await started(inbox)
    writer = await started(Inbox())
    await reader.subscribe(room)
    for start in range(0, 1000, 100):
        await asyncio.gather(
            *(
                writer.append(room, BOB, ClientMessageId(f"fill{i}"), "x")
                for i in range(start, start + 100)
            )
        )
    await wait_for(lambda: len(inbox.events) == 1000)
    acked: dict[int, tuple[float, str]] = {}
    stop = asyncio.Event()
    sending = asyncio.create_task(_sender(writer, room, acked, stop))
    await wait_for(lambda: len(inbox.events) >= 1020)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    await asyncio.to_thread(redis_cluster.reshard, source, target, 1, 1)
    moved_at = loop.time()
    assert redis_cluster.owner(f"{{{room}}}") is target
    await asyncio.sleep(1.0)
    stop.set()
    failed = await sending
    await wait_for(lambda: set(acked) <= set(_offsets(inbox)), timeout=10.0)
    delivered = _offsets(inbox)
    during = sum(1 for t, _ in acked.values() if started_at <= t <= moved_at)
    print(
        f"\nreshard: slot {first_slot} (about 1,100 keys) moved in "
        f"{moved_at - started_at:.2f}s; {during} appends acknowledged during the move, "
        f"{len(acked)} in all, {failed} refused; {len(delivered)} delivered, no gap, "
        "no duplicate"
    )
    assert delivered == list(range(1, max(acked) + 1)), "gap or duplicate"
    # the subscriber followed the slot: the room is on the target's connection now
    assert room in reader._reader.links[target.address].subscribed
    assert all(
        room not in link.rooms
        for link in reader._reader.links.values()
        if link.name != target.address
    )
    assert reader.ready
