"""The Redis broker: rooms, history, typing and presence shared by every instance.

* Fan-out: one Redis channel per room; each instance holds ONE subscription per room (not per
  connection) on one dedicated connection, read by one task that blocks in
  ``get_message(timeout=None)``.
* History: a Stream per room with explicit ids ``<offset>-0``, trimmed to ``history_size``
  and expiring ``history_ttl`` seconds after the last activity. Offset/epoch assignment, the
  idempotency check, the append and the publish are one Lua script (:mod:`.redis_lua`), so
  two instances never hand out the same offset and an acknowledged message is in history.
* Presence: one entry per connection in a sorted set scored by expiry (server clock), kept
  alive by the owning instance's heartbeat; a reaper on every instance removes expired
  entries and publishes the leaves in the same script, so exactly one leave goes out.
* Outages: the reader reconnects with capped exponential backoff, resubscribes in batches,
  replays what the rooms missed from history, and re-adds this instance's presence entries.
  ``ready`` is false meanwhile; appends raise :class:`BrokerError` (the client gets an error
  frame, never an ack).

Every frame delivered to ``on_event`` for a room is in offset order, at most once per epoch:
the reader drops message frames it has already delivered, and :meth:`history`/:meth:`last`
return only when the reader has delivered exactly up to the offset they report, so the
transport's "replay, then live" hand-over has neither a gap nor a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from realtime.broker import redis_lua
from realtime.broker.base import Appended, Broker, BrokerError, OnEvent, Recovery
from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User, UserId
from realtime.protocol import encode_message, encode_presence
from realtime.settings import Settings

logger = logging.getLogger(__name__)

_OFFSET_MARK = '"offset":0,"epoch":""'
_PIPELINE_ROOMS = 100
"""Rooms per pipelined round trip of the heartbeat and the reaper."""
_ALIGN_TIMEOUT = 2.0
"""Seconds a history read waits for the reader to deliver up to the offset it reports."""


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How the broker uses Redis. Defaults are production defaults (see from_env)."""

    url: str = field(repr=False)
    history_size: int = 500
    # retention
    history_ttl: int = 86_400
    idempotency_ttl: int = 600
    # presence: a dead instance's entries vanish within presence_ttl + presence_heartbeat
    presence_ttl: float = 20.0
    presence_heartbeat: float = 5.0
    # connection
    key_prefix: str = "rt"
    command_timeout: float = 2.0
    reconnect_max: float = 2.0
    subscribe_batch: int = 200

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str]) -> RedisOptions:
        """Read the broker's own variables; :class:`BrokerError` names a bad one."""
        options = cls(
            url=settings.redis_url,
            history_size=settings.history_size,
            history_ttl=_env_int(env, "HISTORY_TTL", 86_400),
            idempotency_ttl=_env_int(env, "IDEMPOTENCY_TTL", 600),
            presence_ttl=_env_float(env, "PRESENCE_TTL", 20.0),
            presence_heartbeat=_env_float(env, "PRESENCE_HEARTBEAT", 5.0),
            key_prefix=env.get("REDIS_KEY_PREFIX", "rt") or "rt",
        )
        if options.presence_heartbeat * 2 > options.presence_ttl:
            raise BrokerError(
                f"PRESENCE_HEARTBEAT must be at most half of PRESENCE_TTL, got "
                f"{options.presence_heartbeat:g} and {options.presence_ttl:g}"
            )
        return options


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise BrokerError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:
        raise BrokerError(f"{name} must be a positive number, got {raw!r}")
    return value


def create(settings: Settings, on_event: OnEvent) -> Broker:
    """The factory :func:`realtime.broker.create_broker` calls when REDIS_URL is set."""
    return RedisBroker(on_event, RedisOptions.from_env(settings, os.environ))


def _new_epoch() -> str:
    return secrets.token_hex(8)


