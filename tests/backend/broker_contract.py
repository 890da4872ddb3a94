"""The broker contract, shared by every broker implementation.

Subclass :class:`BrokerContract` in a test module and provide the ``broker_factory`` fixture:
an async callable ``factory(on_event) -> Broker`` returning a started broker (the fixture
closes what it made). Set ``shared = True`` when brokers made by the same factory share
state (two instances of one deployment, e.g. Redis); the multi-instance tests then run too.
Deliveries may be asynchronous: tests wait for them with :func:`wait_for`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest
from realtime.broker import Broker, Kind, OnEvent
from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User, UserId

BrokerFactory = Callable[[OnEvent], Awaitable[Broker]]

ALICE = User(UserId("u-alice"), "alice")
BOB = User(UserId("u-bob"), "bob")
ROOM = RoomName("lobby")


class Inbox:
    """Collects ``on_event`` deliveries: (room, frame) in ``events``, their kinds in ``kinds``."""

    def __init__(self) -> None:
        self.events: list[tuple[RoomName, str]] = []
        self.kinds: list[Kind] = []

    def __call__(self, room: RoomName, kind: Kind, frame: str) -> None:
        self.events.append((room, frame))
        self.kinds.append(kind)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (deliveries through a real backend are async)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def settle() -> None:
    """Give asynchronous deliveries a moment, to check that nothing else arrives."""
    await asyncio.sleep(0.1)


class BrokerContract:
    shared: ClassVar[bool] = False

    async def test_ready_after_start(self, broker_factory: BrokerFactory) -> None:
        """A started broker reports ready."""
        broker = await broker_factory(Inbox())
        assert broker.ready

    async def test_append_assigns_increasing_offsets_and_delivers(
        self, broker_factory: BrokerFactory
    ) -> None:
        """Appends get offsets 1, 2, ... in one epoch and reach subscribers once each."""
        inbox = Inbox()
        broker = await broker_factory(inbox)
        await broker.subscribe(ROOM)
        first = await broker.append(ROOM, ALICE, ClientMessageId("m1"), "hi")
        second = await broker.append(ROOM, BOB, ClientMessageId("m1"), "hello")
        assert (first.offset, second.offset) == (1, 2)
        assert first.epoch == second.epoch
        assert not first.duplicate
        assert not second.duplicate
        await wait_for(lambda: len(inbox.events) == 2)
        assert inbox.events == [(ROOM, first.frame), (ROOM, second.frame)]
        assert inbox.kinds == [Kind.MESSAGE, Kind.MESSAGE]
        assert '"offset":1' in first.frame
        assert '"body":"hi"' in first.frame

    async def test_retried_id_is_acknowledged_again_not_delivered(
        self, broker_factory: BrokerFactory
    ) -> None:
        """A retried (room, user, id) returns the first offset and is not delivered again."""
        inbox = Inbox()
        broker = await broker_factory(inbox)
        await broker.subscribe(ROOM)
        first = await broker.append(ROOM, ALICE, ClientMessageId("m1"), "hi")
        again = await broker.append(ROOM, ALICE, ClientMessageId("m1"), "hi")
        assert again.duplicate
        assert (again.offset, again.epoch) == (first.offset, first.epoch)
        await wait_for(lambda: len(inbox.events) >= 1)
        await settle()
        assert len(inbox.events) == 1
        assert (await broker.last(ROOM))[1] == 1

    async def test_unsubscribed_rooms_are_not_delivered(
        self, broker_factory: BrokerFactory
    ) -> None:
        """Frames of a room this instance does not subscribe to never reach on_event."""
        inbox = Inbox()
        broker = await broker_factory(inbox)
        await broker.subscribe(ROOM)
        await broker.unsubscribe(ROOM)
        await broker.append(ROOM, ALICE, ClientMessageId("m1"), "hi")
        await broker.publish_ephemeral(ROOM, Kind.TYPING, '{"type":"typing"}')
        await settle()
        assert inbox.events == []

    async def test_history_since_offset_is_exact(self, broker_factory: BrokerFactory) -> None:
        """history() returns exactly the messages after the offset, recovered."""
        broker = await broker_factory(Inbox())
        appended = [
            await broker.append(ROOM, ALICE, ClientMessageId(f"m{i}"), f"body {i}")
            for i in range(5)
        ]
        epoch = appended[0].epoch
        recovery = await broker.history(ROOM, 2, epoch)
        assert recovery.recovered
        assert recovery.frames == [a.frame for a in appended[2:]]
        assert (recovery.epoch, recovery.offset) == (epoch, 5)
        assert (await broker.history(ROOM, 5, epoch)).frames == []

    async def test_history_with_other_epoch_is_not_recovered(
        self, broker_factory: BrokerFactory
    ) -> None:
        """An unknown epoch is not recovered: the whole retained history comes back."""
        broker = await broker_factory(Inbox())
        appended = await broker.append(ROOM, ALICE, ClientMessageId("m1"), "hi")
        recovery = await broker.history(ROOM, 0, Epoch("not-the-epoch"))
        assert not recovery.recovered
        assert recovery.frames == [appended.frame]
        assert recovery.epoch == appended.epoch

    async def test_history_beyond_retention_is_not_recovered(
        self, broker_factory: BrokerFactory
    ) -> None:
        """A gap older than the retained history is not recovered (factories keep <= 500)."""
        broker = await broker_factory(Inbox())
        epoch, _ = await broker.last(ROOM)
        for i in range(505):
            await broker.append(ROOM, ALICE, ClientMessageId(f"m{i}"), "x")
        recovery = await broker.history(ROOM, 1, epoch)
        assert not recovery.recovered
        assert recovery.offset == 505
        assert 0 < len(recovery.frames) <= 500

    async def test_ephemeral_frames_are_delivered_not_stored(
        self, broker_factory: BrokerFactory
    ) -> None:
        """publish_ephemeral reaches subscribers and leaves the history unchanged."""
        inbox = Inbox()
        broker = await broker_factory(inbox)
        await broker.subscribe(ROOM)
        await broker.publish_ephemeral(ROOM, Kind.TYPING, '{"type":"typing"}')
        await wait_for(lambda: inbox.events == [(ROOM, '{"type":"typing"}')])
        assert inbox.kinds == [Kind.TYPING]
        assert (await broker.last(ROOM))[1] == 0

    async def test_presence_is_aggregated_per_user(self, broker_factory: BrokerFactory) -> None:
        """Two connections of one user: online once, offline only when the last leaves."""
        broker = await broker_factory(Inbox())
        assert await broker.presence_join(ROOM, ALICE, ConnId("c1"))
        assert not await broker.presence_join(ROOM, ALICE, ConnId("c2"))
        assert await broker.presence_join(ROOM, BOB, ConnId("c3"))
        assert await broker.presence_snapshot(ROOM) == [ALICE, BOB]
        assert not await broker.presence_leave(ROOM, ALICE, ConnId("c1"))
        assert await broker.presence_snapshot(ROOM) == [ALICE, BOB]
        assert await broker.presence_leave(ROOM, ALICE, ConnId("c2"))
        assert await broker.presence_snapshot(ROOM) == [BOB]
        assert not await broker.presence_leave(ROOM, ALICE, ConnId("c2"))

    async def test_two_instances_never_share_an_offset(self, broker_factory: BrokerFactory) -> None:
        """Concurrent appends on two instances get distinct offsets; both deliver all."""
        if not self.shared:
            pytest.skip("this broker does not share state between instances")
        inbox_a, inbox_b = Inbox(), Inbox()
        a, b = await broker_factory(inbox_a), await broker_factory(inbox_b)
        await a.subscribe(ROOM)
        await b.subscribe(ROOM)
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).append(ROOM, ALICE, ClientMessageId(f"m{i}"), "x")
                for i in range(40)
            )
        )
        assert sorted(r.offset for r in results) == list(range(1, 41))
        await wait_for(lambda: len(inbox_a.events) == 40 and len(inbox_b.events) == 40)

    async def test_presence_across_instances(self, broker_factory: BrokerFactory) -> None:
        """A user on two instances goes offline only when the last connection leaves."""
        if not self.shared:
            pytest.skip("this broker does not share state between instances")
        a, b = await broker_factory(Inbox()), await broker_factory(Inbox())
        assert await a.presence_join(ROOM, ALICE, ConnId("c1"))
        assert not await b.presence_join(ROOM, ALICE, ConnId("c2"))
        assert not await a.presence_leave(ROOM, ALICE, ConnId("c1"))
        assert await b.presence_leave(ROOM, ALICE, ConnId("c2"))
