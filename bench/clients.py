"""One load-generator process: many picows WebSocket clients on one uvloop event loop.

The coordinator (:mod:`bench.loadgen`) drives each process through a pipe with small
commands (open connections, publish for a while, churn, report counters). The per-frame path
is a few C-level bytes operations: a delivery is counted with ``bytes.count`` and only
*sampled* connections parse send times, so the generator stays cheaper than any server.
"""

from __future__ import annotations

import asyncio
import os
import resource
import ssl
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.protocols import (
    MARKER,
    PROTOCOLS,
    RETRY_PAUSE,
    HandshakeError,
    Protocol,
    sender_tag,
)

MAX_SAMPLES = 200_000
"""Latency samples kept per process per window (a uniform stride is not needed: windows are
short and every sampled connection records every delivery)."""
OPEN_CONCURRENCY = 64
"""Handshakes in flight per process while opening connections."""
HANDSHAKE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ConnSpec:
    """How to open one client: where, as whom, into which rooms, and its roles."""

    url: str
    protocol: str
    user: str
    rooms: tuple[str, ...]
    sender: int = -1
    """Global sender number (>= 0) when this client publishes, -1 otherwise."""
    sampled: bool = False
    """Whether this client records the latency of every delivery it receives."""


class _Client(WSListener):
    def __init__(self, worker: Worker, spec: ConnSpec, protocol: Protocol) -> None:
        super().__init__()
        self.worker = worker
        self.spec = spec
        self.protocol = protocol
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = worker.loop.create_future()
        self.is_ready = False
        self.tag = sender_tag(spec.sender) if spec.sender >= 0 else b""
        self.seq = 0
        """Messages ever published: message ids stay unique (the backend drops a repeated id)."""
        self.sent = 0
        self.own = 0
        self.app_ping = protocol.app_ping

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        frames = self.protocol.opening()
        if not frames:
            self._set_ready()
        for frame in frames:
            transport.send(WSMsgType.TEXT, frame)

    def _set_ready(self) -> None:
        self.is_ready = True
        if not self.ready.done():
            self.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is not WSMsgType.TEXT:
            if kind is WSMsgType.CLOSE:
                self._fail(f"closed by server: {frame.get_close_code()} {frame.get_close_reason()}")
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if self.is_ready:
            worker = self.worker
            count = data.count(MARKER)
            if count:
                worker.delivered += count
                if self.spec.sampled:
                    worker.sample(data, count)
                if self.tag:
                    own = data.count(self.tag)
                    if own:
                        self.own += own
                        worker.on_own(self)
            # Centrifugo batches its ping with pushes: answer it wherever it is in the frame
            ping = self.app_ping
            if ping is not None and ping in data and _has_line(data, ping):
                transport.send(WSMsgType.TEXT, ping)
            return
        ping = self.app_ping
        if ping is not None and ping in data and _has_line(data, ping):
            transport.send(WSMsgType.TEXT, ping)  # also when batched with handshake replies
            if data == ping:
                return
        try:
            frames = self.protocol.on_handshake_frame(data)
        except (HandshakeError, ValueError) as exc:
            self._fail(str(exc))
            transport.disconnect()
            return
        if frames is None:
            self._set_ready()
            return
        if self.protocol.retry_now:
            self.worker.retries += 1
            self.worker.loop.call_later(RETRY_PAUSE, self._send_all, frames)
            return
        self._send_all(frames)

    def _send_all(self, frames: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            for out in frames:
                self.transport.send(WSMsgType.TEXT, out)

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(HandshakeError(reason))
        elif self.is_ready:
            self.worker.lost += 1
            self.worker.lost_reasons[reason] = self.worker.lost_reasons.get(reason, 0) + 1
        self.is_ready = False

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._fail("disconnected")

    def publish(self) -> None:
        if self.transport is None or not self.is_ready:
            return
        room = self.spec.rooms[0] if self.spec.rooms else "all"
        frame = self.protocol.publish(room, self.spec.sender, self.seq)
        self.transport.send(WSMsgType.TEXT, frame)
        self.seq += 1
        self.sent += 1
        self.worker.published += 1


def _has_line(data: bytes, line: bytes) -> bool:
    """Whether ``line`` is one of the newline-separated parts of ``data``."""
    return data == line or line in data.split(b"\n")


class Worker:
    """The state of one load-generator process (counters are reset per measured window)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, secret: str, ca_file: str | None) -> None:
        self.loop = loop
        self.secret = secret
        self.ssl: ssl.SSLContext | None = None
        if ca_file:
            self.ssl = ssl.create_default_context(cafile=ca_file)
        self.clients: list[_Client] = []
        self.delivered = 0
        self.published = 0
        self.lost = 0
        self.lost_reasons: dict[str, int] = {}
        self.retries = 0
        self.latencies = array("q")
        self.window_open = False
        self.max_window = 0

    def reset(self) -> None:
        self.delivered = 0
        self.published = 0
        self.latencies = array("q")

    def sample(self, data: bytes, count: int) -> None:
        if len(self.latencies) >= MAX_SAMPLES:
            return
        now = time.monotonic_ns()
        start = 0
        for _ in range(count):
            start = data.find(MARKER, start) + len(MARKER)
            end = data.find(b";", start)
            self.latencies.append(now - int(data[start:end]))

    def on_own(self, client: _Client) -> None:
        """A sender got its own message back: in closed-loop mode, send the next ones."""
        if self.window_open:
            while client.sent - client.own < self.max_window:
                client.publish()

    async def _connect(self, spec: ConnSpec) -> _Client:
        protocol = PROTOCOLS[spec.protocol](user=spec.user, secret=self.secret, rooms=spec.rooms)
        holder: list[_Client] = []

        def factory() -> _Client:
            client = _Client(self, spec, protocol)
            holder.append(client)
            return client

        await ws_connect(
            factory,
            spec.url,
            ssl_context=self.ssl,
            websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
            enable_auto_pong=True,
        )
        client = holder[0]
        await asyncio.wait_for(client.ready, HANDSHAKE_TIMEOUT)
        return client

    async def open(self, specs: list[ConnSpec]) -> dict[str, Any]:
        """Open every connection (bounded concurrency); report how many failed and why."""
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        self.retries = 0
        errors: dict[str, int] = {}

        async def one(spec: ConnSpec) -> None:
            async with gate:
                try:
                    self.clients.append(await self._connect(spec))
                except (OSError, HandshakeError, TimeoutError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"[:120]
                    errors[reason] = errors.get(reason, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(one(spec) for spec in specs))
        return {
            "opened": len(specs) - sum(errors.values()),
            "errors": errors,
            "join_retries": self.retries,
            "seconds": time.monotonic() - started,
        }

    async def close_all(self) -> dict[str, Any]:
        for client in self.clients:
            if client.transport is not None:
                client.transport.disconnect()
        for client in self.clients:
            if client.transport is not None:
                await client.transport.wait_disconnected()
        self.clients.clear()
        self.lost = 0
        self.lost_reasons = {}
        return {"closed": True}

    async def publish(self, *, rate: float, window: int, seconds: float) -> dict[str, Any]:
        """Publish for ``seconds``: open loop at ``rate`` messages/s over this process's
        senders, or closed loop with ``window`` messages in flight per sender when rate is 0.
        The coordinator resets every process's counters first (``reset``): a process resetting
        its own would drop deliveries another process's senders already caused."""
        senders = [c for c in self.clients if c.spec.sender >= 0 and c.is_ready]
        if not senders:
            await asyncio.sleep(seconds)
            return {"published": 0}
        started = time.monotonic()
        deadline = started + seconds
        if rate <= 0:
            for client in senders:
                client.own = client.sent = 0
            self.max_window = window
            self.window_open = True
            for client in senders:
                self.on_own(client)
            await asyncio.sleep(seconds)
            self.window_open = False
        else:
            turn = 0
            while (now := time.monotonic()) < deadline:
                due = int(rate * (now - started)) - self.published
                for _ in range(due):
                    senders[turn % len(senders)].publish()
                    turn += 1
                await asyncio.sleep(0.002)
        return {"published": self.published, "seconds": time.monotonic() - started}

    async def churn(
        self, specs: list[ConnSpec], *, concurrency: int, seconds: float
    ) -> dict[str, Any]:
        """Connect, authenticate, join and disconnect in ``concurrency`` loops for ``seconds``;
        report completed sessions and the connect-to-ready times."""
        deadline = time.monotonic() + seconds
        done = 0
        times = array("q")
        errors: dict[str, int] = {}

        async def loop(offset: int) -> None:
            nonlocal done
            index = offset
            while time.monotonic() < deadline:
                spec = specs[index % len(specs)]
                index += concurrency
                began = time.monotonic_ns()
                try:
                    client = await self._connect(spec)
                except (OSError, HandshakeError, TimeoutError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"[:120]
                    errors[reason] = errors.get(reason, 0) + 1
                    await asyncio.sleep(0.05)
                    continue
                times.append(time.monotonic_ns() - began)
                done += 1
                client.is_ready = False
                if client.transport is not None:
                    client.transport.disconnect()
                    await client.transport.wait_disconnected()

        await asyncio.gather(*(loop(i) for i in range(concurrency)))
        return {"completed": done, "errors": errors, "handshake_ns": list(times)}

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "delivered": self.delivered,
            "published": self.published,
            "latency_ns": list(self.latencies),
            "open": sum(1 for c in self.clients if c.is_ready),
            "lost": self.lost,
            "lost_reasons": dict(self.lost_reasons),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "pid": os.getpid(),
        }


def serve(pipe: Connection, secret: str, ca_file: str | None) -> None:
    """Process entry point: run commands from ``pipe`` until ``quit``."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(_serve(pipe, secret, ca_file))


async def _serve(pipe: Connection, secret: str, ca_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(loop, secret, ca_file)
    handlers: dict[str, Callable[..., Any]] = {
        "open": worker.open,
        "close": worker.close_all,
        "publish": worker.publish,
        "churn": worker.churn,
    }
    while True:
        command, kwargs = await loop.run_in_executor(None, pipe.recv)
        if command == "quit":
            await worker.close_all()
            pipe.send({"quit": True})
            return
        try:
            if command == "stats":
                result: Any = worker.stats()
            elif command == "count":
                result = {"delivered": worker.delivered}
            elif command == "reset":
                worker.reset()
                result = {"reset": True}
            else:
                result = await handlers[command](**kwargs)
        except Exception as exc:  # reported to the coordinator, which fails the scenario
            result = {"error": f"{type(exc).__name__}: {exc}"}
        pipe.send(result)
