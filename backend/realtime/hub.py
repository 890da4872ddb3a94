"""Local rooms and the broker hand-over: what this instance's connections are subscribed to.

The hub owns the broker. It keeps, per room, this instance's members and the room's broker
subscription (one per room per instance); it runs join (subscribe, presence, snapshot,
history replay, then live frames without a gap), leave, message and typing, and receives
the broker's deliveries (:meth:`Hub.deliver`), which it hands to :class:`realtime.fanout.Fanout`.

Presence diffs are coalesced per room for ``PRESENCE_BATCH_SECONDS``: a burst of joins
(a reconnect storm, a deploy) costs each member one write per batch instead of one per
join. Each diff is still its own ``presence`` frame, in order. Deliveries say their kind
(:class:`realtime.broker.Kind`); the hub never looks into a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection

from realtime.broker import Broker, BrokerError, Kind, create_broker
from realtime.encode import encode_ack, encode_joined, encode_presence, encode_typing
from realtime.fanout import Fanout, wire
from realtime.ids import ConnId, RoomName, User
from realtime.protocol import ErrorCode, FrameError, Join, Message, Typing
from realtime.rooms import TokenBucket, TypingTracker
from realtime.settings import Settings

logger = logging.getLogger(__name__)

PRESENCE_BATCH_SECONDS = 0.1
"""Presence diffs of a room are written to its members at most this often."""
ACK_WAIT_SECONDS = 2.0
"""An ``ack`` waits at most this long for the local delivery of its message (the Redis
reader may be reconnecting); after that it is sent anyway."""
SEEN_FRAMES = 4096
"""Message frames a room remembers as delivered while its senders' appends are in flight."""
UNAVAILABLE = "the broker is not ready, retry later"


class Session:
    """Per-connection state, kept small: one per authenticated connection."""

    __slots__ = ("bucket", "conn", "expires", "rooms", "user", "ws")

    def __init__(self, ws: ServerConnection, conn: ConnId, user: User, bucket: TokenBucket) -> None:
        self.ws = ws
        self.conn = conn
        self.user = user
        self.bucket = bucket
        self.rooms: tuple[RoomName, ...] = ()
        """Joined rooms, in join order: at most MAX_ROOMS_PER_CONNECTION (20), and a tuple
        of two is 56 bytes where an empty set is 216, per idle connection."""
        self.expires: float | None = None
        """Loop time of the token's expiry (:mod:`realtime.expiry`); None once ended."""

    def log(self, room: RoomName | None = None, **more: Any) -> dict[str, Any]:
        return {"conn": self.conn, "user": self.user.id, "room": room, **more}


class LocalRoom:
    """This instance's members of one room and its broker subscription.

    ``ack`` after the sender's own copy (docs/PROTOCOL.md): while appends are in flight
    (``sending``), the message frames delivered to the room are remembered (``seen``); an
    append whose frame was already delivered is acknowledged at once, otherwise its ack
    waits in ``acks`` for the delivery of that frame (the Redis broker's pub/sub may hand
    it over after the append's reply). The frame's text is the key: the broker returns
    the same text it delivers, so the hub never parses a frame.
    """

    __slots__ = ("acks", "members", "pending", "seen", "sending", "subscribed")

    def __init__(self, subscribed: asyncio.Task[None]) -> None:
        self.members: set[ServerConnection] = set()
        self.pending = 0
        self.subscribed = subscribed
        self.sending = 0
        self.seen: dict[str, None] = {}
        self.acks: dict[str, list[tuple[ServerConnection, str, asyncio.TimerHandle]]] = {}


