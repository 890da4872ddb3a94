"""`python -m realtime` as a real process: /metrics only on METRICS_PORT, never on HTTP_PORT."""

from __future__ import annotations

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

from tests.backend.processes import BACKEND, free_port

pytestmark = pytest.mark.integration


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(DEV_TOKENS="1", HOST="127.0.0.1", LOG_FORMAT="json", DRAIN_SECONDS="1", **extra)
    return env


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 loopback http
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    http_port, ws_port, metrics_port = free_port(), free_port(), free_port()
    env = _env(HTTP_PORT=str(http_port), WS_PORT=str(ws_port), METRICS_PORT=str(metrics_port))
    process = subprocess.Popen(
        [sys.executable, "-m", "realtime"], cwd=BACKEND, env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            if _get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server did not become ready: {process.communicate()[1]!r}")
        time.sleep(0.05)
    try:
        yield http_port, metrics_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        assert process.returncode == 0


def test_metrics_are_served_on_metrics_port_only(ports: tuple[int, int]) -> None:
    """HTTP_PORT: /metrics is 404, probes are 200. METRICS_PORT: /metrics only."""
    http_port, metrics_port = ports
    assert _get(f"http://127.0.0.1:{http_port}/metrics") == (404, "no route for /metrics\n")
    assert _get(f"http://127.0.0.1:{http_port}/healthz") == (200, "ok\n")
    status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    assert "realtime_connections 0.0" in text.splitlines()
    assert _get(f"http://127.0.0.1:{metrics_port}/healthz")[0] == 404


def test_a_taken_metrics_port_exits_1() -> None:
    """METRICS_PORT in use stops the process with exit 1 and 'cannot start'."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "realtime"],
            cwd=BACKEND,
            env=_env(HTTP_PORT=str(free_port()), WS_PORT=str(free_port()), METRICS_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr
    assert "address already in use" in result.stderr.lower()
