"""One subscription connection of the reader: to the single Redis, or to one cluster shard.

On a single Redis there is one link (``SUBSCRIBE``, many rooms per command). On a cluster
there is one link per master that owns a subscribed room (``SSUBSCRIBE``, one room per
command: a command's channels must share a slot), each with its own read task, so a failing
shard stalls only its own rooms. redis-py speaks the protocol; this module only decides what
to subscribe where and watches the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from realtime.broker.base import BrokerError
from realtime.broker.redis.keys import Keys
from realtime.ids import RoomName


class Moved(Exception):
    """The server unsubscribed a room's channels: its slot moved to another shard."""


class Link:
    """One pub/sub connection and the rooms routed to it.

    ``rooms`` are the rooms this link is responsible for; ``subscribed`` those whose channels
    the server confirmed on the current connection.
    """

    def __init__(self, name: str, redis: Redis, keys: Keys, *, timeout: float, batch: int) -> None:
        self.name = name
        self.redis = redis
        self.sharded = keys.cluster
        self._keys = keys
        self._timeout = timeout
        self._batch = batch
        self.control = [] if keys.cluster else [keys.control]
        """Channels subscribed besides the rooms': on a single Redis the instance's own, so
        the connection is always in subscribed mode (its PING replies are pub/sub pongs)."""
        self.up = asyncio.Event()
        self.rooms: set[RoomName] = set()
        self.subscribed: set[RoomName] = set()
        self.pubsub: PubSub | None = None
        self.connected = False
        self.fresh = True
        """Not connected yet, and no attempt failed: a cluster link just made for a room on a
        master this instance had no room on (it does not make the instance unready)."""
        self.last_pong = 0.0
        self.task: asyncio.Task[None] | None = None
        self._confirming: dict[str, deque[asyncio.Future[None]]] = {}
        self._leaving: set[str] = set()
        self._send_lock = asyncio.Lock()

    # connection

    async def open(self) -> None:
        """Open the connection and subscribe every room of ``rooms``; the caller reads next.
        Messages read meanwhile are dropped: the caller replays them from history."""
        self.subscribed.clear()
        pubsub = self.redis.pubsub()
        self.pubsub = pubsub
        async with asyncio.timeout(self._timeout):
            await pubsub.connect()  # type: ignore[no-untyped-call]
        if self.control:
            await pubsub.subscribe(*self.control)
            async with asyncio.timeout(self._timeout):
                while (await pubsub.get_message(timeout=None)) is None:
                    pass
        rooms = sorted(self.rooms)
        for start in range(0, len(rooms), self._batch):
            chunk = rooms[start : start + self._batch]
            pending: set[str] = set()
            for group in self._commands(chunk):
                await self._send(pubsub, group)
                pending.update(group)
            async with asyncio.timeout(self._timeout):
                while pending:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] in ("subscribe", "ssubscribe"):
                        pending.discard(message["channel"])
            self.subscribed.update(chunk)
        self.last_pong = time.monotonic()

    def mark_connected(self) -> None:
        self.connected = True
        self.fresh = False
        self.up.set()

    @property
    def healthy(self) -> bool:
        return self.connected or (self.sharded and self.fresh)

    async def close(self) -> None:
        """Drop the connection (the read task is the caller's)."""
        self.connected = False
        self.up.clear()
        pubsub, self.pubsub = self.pubsub, None
        for futures in self._confirming.values():
            for future in futures:
                if not future.done():
                    future.set_exception(BrokerError("redis connection lost"))
        self._confirming.clear()
        self._leaving.clear()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # subscriptions while the read loop runs

    async def subscribe(self, rooms: list[RoomName]) -> None:
        """Subscribe ``rooms`` and wait for every confirmation (read by the read loop)."""
        pubsub = self.pubsub
        if pubsub is None or not self.connected:
            raise BrokerError("redis is unavailable")
        loop = asyncio.get_running_loop()
        for start in range(0, len(rooms), self._batch):
            chunk = rooms[start : start + self._batch]
            futures = []
            for group in self._commands(chunk):
                for channel in group:
                    future: asyncio.Future[None] = loop.create_future()
                    self._confirming.setdefault(channel, deque()).append(future)
                    futures.append(future)
                async with self._send_lock:
                    await self._send(pubsub, group)
            async with asyncio.timeout(self._timeout):
                await asyncio.gather(*futures)
            self.subscribed.update(chunk)

    async def unsubscribe(self, room: RoomName, *, force: bool = False) -> None:
        """Unsubscribe ``room`` (nothing to send while not connected, unless ``force``:
        the connection is being opened)."""
        self.subscribed.discard(room)
        pubsub = self.pubsub
        if pubsub is None or not (self.connected or force):
            return
        channels = self._keys.channels(room)
        async with self._send_lock:
            if self.sharded:
                self._leaving.update(channels)
                await pubsub.sunsubscribe(*channels)
            else:
                await pubsub.unsubscribe(*channels)

    async def ping(self) -> None:
        """A round trip on this very connection; its reply sets ``last_pong``."""
        pubsub = self.pubsub
        if pubsub is not None and self.connected and (self.control or self.subscribed):
            async with self._send_lock:
                await pubsub.ping()
        else:
            self.last_pong = time.monotonic()

    def _commands(self, rooms: Iterable[RoomName]) -> list[list[str]]:
        if self.sharded:
            return [self._keys.channels(room) for room in rooms]
        return [[channel for room in rooms for channel in self._keys.channels(room)]]

    async def _send(self, pubsub: PubSub, channels: list[str]) -> None:
        if self.sharded:
            await pubsub.ssubscribe(*channels)
        else:
            await pubsub.subscribe(*channels)

    # reading

    async def next_message(self) -> dict[str, Any] | None:
        """The next data message (``channel``, ``data``) or None; handles confirmations and
        pongs; raises :class:`Moved` when the server unsubscribed channels of a live room."""
        pubsub = self.pubsub
        if pubsub is None:
            raise BrokerError("redis is unavailable")
        message: dict[str, Any] | None = await pubsub.get_message(timeout=None)
        if message is None:
            return None
        kind = message["type"]
        if kind in ("message", "smessage"):
            if message["channel"] in self.control:
                return None
            return message
        if kind in ("subscribe", "ssubscribe"):
            futures = self._confirming.get(message["channel"])
            if futures:
                future = futures.popleft()
                if not futures:
                    del self._confirming[message["channel"]]
                if not future.done():
                    future.set_result(None)
        elif kind == "pong":
            self.last_pong = time.monotonic()
        elif kind == "sunsubscribe":
            channel = message["channel"]
            if channel in self._leaving:
                self._leaving.discard(channel)
            else:
                named = self._keys.room_of(channel)
                if named is not None and named[0] in self.rooms:
                    raise Moved(channel)
        return None