class Hub:
    """Local rooms of one instance, between its sessions and the broker."""

    def __init__(self, settings: Settings, fanout: Fanout) -> None:
        self.settings = settings
        self.fanout = fanout
        self.broker: Broker = create_broker(settings, self.deliver)
        self.rooms: dict[RoomName, LocalRoom] = {}
        self._presence_pending: dict[RoomName, list[bytes]] = {}
        self._typing = TypingTracker(ttl=settings.typing_ttl, throttle=settings.typing_throttle)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.start()
        self._sweeper = asyncio.create_task(self._sweep_typing())

    async def stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # checks

    @staticmethod
    def require_joined(session: Session, room: RoomName, ref: str | None = None) -> None:
        if room not in session.rooms:
            raise FrameError(
                ErrorCode.NOT_JOINED, f"not joined to room {room}", field="room", ref=ref
            )

    def require_broker(self) -> None:
        if not self.broker.ready:
            raise FrameError(ErrorCode.UNAVAILABLE, UNAVAILABLE)

    # rooms

    async def join(self, session: Session, frame: Join) -> None:
        room = frame.room
        self.require_broker()
        rejoin = room in session.rooms
        if not rejoin and len(session.rooms) >= self.settings.max_rooms_per_connection:
            raise FrameError(
                ErrorCode.TOO_MANY_ROOMS,
                f"at most {self.settings.max_rooms_per_connection} rooms per connection",
                field="room",
            )
        try:
            local = self.rooms.get(room)
            if local is None:
                local = self.rooms[room] = LocalRoom(
                    asyncio.create_task(self.broker.subscribe(room))
                )
            local.pending += 1
            try:
                await asyncio.shield(local.subscribed)
                came_online = (
                    False
                    if rejoin
                    else await self.broker.presence_join(room, session.user, session.conn)
                )
                if not rejoin:
                    session.rooms = (*session.rooms, room)
                snapshot = await self.broker.presence_snapshot(room)
                if frame.since is None:
                    epoch, offset = await self.broker.last(room)
                    frames: list[str] = []
                    recovered: bool | None = None
                else:
                    recovery = await self.broker.history(
                        room, frame.since.offset, frame.since.epoch
                    )
                    epoch, offset = recovery.epoch, recovery.offset
                    frames, recovered = recovery.frames, recovery.recovered
            finally:
                local.pending -= 1
        except BrokerError:
            if not rejoin:  # undo the half-done join; the caller answers unavailable
                with contextlib.suppress(Exception):
                    await self.leave(session, room)
            raise
        ws = session.ws
        self.fanout.write(
            ws,
            encode_joined(
                room,
                epoch=epoch,
                offset=offset,
                presence=snapshot,
                recovered=recovered,
                replayed=len(frames),
            ),
        )
        for replay in frames:
            self.fanout.write(ws, replay)
        # no await since the history read: live frames follow the replay without a gap
        local.members.add(ws)
        if came_online:
            try:
                await self.broker.publish_ephemeral(
                    room, Kind.PRESENCE, encode_presence(room, session.user, online=True)
                )
            except BrokerError as exc:
                # the join stands; others see the user in their next snapshot
                logger.warning("presence publish failed: %s", exc, extra=session.log(room))

    async def leave(self, session: Session, room: RoomName) -> None:
        joined = room in session.rooms
        if joined:
            session.rooms = tuple(r for r in session.rooms if r != room)
        local = self.rooms.get(room)
        if local is not None:
            local.members.discard(session.ws)
        await self._release(room)
        if not joined:
            return
        went_offline = await self.broker.presence_leave(room, session.user, session.conn)
        if went_offline:
            self._typing.forget(room, session.user)
            await self.broker.publish_ephemeral(
                room, Kind.PRESENCE, encode_presence(room, session.user, online=False)
            )

    async def _release(self, room: RoomName) -> None:
        local = self.rooms.get(room)
        if local is not None and not local.members and not local.pending:
            del self.rooms[room]
            await self.broker.unsubscribe(room)

    async def disconnect(self, session: Session) -> None:
        for room in session.rooms:
            try:
                await self.leave(session, room)
            except Exception:
                logger.warning("leave on disconnect failed", exc_info=True, extra=session.log(room))

    # messages and typing

    async def message(self, session: Session, frame: Message) -> None:
        self.require_joined(session, frame.room, frame.id)
        self.require_broker()
        local = self.rooms.get(frame.room)
        if local is not None:
            local.sending += 1
        try:
            appended = await self.broker.append(frame.room, session.user, frame.id, frame.body)
        except BrokerError as exc:
            logger.warning("append failed: %s", exc, extra=session.log(frame.room))
            raise FrameError(ErrorCode.UNAVAILABLE, UNAVAILABLE, ref=frame.id) from None
        finally:
            if local is not None:
                local.sending -= 1
        ack = encode_ack(
            frame.room, frame.id, appended.offset, appended.epoch, duplicate=appended.duplicate
        )
        if local is None or appended.duplicate or self._was_delivered(local, appended.frame):
            self.fanout.write(session.ws, ack)
        else:
            self._hold_ack(local, appended.frame, session.ws, ack)
        if self._typing.clear(frame.room, session.user):
            await self.broker.publish_ephemeral(
                frame.room, Kind.TYPING, encode_typing(frame.room, session.user, active=False)
            )

    async def typing(self, session: Session, frame: Typing) -> None:
        self.require_joined(session, frame.room)
        if frame.active:
            now = asyncio.get_running_loop().time()
            forward = self._typing.start(frame.room, session.user, now)
        else:
            forward = self._typing.stop(frame.room, session.user)
        if forward:
            await self.broker.publish_ephemeral(
                frame.room,
                Kind.TYPING,
                encode_typing(frame.room, session.user, active=frame.active),
            )

    async def _sweep_typing(self) -> None:
        period = min(self.settings.typing_ttl, self.settings.typing_throttle) / 4
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            for room, user in self._typing.expired(loop.time()):
                try:
                    await self.broker.publish_ephemeral(
                        room, Kind.TYPING, encode_typing(room, user, active=False)
                    )
                except Exception:
                    logger.warning("typing expiry publish failed", exc_info=True)

    # acks behind the sender's copy

    @staticmethod
    def _was_delivered(local: LocalRoom, frame: str) -> bool:
        """Whether ``frame`` reached the room's members during the append (forgotten now)."""
        seen = local.seen
        delivered = seen.pop(frame, 0) is None
        if not local.sending:
            seen.clear()
        return delivered

    def _hold_ack(self, local: LocalRoom, frame: str, ws: ServerConnection, ack: str) -> None:
        timer = asyncio.get_running_loop().call_later(
            ACK_WAIT_SECONDS, self._release_ack, local, frame, ws
        )
        local.acks.setdefault(frame, []).append((ws, ack, timer))

    def _release_ack(self, local: LocalRoom, frame: str, ws: ServerConnection) -> None:
        """The delivery did not come in time: send the ack anyway."""
        held = local.acks.get(frame, [])
        for entry in [entry for entry in held if entry[0] is ws]:
            held.remove(entry)
            self.fanout.write(ws, entry[1])
        if not held:
            local.acks.pop(frame, None)

    def _delivered(self, local: LocalRoom, frame: str) -> None:
        """A message frame reached the members: release the acks waiting for it, or
        remember it for the appends still in flight."""
        if local.acks:
            held = local.acks.pop(frame, None)
            if held is not None:
                for ws, ack, timer in held:
                    timer.cancel()
                    self.fanout.write(ws, ack)
                return
        if local.sending:
            seen = local.seen
            seen[frame] = None
            if len(seen) > SEEN_FRAMES:
                del seen[next(iter(seen))]

    # deliveries

    def deliver(self, room: RoomName, kind: Kind, frame: str) -> None:
        """The broker's ``on_event``: push one encoded frame to every local member."""
        local = self.rooms.get(room)
        if local is None:
            return
        if kind is Kind.PRESENCE:
            pending = self._presence_pending.get(room)
            if pending is None:
                self._presence_pending[room] = [wire(frame)]
                asyncio.get_running_loop().call_later(
                    PRESENCE_BATCH_SECONDS, self._flush_presence, room
                )
            else:
                pending.append(wire(frame))
            return
        self.fanout.broadcast(local.members, wire(frame))
        if kind is Kind.MESSAGE and (local.sending or local.acks):
            self._delivered(local, frame)

    def _flush_presence(self, room: RoomName) -> None:
        frames = self._presence_pending.pop(room, [])
        local = self.rooms.get(room)
        if local is not None and frames:
            self.fanout.broadcast(local.members, b"".join(frames), len(frames))
