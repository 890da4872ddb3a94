"""`python -m realtime` as a real process: startup errors and the drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
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

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.backend.processes import BACKEND, free_port

pytestmark = pytest.mark.integration


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    env.update(extra)
    return env


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 loopback http
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "TOKEN_SIGNING_KEY is required"),
        (
            {"DEV_TOKENS": "1", "WS_PORT": "http"},
            "WS_PORT must be a port number 0-65535, got 'http'",
        ),
    ],
)
def test_bad_settings_exit_2_naming_the_variable(env: dict[str, str], message: str) -> None:
    """Bad settings stop the process with exit code 2 and a message naming the variable."""
    result = subprocess.run(
        [sys.executable, "-m", "realtime"],
        cwd=BACKEND,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    http_port, ws_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "realtime"],
        cwd=BACKEND,
        env=_env(
            DEV_TOKENS="1",
            HOST="127.0.0.1",
            HTTP_PORT=str(http_port),
            WS_PORT=str(ws_port),
            METRICS_PORT=str(free_port()),
            DRAIN_SECONDS="2",
            LOG_FORMAT="json",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if _status(f"http://127.0.0.1:{http_port}/readyz") == 200:
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail(f"server did not become ready: {process.communicate()[1]}")
    try:
        yield process, http_port, ws_port
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


async def test_sigterm_drains_with_1012_and_exits_0(
    server: tuple[subprocess.Popen[str], int, int],
) -> None:
    """SIGTERM: /readyz turns 503, clients get 1012, presence leaves go out, exit code 0."""
    process, http_port, ws_port = server
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/dev/token",
        data=json.dumps({"user": "alice"}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 loopback http
        token = json.load(response)["token"]
    async with connect(f"ws://127.0.0.1:{ws_port}/") as ws:
        await ws.send(json.dumps({"type": "hello", "v": [1], "token": token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "join", "room": "lobby"}))
        assert json.loads(await ws.recv())["type"] == "joined"
        process.send_signal(signal.SIGTERM)
        statuses = []
        for _ in range(40):
            status = await asyncio.to_thread(_status, f"http://127.0.0.1:{http_port}/readyz")
            statuses.append(status)
            if status == 503:
                break
            await asyncio.sleep(0.02)
        assert statuses[-1] == 503
        async with asyncio.timeout(5):
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass
        assert (ws.close_code, ws.close_reason) == (1012, "server restarting")
    _, err = await asyncio.to_thread(process.communicate, timeout=15)
    assert process.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in logs]
    assert "signal received, draining" in messages
    # the process runs with the tuned collector (realtime.__main__.GC_THRESHOLDS)
    tuned = [e for e in logs if e["msg"] == "garbage collector thresholds"]
    assert [e["thresholds"] for e in tuned] == [[10_000, 10, 10]]
    assert messages[-1] == "stopped"
    assert token not in err


def test_port_in_use_exits_1() -> None:
    """A WebSocket port that is taken stops the process with exit code 1 and says why."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "realtime"],
            cwd=BACKEND,
            env=_env(DEV_TOKENS="1", HOST="127.0.0.1", WS_PORT=str(port), LOG_FORMAT="text"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr
