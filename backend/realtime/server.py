"""The WebSocket service: lifecycle and drain, handshakes, hello and auth, the read loop.

This layer only moves frames: parsing and validation live in :mod:`realtime.protocol`, local
rooms and the broker hand-over in :mod:`realtime.hub`, every write (and every websockets
internal) in :mod:`realtime.fanout`, shared state behind :mod:`realtime.broker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from realtime.auth import INVALID_TOKEN, TOKEN_EXPIRED, Grant, TokenVerifier
from realtime.broker import Broker, BrokerError
from realtime.encode import encode_error, encode_left, encode_pong, encode_refreshed, encode_welcome
from realtime.expiry import Expiry
from realtime.fanout import Fanout, forget_handshake, is_open, queued_bytes, reset_all
from realtime.hub import UNAVAILABLE, Hub, Session
from realtime.ids import ConnId
from realtime.keepalive import Keepalive
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
    negotiate,
    parse,
    parse_with_ref,
)
from realtime.rooms import TokenBucket
from realtime.settings import Settings

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
_CLOSED_BY_WEBSOCKETS = frozenset({1002, 1007, 1009, 1011})
"""Close codes sent without :meth:`RealtimeServer._close` (websockets' protocol error, invalid
UTF-8, frame too big; the keepalive's 1011 timeout): counted in ``realtime_closes_total``
when the server sent them first."""


class RealtimeServer:
    """The WebSocket service of one instance."""

    def __init__(self, settings: Settings, *, metrics: Metrics, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.metrics = metrics
        self.verifier = verifier
        self.fanout = Fanout(metrics, settings.send_buffer_bytes, self._spawn)
        self.hub = Hub(settings, self.fanout)
        self.keepalive = Keepalive(self.fanout, settings.ping_interval, settings.ping_timeout)
        self._expiry = Expiry(self._expire)
        self.draining = False
        self.port = 0
        self._sessions: set[Session] = set()
        self._open = 0
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._allowed_origins = frozenset(settings.allowed_origins)
        metrics.watch(rooms=lambda: len(self.hub.rooms), send_queue=self._queued_bytes)

    # lifecycle

    async def start(self) -> None:
        await self.hub.start()
        self.keepalive.start()
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.ws_port,
            process_request=self._process_request,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,  # one task pings every connection: realtime.keepalive
            open_timeout=10,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
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
            reset_all(server)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await server.wait_closed()
        for task in closing:
            task.cancel()
        await self.stop()

    async def stop(self) -> None:
        await self.keepalive.stop()
        self._expiry.close()
        await self.hub.stop_sweeper()
        if self._server is not None:
            self._server.close(code=CloseCode.GOING_AWAY)
            await self._server.wait_closed()
        await self.broker.close()

    async def _close(self, ws: ServerConnection, code: CloseCode, reason: str = "") -> None:
        self.metrics.closes.labels(code=str(int(code))).inc()
        self.fanout.flush(ws)  # the frames of this loop turn go before the close frame
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
            # the read loop, inline: an idle connection waits in recv() under this one
            # coroutine (no async generator, no further frame: less memory per connection)
            recv, receive = ws.recv, self._receive
            while True:
                await receive(session, await recv())
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
                await self.fanout.close_promptly(ws, code, reason)
            else:
                await self._close(ws, code, reason)
        finally:
            self._open -= 1
            self.keepalive.unregister(ws)
            if session is not None:
                self._expiry.cancel(session)
                self._sessions.discard(session)
                self.metrics.connections.dec()
                await self.hub.disconnect(session)

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
        self.keepalive.register(ws)
        forget_handshake(ws)
        self.fanout.write(
            ws, encode_welcome(version, session.conn, user, self.settings.ping_interval)
        )
        logger.debug("authenticated", extra=session.log(version=version))
        return session

    async def _receive(self, session: Session, data: str | bytes) -> None:
        """One frame of the read loop: the frame checks, the rate limit, then dispatch;
        an error frame for what the client got wrong, a close for the rest."""
        if not isinstance(data, str):
            raise CloseConnection(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
        if not session.bucket.take(asyncio.get_running_loop().time()):
            self.metrics.rate_limited.inc()
            raise CloseConnection(CloseCode.RATE_LIMITED, "rate limit exceeded")
        self.metrics.messages_in.inc()
        ref: str | None = None
        try:
            frame, ref = parse_with_ref(data)
            await self._dispatch(session, frame)
        except BrokerError as exc:
            logger.warning("broker unavailable: %s", exc, extra=session.log())
            self._error(session.ws, FrameError(ErrorCode.UNAVAILABLE, UNAVAILABLE, ref=ref))
        except FrameError as exc:
            if exc.ref is None:
                exc.ref = ref
            self._error(session.ws, exc)

    # token expiry

    def _schedule_expiry(self, session: Session, grant: Grant) -> None:
        """Close the connection with 4001 ``token expired`` when the token expires (``exp``
        plus the verifier's clock-skew leeway), unless a ``refresh`` moves it first."""
        delay = grant.expires + self.verifier.leeway - time.time()
        self._expiry.schedule(session, asyncio.get_running_loop().time() + max(delay, 0.0))

    def _expire(self, session: Session) -> None:
        if is_open(session.ws):
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
        self.fanout.write(session.ws, encode_refreshed(int(grant.expires)))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _error(self, ws: ServerConnection, exc: FrameError) -> None:
        self.metrics.errors.labels(code=exc.code.value).inc()
        self.fanout.write(ws, encode_error(exc))

    async def _dispatch(self, session: Session, frame: ClientFrame) -> None:
        if isinstance(frame, Message):
            await self.hub.message(session, frame)
        elif isinstance(frame, Typing):
            await self.hub.typing(session, frame)
        elif isinstance(frame, Join):
            await self.hub.join(session, frame)
        elif isinstance(frame, Leave):
            self.hub.require_joined(session, frame.room)
            await self.hub.leave(session, frame.room)
            self.fanout.write(session.ws, encode_left(frame.room))
        elif isinstance(frame, Ping):
            self.fanout.write(session.ws, encode_pong(frame.id))
        elif isinstance(frame, Refresh):
            self._on_refresh(session, frame)
        else:
            raise FrameError(ErrorCode.ALREADY_AUTHENTICATED, "hello was already accepted")

    @property
    def broker(self) -> Broker:
        return self.hub.broker

    @broker.setter
    def broker(self, broker: Broker) -> None:
        self.hub.broker = broker

    def _queued_bytes(self) -> float:
        return queued_bytes(session.ws for session in self._sessions)


def drain_budget(seconds: float) -> float:
    """Seconds of a ``DRAIN_SECONDS`` drain given to the WebSocket connections: all but a
    reserve (a tenth, at most 1 s) for stopping the broker and the HTTP service."""
    return seconds - min(seconds / 10, 1.0)
