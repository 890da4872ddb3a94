"""The pub/sub reader: one subscription connection per instance, one channel per room.

Every frame delivered to ``on_event`` for a room is in offset order, at most once per epoch:
the reader drops message payloads it has already delivered, and :meth:`Reader.aligned` lets
a history read return only when the reader has delivered exactly up to the offset it reports,
so the transport's "replay, then live" hand-over has neither a gap nor a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from realtime.broker.base import BrokerError, Kind, OnEvent
from realtime.broker.redis import wire
from realtime.broker.redis.history import History
from realtime.broker.redis.keys import Keys
from realtime.broker.redis.options import RedisOptions
from realtime.ids import Epoch, RoomName

logger = logging.getLogger(__name__)

ALIGN_TIMEOUT = 2.0
"""Seconds a history read waits for the reader to deliver up to the offset it reports."""


@dataclass(slots=True)
class Feed:
    """The reader's position in one subscribed room: the last delivered (epoch, offset)."""

    epoch: str | None = None
    offset: int = 0
    waiters: list[tuple[str, int, asyncio.Future[None]]] = field(default_factory=list)

    def seen(self, epoch: str, offset: int) -> bool:
        return epoch == self.epoch and offset <= self.offset

    def advance(self, epoch: str, offset: int) -> bool:
        """Move to (epoch, offset); wake the waiters it satisfies; true if any woke."""
        self.epoch, self.offset = epoch, offset
        woke = False
        for waiter in list(self.waiters):
            target_epoch, target_offset, future = waiter
            if target_epoch == epoch and target_offset <= offset:
                self.waiters.remove(waiter)
                if not future.done():
                    future.set_result(None)
                    woke = True
        return woke


