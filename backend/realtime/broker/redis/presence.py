"""Presence on Redis: one entry per connection, kept alive by its instance, reaped by all.

There is no global index of rooms: each instance reaps the rooms it subscribes (a room
nobody subscribes has nobody to tell about a leave; its keys expire), and a presence snapshot
reaps its room first, so it never lists an expired entry. Each script touches one room's slot.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from realtime.broker.base import Kind
from realtime.broker.redis import lua, wire
from realtime.broker.redis.keys import Keys
from realtime.broker.redis.options import RedisOptions
from realtime.encode import encode_presence
from realtime.ids import ConnId, RoomName, User, UserId

logger = logging.getLogger(__name__)

PIPELINE_ROOMS = 100
"""Rooms per pipelined round trip of the heartbeat and the reaper."""


class Presence:
    """This instance's presence entries (``owned``) and the scripts that share them.

    Methods raise redis-py's errors; the broker decides what an outage means for each.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        keys: Keys,
        options: RedisOptions,
        rooms: Callable[[], list[RoomName]],
    ) -> None:
        self._redis = redis
        self._rooms = rooms
        self._keys = keys
        self._options = options
        self._join: AsyncScript = redis.register_script(lua.PRESENCE_JOIN)
        self._leave: AsyncScript = redis.register_script(lua.PRESENCE_LEAVE)
        self._reap: AsyncScript = redis.register_script(lua.PRESENCE_REAP)
        self.owned: dict[RoomName, dict[ConnId, User]] = {}
        self.lock = asyncio.Lock()

    async def publish(self, room: RoomName, user: User, *, online: bool) -> None:
        payload = wire.encode(Kind.PRESENCE, encode_presence(room, user, online=online))
        await self._keys.publish(self._redis, self._keys.events(room), payload)

    async def join(self, room: RoomName, user: User, conn: ConnId) -> bool:
        async with self.lock:
            online = await self._join_entries(room, {conn: user})
            self.owned.setdefault(room, {})[conn] = user
        return user.id in online

    async def leave(self, room: RoomName, conn: ConnId) -> bool:
        """Forget ``conn`` first: if Redis fails, the entry expires and is reaped."""
        async with self.lock:
            self._forget(room, conn)
            went = await self._leave(keys=self._keys.presence(room), args=[room, conn])
        return bool(went)

    async def snapshot(self, room: RoomName) -> list[User]:
        await self._reap(keys=self._keys.presence(room), args=self._reap_args(room))
        names = await self._redis.hgetall(self._keys.room(room, "names"))
        return [User(UserId(str(uid)), str(names[uid])) for uid in sorted(names)]

    async def remove_owned(self) -> None:
        """Remove the entries this instance still owns (a clean stop publishes no stale
        presence; the transport normally left every room before)."""
        for room, conns in list(self.owned.items()):
            for conn, user in list(conns.items()):
                if await self._leave(keys=self._keys.presence(room), args=[room, conn]):
                    await self.publish(room, user, online=False)
        self.owned.clear()

    def _forget(self, room: RoomName, conn: ConnId) -> None:
        conns = self.owned.get(room)
        if conns is not None:
            conns.pop(conn, None)
            if not conns:
                del self.owned[room]

    async def _join_entries(self, room: RoomName, entries: dict[ConnId, User]) -> set[str]:
        online = await self._join(
            keys=self._keys.presence(room), args=self._join_args(room, entries)
        )
        return set(online)

    def _join_args(self, room: RoomName, entries: dict[ConnId, User]) -> list[str | int]:
        args: list[str | int] = [
            math.ceil(self._options.presence_ttl * 1000),
            math.ceil(self._options.presence_ttl * 3),
            room,
        ]
        for conn, user in entries.items():
            args += [conn, user.id, user.name, encode_presence(room, user, online=False)]
        return args

    async def refresh(self) -> None:
        """Extend this instance's entries; re-add (and announce) those Redis lost. One
        pipelined round trip per :data:`PIPELINE_ROOMS` rooms, each under the presence lock
        so that no join or leave of this instance interleaves (a refresh must not re-add an
        entry that is being removed, nor announce a join the transport announces)."""
        rooms = list(self.owned)
        for start in range(0, len(rooms), PIPELINE_ROOMS):
            async with self.lock:
                chunk = [
                    (room, dict(self.owned[room]))
                    for room in rooms[start : start + PIPELINE_ROOMS]
                    if room in self.owned
                ]
                if not chunk:
                    continue
                replies = await self._batch(
                    [
                        (self._join, self._keys.presence(room), self._join_args(room, conns))
                        for room, conns in chunk
                    ]
                )
                for (room, conns), online in zip(chunk, replies, strict=True):
                    for user in {user.id: user for user in conns.values()}.values():
                        if user.id in online:
                            await self.publish(room, user, online=True)

    async def reap(self) -> None:
        """Remove expired entries of the rooms this instance subscribes; the script
        publishes the leaves."""
        rooms = sorted(self._rooms())
        for start in range(0, len(rooms), PIPELINE_ROOMS):
            chunk = rooms[start : start + PIPELINE_ROOMS]
            replies = await self._batch(
                [(self._reap, self._keys.presence(room), self._reap_args(room)) for room in chunk]
            )
            for room, gone in zip(chunk, replies, strict=True):
                if gone:
                    logger.info("reaped expired presence", extra={"room": room, "count": gone})

    def _reap_args(self, room: RoomName) -> list[str | int]:
        return [room, self._keys.events(room), self._keys.publish_command]

    async def _batch(
        self, calls: list[tuple[AsyncScript, list[str], list[str | int]]]
    ) -> list[Any]:
        """Run script calls in one round trip: a pipeline on a single Redis; concurrently on
        a cluster (each call goes to its room's master)."""
        if self._keys.cluster:
            runs: list[Awaitable[Any]] = [script(keys=k, args=a) for script, k, a in calls]
            return list(await asyncio.gather(*runs))
        assert isinstance(self._redis, Redis)
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            return list(await pipe.execute())
