"""The WebSocket transport: handshakes, sessions, local rooms and fan-out.

This layer only moves frames: parsing and validation live in :mod:`realtime.protocol`, room
logic in :mod:`realtime.rooms`, shared state behind :mod:`realtime.broker`.

Fan-out: every write is non-blocking (``websockets.broadcast``-style, no per-recipient task
or await). A broadcast frame is JSON-encoded once and framed once, by websockets' own
:meth:`Frame.serialize <websockets.frames.Frame.serialize>`: server frames are unmasked and
compression is off, so the bytes on the wire are the same for every recipient and go to
each transport as they are. A connection whose send buffer grows above
``SEND_BUFFER_BYTES`` is closed with 4009 while everyone else keeps receiving.

Presence diffs are coalesced per room for ``PRESENCE_BATCH_SECONDS``: a burst of joins
(a reconnect storm, a deploy) costs each member one write per batch instead of one per
join. Each diff is still its own ``presence`` frame, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import random
import secrets
import socket
import struct
import termios
import time
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from realtime.auth import INVALID_TOKEN, TOKEN_EXPIRED, Grant, TokenVerifier
from realtime.broker import Broker, BrokerError, Kind, create_broker
from realtime.ids import ConnId, RoomName, User
from realtime.metrics import Metrics
from realtime.protocol import (
    ClientFrame,
    CloseCode,
    CloseConnection,
    ErrorCode,
    FrameError,
    Hello,
    Join,
    Leave,
    Message,
    Ping,
    Refresh,
    Typing,
    close_for,
    encode_ack,
    encode_error,
    encode_joined,
    encode_left,
    encode_pong,
    encode_presence,
    encode_refreshed,
    encode_typing,
    encode_welcome,
    negotiate,
    parse,
    parse_with_ref,
)
from realtime.rooms import TokenBucket, TypingTracker
from realtime.settings import Settings

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
ABORT_AFTER_SECONDS = 1.0
"""After a 4008 or 4009 close frame is queued, the connection is closed (FIN) as soon as
the frame has left this host (the socket's send queue is empty), and reset (RST, which
drops whatever is still queued in the kernel) when that has not happened within this many
seconds. docs/PROTOCOL.md documents the bound."""
PRESENCE_BATCH_SECONDS = 0.1
"""Presence diffs of a room are written to its members at most this often."""
_UNAVAILABLE = "the broker is not ready, retry later"
_CLOSED_BY_WEBSOCKETS = frozenset({1002, 1007, 1009, 1011})
"""Close codes websockets sends by itself (protocol error, invalid UTF-8, frame too big,
keepalive timeout): counted in ``realtime_closes_total`` when the server sent them first."""
_LINGER_RESET = struct.pack("ii", 1, 0)

_OPEN = State.OPEN


class Session:
    """Per-connection state, kept small: one per authenticated connection."""

    __slots__ = ("bucket", "conn", "expiry", "rooms", "user", "ws")

    def __init__(self, ws: ServerConnection, conn: ConnId, user: User, bucket: TokenBucket) -> None:
        self.ws = ws
        self.conn = conn
        self.user = user
        self.bucket = bucket
        self.rooms: set[RoomName] = set()
        self.expiry: asyncio.TimerHandle | None = None

    def log(self, room: RoomName | None = None, **more: Any) -> dict[str, Any]:
        return {"conn": self.conn, "user": self.user.id, "room": room, **more}


class _LocalRoom:
    """This instance's members of one room and its broker subscription."""

    __slots__ = ("members", "pending", "subscribed")

    def __init__(self, subscribed: asyncio.Task[None]) -> None:
        self.members: set[ServerConnection] = set()
        self.pending = 0
        self.subscribed = subscribed


