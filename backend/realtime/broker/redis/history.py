"""Room history on Redis: the atomic append and the history read (both one Lua script)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from realtime.broker.base import Appended, BrokerError
from realtime.broker.redis import lua
from realtime.broker.redis.keys import Keys
from realtime.broker.redis.options import RedisOptions
from realtime.encode import encode_message
from realtime.ids import ClientMessageId, Epoch, RoomName, User

_OFFSET_MARK = '"offset":0,"epoch":""'


def new_epoch() -> str:
    return secrets.token_hex(8)


def frame_parts(
    room: RoomName, user: User, client_id: ClientMessageId, body: str
) -> tuple[str, str]:
    """Split :func:`encode_message`'s frame around offset and epoch, which the script fills.

    The room name cannot contain quotes, so the first mark is the offset field itself.
    """
    frame = encode_message(
        room,
        offset=0,
        epoch=Epoch(""),
        user=user,
        client_id=client_id,
        body=body,
        ts=int(time.time() * 1000),
    )
    before, mark, after = frame.partition(_OFFSET_MARK)
    if not mark:  # pragma: no cover - encode_message's field order is fixed
        raise BrokerError("message frame layout changed: no offset/epoch pair")
    return before + '"offset":', after


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A history read: ``entries`` are (offset, frame) after the requested offset."""

    recovered: bool
    epoch: Epoch
    offset: int
    entries: list[tuple[int, str]]


class History:
    """The append and history scripts of one broker."""

    def __init__(self, redis: Redis | RedisCluster, keys: Keys, options: RedisOptions) -> None:
        self._keys = keys
        self._options = options
        self._append: AsyncScript = redis.register_script(lua.APPEND)
        self._read: AsyncScript = redis.register_script(lua.HISTORY)

    async def append(
        self, room: RoomName, user: User, client_id: ClientMessageId, body: str
    ) -> Appended:
        """Raises redis-py's errors (the broker maps them to BrokerError)."""
        head, tail = frame_parts(room, user, client_id, body)
        keys = [*self._keys.history(room), self._keys.idempotency(room, user.id, client_id)]
        args: list[str | int] = [
            new_epoch(),
            head,
            tail,
            self._options.history_size,
            self._options.history_ttl,
            self._options.idempotency_ttl,
            self._keys.channel(room),
            self._keys.publish_command,
        ]
        duplicate, offset, epoch, frame = await self._append(keys=keys, args=args)
        return Appended(int(offset), Epoch(epoch), bool(duplicate), frame)

    async def last(self, room: RoomName) -> tuple[Epoch, int]:
        """The room's epoch and last offset (a new epoch if the room has none)."""
        args: list[str | int] = [new_epoch(), 0, "", self._options.history_ttl, 0]
        _, epoch, offset = await self._read(keys=self._keys.history(room), args=args)
        return Epoch(epoch), int(offset)

    async def read(self, room: RoomName, since: int, epoch: Epoch | None) -> Snapshot:
        args: list[str | int] = [new_epoch(), since, epoch or "", self._options.history_ttl, 1]
        reply = await self._read(keys=self._keys.history(room), args=args)
        entries = [(int(reply[i]), str(reply[i + 1])) for i in range(3, len(reply), 2)]
        return Snapshot(bool(reply[0]), Epoch(reply[1]), int(reply[2]), entries)
