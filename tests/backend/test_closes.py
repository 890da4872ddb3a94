"""Prompt closes through the real process (``python -m realtime``): after 4008 and 4009
the TCP connection ends without waiting for the client, the kernel's send queue is dropped,
and the SIGTERM drain never exceeds ``DRAIN_SECONDS``. Measured times are printed
(``pytest -s``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from realtime.auth import TokenVerifier
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Close
from websockets.uri import parse_uri

from tests.backend.conftest import SIGNING_KEY
from tests.backend.processes import BACKEND, free_port
from tests.backend.redis_server import RedisServer

pytestmark = pytest.mark.integration

VERIFIER = TokenVerifier(SIGNING_KEY)


class Process:
    """One ``python -m realtime`` on free loopback ports."""

    def __init__(self, log: Path, **env: str) -> None:
        self.ws_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log = log
        full = {
            "PATH": os.environ.get("PATH", ""),
            "HOST": "127.0.0.1",
            "WS_PORT": str(self.ws_port),
            "HTTP_PORT": str(self.http_port),
            "METRICS_PORT": str(self.metrics_port),
            "TOKEN_SIGNING_KEY": SIGNING_KEY,
            "LOG_FORMAT": "text",
            **env,
        }
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "realtime"],
                cwd=BACKEND,
                env=full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, *, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def wait_status(self, path: str, status: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.get(path)[0] != status:
            if self.process.poll() is not None:
                pytest.fail(f"exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{path} never answered {status}: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def metric(self, name: str) -> float:
        for line in self.get("/metrics", port=self.metrics_port)[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Process] = []

    def factory(**env: str) -> Process:
        process = Process(tmp_path / f"p{len(started)}.log", **env)
        started.append(process)
        process.wait_status("/healthz", 200)
        return process

    yield factory
    for process in started:
        process.stop()


class RawClient:
    """A WebSocket client on a plain socket that answers nothing: it never replies to a
    ping or a close, so the server's own bounds are what ends the connection."""

    def __init__(self, port: int, *, rcvbuf: int | None = None) -> None:
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"))
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.local_port: int = self.sock.getsockname()[1]
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self._handshaken():
            self.protocol.receive_data(self.sock.recv(4096))
        self.protocol.events_received()

    def _handshaken(self) -> bool:
        return self.protocol.state.name == "OPEN"

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def send(self, frame: dict[str, object]) -> None:
        self.protocol.send_text(json.dumps(frame).encode())
        self._flush()

    def hello(self, user: str) -> None:
        self.send({"type": "hello", "v": [1], "token": VERIFIER.issue(user, user)})

    def read_to_end(self) -> tuple[Close | None, float, str]:
        """Read until the server ends the connection, answering nothing; return its close
        frame, the seconds from the close frame to the end, and how it ended."""
        closed_at: float | None = None
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                ended = "reset"
                break
            if not data:
                ended = "eof"
                break
            self.protocol.receive_data(data)
            self.protocol.events_received()
            if closed_at is None and self.protocol.close_rcvd is not None:
                closed_at = time.monotonic()
        after = time.monotonic() - closed_at if closed_at is not None else float("nan")
        return self.protocol.close_rcvd, after, ended


def _server_sockets(server_port: int, client_port: int) -> list[str]:
    """Lines of /proc/net/tcp for the server's end of one connection (any TCP state)."""
    want_local, want_remote = f":{server_port:04X}", f":{client_port:04X}"
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(want_local) and fields[2].endswith(want_remote):
            rows.append(line)
    return rows


def test_rate_limit_close_ends_the_connection_at_once(start: Any) -> None:
    """After 4008 the server does not wait 10 s for a close answer that never comes: the
    TCP connection ends right after the close frame."""
    server = start(RATE_LIMIT_PER_SECOND="1", RATE_LIMIT_BURST="3")
    client = RawClient(server.ws_port)
    client.hello("flood")
    for i in range(10):
        client.send({"type": "ping", "id": f"p{i}"})
    close, after, ended = client.read_to_end()
    print(f"\n4008: connection ended ({ended}) {after * 1000:.0f} ms after the close frame")
    assert close is not None
    assert (close.code, close.reason) == (4008, "rate limit exceeded")
    assert after < 0.5


