"""Writes to WebSocket connections: the ONLY module that touches websockets internals.

Every frame the server sends goes through :class:`Fanout` (replies to one connection and
broadcasts to a room alike), so ordering, buffering and the slow-consumer rule live in one
place. The internals relied on, each pinned by tests/backend/test_fanout.py against the
websockets version in backend/requirements.txt:

* :meth:`Frame.serialize <websockets.frames.Frame.serialize>` with ``mask=False`` and no
  extensions: server frames are unmasked and compression is off, so the bytes on the wire are
  the same for every recipient; a broadcast is framed once (:func:`wire`);
* ``ServerConnection.transport``: ``write`` (non-blocking, no task or await per recipient),
  ``get_write_buffer_size``, ``is_closing``, ``close``, ``abort``, ``get_extra_info("socket")``;
* ``ServerConnection.protocol``: ``state`` and ``send_close``, then ``ServerConnection.send_data``
  to flush the close frame without awaiting;
* ``Server.all_connections``: every connection, open or closing (the drain resets those
  left at its deadline, :func:`reset_all`);
* ``ServerConnection.response``: set to ``None`` once the handshake is done (its headers are
  not read again; this saves memory per idle connection);
* keepalive without a task per connection (:mod:`realtime.keepalive` decides when):
  ``ServerConnection.pending_pings`` (payload -> (future, send time), which websockets
  resolves and removes when the pong arrives, and fails when the connection closes),
  ``protocol.send_ping`` and ``protocol.fail`` (the 1011 close websockets' own keepalive
  sends).

A connection whose send buffer grows above ``SEND_BUFFER_BYTES`` is closed with 4009 while
everyone else keeps receiving.

Every frame to a client, replies (``write``: welcome, joined, replay, ack, error, pong) and
room frames (``broadcast``: messages, typing, batched presence) alike, leaves through the two
methods of :class:`Fanout`, in the order the caller hands them over.

**Coalescing.** Frames are not written at once: each member has a pending buffer, filled in
call order by both methods, and written with one ``transport.write`` per member when the
event loop has gone round without queueing anything new: the flush is a ``loop.call_soon``
callback (no timer) that looks again one loop iteration later (the loop polls its sockets
in between, without waiting) as long as that iteration queued more frames, at most
``FLUSH_MAX_TURNS`` times. A lone frame at low load waits for one idle loop iteration
(microseconds); under load, the frames of the reads of several iterations share one write.
A member that gets 40 frames before the flush costs one system call instead of 40. The
order per connection is the call order, so a caller that hands over the room's copy before
the ack gets them on the wire in that order (:meth:`realtime.hub.Hub.message`).

**Bounded buffers, 4009 unchanged.** A member is coalesced only while its transport holds
at most half of ``SEND_BUFFER_BYTES`` when its first frame of the turn is queued, and
everything pending is written as soon as more than half the limit was queued in the turn
(to anyone), so a coalesced member never goes above the limit unwritten. A member whose
transport holds more is written to at once, frame by frame, as without coalescing. Either
way the transport's buffer after a write decides, as before: above the limit means 4009. A
close frame (4008, 4009, 1012, 4001...) is queued behind the member's pending frames
(:meth:`Fanout.flush`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import socket
import struct
import termios
from collections.abc import Callable, Collection, Coroutine, Iterable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from realtime.metrics import Metrics
from realtime.protocol import CloseCode

logger = logging.getLogger(__name__)

ABORT_AFTER_SECONDS = 1.0
"""After a 4008 or 4009 close frame is queued, the connection is closed (FIN) as soon as
the frame has left this host (the socket's send queue is empty), and reset (RST, which
drops whatever is still queued in the kernel) when that has not happened within this many
seconds. docs/PROTOCOL.md documents the bound."""

FLUSH_MAX_TURNS = 4
"""Loop iterations a flush waits at most for more frames (each one only if the previous
queued some): under load, up to five iterations' frames to a member leave in one write.
Measured in docs/PERFORMANCE.md ("Waiting for an idle loop iteration")."""

KEEPALIVE_TIMEOUT = "keepalive ping timeout"
"""The 1011 close reason when a ping has no pong within PING_TIMEOUT (docs/PROTOCOL.md)."""

_OPEN = State.OPEN
_LINGER_RESET = struct.pack("ii", 1, 0)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def wire(frame: str) -> bytes:
    """The bytes of one unmasked, uncompressed text frame: the same for every recipient."""
    return Frame(Opcode.TEXT, frame.encode()).serialize(mask=False, extensions=[])


def is_open(ws: ServerConnection) -> bool:
    return ws.protocol.state is _OPEN


def forget_handshake(ws: ServerConnection) -> None:
    """The handshake response is not read again: free its headers. (The request cannot be
    freed this way: websockets' parser generator keeps it as a local for the connection's
    life, and takes ``request is None`` to mean a handshake is still to come.)"""
    ws.response = None


class Fanout:
    """Coalesced non-blocking writes with the slow-consumer rule; ``spawn`` runs background
    closes. See the module docstring for the order and the buffer bound."""

    def __init__(self, metrics: Metrics, send_buffer_bytes: int, spawn: Spawn) -> None:
        self._metrics = metrics
        self._limit = send_buffer_bytes
        self._half = send_buffer_bytes // 2
        self._spawn = spawn
        self._pending: dict[ServerConnection, list[bytes]] = {}
        self._extra: dict[ServerConnection, int] = {}
        """Frames beyond one per pending chunk (a batch of presence diffs is one chunk)."""
        self._queued = 0
        """Bytes queued since the last flush, to anyone: a bound on any member's pending."""
        self._scheduled = False
        self._turns = 0
        """Loop iterations the scheduled flush has waited so far."""
        self._seen = 0
        """``_queued`` when the scheduled flush last looked: unchanged means an idle turn."""

    def write(self, ws: ServerConnection, frame: str) -> None:
        """Send one encoded frame to one connection."""
        self.broadcast((ws,), wire(frame))

    def broadcast(
        self, members: Collection[ServerConnection], data: bytes, frames: int = 1
    ) -> None:
        """Queue ``data`` (``frames`` serialized frames) for every open member, without
        blocking; it is written at the end of this loop turn. A member whose transport
        already holds more than half the limit is written to at once, as without
        coalescing, and closed with 4009 when its buffer passes the limit."""
        pending = self._pending
        half = self._half
        dropped = 0
        direct: list[ServerConnection] = []
        for ws in members:
            chunks = pending.get(ws)
            if chunks is not None:
                chunks.append(data)
                continue
            if ws.protocol.state is not _OPEN:
                dropped += 1
                continue
            if ws.transport.get_write_buffer_size() > half:
                direct.append(ws)
                continue
            pending[ws] = [data]
        if frames > 1:
            extra = self._extra
            for ws in members:
                if ws in pending:
                    extra[ws] = extra.get(ws, 0) + frames - 1
        if dropped:
            self._metrics.dropped.inc(dropped * frames)
        for ws in direct:
            if self._send(ws, [data], frames):
                self._close_slow(ws)
        self._queued += len(data)
        if self._queued > half:  # a member's pending bytes stay below half the limit
            self._flush_all()
        elif pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_when_idle)

    def flush(self, ws: ServerConnection) -> None:
        """Write what is pending for ``ws`` now (before a close frame)."""
        chunks = self._pending.pop(ws, None)
        if chunks is not None:
            frames = len(chunks) + self._extra.pop(ws, 0)
            if self._send(ws, chunks, frames):
                self._close_slow(ws)

    def _flush_when_idle(self) -> None:
        """The scheduled flush: wait one more loop iteration while the last one queued
        frames (at most ``FLUSH_MAX_TURNS``), then write."""
        if self._queued != self._seen and self._turns < FLUSH_MAX_TURNS:
            self._turns += 1
            self._seen = self._queued
            asyncio.get_running_loop().call_soon(self._flush_when_idle)
            return
        self._scheduled = False
        self._turns = 0
        self._flush_all()

    def _flush_all(self) -> None:
        """One write per member with pending frames: at the scheduled flush, or at once
        when more than half the limit was queued (the scheduled flush then finds less or
        nothing to write)."""
        self._queued = self._seen = 0
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        extra, self._extra = self._extra, {}
        limit = self._limit
        sent = dropped = 0
        slow: list[ServerConnection] = []
        for ws, chunks in pending.items():
            count = len(chunks) + extra.get(ws, 0) if extra else len(chunks)
            if ws.protocol.state is not _OPEN:
                dropped += count
                continue
            transport = ws.transport
            try:
                transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            except Exception:
                dropped += count
                continue
            sent += count
            if transport.get_write_buffer_size() > limit:
                slow.append(ws)
        self._metrics.messages_out.inc(sent)
        if dropped:
            self._metrics.dropped.inc(dropped)
        for ws in slow:
            self._close_slow(ws)

    def _send(self, ws: ServerConnection, chunks: list[bytes], frames: int) -> bool:
        """One write of ``chunks`` to one member now; true when it went above the limit."""
        if ws.protocol.state is not _OPEN:
            self._metrics.dropped.inc(frames)
            return False
        transport = ws.transport
        try:
            transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except Exception:
            self._metrics.dropped.inc(frames)
            return False
        self._metrics.messages_out.inc(frames)
        return bool(transport.get_write_buffer_size() > self._limit)

    def _close_slow(self, ws: ServerConnection) -> None:
        """Send 4009 behind the backlog without waiting for the client."""
        self._metrics.slow_consumers.inc()
        logger.info("closing slow consumer", extra={"code": int(CloseCode.SLOW_CONSUMER)})
        self.send_close(ws, CloseCode.SLOW_CONSUMER, "send buffer full")
        self._spawn(end_promptly(ws))

    async def close_promptly(self, ws: ServerConnection, code: CloseCode, reason: str) -> None:
        """Queue the close frame, then end the TCP connection without waiting for the
        client's answer (4008, 4009): see :func:`end_promptly`."""
        self.send_close(ws, code, reason)
        await end_promptly(ws)

    def ping(self, ws: ServerConnection) -> bytes | None:
        """Send a keepalive ping now and return its payload (None when the connection is
        not open). Like websockets' ``ping()`` but without awaiting the transport's drain:
        one slow client must not hold up the pings of everyone else."""
        if ws.protocol.state is not _OPEN:
            return None
        pings = ws.pending_pings
        data = struct.pack("!I", random.getrandbits(32))
        while data in pings:
            data = struct.pack("!I", random.getrandbits(32))
        loop = asyncio.get_running_loop()
        pings[data] = (loop.create_future(), loop.time())
        ws.protocol.send_ping(data)
        ws.send_data()
        return data

    @staticmethod
    def pong_missing(ws: ServerConnection, data: bytes) -> bool:
        """True while the connection is open and the ping ``data`` has no pong yet (a pong
        acknowledges its ping and every earlier one)."""
        return ws.protocol.state is _OPEN and data in ws.pending_pings

    def fail_keepalive(self, ws: ServerConnection) -> None:
        """Close with 1011 ``keepalive ping timeout`` (what websockets' own keepalive
        sends), behind the pending frames, and end the TCP connection promptly: the peer
        is not answering, so its closing handshake is not awaited. The connection's
        handler counts the close (its ``recv`` raises with the 1011 sent)."""
        self.flush(ws)
        if ws.protocol.state is _OPEN:
            ws.protocol.fail(CloseCode.INTERNAL_ERROR, KEEPALIVE_TIMEOUT)
            ws.send_data()
            self._spawn(end_promptly(ws))

    def send_close(self, ws: ServerConnection, code: CloseCode, reason: str) -> None:
        """Queue a close frame now, behind the pending frames (the state leaves OPEN:
        nothing more is written)."""
        self._metrics.closes.labels(code=str(int(code))).inc()
        self.flush(ws)
        if ws.protocol.state is _OPEN:
            ws.protocol.send_close(code, reason)
            ws.send_data()