class Reader:
    """Subscriptions, the read loop, reconnects with catch-up, and delivery alignment.

    ``on_connected`` runs after each (re)subscription, before the reader reports connected
    (the broker re-adds its presence entries there).
    """

    def __init__(
        self,
        *,
        url: str,
        instance: str,
        keys: Keys,
        options: RedisOptions,
        history: History,
        on_event: OnEvent,
        on_connected: Callable[[], Awaitable[None]],
    ) -> None:
        self._keys = keys
        self._options = options
        self._history = history
        self._on_event = on_event
        self._on_connected = on_connected
        self._redis: Redis = Redis.from_url(
            url,
            decode_responses=True,
            client_name=f"{options.key_prefix}:sub:{instance}",
            socket_connect_timeout=options.command_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.feeds: dict[RoomName, Feed] = {}
        self._confirming: dict[str, deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._send_lock = asyncio.Lock()
        self.connected = False
        self.closed = False
        self.legacy_payloads = 0
        """Payloads of an older release dropped from message channels (see :meth:`_dispatch`)."""
        self.last_pong = 0.0
        self.up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read_loop(), name="redis-reader")

    async def close(self) -> None:
        """Stop reading (the caller set ``closed`` and stopped the heartbeat first)."""
        self.closed = True
        self.connected = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2 * self._options.command_timeout)
        await self._drop_pubsub()
        await self._redis.aclose()

    async def restart(self) -> None:
        """Drop a silent subscription and start over (a read on a silent socket may never
        fail by itself)."""
        self.connected = False
        self.up.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=self._options.command_timeout)
        await self._drop_pubsub()
        if not self.closed:
            self.start()

    @property
    def subscribed(self) -> bool:
        return self._pubsub is not None

    # subscriptions

    async def subscribe(self, room: RoomName) -> None:
        self.feeds.setdefault(room, Feed())
        await self._send_subscribe([room])
        epoch, offset = await self._history.last(room)
        feed = self.feeds.get(room)
        if feed is not None and not (feed.epoch == epoch and feed.offset > offset):
            # messages up to the baseline are in any history read that follows
            feed.advance(epoch, offset)

    async def unsubscribe(self, room: RoomName) -> None:
        feed = self.feeds.pop(room, None)
        if feed is not None:
            for _, _, future in feed.waiters:
                future.cancel()
        pubsub = self._pubsub
        if pubsub is None or not self.connected:
            return
        try:
            async with self._send_lock:
                await pubsub.unsubscribe(*self._keys.channels(room))
        except (RedisError, OSError) as exc:
            logger.info("unsubscribe failed: %s", type(exc).__name__, extra={"room": room})

    async def _send_subscribe(self, rooms: list[RoomName]) -> None:
        """SUBSCRIBE in batches and wait for every confirmation (read by the reader)."""
        pubsub = self._pubsub
        if pubsub is None:
            raise BrokerError("redis is unavailable")
        loop = asyncio.get_running_loop()
        batch = self._options.subscribe_batch
        for start in range(0, len(rooms), batch):
            channels = [
                c for room in rooms[start : start + batch] for c in self._keys.channels(room)
            ]
            futures = []
            for channel in channels:
                future: asyncio.Future[None] = loop.create_future()
                self._confirming.setdefault(channel, deque()).append(future)
                futures.append(future)
            async with self._send_lock:
                await pubsub.subscribe(*channels)
            async with asyncio.timeout(self._options.command_timeout):
                await asyncio.gather(*futures)

    # the loop

    async def _read_loop(self) -> None:
        backoff = 0.1
        while not self.closed:
            try:
                await self._connect()
                backoff = 0.1
                await self._read_forever()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, BrokerError) as exc:
                if self.connected:
                    logger.warning("redis connection lost: %s", type(exc).__name__)
                else:
                    logger.debug("redis still unavailable: %s", type(exc).__name__)
            except Exception:
                logger.exception("redis reader failed")
            self.connected = False
            self.up.clear()
            await self._drop_pubsub()
            if self.closed:
                return
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 jitter
            backoff = min(backoff * 2, self._options.reconnect_max)

    async def _connect(self) -> None:
        """Open the subscription connection, resubscribe every room in batches, replay what
        each room missed, run ``on_connected``; then report connected."""
        pubsub = self._redis.pubsub()
        self._pubsub = pubsub
        async with asyncio.timeout(self._options.command_timeout):
            await pubsub.connect()  # type: ignore[no-untyped-call]
        # the loop is not reading yet: read the confirmations of the resubscription here;
        # messages read meanwhile are dropped, the catch-up below replays them from history
        rooms = list(self.feeds)
        channels = [self._keys.control] + [c for room in rooms for c in self._keys.channels(room)]
        batch = self._options.subscribe_batch
        for start in range(0, len(channels), batch):
            chunk = channels[start : start + batch]
            await pubsub.subscribe(*chunk)
            pending = set(chunk)
            async with asyncio.timeout(self._options.command_timeout):
                while pending:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "subscribe":
                        pending.discard(message["channel"])
        for room in rooms:
            if room in self.feeds:
                await self._catch_up(room)
        # rooms unsubscribed meanwhile (unsubscribe sends nothing while not connected)
        stale = [c for room in rooms if room not in self.feeds for c in self._keys.channels(room)]
        if stale:
            await pubsub.unsubscribe(*stale)
        await self._on_connected()
        self.last_pong = time.monotonic()
        self.connected = True
        self.up.set()
        logger.info("redis connected", extra={"count": len(rooms)})

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        for futures in self._confirming.values():
            for future in futures:
                if not future.done():
                    future.set_exception(BrokerError("redis connection lost"))
        self._confirming.clear()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read_forever(self) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            raise BrokerError("redis is unavailable")
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and self._handle(message):
                # let the history reads woken by this delivery hand over before the next one
                await asyncio.sleep(0)

    def _handle(self, message: dict[str, Any]) -> bool:
        """Process one message of the subscription connection; true if a waiter woke."""
        kind = message["type"]
        if kind == "message":
            return self._dispatch(message["channel"], message["data"])
        if kind == "subscribe":
            futures = self._confirming.get(message["channel"])
            if futures:
                future = futures.popleft()
                if not futures:
                    del self._confirming[message["channel"]]
                if not future.done():
                    future.set_result(None)
        return False

    def _dispatch(self, channel: str, data: str) -> bool:
        if channel == self._keys.control:
            self.last_pong = time.monotonic()
            return False
        named = self._keys.room_of(channel)
        feed = self.feeds.get(named[0]) if named is not None else None
        if named is None or feed is None:
            return False
        room, events = named
        try:
            payload: wire.Payload | None = wire.parse(data)
        except wire.WireError:
            payload = None
        if events:
            if payload is None or payload.kind is Kind.MESSAGE:
                logger.warning("payload dropped from an events channel", extra={"room": room})
            else:
                self._on_event(room, payload.kind, payload.frame)
            return False
        if payload is None or payload.kind is not Kind.MESSAGE:
            # an instance of a release before the events channel publishing a bare presence
            # or typing frame here (a rolling deploy): expected, so quiet, and counted
            self.legacy_payloads += 1
            logger.debug("payload of an older release dropped", extra={"room": room})
            return False
        if feed.seen(payload.epoch, payload.offset):
            return False
        self._on_event(room, Kind.MESSAGE, payload.frame)
        return feed.advance(payload.epoch, payload.offset)

    async def _catch_up(self, room: RoomName) -> None:
        """Deliver what ``room`` missed while the subscription was down, in order."""
        feed = self.feeds[room]
        if feed.epoch is None:
            return
        history = await self._history.read(room, feed.offset, Epoch(feed.epoch))
        for offset, frame in history.entries:
            if not feed.seen(history.epoch, offset):
                self._on_event(room, Kind.MESSAGE, frame)
                feed.advance(history.epoch, offset)
        if not feed.seen(history.epoch, history.offset):
            feed.advance(history.epoch, history.offset)

    # alignment

    async def aligned(self, room: RoomName, epoch: str, offset: int) -> bool:
        """Return when the reader has delivered ``room`` up to exactly (epoch, offset), so
        the caller's snapshot hands over to live deliveries without gap or duplicate; false
        when the reader is already past it (the caller reads again)."""
        feed = self.feeds.get(room)
        if feed is None:
            return True
        if feed.epoch == epoch:
            if feed.offset == offset:
                return True
            if feed.offset > offset:
                return False
        elif offset == 0:
            feed.advance(epoch, 0)
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        feed.waiters.append((epoch, offset, future))
        try:
            async with asyncio.timeout(ALIGN_TIMEOUT):
                await future
        except TimeoutError:
            logger.warning(
                "history read not aligned with deliveries",
                extra={"room": room, "offset": offset, "delivered": feed.offset},
            )
            return True
        except asyncio.CancelledError:
            if future.cancelled():  # the room was unsubscribed meanwhile
                return True
            raise
        return feed.epoch == epoch and feed.offset == offset