class RealtimeServer:
    """The WebSocket service of one instance."""

    def __init__(self, settings: Settings, *, metrics: Metrics, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.metrics = metrics
        self.verifier = verifier
        self.broker: Broker = create_broker(settings, self._deliver)
        self.draining = False
        self.port = 0
        self._rooms: dict[RoomName, _LocalRoom] = {}
        self._sessions: set[Session] = set()
        self._presence_pending: dict[RoomName, list[bytes]] = {}
        self._open = 0
        self._typing = TypingTracker(ttl=settings.typing_ttl, throttle=settings.typing_throttle)
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._allowed_origins = frozenset(settings.allowed_origins)
        metrics.watch(rooms=lambda: len(self._rooms), send_queue=self._send_queue_bytes)

    # lifecycle

    async def start(self) -> None:
        await self.broker.start()
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.ws_port,
            process_request=self._process_request,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            ping_interval=self.settings.ping_interval,
            ping_timeout=self.settings.ping_timeout,
            open_timeout=10,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep_typing())
        logger.info("websocket server listening", extra={"port": self.port})

    @property
    def ready(self) -> bool:
        return not self.draining and self._server is not None and self.broker.ready

    async def drain(self, seconds: float) -> None:
        """Refuse new handshakes, close open connections with 1012 in jittered batches
        spread over the first half of ``seconds``, wait for their closing handshakes and
        handlers (presence leaves are published as each one ends), reset what is left,
        then stop the broker. Returns within ``seconds`` minus a reserve for the broker and
        the HTTP service (:func:`drain_budget`); at once when nothing is connected."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_budget(seconds)
        self.draining = True
        server = self._server
        if server is None:
            return
        connections = [s.ws for s in self._sessions]
        random.shuffle(connections)
        batches = max(1, min(len(connections), 20))
        size = math.ceil(len(connections) / batches) if connections else 0
        interval = seconds / 2 / batches
        logger.info("draining", extra={"count": len(connections)})
        closing: list[asyncio.Task[None]] = []
        for start in range(0, len(connections), max(size, 1)):
            for ws in connections[start : start + size]:
                closing.append(
                    asyncio.create_task(
                        self._close(ws, CloseCode.SERVICE_RESTART, "server restarting")
                    )
                )
            if start + size < len(connections):
                await asyncio.sleep(random.uniform(0.5, 1.0) * interval)  # noqa: S311 jitter
        if closing:
            await asyncio.wait(closing, timeout=max(deadline - loop.time(), 0.0))
        # connections still open (peers that never answered the close, handshakes that were
        # under way): websockets closes them with 1012; reset what remains at the deadline
        server.close(code=CloseCode.SERVICE_RESTART, reason="server restarting")
        try:
            async with asyncio.timeout_at(deadline):
                await server.wait_closed()
        except TimeoutError:
            for ws in list(server.all_connections):
                _reset(ws)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await server.wait_closed()
        for task in closing:
            task.cancel()
        await self.stop()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._server is not None:
            self._server.close(code=CloseCode.GOING_AWAY)
            await self._server.wait_closed()
        await self.broker.close()

    async def _close(self, ws: ServerConnection, code: CloseCode, reason: str = "") -> None:
        self.metrics.closes.labels(code=str(int(code))).inc()
        # a close reason is at most 123 bytes of UTF-8
        await ws.close(code, reason.encode()[:123].decode(errors="ignore"))

    # handshake

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.draining:
            return self._refuse(ws, 503, "draining", "server is draining, retry another instance")
        if self._open >= self.settings.max_connections:
            return self._refuse(ws, 503, "capacity", "too many connections, retry later")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._allowed_origins:
            return self._refuse(ws, 403, "origin", f"origin {origin[:100]!r} is not allowed")
        return None

    def _refuse(self, ws: ServerConnection, status: int, reason: str, text: str) -> Response:
        self.metrics.handshakes_refused.labels(reason=reason).inc()
        logger.debug("handshake refused", extra={"reason": reason, "code": status})
        return ws.respond(status, text + "\n")

    # connection

    async def _handle(self, ws: ServerConnection) -> None:
        self._open += 1
        session: Session | None = None
        try:
            session = await self._authenticate(ws)
            self._sessions.add(session)
            self.metrics.connections.inc()
            await self._serve(session)
        except ConnectionClosed as exc:
            sent = exc.sent
            if sent is not None and sent.code in _CLOSED_BY_WEBSOCKETS and not exc.rcvd_then_sent:
                self.metrics.closes.labels(code=str(sent.code)).inc()
        except Exception as exc:
            code, reason = close_for(exc)
            extra = session.log(code=int(code)) if session else {"code": int(code)}
            if code == CloseCode.INTERNAL_ERROR:
                logger.error("connection failed", exc_info=True, extra=extra)
            else:
                logger.info("closing connection: %s", reason, extra=extra)
            if code == CloseCode.RATE_LIMITED:
                await self._close_promptly(ws, code, reason)
            else:
                await self._close(ws, code, reason)
        finally:
            self._open -= 1
            if session is not None:
                if session.expiry is not None:
                    session.expiry.cancel()
                self._sessions.discard(session)
                self.metrics.connections.dec()
                await self._disconnect(session)

    async def _authenticate(self, ws: ServerConnection) -> Session:
        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                data = await ws.recv()
        except TimeoutError:
            raise CloseConnection(
                CloseCode.HELLO_TIMEOUT, f"no hello within {self.settings.hello_timeout:g}s"
            ) from None
        if not isinstance(data, str):
            raise CloseConnection(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
        self.metrics.messages_in.inc()
        try:
            frame = parse(data)
        except FrameError as exc:
            if exc.field == "token":  # a hello whose token is missing or malformed
                raise CloseConnection(CloseCode.UNAUTHORIZED, INVALID_TOKEN) from None
            raise CloseConnection(
                CloseCode.HELLO_REQUIRED, f"first frame must be a valid hello: {exc.code}"
            ) from None
        if not isinstance(frame, Hello):
            raise CloseConnection(CloseCode.HELLO_REQUIRED, "first frame must be hello")
        version = negotiate(frame.versions)
        grant = self.verifier.grant(frame.token)
        user = grant.user
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(
            self.settings.rate_limit_per_second, self.settings.rate_limit_burst, loop.time()
        )
        session = Session(ws, ConnId(secrets.token_hex(8)), user, bucket)
        self._schedule_expiry(session, grant)
        ws.response = None  # the handshake response is not read again: free its headers
        self._write(ws, encode_welcome(version, session.conn, user, self.settings.ping_interval))
        logger.debug("authenticated", extra=session.log(version=version))
        return session

    async def _serve(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        ws = session.ws
        async for data in ws:
            if not isinstance(data, str):
                raise CloseConnection(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
            if not session.bucket.take(loop.time()):
                self.metrics.rate_limited.inc()
                raise CloseConnection(CloseCode.RATE_LIMITED, "rate limit exceeded")
            self.metrics.messages_in.inc()
            ref: str | None = None
            try:
                frame, ref = parse_with_ref(data)
                await self._dispatch(session, frame)
            except BrokerError as exc:
                logger.warning("broker unavailable: %s", exc, extra=session.log())
                self._error(ws, FrameError(ErrorCode.UNAVAILABLE, _UNAVAILABLE, ref=ref))
            except FrameError as exc:
                if exc.ref is None:
                    exc.ref = ref
                self._error(ws, exc)

    # token expiry

    def _schedule_expiry(self, session: Session, grant: Grant) -> None:
        """Close the connection with 4001 ``token expired`` when the token expires (``exp``
        plus the verifier's clock-skew leeway), unless a ``refresh`` moves it first."""
        if session.expiry is not None:
            session.expiry.cancel()
        delay = grant.expires + self.verifier.leeway - time.time()
        session.expiry = asyncio.get_running_loop().call_later(
            max(delay, 0.0), self._expire, session
        )

    def _expire(self, session: Session) -> None:
        session.expiry = None
        if session.ws.protocol.state is _OPEN:
            logger.info("closing connection: %s", TOKEN_EXPIRED, extra=session.log(code=4001))
            self._spawn(self._close(session.ws, CloseCode.UNAUTHORIZED, TOKEN_EXPIRED))

    def _on_refresh(self, session: Session, frame: Refresh) -> None:
        try:
            grant = self.verifier.grant(frame.token)
        except CloseConnection as exc:
            raise FrameError(ErrorCode.INVALID_FIELD, exc.reason, field="token") from None
        if grant.user.id != session.user.id:
            raise FrameError(ErrorCode.INVALID_FIELD, "token is for another user", field="token")
        self._schedule_expiry(session, grant)
        self._write(session.ws, encode_refreshed(int(grant.expires)))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _error(self, ws: ServerConnection, exc: FrameError) -> None:
        self.metrics.errors.labels(code=exc.code.value).inc()
        self._write(ws, encode_error(exc))

    async def _dispatch(self, session: Session, frame: ClientFrame) -> None:
        if isinstance(frame, Message):
            await self._on_message(session, frame)
        elif isinstance(frame, Typing):
            self._require_joined(session, frame.room)
            await self._on_typing(session, frame)
        elif isinstance(frame, Join):
            await self._on_join(session, frame)
        elif isinstance(frame, Leave):
            self._require_joined(session, frame.room)
            await self._leave(session, frame.room)
            self._write(session.ws, encode_left(frame.room))
        elif isinstance(frame, Ping):
            self._write(session.ws, encode_pong(frame.id))
        elif isinstance(frame, Refresh):
            self._on_refresh(session, frame)
        else:
            raise FrameError(ErrorCode.ALREADY_AUTHENTICATED, "hello was already accepted")

    @staticmethod
    def _require_joined(session: Session, room: RoomName, ref: str | None = None) -> None:
        if room not in session.rooms:
            raise FrameError(
                ErrorCode.NOT_JOINED, f"not joined to room {room}", field="room", ref=ref
            )

    def _require_broker(self) -> None:
        if not self.broker.ready:
            raise FrameError(ErrorCode.UNAVAILABLE, _UNAVAILABLE)

    # rooms

    async def _on_join(self, session: Session, frame: Join) -> None:
        room = frame.room
        self._require_broker()
        rejoin = room in session.rooms
        if not rejoin and len(session.rooms) >= self.settings.max_rooms_per_connection:
            raise FrameError(
                ErrorCode.TOO_MANY_ROOMS,
                f"at most {self.settings.max_rooms_per_connection} rooms per connection",
                field="room",
            )
        try:
            local = self._rooms.get(room)
            if local is None:
                local = self._rooms[room] = _LocalRoom(
                    asyncio.create_task(self.broker.subscribe(room))
                )
            local.pending += 1
            try:
                await asyncio.shield(local.subscribed)
                came_online = (
                    False
                    if rejoin
                    else await self.broker.presence_join(room, session.user, session.conn)
                )
                if not rejoin:
                    session.rooms.add(room)
                snapshot = await self.broker.presence_snapshot(room)
                if frame.since is None:
                    epoch, offset = await self.broker.last(room)
                    frames: list[str] = []
                    recovered: bool | None = None
                else:
                    recovery = await self.broker.history(
                        room, frame.since.offset, frame.since.epoch
                    )
                    epoch, offset = recovery.epoch, recovery.offset
                    frames, recovered = recovery.frames, recovery.recovered
            finally:
                local.pending -= 1
        except BrokerError:
            if not rejoin:  # undo the half-done join; the caller answers unavailable
                with contextlib.suppress(Exception):
                    await self._leave(session, room)
            raise
        ws = session.ws
        self._write(
            ws,
            encode_joined(
                room,
                epoch=epoch,
                offset=offset,
                presence=snapshot,
                recovered=recovered,
                replayed=len(frames),
            ),
        )
        for replay in frames:
            self._write(ws, replay)
        # no await since the history read: live frames follow the replay without a gap
        local.members.add(ws)
        if came_online:
            try:
                await self.broker.publish_ephemeral(
                    room, Kind.PRESENCE, encode_presence(room, session.user, online=True)
                )
            except BrokerError as exc:
                # the join stands; others see the user in their next snapshot
                logger.warning("presence publish failed: %s", exc, extra=session.log(room))

    async def _leave(self, session: Session, room: RoomName) -> None:
        joined = room in session.rooms
        session.rooms.discard(room)
        local = self._rooms.get(room)
        if local is not None:
            local.members.discard(session.ws)
        await self._release(room)
        if not joined:
            return
        went_offline = await self.broker.presence_leave(room, session.user, session.conn)
        if went_offline:
            self._typing.forget(room, session.user)
            await self.broker.publish_ephemeral(
                room, Kind.PRESENCE, encode_presence(room, session.user, online=False)
            )

    async def _release(self, room: RoomName) -> None:
        local = self._rooms.get(room)
        if local is not None and not local.members and not local.pending:
            del self._rooms[room]
            await self.broker.unsubscribe(room)

    async def _disconnect(self, session: Session) -> None:
        for room in list(session.rooms):
            try:
                await self._leave(session, room)
            except Exception:
                logger.warning("leave on disconnect failed", exc_info=True, extra=session.log(room))

    # messages and typing

    async def _on_message(self, session: Session, frame: Message) -> None:
        self._require_joined(session, frame.room, frame.id)
        self._require_broker()
        try:
            appended = await self.broker.append(frame.room, session.user, frame.id, frame.body)
        except BrokerError as exc:
            logger.warning("append failed: %s", exc, extra=session.log(frame.room))
            raise FrameError(ErrorCode.UNAVAILABLE, _UNAVAILABLE, ref=frame.id) from None
        self._write(
            session.ws,
            encode_ack(
                frame.room, frame.id, appended.offset, appended.epoch, duplicate=appended.duplicate
            ),
        )
        if self._typing.clear(frame.room, session.user):
            await self.broker.publish_ephemeral(
                frame.room, Kind.TYPING, encode_typing(frame.room, session.user, active=False)
            )

    async def _on_typing(self, session: Session, frame: Typing) -> None:
        if frame.active:
            now = asyncio.get_running_loop().time()
            forward = self._typing.start(frame.room, session.user, now)
        else:
            forward = self._typing.stop(frame.room, session.user)
        if forward:
            await self.broker.publish_ephemeral(
                frame.room,
                Kind.TYPING,
                encode_typing(frame.room, session.user, active=frame.active),
            )

    async def _sweep_typing(self) -> None:
        period = min(self.settings.typing_ttl, self.settings.typing_throttle) / 4
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            for room, user in self._typing.expired(loop.time()):
                try:
                    await self.broker.publish_ephemeral(
                        room, Kind.TYPING, encode_typing(room, user, active=False)
                    )
                except Exception:
                    logger.warning("typing expiry publish failed", exc_info=True)

    # writes

    def _deliver(self, room: RoomName, kind: Kind, frame: str) -> None:
        """The broker's ``on_event``: push one encoded frame to every local member."""
        local = self._rooms.get(room)
        if local is None:
            return
        if kind is Kind.PRESENCE:
            pending = self._presence_pending.get(room)
            if pending is None:
                self._presence_pending[room] = [_wire(frame)]
                asyncio.get_running_loop().call_later(
                    PRESENCE_BATCH_SECONDS, self._flush_presence, room
                )
            else:
                pending.append(_wire(frame))
            return
        self._fanout(local.members, _wire(frame))

    def _flush_presence(self, room: RoomName) -> None:
        frames = self._presence_pending.pop(room, [])
        local = self._rooms.get(room)
        if local is not None and frames:
            self._fanout(local.members, b"".join(frames), len(frames))

    def _write(self, ws: ServerConnection, frame: str) -> None:
        self._fanout((ws,), _wire(frame))

    def _fanout(self, members: Iterable[ServerConnection], wire: bytes, frames: int = 1) -> None:
        """Write ``wire`` (``frames`` serialized frames) to every open member, without
        blocking; close the members whose send buffer went above the limit."""
        limit = self.settings.send_buffer_bytes
        sent = dropped = 0
        slow: list[ServerConnection] = []
        for ws in members:
            protocol = ws.protocol
            if protocol.state is not _OPEN:
                dropped += 1
                continue
            transport = ws.transport
            try:
                transport.write(wire)
            except Exception:
                dropped += 1
                continue
            if transport.get_write_buffer_size() > limit:
                slow.append(ws)
            sent += 1
        self.metrics.messages_out.inc(sent * frames)
        if dropped:
            self.metrics.dropped.inc(dropped * frames)
        for ws in slow:
            self._close_slow(ws)

    def _close_slow(self, ws: ServerConnection) -> None:
        """Send 4009 behind the backlog without waiting for the client."""
        self.metrics.slow_consumers.inc()
        logger.info("closing slow consumer", extra={"code": int(CloseCode.SLOW_CONSUMER)})
        self._send_close(ws, CloseCode.SLOW_CONSUMER, "send buffer full")
        self._spawn(_end_promptly(ws))

    async def _close_promptly(self, ws: ServerConnection, code: CloseCode, reason: str) -> None:
        """Queue the close frame, then end the TCP connection without waiting for the
        client's answer (4008, 4009): see :func:`_end_promptly`."""
        self._send_close(ws, code, reason)
        await _end_promptly(ws)

    def _send_close(self, ws: ServerConnection, code: CloseCode, reason: str) -> None:
        """Queue a close frame now (the state leaves OPEN: nothing more is written)."""
        self.metrics.closes.labels(code=str(int(code))).inc()
        if ws.protocol.state is _OPEN:
            ws.protocol.send_close(code, reason)
            ws.send_data()

    def _send_queue_bytes(self) -> float:
        total = 0
        for session in self._sessions:
            transport = session.ws.transport
            if transport is not None and not transport.is_closing():
                total += transport.get_write_buffer_size()
        return float(total)


def drain_budget(seconds: float) -> float:
    """Seconds of a ``DRAIN_SECONDS`` drain given to the WebSocket connections: all but a
    reserve (a tenth, at most 1 s) for stopping the broker and the HTTP service."""
    return seconds - min(seconds / 10, 1.0)


def _wire(frame: str) -> bytes:
    """The bytes of one unmasked, uncompressed text frame: the same for every recipient."""
    return Frame(Opcode.TEXT, frame.encode()).serialize(mask=False, extensions=[])


async def _end_promptly(ws: ServerConnection) -> None:
    """After a close frame was queued: a FIN once the frame has left this host (the
    socket's send queue is empty), an RST dropping the kernel's send queue after
    ``ABORT_AFTER_SECONDS`` at the latest."""
    transport = ws.transport
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ABORT_AFTER_SECONDS
    while ws.protocol.state is not State.CLOSED and not transport.is_closing():
        if transport.get_write_buffer_size() == 0 and _unsent_bytes(ws) == 0:
            transport.close()
            return
        if loop.time() >= deadline:
            _reset(ws)
            return
        await asyncio.sleep(0.02)


def _unsent_bytes(ws: ServerConnection) -> int:
    """Bytes in the kernel's send queue of the connection's socket (not yet acknowledged
    by the peer); 0 when it cannot be read."""
    sock = ws.transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    queued: int = struct.unpack("i", raw)[0]
    return queued


def _reset(ws: ServerConnection) -> None:
    """Abort with an RST: SO_LINGER 0 makes the kernel drop its send queue at once."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    ws.transport.abort()