@pytest.mark.parametrize("read_at_once", [False, True], ids=["never-reads", "reads-at-once"])
def test_slow_consumer_is_reset_within_the_bound_dropping_the_kernel_queue(
    start: Any, read_at_once: bool
) -> None:
    """A client that stops reading is closed with 4009 and, not reading it, reset within
    ABORT_AFTER_SECONDS (1 s): the server's socket and its queued bytes are gone. A client
    that reads its backlog at once gets the 4009 frame, then EOF."""
    server = start(
        SEND_BUFFER_BYTES="65536", RATE_LIMIT_PER_SECOND="100000", RATE_LIMIT_BURST="100000"
    )
    slow = RawClient(server.ws_port, rcvbuf=4096)
    slow.hello("slow")
    slow.send({"type": "join", "room": "lobby"})

    async def flood() -> float:
        async with connect(f"ws://127.0.0.1:{server.ws_port}/", max_queue=None) as ws:
            await ws.send(
                json.dumps({"type": "hello", "v": [1], "token": VERIFIER.issue("s", "s")})
            )
            await ws.recv()
            await ws.send(json.dumps({"type": "join", "room": "lobby"}))
            for i in range(5000):
                await ws.send(
                    json.dumps(
                        {"type": "message", "room": "lobby", "id": f"m{i}", "body": "x" * 3000}
                    )
                )
                if i % 50 == 0 and server.metric("realtime_slow_consumers_total") >= 1:
                    return time.monotonic()
            pytest.fail("the slow consumer was never closed")

    closed = asyncio.run(flood())
    if read_at_once:
        close, _, ended = slow.read_to_end()
        took = time.monotonic() - closed
        print(f"\n4009, client reading at once: {ended} {took * 1000:.0f} ms after the close")
        assert close is not None
        assert (close.code, ended) == (4009, "eof")
        assert took < 1.5
        return
    while _server_sockets(server.ws_port, slow.local_port):
        assert time.monotonic() - closed < 3, _server_sockets(server.ws_port, slow.local_port)
        time.sleep(0.02)
    gone = time.monotonic() - closed
    print(f"\n4009: server socket gone {gone * 1000:.0f} ms after the close was decided")
    assert gone < 1.5
    close, _, ended = slow.read_to_end()
    print(f"4009: the client's read ended with {ended}, close frame seen: {close is not None}")
    assert ended == "reset"


def test_drain_with_nothing_connected_exits_at_once(start: Any) -> None:
    """SIGTERM with no connection: exit 0 well before DRAIN_SECONDS."""
    server = start(DRAIN_SECONDS="10")
    server.wait_status("/readyz", 200)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=15)
    took = time.monotonic() - started
    print(f"\ndrain, nothing connected: exit {code} after {took:.2f} s (DRAIN_SECONDS=10)")
    assert code == 0
    assert took < 1.5


def test_drain_never_exceeds_drain_seconds(start: Any) -> None:
    """SIGTERM with clients that never answer the close: exit 0 within DRAIN_SECONDS."""
    server = start(DRAIN_SECONDS="3")
    server.wait_status("/readyz", 200)
    clients = [RawClient(server.ws_port) for _ in range(5)]
    for i, client in enumerate(clients):
        client.hello(f"u{i}")
        client.send({"type": "join", "room": "lobby"})
    time.sleep(0.3)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=15)
    took = time.monotonic() - started
    print(f"\ndrain, 5 silent clients: exit {code} after {took:.2f} s (DRAIN_SECONDS=3)")
    assert code == 0
    assert took <= 3.0
    for client in clients:
        close, _, _ = client.read_to_end()
        assert close is not None
        assert close.code == 1012


def test_broker_unreachable_at_start_starts_unready(start: Any) -> None:
    """Redis down at start: the process runs, /healthz 200, /readyz 503 broker not ready;
    once Redis is up it turns ready (BACKEND.md, exit codes)."""
    redis = RedisServer()
    server = start(REDIS_URL=redis.url)
    time.sleep(1.0)
    assert server.process.poll() is None
    assert server.get("/readyz") == (503, "broker not ready\n")
    redis.start()
    try:
        server.wait_status("/readyz", 200, timeout=20)
    finally:
        redis.stop()
