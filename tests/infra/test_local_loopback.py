"""infra.local.loopback: free ports, the one redis-server command line, children in a session."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from infra.local.loopback import (
    free_port,
    free_port_base,
    port_is_free,
    redis_server_argv,
    spawn,
    stop_group,
)
from infra.local.supervise import wait_tcp


def test_a_listening_port_is_not_free() -> None:
    """free_port gives a bindable port; once something listens there it is no longer free."""
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not port_is_free(port)


def test_free_port_base_skips_bases_with_a_busy_port() -> None:
    """A base is returned only when every port it implies is free."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with pytest.raises(RuntimeError, match="no port base"):
            free_port_base(lambda base: [busy], low=1000, high=2000)
        free = free_port()
        # base 0 implies the busy port, base 1 a free one: only 1 may come back
        base = free_port_base(lambda base: [busy if base == 0 else free], low=0, high=2, step=1)
        assert base == 1


def test_redis_server_argv_runs_without_persistence(tmp_path: Path) -> None:
    """The command line starts a real redis-server on loopback with RDB and AOF off."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = spawn(
        redis_server_argv(port, binary=binary, directory=tmp_path), log=tmp_path / "redis.log"
    )
    try:
        wait_tcp("127.0.0.1", port, timeout=10, process=process, log=tmp_path / "redis.log")
        client = redis.Redis(port=port)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("dir") == {"dir": str(tmp_path)}
        assert client.config_get("bind")["bind"].split() == ["127.0.0.1"]
        client.close()
    finally:
        stop_group(process)
    assert process.returncode is not None


def test_stop_group_ends_the_child_and_its_children(tmp_path: Path) -> None:
    """A spawned child runs in its own session; stop_group ends its grandchildren too."""
    script = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(child.pid, flush=True); time.sleep(60)"
    )
    log = tmp_path / "out.log"
    process = spawn([sys.executable, "-c", script], log=log)
    deadline = time.monotonic() + 10
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(log.read_text().split()[0])
    assert psutil.Process(grandchild).is_running()
    stop_group(process, timeout=5)
    assert process.returncode is not None
    deadline = time.monotonic() + 5
    while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    gone = not psutil.pid_exists(grandchild)
    assert gone or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
