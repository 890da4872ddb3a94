"""The Redis broker: rooms, history, typing and presence shared by every instance.

* Fan-out: two Redis channels per room (messages; presence and typing, :mod:`.keys`); each
  instance holds ONE subscription per room (not per connection) on one dedicated connection
  per shard (one on a single Redis), each read by one task (:mod:`.reader`, :mod:`.link`).
  Payloads carry their kind in the format :mod:`.wire` defines for Python and Lua alike.
* History: a Stream per room with explicit ids ``<offset>-0``, trimmed to ``history_size``
  and expiring ``history_ttl`` seconds after the last activity. Offset/epoch assignment, the
  idempotency check, the append and the publish are one Lua script (:mod:`.lua`,
  :mod:`.history`), so two instances never hand out the same offset and an acknowledged
  message is in history.
* Presence (:mod:`.presence`): one entry per connection in a sorted set scored by expiry
  (server clock), kept alive by the owning instance's heartbeat; a reaper on every instance
  removes expired entries and publishes the leaves in the same script, so exactly one leave
  goes out.
* Outages: the reader reconnects with capped exponential backoff, resubscribes in batches,
  replays what the rooms missed from history, and re-adds this instance's presence entries.
  ``ready`` is false meanwhile; appends raise :class:`BrokerError` (the client gets an error
  frame, never an ack).

* Redis Cluster (``cluster`` option, REDIS_CLUSTER=1): redis-py's cluster client for commands;
  every key and channel of a room in its ``{room}`` slot, so each script runs on one master;
  fan-out over sharded pub/sub; no key spans rooms.

Options come from :class:`realtime.settings.Settings` (:class:`.options.RedisOptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime.broker.base import Appended, Broker, BrokerError, Kind, OnEvent, Recovery
from realtime.broker.redis import wire
from realtime.broker.redis.errors import REDIS_ERRORS, UNAVAILABLE
from realtime.broker.redis.history import History
from realtime.broker.redis.keys import Keys
from realtime.broker.redis.options import RedisOptions
from realtime.broker.redis.presence import Presence
from realtime.broker.redis.reader import Reader
from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User
from realtime.settings import Settings

__all__ = ["RedisBroker", "RedisOptions", "create"]

logger = logging.getLogger(__name__)


def create(settings: Settings, on_event: OnEvent) -> Broker:
    """The factory :func:`realtime.broker.create_broker` calls when REDIS_URL is set."""
    return RedisBroker(on_event, RedisOptions.from_settings(settings))


class RedisBroker(Broker):
    """A broker shared by every instance through one Redis; see the module docstring."""

    def __init__(self, on_event: OnEvent, options: RedisOptions) -> None:
        super().__init__(on_event)
        self.options = options
        self.instance = secrets.token_hex(6)
        """A random id of this instance: its Redis client names and own channel."""
        self._keys = Keys(options.key_prefix, self.instance, cluster=options.cluster)
        common: dict[str, Any] = {
            "decode_responses": True,
            "client_name": f"{options.key_prefix}:cmd:{self.instance}",
            "socket_timeout": options.command_timeout,
            "socket_connect_timeout": options.command_timeout,
        }
        try:
            cluster: RedisCluster | None = None
            if options.cluster:
                # redis-py follows MOVED/ASK redirections and re-reads the slot map itself
                cluster = RedisCluster.from_url(options.url, **common)
                self._redis: Redis | RedisCluster = cluster
            else:
                # one retry: a pooled connection may be stale after a Redis restart; a retried
                # append is safe, the idempotency key answers it as a duplicate
                self._redis = Redis.from_url(options.url, retry=Retry(NoBackoff(), 1), **common)
            self._history = History(self._redis, self._keys, options)
            self._presence = Presence(self._redis, self._keys, options, self._subscribed_rooms)
            self._reader = Reader(
                url=options.url,
                cluster=cluster,
                instance=self.instance,
                keys=self._keys,
                options=options,
                history=self._history,
                on_event=on_event,
                on_connected=self._presence.refresh,
            )
        except ValueError as exc:
            raise BrokerError(f"REDIS_URL is not a redis URL: {exc}") from None
        except REDIS_ERRORS as exc:
            raise BrokerError(f"REDIS_URL: {type(exc).__name__}") from None
        self._closed = False
        self._heartbeat: asyncio.Task[None] | None = None

    # lifecycle

    @property
    def ready(self) -> bool:
        return self._reader.connected and not self._closed

    @property
    def legacy_payloads(self) -> int:
        """Presence and typing payloads of a release before the events channel, dropped
        (non-zero only during a rolling deploy from it)."""
        return self._reader.legacy_payloads

    async def start(self) -> None:
        """Start the reader and the heartbeat; wait up to one command timeout for Redis
        (if it is down the instance starts not ready and keeps reconnecting)."""
        self._reader.start()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="redis-heartbeat")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.command_timeout):
                await self._reader.up.wait()
        if not self._reader.connected:
            logger.warning("redis unavailable at start, retrying in the background")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.closed = True
        if self._heartbeat is not None:
            # the loop also stops on _closed: a cancellation that redis-py or an expiring
            # asyncio.timeout turns into an error still ends it
            self._heartbeat.cancel()
            await asyncio.wait([self._heartbeat], timeout=2 * self.options.command_timeout)
        await self._reader.close()
        with contextlib.suppress(*REDIS_ERRORS):
            await self._presence.remove_owned()
        await self._redis.aclose()

    # subscriptions

    async def subscribe(self, room: RoomName) -> None:
        self._require_up()
        try:
            await self._reader.subscribe(room)
        except UNAVAILABLE as exc:
            raise _unavailable("subscribe", exc) from None

    async def unsubscribe(self, room: RoomName) -> None:
        await self._reader.unsubscribe(room)

    # history

    async def append(
        self, room: RoomName, user: User, client_id: ClientMessageId, body: str
    ) -> Appended:
        self._require_up()
        try:
            return await self._history.append(room, user, client_id, body)
        except REDIS_ERRORS as exc:
            raise _unavailable("append", exc) from None

    async def history(self, room: RoomName, since_offset: int, epoch: Epoch | None) -> Recovery:
        self._require_up()
        for _ in range(3):
            try:
                result = await self._history.read(room, since_offset, epoch)
            except REDIS_ERRORS as exc:
                raise _unavailable("history", exc) from None
            if await self._reader.aligned(room, result.epoch, result.offset):
                break
        frames = [frame for _, frame in result.entries]
        return Recovery(frames, result.recovered, result.epoch, result.offset)

    async def last(self, room: RoomName) -> tuple[Epoch, int]:
        self._require_up()
        for _ in range(3):
            try:
                epoch, offset = await self._history.last(room)
            except REDIS_ERRORS as exc:
                raise _unavailable("last", exc) from None
            if await self._reader.aligned(room, epoch, offset):
                break
        return epoch, offset

    # fan-out

    async def publish_ephemeral(self, room: RoomName, kind: Kind, frame: str) -> None:
        """Best effort: during an outage typing and presence frames are dropped (presence is
        rebuilt when Redis is back)."""
        if not self._reader.connected:
            return
        try:
            payload = wire.encode(kind, frame)
            await self._keys.publish(self._redis, self._keys.events(room), payload)
        except REDIS_ERRORS as exc:
            logger.debug("ephemeral publish dropped: %s", type(exc).__name__)

    # presence

    async def presence_join(self, room: RoomName, user: User, conn: ConnId) -> bool:
        self._require_up()
        try:
            return await self._presence.join(room, user, conn)
        except REDIS_ERRORS as exc:
            raise _unavailable("presence join", exc) from None

    async def presence_leave(self, room: RoomName, user: User, conn: ConnId) -> bool:
        """If Redis cannot be reached the entry is left to expire: the reaper of some
        instance then publishes the leave, so this returns false."""
        try:
            return await self._presence.leave(room, conn)
        except REDIS_ERRORS as exc:
            logger.info("presence leave deferred to expiry: %s", type(exc).__name__)
            return False

    async def presence_snapshot(self, room: RoomName) -> list[User]:
        try:
            return await self._presence.snapshot(room)
        except REDIS_ERRORS as exc:
            raise _unavailable("presence snapshot", exc) from None

    # heartbeat

    async def _heartbeat_loop(self) -> None:
        period = self.options.presence_heartbeat
        while not self._closed:
            await asyncio.sleep(period * random.uniform(0.9, 1.1))  # noqa: S311 jitter
            if not self._reader.connected or self._closed:
                continue
            try:
                await self._reader.check(period)
                await self._presence.refresh()
                await self._presence.reap()
            except UNAVAILABLE as exc:
                logger.warning("presence heartbeat failed: %s", type(exc).__name__)

    def _subscribed_rooms(self) -> list[RoomName]:
        return list(self._reader.feeds)

    def _require_up(self) -> None:
        if not self.ready:
            raise BrokerError("redis is unavailable")


def _unavailable(action: str, exc: BaseException) -> BrokerError:
    """A BrokerError naming the action and the error type (never the URL or a reply)."""
    return BrokerError(f"redis {action} failed: {type(exc).__name__}")