def queued_bytes(connections: Iterable[ServerConnection]) -> float:
    """Bytes waiting in the transports' send buffers (the ``send_queue`` gauge)."""
    total = 0
    for ws in connections:
        transport = ws.transport
        if transport is not None and not transport.is_closing():
            total += transport.get_write_buffer_size()
    return float(total)


async def end_promptly(ws: ServerConnection) -> None:
    """After a close frame was queued: a FIN once the frame has left this host (the
    socket's send queue is empty), an RST dropping the kernel's send queue after
    ``ABORT_AFTER_SECONDS`` at the latest."""
    transport = ws.transport
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ABORT_AFTER_SECONDS
    while ws.protocol.state is not State.CLOSED and not transport.is_closing():
        if transport.get_write_buffer_size() == 0 and unsent_bytes(ws) == 0:
            transport.close()
            return
        if loop.time() >= deadline:
            reset(ws)
            return
        await asyncio.sleep(0.02)


def unsent_bytes(ws: ServerConnection) -> int:
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


def reset(ws: ServerConnection) -> None:
    """Abort with an RST: SO_LINGER 0 makes the kernel drop its send queue at once."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    ws.transport.abort()


def reset_all(server: Server) -> None:
    """Reset every connection the server still has, open or closing."""
    for ws in list(server.all_connections):
        reset(ws)