def _frame_parts(
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


@dataclass(slots=True)
class _Feed:
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


@dataclass(frozen=True, slots=True)
class _History:
    recovered: bool
    epoch: Epoch
    offset: int
    entries: list[tuple[int, str]]


class _Keys:
    """Key and channel names; a room's keys share the hash tag ``{room}``."""

    def __init__(self, prefix: str, instance: str) -> None:
        self.prefix = prefix
        self.presence_rooms = f"{prefix}:presence-rooms"
        self.channel_prefix = f"{prefix}:room:"
        # each instance also subscribes its own control channel: the heartbeat publishes
        # there to check the subscription end to end
        self.control = f"{prefix}:instance:{instance}"

    def channel(self, room: RoomName) -> str:
        return self.channel_prefix + room

    def room(self, room: RoomName, name: str) -> str:
        return f"{self.prefix}:{{{room}}}:{name}"

    def idempotency(self, room: RoomName, user: UserId, client_id: ClientMessageId) -> str:
        return self.room(room, f"id:{len(user)}:{user}:{client_id}")

    def presence(self, room: RoomName) -> list[str]:
        names = ("presence", "conns", "counts", "names", "leaves")
        return [self.room(room, name) for name in names] + [self.presence_rooms]


class RedisBroker(Broker):
    """A broker shared by every instance through one Redis; see the module docstring."""

    def __init__(self, on_event: OnEvent, options: RedisOptions) -> None:
        super().__init__(on_event)
        self.options = options
        self.instance = secrets.token_hex(6)
        """A random id of this instance: its control channel and Redis client names."""
        self._keys = _Keys(options.key_prefix, self.instance)
        try:
            self._redis: Redis = Redis.from_url(
                options.url,
                decode_responses=True,
                client_name=f"{options.key_prefix}:cmd:{self.instance}",
                socket_timeout=options.command_timeout,
                socket_connect_timeout=options.command_timeout,
                # one retry: a pooled connection may be stale after a Redis restart; a retried
                # append is safe, the idempotency key answers it as a duplicate
                retry=Retry(NoBackoff(), 1),
            )
            self._sub_redis: Redis = Redis.from_url(
                options.url,
                decode_responses=True,
                client_name=f"{options.key_prefix}:sub:{self.instance}",
                socket_connect_timeout=options.command_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise BrokerError(f"REDIS_URL is not a redis URL: {exc}") from None
        self._append = self._script(redis_lua.APPEND)
        self._history_script = self._script(redis_lua.HISTORY)
        self._join_script = self._script(redis_lua.PRESENCE_JOIN)
        self._leave_script = self._script(redis_lua.PRESENCE_LEAVE)
        self._reap_script = self._script(redis_lua.PRESENCE_REAP)
        self._feeds: dict[RoomName, _Feed] = {}
        self._confirming: dict[str, deque[asyncio.Future[None]]] = {}
        self._owned: dict[RoomName, dict[ConnId, User]] = {}
        self._pubsub: PubSub | None = None
        self._send_lock = asyncio.Lock()
        self._presence_lock = asyncio.Lock()
        self._connected = False
        self._closed = False
        self._last_pong = 0.0
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._up = asyncio.Event()

    def _script(self, source: str) -> AsyncScript:
        script: AsyncScript = self._redis.register_script(source)
        return script

    # lifecycle

    @property
    def ready(self) -> bool:
        return self._connected and not self._closed

    async def start(self) -> None:
        """Start the reader and the heartbeat; wait up to one command timeout for Redis
        (if it is down the instance starts not ready and keeps reconnecting)."""
        self._reader = asyncio.create_task(self._read_loop(), name="redis-reader")
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="redis-heartbeat")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.command_timeout):
                await self._up.wait()
        if not self._connected:
            logger.warning("redis unavailable at start, retrying in the background")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected = False
        tasks = [task for task in (self._heartbeat, self._reader) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # both loops also stop on _closed: a cancellation that redis-py or an expiring
            # asyncio.timeout turns into an error still ends them
            await asyncio.wait(tasks, timeout=2 * self.options.command_timeout)
        await self._drop_pubsub()
        with contextlib.suppress(RedisError, OSError):
            await self._remove_owned_presence()
        await self._redis.aclose()
        await self._sub_redis.aclose()

    async def _remove_owned_presence(self) -> None:
        """Remove the entries this instance still owns (a clean stop publishes no stale
        presence; the transport normally left every room before)."""
        for room, conns in list(self._owned.items()):
            for conn, user in list(conns.items()):
                if await self._leave_script(keys=self._keys.presence(room), args=[room, conn]):
                    await self._publish(room, encode_presence(room, user, online=False))
        self._owned.clear()

    # subscriptions and the reader

    async def subscribe(self, room: RoomName) -> None:
        self._require_up()
        self._feeds.setdefault(room, _Feed())
        try:
            await self._send_subscribe([room])
            epoch, offset = await self.last_raw(room)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _unavailable("subscribe", exc) from None
        feed = self._feeds.get(room)
        if feed is not None and not (feed.epoch == epoch and feed.offset > offset):
            # messages up to the baseline are in any history read that follows
            feed.advance(epoch, offset)

    async def unsubscribe(self, room: RoomName) -> None:
        feed = self._feeds.pop(room, None)
        if feed is not None:
            for _, _, future in feed.waiters:
                future.cancel()
        pubsub = self._pubsub
        if pubsub is None or not self._connected:
            return
        try:
            async with self._send_lock:
                await pubsub.unsubscribe(self._keys.channel(room))
        except (RedisError, OSError) as exc:
            logger.info("unsubscribe failed: %s", type(exc).__name__, extra={"room": room})

    async def _send_subscribe(self, rooms: list[RoomName]) -> None:
        """SUBSCRIBE in batches and wait for every confirmation (read by the reader)."""
        pubsub = self._pubsub
        if pubsub is None:
            raise BrokerError("redis is unavailable")
        loop = asyncio.get_running_loop()
        batch = self.options.subscribe_batch
        for start in range(0, len(rooms), batch):
            channels = [self._keys.channel(room) for room in rooms[start : start + batch]]
            futures = []
            for channel in channels:
                future: asyncio.Future[None] = loop.create_future()
                self._confirming.setdefault(channel, deque()).append(future)
                futures.append(future)
            async with self._send_lock:
                await pubsub.subscribe(*channels)
            async with asyncio.timeout(self.options.command_timeout):
                await asyncio.gather(*futures)

    async def _read_loop(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                await self._connect()
                backoff = 0.1
                await self._read_forever()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, BrokerError) as exc:
                if self._connected:
                    logger.warning("redis connection lost: %s", type(exc).__name__)
                else:
                    logger.debug("redis still unavailable: %s", type(exc).__name__)
            except Exception:
                logger.exception("redis reader failed")
            self._connected = False
            self._up.clear()
            await self._drop_pubsub()
            if self._closed:
                return
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 jitter
            backoff = min(backoff * 2, self.options.reconnect_max)

    async def _connect(self) -> None:
        """Open the subscription connection, resubscribe every room in batches, replay what
        each room missed, re-add this instance's presence entries; then report ready."""
        pubsub = self._sub_redis.pubsub()
        self._pubsub = pubsub
        async with asyncio.timeout(self.options.command_timeout):
            await pubsub.connect()  # type: ignore[no-untyped-call]
        # the reader is not running yet: read the confirmations of the resubscription here;
        # messages read meanwhile are dropped, the catch-up below replays them from history
        rooms = list(self._feeds)
        channels = [self._keys.control] + [self._keys.channel(room) for room in rooms]
        batch = self.options.subscribe_batch
        for start in range(0, len(channels), batch):
            chunk = channels[start : start + batch]
            await pubsub.subscribe(*chunk)
            pending = set(chunk)
            async with asyncio.timeout(self.options.command_timeout):
                while pending:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "subscribe":
                        pending.discard(message["channel"])
        for room in rooms:
            if room in self._feeds:
                await self._catch_up(room)
        # rooms unsubscribed meanwhile (unsubscribe sends nothing while not connected)
        stale = [self._keys.channel(room) for room in rooms if room not in self._feeds]
        if stale:
            await pubsub.unsubscribe(*stale)
        await self._refresh_presence()
        self._last_pong = time.monotonic()
        self._connected = True
        self._up.set()
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
            self._last_pong = time.monotonic()
            return False
        room = RoomName(channel[len(self._keys.channel_prefix) :])
        feed = self._feeds.get(room)
        if feed is None:
            return False
        if not data.startswith("m"):
            self._on_event(room, data)
            return False
        head, _, frame = data.partition("|")
        epoch, _, offset_text = head[1:].partition(":")
        offset = int(offset_text)
        if feed.seen(epoch, offset):
            return False
        self._on_event(room, frame)
        return feed.advance(epoch, offset)

    async def _catch_up(self, room: RoomName) -> None:
        """Deliver what ``room`` missed while the subscription was down, in order."""
        feed = self._feeds[room]
        if feed.epoch is None:
            return
        history = await self._read_history(room, feed.offset, Epoch(feed.epoch))
        for offset, frame in history.entries:
            if not feed.seen(history.epoch, offset):
                self._on_event(room, frame)
                feed.advance(history.epoch, offset)
        if not feed.seen(history.epoch, history.offset):
            feed.advance(history.epoch, history.offset)

    # history

    async def append(
        self, room: RoomName, user: User, client_id: ClientMessageId, body: str
    ) -> Appended:
        self._require_up()
        head, tail = _frame_parts(room, user, client_id, body)
        keys = [
            self._keys.room(room, "meta"),
            self._keys.room(room, "log"),
            self._keys.idempotency(room, user.id, client_id),
        ]
        args: list[str | int] = [
            _new_epoch(),
            head,
            tail,
            self.options.history_size,
            self.options.history_ttl,
            self.options.idempotency_ttl,
            self._keys.channel(room),
        ]
        try:
            duplicate, offset, epoch, frame = await self._append(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise _unavailable("append", exc) from None
        return Appended(int(offset), Epoch(epoch), bool(duplicate), frame)

    async def history(self, room: RoomName, since_offset: int, epoch: Epoch | None) -> Recovery:
        self._require_up()
        for _ in range(3):
            try:
                result = await self._read_history(room, since_offset, epoch)
            except (RedisError, OSError) as exc:
                raise _unavailable("history", exc) from None
            if await self._aligned(room, result.epoch, result.offset):
                break
        frames = [frame for _, frame in result.entries]
        return Recovery(frames, result.recovered, result.epoch, result.offset)

    async def last(self, room: RoomName) -> tuple[Epoch, int]:
        self._require_up()
        for _ in range(3):
            try:
                epoch, offset = await self.last_raw(room)
            except (RedisError, OSError) as exc:
                raise _unavailable("last", exc) from None
            if await self._aligned(room, epoch, offset):
                break
        return epoch, offset

    async def last_raw(self, room: RoomName) -> tuple[Epoch, int]:
        """The room's epoch and last offset, without waiting for the reader."""
        keys = [self._keys.room(room, "meta"), self._keys.room(room, "log")]
        args: list[str | int] = [_new_epoch(), 0, "", self.options.history_ttl, 0]
        _, epoch, offset = await self._history_script(keys=keys, args=args)
        return Epoch(epoch), int(offset)

    async def _read_history(self, room: RoomName, since: int, epoch: Epoch | None) -> _History:
        keys = [self._keys.room(room, "meta"), self._keys.room(room, "log")]
        args: list[str | int] = [_new_epoch(), since, epoch or "", self.options.history_ttl, 1]
        reply = await self._history_script(keys=keys, args=args)
        entries = [(int(reply[i]), str(reply[i + 1])) for i in range(3, len(reply), 2)]
        return _History(bool(reply[0]), Epoch(reply[1]), int(reply[2]), entries)

    async def _aligned(self, room: RoomName, epoch: str, offset: int) -> bool:
        """Return when the reader has delivered ``room`` up to exactly (epoch, offset), so
        the caller's snapshot hands over to live deliveries without gap or duplicate; false
        when the reader is already past it (the caller reads again)."""
        feed = self._feeds.get(room)
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
            async with asyncio.timeout(_ALIGN_TIMEOUT):
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

    # fan-out

    async def publish_ephemeral(self, room: RoomName, frame: str) -> None:
        """Best effort: during an outage typing and presence frames are dropped (presence is
        rebuilt when Redis is back)."""
        if not self._connected:
            return
        try:
            await self._publish(room, frame)
        except (RedisError, OSError) as exc:
            logger.debug("ephemeral publish dropped: %s", type(exc).__name__)

    async def _publish(self, room: RoomName, frame: str) -> None:
        await self._redis.publish(self._keys.channel(room), frame)

    # presence

    async def presence_join(self, room: RoomName, user: User, conn: ConnId) -> bool:
        self._require_up()
        async with self._presence_lock:
            try:
                online = await self._join_entries(room, {conn: user})
            except (RedisError, OSError) as exc:
                raise _unavailable("presence join", exc) from None
            self._owned.setdefault(room, {})[conn] = user
        return user.id in online

    async def presence_leave(self, room: RoomName, user: User, conn: ConnId) -> bool:
        """If Redis cannot be reached the entry is left to expire: the reaper of some
        instance then publishes the leave, so this returns false."""
        async with self._presence_lock:
            self._forget(room, conn)
            try:
                went = await self._leave_script(keys=self._keys.presence(room), args=[room, conn])
            except (RedisError, OSError) as exc:
                logger.info("presence leave deferred to expiry: %s", type(exc).__name__)
                return False
        return bool(went)

    async def presence_snapshot(self, room: RoomName) -> list[User]:
        try:
            names = await self._redis.hgetall(self._keys.room(room, "names"))
        except (RedisError, OSError) as exc:
            raise _unavailable("presence snapshot", exc) from None
        return [User(UserId(str(uid)), str(names[uid])) for uid in sorted(names)]

    def _forget(self, room: RoomName, conn: ConnId) -> None:
        conns = self._owned.get(room)
        if conns is not None:
            conns.pop(conn, None)
            if not conns:
                del self._owned[room]

    async def _join_entries(self, room: RoomName, entries: dict[ConnId, User]) -> set[str]:
        online = await self._join_script(
            keys=self._keys.presence(room), args=self._join_args(room, entries)
        )
        return set(online)

    def _join_args(self, room: RoomName, entries: dict[ConnId, User]) -> list[str | int]:
        args: list[str | int] = [
            math.ceil(self.options.presence_ttl * 1000),
            math.ceil(self.options.presence_ttl * 3),
            room,
        ]
        for conn, user in entries.items():
            args += [conn, user.id, user.name, encode_presence(room, user, online=False)]
        return args

    async def _heartbeat_loop(self) -> None:
        period = self.options.presence_heartbeat
        while not self._closed:
            await asyncio.sleep(period * random.uniform(0.9, 1.1))  # noqa: S311 jitter
            if not self._connected or self._closed:
                continue
            try:
                await self._check_subscription(period)
                await self._refresh_presence()
                await self._reap()
            except (RedisError, OSError, TimeoutError) as exc:
                logger.warning("presence heartbeat failed: %s", type(exc).__name__)

    async def _check_subscription(self, period: float) -> None:
        """Publish to this instance's control channel; a subscription that heard nothing
        of it for three periods is dropped so the reader reconnects."""
        if self._pubsub is None:
            return
        if time.monotonic() - self._last_pong > 3 * period:
            logger.warning("redis subscription silent, reconnecting")
            self._connected = False
            self._up.clear()
            reader = self._reader
            if reader is not None:
                # a read on a silent socket may never fail by itself: cancel it, start over
                reader.cancel()
                await asyncio.wait([reader], timeout=self.options.command_timeout)
            await self._drop_pubsub()
            if not self._closed:
                self._reader = asyncio.create_task(self._read_loop(), name="redis-reader")
            return
        # a round trip through Redis to our own subscription, not just a socket-level ping
        await self._redis.publish(self._keys.control, "ping")

    async def _refresh_presence(self) -> None:
        """Extend this instance's entries; re-add (and announce) those Redis lost. One
        pipelined round trip per :data:`_PIPELINE_ROOMS` rooms, each under the presence lock
        so that no join or leave of this instance interleaves (a refresh must not re-add an
        entry that is being removed, nor announce a join the transport announces)."""
        rooms = list(self._owned)
        for start in range(0, len(rooms), _PIPELINE_ROOMS):
            async with self._presence_lock:
                chunk = [
                    (room, dict(self._owned[room]))
                    for room in rooms[start : start + _PIPELINE_ROOMS]
                    if room in self._owned
                ]
                if not chunk:
                    continue
                async with self._redis.pipeline(transaction=False) as pipe:
                    for room, conns in chunk:
                        await self._join_script(
                            keys=self._keys.presence(room),
                            args=self._join_args(room, conns),
                            client=pipe,
                        )
                    replies = await pipe.execute()
                for (room, conns), online in zip(chunk, replies, strict=True):
                    for user in {user.id: user for user in conns.values()}.values():
                        if user.id in online:
                            await self._publish(room, encode_presence(room, user, online=True))

    async def _reap(self) -> None:
        """Remove expired entries of every room; the script publishes the leaves."""
        rooms = sorted(await self._redis.smembers(self._keys.presence_rooms))
        for start in range(0, len(rooms), _PIPELINE_ROOMS):
            chunk = [RoomName(str(room)) for room in rooms[start : start + _PIPELINE_ROOMS]]
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in chunk:
                    await self._reap_script(
                        keys=self._keys.presence(room),
                        args=[room, self._keys.channel(room)],
                        client=pipe,
                    )
                replies = await pipe.execute()
            for room, gone in zip(chunk, replies, strict=True):
                if gone:
                    logger.info("reaped expired presence", extra={"room": room, "count": gone})

    # errors

    def _require_up(self) -> None:
        if not self.ready:
            raise BrokerError("redis is unavailable")


def _unavailable(action: str, exc: BaseException) -> BrokerError:
    """A BrokerError naming the action and the error type (never the URL or a reply)."""
    return BrokerError(f"redis {action} failed: {type(exc).__name__}")
