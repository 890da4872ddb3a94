"""The in-memory broker: one process, no shared state with other instances.

Everything :class:`~realtime.broker.base.Broker` promises holds within the process:
offsets are assigned under the event loop (no await between check and assign), deliveries
call ``on_event`` synchronously for subscribed rooms. Rooms without subscribers keep their
history until more than ``idle_rooms`` of them exist; the oldest is then dropped (a later
join sees a new epoch, so clients detect the loss).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from realtime.broker.base import Appended, Broker, Kind, OnEvent, Recovery
from realtime.encode import encode_message
from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User
from realtime.rooms import PresenceTable, RoomHistory


def new_epoch() -> Epoch:
    """A random epoch id (16 hex characters)."""
    return Epoch(secrets.token_hex(8))


class MemoryBroker(Broker):
    """A broker for a single instance; see the module docstring."""

    def __init__(self, on_event: OnEvent, *, history_size: int, idle_rooms: int = 1000) -> None:
        super().__init__(on_event)
        self._history_size = history_size
        self._idle_rooms = idle_rooms
        self._histories: OrderedDict[RoomName, RoomHistory] = OrderedDict()
        self._subscribed: set[RoomName] = set()
        self._presence = PresenceTable()
        self._started = False

    @property
    def ready(self) -> bool:
        return self._started

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        self._started = False

    async def subscribe(self, room: RoomName) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: RoomName) -> None:
        self._subscribed.discard(room)
        self._trim_idle()

    def _history(self, room: RoomName) -> RoomHistory:
        history = self._histories.get(room)
        if history is None:
            history = self._histories[room] = RoomHistory(self._history_size, new_epoch())
            self._trim_idle()
        else:
            self._histories.move_to_end(room)
        return history

    def _trim_idle(self) -> None:
        idle = len(self._histories) - len(self._subscribed)
        if idle <= self._idle_rooms:
            return
        for room in list(self._histories):
            if room not in self._subscribed:
                del self._histories[room]
                idle -= 1
                if idle <= self._idle_rooms:
                    return

    async def append(
        self, room: RoomName, user: User, client_id: ClientMessageId, body: str
    ) -> Appended:
        history = self._history(room)
        epoch = history.epoch
        ts = int(time.time() * 1000)

        def build(offset: int) -> str:
            return encode_message(
                room, offset=offset, epoch=epoch, user=user, client_id=client_id, body=body, ts=ts
            )

        offset, frame, duplicate = history.append(user.id, client_id, build)
        if not duplicate and room in self._subscribed:
            self._on_event(room, Kind.MESSAGE, frame)
        return Appended(offset, epoch, duplicate, frame)

    async def history(self, room: RoomName, since_offset: int, epoch: Epoch | None) -> Recovery:
        history = self._history(room)
        frames, recovered = history.since(since_offset, epoch)
        return Recovery(frames, recovered, history.epoch, history.last_offset)

    async def last(self, room: RoomName) -> tuple[Epoch, int]:
        history = self._history(room)
        return history.epoch, history.last_offset

    async def publish_ephemeral(self, room: RoomName, kind: Kind, frame: str) -> None:
        if room in self._subscribed:
            self._on_event(room, kind, frame)

    async def presence_join(self, room: RoomName, user: User, conn: ConnId) -> bool:
        return self._presence.join(room, user, conn)

    async def presence_leave(self, room: RoomName, user: User, conn: ConnId) -> bool:
        return self._presence.leave(room, user, conn)

    async def presence_snapshot(self, room: RoomName) -> list[User]:
        return self._presence.snapshot(room)
