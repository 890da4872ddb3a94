"""The broker interface: what the transport needs from shared state.

One broker instance serves one server process (an *instance*). The transport keeps the
per-connection state; the broker owns everything that must be shared between instances:

* room subscriptions, one per room per instance (never per connection);
* room history: an atomic append that assigns ``offset``/``epoch`` and checks the
  idempotency key, and a read of the messages after an offset;
* fan-out of encoded frames (room messages, typing, presence) to every subscribed instance;
* presence entries per connection, aggregated per user, reporting online/offline transitions;
* readiness.

Deliveries come back through ONE callback given at construction, ``on_event(room, kind,
frame)``, called once per subscribed room per frame with its :class:`Kind` and the frame
already encoded (a JSON text):
the transport hands that same string to every local member of the room, so a broadcast is
encoded once per instance, never per recipient. ``on_event`` is synchronous and must not
block; a broker calls it from its event loop.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass

from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User


class Kind(enum.Enum):
    """What a delivered frame is: the transport batches presence, never messages."""

    MESSAGE = "message"
    PRESENCE = "presence"
    TYPING = "typing"


OnEvent = Callable[[RoomName, Kind, str], None]
"""``on_event(room, kind, frame)``: deliver an encoded frame to this instance's members of
``room``."""


class BrokerError(Exception):
    """The broker cannot serve a request right now (backend down, misconfigured)."""


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of :meth:`Broker.append`.

    ``duplicate`` is true when the idempotency key (room, user, client id) was seen before:
    ``offset``/``epoch`` are then those of the first append, ``frame`` is that first frame,
    and nothing was delivered again.
    """

    offset: int
    epoch: Epoch
    duplicate: bool
    frame: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """The outcome of :meth:`Broker.history`.

    ``frames`` are encoded ``message`` frames in offset order. ``recovered`` is true when
    they are exactly the messages after the requested offset in the requested epoch;
    otherwise ``frames`` is the whole retained history of the current epoch and the client
    must reset. ``epoch``/``offset`` are the room's current epoch and last assigned offset
    (0 when the room has no message yet).
    """

    frames: list[str]
    recovered: bool
    epoch: Epoch
    offset: int


class Broker(abc.ABC):
    """Shared state behind one server instance. See the module docstring for the contract."""

    def __init__(self, on_event: OnEvent) -> None:
        self._on_event = on_event

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the broker can serve requests right now (``/readyz`` reports it)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and start background work (presence refresh, subscriptions)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop background work and release connections; idempotent."""

    @abc.abstractmethod
    async def subscribe(self, room: RoomName) -> None:
        """Start delivering ``room``'s frames to ``on_event``; the transport calls it once
        per room per instance, when the first local member joins."""

    @abc.abstractmethod
    async def unsubscribe(self, room: RoomName) -> None:
        """Stop delivering ``room``'s frames; called when the last local member left."""

    @abc.abstractmethod
    async def append(
        self, room: RoomName, user: User, client_id: ClientMessageId, body: str
    ) -> Appended:
        """Append a chat message to ``room`` and fan it out, atomically.

        The broker assigns the next offset of the room (strictly increasing, never handed
        out twice even across instances) and the room's epoch, checks the idempotency key
        ``(room, user.id, client_id)`` in the same atomic step, stores the frame built by
        :func:`realtime.encode.encode_message` in the bounded history and delivers it
        to every subscribed instance. A duplicate is neither stored nor delivered.
        """

    @abc.abstractmethod
    async def history(self, room: RoomName, since_offset: int, epoch: Epoch | None) -> Recovery:
        """Return the messages of ``room`` after ``since_offset`` if ``epoch`` is current
        and none of them were trimmed; see :class:`Recovery`."""

    @abc.abstractmethod
    async def last(self, room: RoomName) -> tuple[Epoch, int]:
        """Return the room's current epoch and last assigned offset (0 if none)."""

    @abc.abstractmethod
    async def publish_ephemeral(self, room: RoomName, kind: Kind, frame: str) -> None:
        """Fan out an encoded frame of ``kind`` (typing, presence) to every subscribed
        instance; never stored."""

    @abc.abstractmethod
    async def presence_join(self, room: RoomName, user: User, conn: ConnId) -> bool:
        """Record that connection ``conn`` of ``user`` is in ``room``.

        Returns true exactly when this made the user online in the room (no other live
        connection of that user was there, on any instance). The entry belongs to this
        instance, which keeps it alive (a Redis broker refreshes an expiry; entries of a dead
        instance expire and the broker that notices publishes the ``presence`` leave).
        """

    @abc.abstractmethod
    async def presence_leave(self, room: RoomName, user: User, conn: ConnId) -> bool:
        """Remove the entry of ``conn``; returns true exactly when the user went offline in
        ``room`` (that was the user's last connection there)."""

    @abc.abstractmethod
    async def presence_snapshot(self, room: RoomName) -> list[User]:
        """Return the users online in ``room``, one entry per user, sorted by id."""
