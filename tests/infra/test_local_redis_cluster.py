"""infra.local.redis_cluster: a real 3+3 Redis Cluster for the local target, started and stopped
through its command line (as the `redis` step runs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from infra.local.loopback import free_port_base
from infra.local.redis_cluster import cluster_ports, node_ports
from infra.local.supervise import running

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="redis-server and redis-cli are not installed (apt-get install redis-server)",
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.local.redis_cluster", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_start_forms_the_cluster_once_and_stop_removes_it(tmp_path: Path) -> None:
    """start gives six nodes, three masters with a replica each, cluster_state ok; a second
    start changes nothing; stop ends every node and removes their data."""
    base = free_port_base(cluster_ports, low=20000, high=40000, step=1000)
    state = tmp_path / "state"
    try:
        first = _cli("start", "--state", str(state), "--base", str(base))
        assert first.returncode == 0, first.stderr
        ports = node_ports(base)
        with redis.Redis(port=ports[0]) as client:
            info = client.cluster("info")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_known_nodes"]) == 6
            assert int(info["cluster_size"]) == 3
        pids = [running(f"redis-{i}", state=state) for i in range(1, 7)]
        assert all(pids)
        again = _cli("start", "--state", str(state), "--base", str(base))
        assert again.returncode == 0, again.stderr
        assert [running(f"redis-{i}", state=state) for i in range(1, 7)] == pids
    finally:
        stopped = _cli("stop", "--state", str(state))
    assert stopped.returncode == 0, stopped.stderr
    assert not any(running(f"redis-{i}", state=state) for i in range(1, 7))
    assert not (state / "redis-cluster").exists()
