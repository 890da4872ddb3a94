"""bench.servers: the Redis Cluster the cluster and instances scenarios run on."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import psutil
import pytest
import redis

from bench import servers
from bench.servers import redis_cluster

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="redis-server and redis-cli are not installed (apt-get install redis-server)",
)


def test_cluster_server_counts_all_six_nodes_and_stops_them(tmp_path: Path) -> None:
    """One Server for the 3+3 cluster: its url reaches a cluster in state ok, its CPU and RSS
    are the six redis-server nodes' sum, and leaving the context stops every node."""
    with redis_cluster(tmp_path) as cluster:
        assert len(cluster.pids) == 6
        processes = [psutil.Process(pid) for pid in cluster.pids]
        assert all("redis-server" in p.name() for p in processes)
        with redis.Redis.from_url(cluster.url) as client:
            assert client.cluster("info")["cluster_state"] == "ok"
        each = [p.cpu_times().user + p.cpu_times().system for p in processes]
        assert cluster.cpu_seconds() >= sum(each)
        assert cluster.rss() >= sum(p.memory_info().rss for p in processes)
    for process in processes:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_backend_runs_on_its_own_environment_when_make_bench_created_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """backend_python: .venv-backend's interpreter when it exists (the image's dependencies
    only), the bench's own otherwise."""
    monkeypatch.setattr(servers, "BACKEND_VENV", tmp_path / "absent")
    assert servers.backend_python() == sys.executable
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    monkeypatch.setattr(servers, "BACKEND_VENV", tmp_path / "venv")
    assert servers.backend_python() == str(python)
