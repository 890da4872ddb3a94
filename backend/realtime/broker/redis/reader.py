"""The pub/sub reader: one subscription per room per instance, on one connection per shard.

Every frame delivered to ``on_event`` for a room is in offset order, at most once per epoch:
the reader drops message payloads it has already delivered, and :meth:`Reader.aligned` lets
a history read return only when the reader has delivered exactly up to the offset it reports,
so the transport's "replay, then live" hand-over has neither a gap nor a duplicate.

Connections are :class:`.link.Link`: one on a single Redis; on a cluster one per master that
owns a subscribed room, each reconnecting on its own. After a link fails, or the server tells
it a room's slot moved, the reader asks the cluster for its slot map and moves the rooms to
the links of their current owners; every (re)subscription replays what the room missed from
history before reading live payloads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime.broker.base import BrokerError, Kind, OnEvent
from realtime.broker.redis import wire
from realtime.broker.redis.errors import LOST, REDIS_ERRORS, UNAVAILABLE
from realtime.broker.redis.feed import Feed
from realtime.broker.redis.history import History
from realtime.broker.redis.keys import Keys
from realtime.broker.redis.link import Link, Moved
from realtime.broker.redis.options import RedisOptions
from realtime.ids import Epoch, RoomName

logger = logging.getLogger(__name__)

ALIGN_TIMEOUT = 2.0
"""Seconds a history read waits for the reader to deliver up to the offset it reports."""

SINGLE = "redis"
"""The name of the one link on a single Redis."""


class Reader:
    """Subscriptions, the read loops, reconnects with catch-up, and delivery alignment.

    ``on_connected`` runs after each (re)connection of a link, before it reports connected
    (the broker re-adds its presence entries there). ``cluster`` is the broker's cluster
    client (its slot map routes rooms to links), None on a single Redis.
    """

    def __init__(
        self,
        *,
        url: str,
        cluster: RedisCluster | None,
        instance: str,
        keys: Keys,
        options: RedisOptions,
        history: History,
        on_event: OnEvent,
        on_connected: Callable[[], Awaitable[None]],
    ) -> None:
        self._url = url
        self._cluster = cluster
        self._keys = keys
        self._options = options
        self._history = history
        self._on_event = on_event
        self._on_connected = on_connected
        self._client_options: dict[str, Any] = {
            "decode_responses": True,
            "client_name": f"{options.key_prefix}:sub:{instance}",
            "socket_connect_timeout": options.command_timeout,
            "retry": Retry(NoBackoff(), 0),
            # RESP2: a PING on a subscribed connection then answers a pub/sub "pong" (redis-py
            # 8.1 with decode_responses parses RESP3's +PONG there as a message of type "P")
            "protocol": 2,
        }
        self.feeds: dict[RoomName, Feed] = {}
        self.links: dict[str, Link] = {}
        if cluster is None:
            self.links[SINGLE] = self._new_link(SINGLE, Redis.from_url(url, **self._client_options))
        self._topology = cluster is None  # the slot map was read (no map on a single Redis)
        self.closed = False
        self.legacy_payloads = 0
        """Payloads of an older release dropped from message channels (see :meth:`_dispatch`)."""
        self.up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Every link is connected or, on a cluster, still connecting for the first time (a
        room on a master new to this instance makes nobody wait), and the slot map was read."""
        return (
            not self.closed and self._topology and all(link.healthy for link in self.links.values())
        )

    def _update_up(self) -> None:
        self.up.set() if self.connected else self.up.clear()

    def start(self) -> None:
        if self._cluster is None:
            self._start(self.links[SINGLE])
        else:
            self._task = asyncio.create_task(self._discover(), name="redis-cluster-slots")

    async def close(self) -> None:
        """Stop reading (the caller set ``closed`` and stopped the heartbeat first)."""
        self.closed = True
        self.up.clear()
        tasks = [t for t in [self._task, *(ln.task for ln in self.links.values())] if t]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2 * self._options.command_timeout)
        for link in list(self.links.values()):
            await link.close()
            await link.redis.aclose()

    async def check(self, period: float) -> None:
        """The heartbeat's check: PING every link on its own connection; a link that heard
        no reply for three periods is dropped and reconnects (a read on a silent socket may
        never fail by itself)."""
        for link in list(self.links.values()):
            if not link.connected:
                continue
            if time.monotonic() - link.last_pong > 3 * period:
                logger.warning("redis subscription silent, reconnecting", extra={"node": link.name})
                link.fresh = False
                await self.restart(link)
            else:
                await link.ping()

    async def restart(self, link: Link) -> None:
        if link.task is not None:
            link.task.cancel()
            await asyncio.wait([link.task], timeout=self._options.command_timeout)
        await link.close()
        self._update_up()
        if not self.closed and self.links.get(link.name) is link:
            self._start(link)

    # routing (cluster)

    def _new_link(self, name: str, redis: Redis) -> Link:
        return Link(
            name,
            redis,
            self._keys,
            timeout=self._options.command_timeout,
            batch=self._options.subscribe_batch,
        )

    def _start(self, link: Link) -> None:
        link.task = asyncio.create_task(self._run(link), name=f"redis-reader-{link.name}")

    def _owner(self, room: RoomName) -> str:
        if self._cluster is None:
            return SINGLE
        node = self._cluster.get_node_from_key(self._keys.channel(room))
        if node is None:
            raise BrokerError("redis cluster: no node serves the room's slot")
        return str(node.name)

    def _link(self, name: str) -> Link:
        """The link named ``name``, made and started if missing (cluster: a master)."""
        link = self.links.get(name)
        if link is None:
            assert self._cluster is not None
            node = self._cluster.get_node(node_name=name)
            if node is None:
                raise BrokerError("redis cluster: unknown node")
            # REDIS_URL's credentials and TLS, the node's address (as the slot map names it)
            options: dict[str, Any] = {**parse_url(self._url), **self._client_options}
            options.update(host=node.host, port=node.port, db=0)
            link = self._new_link(name, Redis(connection_pool=ConnectionPool(**options)))
            self.links[name] = link
            self._update_up()
            self._start(link)
        return link

    async def _discover(self) -> None:
        """Read the cluster's slot map once at start, retrying with backoff."""
        assert self._cluster is not None
        backoff = 0.1
        while not self.closed:
            try:
                async with asyncio.timeout(self._options.command_timeout):
                    await self._cluster.initialize()
            except UNAVAILABLE as exc:
                # e.g. RedisClusterException: REDIS_CLUSTER=1 but the node is not in cluster mode
                logger.warning("redis cluster unavailable: %s", type(exc).__name__)
            else:
                self._topology = True
                self._update_up()
                logger.info("redis cluster connected", extra={"count": len(self.links)})
                return
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 jitter
            backoff = min(backoff * 2, self._options.reconnect_max)

    async def _reroute(self, link: Link) -> None:
        """Re-read the slot map; move ``link``'s rooms whose slot another master owns now
        (a connected link that receives rooms reconnects to subscribe and replay them)."""
        assert self._cluster is not None
        try:
            async with asyncio.timeout(self._options.command_timeout):
                await self._cluster.nodes_manager.initialize()
        except UNAVAILABLE as exc:
            logger.debug("redis cluster slots unavailable: %s", type(exc).__name__)
            return
        receivers: dict[str, Link] = {}
        for room in sorted(link.rooms):
            try:
                owner = self._owner(room)
                if owner == link.name:
                    continue
                target = self._link(owner)
            except BrokerError as exc:
                logger.warning("room not routed: %s", exc, extra={"room": room})
                continue
            link.rooms.discard(room)
            target.rooms.add(room)
            if target.connected:
                receivers[target.name] = target
        for target in receivers.values():
            await self.restart(target)
        if receivers or link.rooms != link.subscribed:
            logger.info("redis rooms moved to their new shard", extra={"count": len(receivers)})

    # subscriptions

    async def subscribe(self, room: RoomName) -> None:
        feed = self.feeds.setdefault(room, Feed())
        link = self._link(self._owner(room))
        link.rooms.add(room)
        async with asyncio.timeout(self._options.command_timeout):
            await link.up.wait()
        if room not in link.subscribed:
            await link.subscribe([room])
        epoch, offset = await self._history.last(room)
        if self.feeds.get(room) is feed and not (feed.epoch == epoch and feed.offset > offset):
            # messages up to the baseline are in any history read that follows
            feed.advance(epoch, offset)

    async def unsubscribe(self, room: RoomName) -> None:
        feed = self.feeds.pop(room, None)
        if feed is not None:
            for _, _, future in feed.waiters:
                future.cancel()
        for link in list(self.links.values()):
            if room in link.rooms:
                link.rooms.discard(room)
                try:
                    await link.unsubscribe(room)
                except REDIS_ERRORS as exc:
                    logger.info("unsubscribe failed: %s", type(exc).__name__, extra={"room": room})

    # the loops

    async def _run(self, link: Link) -> None:
        """Connect ``link``, replay its rooms, read until it fails; again with backoff."""
        backoff = 0.1
        while not self.closed and self.links.get(link.name) is link:
            try:
                await link.open()
                for room in sorted(link.subscribed):
                    if room in self.feeds:
                        await self._catch_up(room)
                # rooms unsubscribed meanwhile (unsubscribe sends nothing while not connected)
                for room in sorted(link.subscribed - set(self.feeds)):
                    link.rooms.discard(room)
                    await link.unsubscribe(room, force=True)
                await self._on_connected()
                link.mark_connected()
                self._update_up()
                backoff = 0.1
                logger.info("redis connected", extra={"count": len(link.rooms), "node": link.name})
                while True:
                    message = await link.next_message()
                    if message is not None and self._dispatch(message["channel"], message["data"]):
                        # let the history reads woken by this delivery hand over first
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Moved:
                logger.info("redis slot moved", extra={"node": link.name})
            except LOST as exc:
                link.fresh = False
                if link.connected:
                    logger.warning("redis connection lost: %s", type(exc).__name__)
                else:
                    logger.debug("redis still unavailable: %s", type(exc).__name__)
            except Exception:
                link.fresh = False
                logger.exception("redis reader failed")
            await link.close()
            self._update_up()
            if self.closed:
                return
            if self._cluster is not None:
                await self._reroute(link)
                if not link.rooms:
                    # every room moved away (a failover, a resharding): this link is done
                    if self.links.get(link.name) is link:
                        del self.links[link.name]
                    await link.redis.aclose()
                    self._update_up()
                    return
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 jitter
            backoff = min(backoff * 2, self._options.reconnect_max)

    def _dispatch(self, channel: str, data: str) -> bool:
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
        return feed.delivered(payload.epoch, payload.offset, payload.frame)

    async def _catch_up(self, room: RoomName) -> None:
        """Deliver what ``room`` missed while the subscription was down, in order. If the
        history lost delivered messages (a master failed before replicating them, and the
        promoted replica reuses their offsets), rewind to the first and deliver from there."""
        feed = self.feeds[room]
        if feed.epoch is None:
            return
        since = feed.recent[0][0] - 1 if feed.recent else feed.offset
        history = await self._history.read(room, since, Epoch(feed.epoch))
        diverged = feed.diverged(history.epoch, history.offset, history.entries)
        if diverged is not None:
            logger.warning(
                "room history went back: delivered messages lost by redis",
                extra={"room": room, "offset": diverged - 1, "delivered": feed.offset},
            )
            feed.rewind(diverged)
        for offset, frame in history.entries:
            if not feed.seen(history.epoch, offset):
                self._on_event(room, Kind.MESSAGE, frame)
                feed.delivered(history.epoch, offset, frame)
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
