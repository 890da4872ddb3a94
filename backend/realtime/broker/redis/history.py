"""Room history on Redis: the atomic append and the history read (both one Lua script).

On a single Redis the appends issued in one event-loop turn (by different connections: a
connection awaits each append before its next) go out as one pipeline: one write, and Redis
runs them in one pass, so their publishes reach every instance's reader together and share
the fan-out's coalesced writes. Each append is still one script run with its own idempotency
key, so ordering per connection and idempotency are the same as one call per append.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

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


_Call = tuple[list[str], list[str | int], "asyncio.Future[Any]"]


class History:
    """The append and history scripts of one broker."""

    def __init__(self, redis: Redis | RedisCluster, keys: Keys, options: RedisOptions) -> None:
        self._keys = keys
        self._options = options
        self._append: AsyncScript = redis.register_script(lua.APPEND)
        self._read: AsyncScript = redis.register_script(lua.HISTORY)
        self._single = redis if isinstance(redis, Redis) else None
        """The client whose appends are pipelined per loop turn (None on a cluster)."""
        self._batch: list[_Call] = []
        self._senders: set[asyncio.Task[None]] = set()
        self.pipelines = 0
        """Pipelines sent with more than one append (what a test checks)."""

    async def _run_append(self, keys: list[str], args: list[str | int]) -> Any:
        if self._single is None:
            return await self._append(keys=keys, args=args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._batch.append((keys, args, future))
        if len(self._batch) == 1:
            # its first step runs on the next loop turn, after every append of this one
            sender = loop.create_task(self._send(), name="redis-appends")
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await future

    async def _send(self) -> None:
        """Send the appends of one loop turn and answer each caller."""
        batch, self._batch = self._batch, []
        try:
            await self._send_batch(batch)
        finally:  # cancelled (the loop is closing): no caller waits forever
            for _, _, future in batch:
                future.cancel()

    async def _send_batch(self, batch: list[_Call]) -> None:
        if len(batch) == 1:
            keys, args, future = batch[0]
            await self._answer(future, self._append(keys=keys, args=args))
            return
        assert self._single is not None
        pipe = self._single.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._append.sha, len(keys), *keys, *args)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every append of the batch failed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.pipelines += 1
        for (keys, args, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                # Redis lost its script cache (a restart): the script call loads it
                await self._answer(future, self._append(keys=keys, args=args))
            elif future.done():
                continue
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    @staticmethod
    async def _answer(future: asyncio.Future[Any], call: Any) -> None:
        try:
            reply = await call
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(reply)

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
        duplicate, offset, epoch, frame = await self._run_append(keys, args)
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
