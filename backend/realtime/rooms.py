"""Room logic without I/O: history with idempotency, presence, typing, rate limiting.

Each class takes the current time as an argument where time matters, so tests drive the
clock. The in-memory broker uses :class:`RoomHistory` and :class:`PresenceTable`; the
transport uses :class:`TypingTracker` and :class:`TokenBucket`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User, UserId

IDEMPOTENCY_FACTOR = 4
"""A room remembers the client ids of its last ``IDEMPOTENCY_FACTOR * history_size`` messages."""


class RoomHistory:
    """The bounded history of one room: offsets from 1, one epoch, idempotency keys.

    ``append`` assigns the next offset unless ``(user, client_id)`` was seen, in which case
    it returns the first offset and frame again (``duplicate``). The idempotency window
    outlives the history (see :data:`IDEMPOTENCY_FACTOR`); a retry older than that is a new
    message.
    """

    __slots__ = ("_frames", "_ids", "_ids_limit", "epoch", "last_offset")

    def __init__(self, size: int, epoch: Epoch) -> None:
        self.epoch = epoch
        self.last_offset = 0
        self._frames: deque[str] = deque(maxlen=size)
        self._ids: OrderedDict[tuple[UserId, ClientMessageId], tuple[int, str]] = OrderedDict()
        self._ids_limit = size * IDEMPOTENCY_FACTOR

    def append(
        self, user: UserId, client_id: ClientMessageId, build: Callable[[int], str]
    ) -> tuple[int, str, bool]:
        """Return ``(offset, frame, duplicate)``; ``build(offset)`` encodes a new frame."""
        key = (user, client_id)
        seen = self._ids.get(key)
        if seen is not None:
            return seen[0], seen[1], True
        self.last_offset += 1
        frame = build(self.last_offset)
        self._frames.append(frame)
        self._ids[key] = (self.last_offset, frame)
        if len(self._ids) > self._ids_limit:
            self._ids.popitem(last=False)
        return self.last_offset, frame, False

    @property
    def first_offset(self) -> int:
        """The offset of the oldest retained message (``last_offset + 1`` when empty)."""
        return self.last_offset - len(self._frames) + 1

    def since(self, offset: int, epoch: Epoch | None) -> tuple[list[str], bool]:
        """Return ``(frames after offset, True)`` if recoverable, else ``(all frames, False)``.

        Recoverable means: same epoch, ``offset`` not beyond the last offset, and no message
        after ``offset`` was trimmed.
        """
        if epoch != self.epoch or offset > self.last_offset or offset + 1 < self.first_offset:
            return list(self._frames), False
        missed = self.last_offset - offset
        if missed == 0:
            return [], True
        return list(self._frames)[-missed:], True


class PresenceTable:
    """Who is in which room, per connection, aggregated per user.

    ``join`` returns true when the user came online in the room, ``leave`` when the user's
    last connection there left: exactly one presence event per transition. A user's
    connections in a room are a tuple (most users have one; a set would cost 216 bytes per
    user and room).
    """

    __slots__ = ("_rooms",)

    def __init__(self) -> None:
        self._rooms: dict[RoomName, dict[UserId, tuple[User, tuple[ConnId, ...]]]] = {}

    def join(self, room: RoomName, user: User, conn: ConnId) -> bool:
        users = self._rooms.setdefault(room, {})
        entry = users.get(user.id)
        if entry is None:
            users[user.id] = (user, (conn,))
            return True
        if conn not in entry[1]:
            users[user.id] = (entry[0], (*entry[1], conn))
        return False

    def leave(self, room: RoomName, user: User, conn: ConnId) -> bool:
        users = self._rooms.get(room)
        entry = users.get(user.id) if users is not None else None
        if users is None or entry is None or conn not in entry[1]:
            return False
        rest = tuple(c for c in entry[1] if c != conn)
        if rest:
            users[user.id] = (entry[0], rest)
            return False
        del users[user.id]
        if not users:
            del self._rooms[room]
        return True

    def snapshot(self, room: RoomName) -> list[User]:
        users = self._rooms.get(room, {})
        return [users[uid][0] for uid in sorted(users)]


@dataclass(slots=True)
class _TypingState:
    active: bool
    last_forward: float
    expires: float


class TypingTracker:
    """Typing state of local users per room, with throttling and expiry.

    * ``start`` returns true when a start must be forwarded: at most one per user per room
      per ``throttle`` seconds; every start refreshes the expiry.
    * ``stop`` and ``clear`` (the user's message arrived) return true when a stop must be
      forwarded: only if a start was forwarded and not stopped yet.
    * ``expired(now)`` returns the states that ran ``ttl`` seconds without refresh (each
      needs a stop forwarded) and forgets idle entries.
    """

    __slots__ = ("_states", "throttle", "ttl")

    def __init__(self, *, ttl: float, throttle: float) -> None:
        self.ttl = ttl
        self.throttle = throttle
        self._states: dict[tuple[RoomName, User], _TypingState] = {}

    def start(self, room: RoomName, user: User, now: float) -> bool:
        state = self._states.get((room, user))
        if state is None:
            self._states[(room, user)] = _TypingState(True, now, now + self.ttl)
            return True
        state.expires = now + self.ttl
        if now - state.last_forward < self.throttle:
            return False
        state.active = True
        state.last_forward = now
        return True

    def stop(self, room: RoomName, user: User) -> bool:
        state = self._states.get((room, user))
        if state is None or not state.active:
            return False
        state.active = False
        return True

    clear = stop

    def forget(self, room: RoomName, user: User) -> None:
        """Drop the state without a stop (the user went offline: presence says it)."""
        self._states.pop((room, user), None)

    def expired(self, now: float) -> list[tuple[RoomName, User]]:
        due: list[tuple[RoomName, User]] = []
        for key, state in list(self._states.items()):
            if state.active and state.expires <= now:
                state.active = False
                due.append(key)
            elif not state.active and now - state.last_forward >= self.throttle:
                del self._states[key]
        return due

    def __len__(self) -> int:
        return len(self._states)


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` stored."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token; false when none is left."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
