"""No secret and no message body in a real process's info-level logs.

A real ``python -m realtime`` with a signing key, Redis behind a password (a real
redis-server with ``requirepass``, stopped and restarted mid-run so the broker logs its
reconnects), real clients that chat, send a forged token, and get refused; then SIGTERM. Its
whole stderr is searched for the key, the password, the Redis URL, every token and every body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from realtime.auth import TokenVerifier
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.backend.processes import BACKEND, free_port

pytestmark = pytest.mark.integration

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class PasswordRedis:
    """redis-server with ``requirepass`` on a fixed free port (restartable on that port)."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-secret-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            REDIS_SERVER,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(self.dir), "--logfile", "redis.log"),
            *("--requirepass", self.password),
        ]
        # the password on redis-server's own argv is the test fixture's, not the backend's
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not self._answers():
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server not answering"
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                time.sleep(0.02)
                return b"+PONG" in sock.recv(64)
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=5)


@pytest.fixture
def redis_with_password() -> Iterator[PasswordRedis]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = PasswordRedis(secrets.token_hex(16))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 loopback http
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def _until_ready(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(_status, url) != 200:
        assert process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, f"{url} not 200 within {timeout} s"
        await asyncio.sleep(0.1)


async def test_info_logs_hold_no_secret_and_no_body(redis_with_password: PasswordRedis) -> None:
    """Chat, a forged token, a Redis restart and a drain: none of the key, the Redis
    password or URL, a token or a message body appears in the info-level output."""
    key = "key-" + secrets.token_hex(24)
    redis_url = f"redis://:{redis_with_password.password}@127.0.0.1:{redis_with_password.port}/0"
    http_port, ws_port, metrics_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        TOKEN_SIGNING_KEY=key,
        REDIS_URL=redis_url,
        HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        WS_PORT=str(ws_port),
        METRICS_PORT=str(metrics_port),
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        DRAIN_SECONDS="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "realtime"],
        cwd=BACKEND,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    verifier = TokenVerifier(key)
    alice_token, bob_token = verifier.issue("alice", "alice"), verifier.issue("bob", "bob")
    forged = TokenVerifier("not-the-key-" + secrets.token_hex(16)).issue("mallory", "mallory")
    bodies = [f"body-{secrets.token_hex(8)}" for _ in range(3)]
    readyz = f"http://127.0.0.1:{http_port}/readyz"
    try:
        await _until_ready(readyz, process, 15)
        alice = await connect(f"ws://127.0.0.1:{ws_port}/", close_timeout=1)
        bob = await connect(f"ws://127.0.0.1:{ws_port}/", close_timeout=1)
        for ws, token in ((alice, alice_token), (bob, bob_token)):
            await ws.send(json.dumps({"type": "hello", "v": [1], "token": token}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "join", "room": "lobby"}))
            async with asyncio.timeout(5):
                while json.loads(await ws.recv())["type"] != "joined":
                    pass
        for i, body in enumerate(bodies[:2]):
            frame = {"type": "message", "room": "lobby", "id": f"m{i}", "body": body}
            await alice.send(json.dumps(frame))
        async with asyncio.timeout(5):
            seen = []
            while len(seen) < 2:
                frame = json.loads(await bob.recv())
                if frame["type"] == "message":
                    seen.append(frame["body"])
        assert seen == bodies[:2]
        # a forged token, and a too-long body (refused with its length, not its text)
        mallory = await connect(f"ws://127.0.0.1:{ws_port}/", close_timeout=1)
        await mallory.send(json.dumps({"type": "hello", "v": [1], "token": forged}))
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                async for _ in mallory:
                    pass
        assert mallory.close_code == 4001
        long_body = bodies[2] * 400
        await alice.send(
            json.dumps({"type": "message", "room": "lobby", "id": "m9", "body": long_body})
        )
        # Redis goes away and comes back: the broker logs its errors and its reconnect
        redis_with_password.stop()
        await asyncio.sleep(1.5)
        redis_with_password.start()
        await _until_ready(readyz, process, 20)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(process.communicate, timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    messages = [entry["msg"] for entry in lines]
    assert "stopped" in messages
    # the run logged what it went through (so the search below is not over an empty log)
    assert "closing connection: invalid token" in messages
    assert any(m.startswith("redis connection lost") for m in messages), messages
    assert messages.count("redis connected") == 2, messages
    assert {entry["level"] for entry in lines} <= {"info", "warning", "error"}
    for name, secret in (
        ("signing key", key),
        ("redis password", redis_with_password.password),
        ("redis url", redis_url),
        ("alice's token", alice_token),
        ("bob's token", bob_token),
        ("forged token", forged),
        *((f"body {i}", body) for i, body in enumerate(bodies)),
    ):
        assert secret not in err, f"the {name} is in the log"
