"""A tiny run of the whole suite: real servers, the picows load generator, the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration
Smoke = tuple[dict[str, Any], Path]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    """``python -m bench --smoke`` with the baseline and the backend through every scenario;
    Centrifugo is left to ``make bench`` (its first build takes minutes)."""
    out = tmp_path_factory.mktemp("bench")
    docs = out / "docs"
    docs.mkdir()
    (docs / "PERFORMANCE.md").write_text(
        "# Performance\n\nprose\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nafter\n"
    )
    argv = ["--smoke", "--out", str(out), "--docs", str(docs), "--peers", "baseline,realtime"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("*-smoke.json")
    return json.loads(path.read_text()), docs


def test_every_member_receives_every_message(smoke_run: Smoke) -> None:
    """Fan-out delivers published x members messages for each peer, with latency samples."""
    results, _ = smoke_run
    cells = results["scenarios"]["fanout"]
    assert {"baseline@20", "realtime@20"} <= set(cells)
    for key, cell in cells.items():
        assert "error" not in cell, (key, cell)
        saturation = cell["saturation"]
        assert saturation["delivered_per_s"]["median"] > 0, key
        assert saturation["delivery_ratio_min"] == pytest.approx(1.0, abs=0.01), key
        half = next(p for p in cell["ramp"] if p["fraction"] == 0.5)
        assert half["p99_ms"]["median"] is not None, key


def test_idle_and_churn_measure_every_peer(smoke_run: Smoke) -> None:
    """Idle holds every requested connection through the idle window; churn completes
    sessions without errors; memory per connection is a real RSS figure."""
    results, _ = smoke_run
    for peer, cell in results["scenarios"]["idle"].items():
        assert cell["connections"] == cell["requested"] == cell["open_after_idle"], peer
        assert cell["rss_per_connection_bytes"] > 0, peer
    for peer, cell in results["scenarios"]["churn"].items():
        assert cell["per_s"]["median"] > 0, peer
        assert all(not w["errors"] for w in cell["windows"]), (peer, cell["windows"])


def test_two_instances_share_a_room_through_redis(smoke_run: Smoke) -> None:
    """Members split across two instances all receive every message through redis-server."""
    results, _ = smoke_run
    two = results["scenarios"]["redis"]["two-instances-redis"]
    assert "error" not in two, two
    assert two["saturation"]["delivery_ratio_min"] == pytest.approx(1.0, abs=0.01)


def test_two_instances_share_a_room_through_the_cluster(smoke_run: Smoke) -> None:
    """The two-instance scenario runs on a 3+3 Redis Cluster too: every member on either
    backend receives every message, and both backends and the cluster's nodes did work."""
    results, docs = smoke_run
    cell = results["scenarios"]["cluster"]["two-instances-cluster"]
    assert "error" not in cell, cell
    assert (cell["instances"], cell["broker"]) == (2, "cluster")
    saturation = cell["saturation"]
    assert saturation["delivery_ratio_min"] == pytest.approx(1.0, abs=0.01)
    for window in saturation["windows"]:
        assert len(window["server_cpu_percent"]) == 3
        assert all(cpu > 0 for cpu in window["server_cpu_percent"]), window
    page = (docs / "PERFORMANCE.md").read_text()
    assert "| two-instances-redis |" in page.split("Redis Cluster of 3 masters")[1]
    assert "| two-instances-cluster |" in page


def test_instances_scale_on_one_redis_and_on_the_cluster(smoke_run: Smoke) -> None:
    """Each instance count of the profile runs on redis-server and on the cluster, members
    split over that many backends (each one busy), CPU per delivery reported."""
    results, docs = smoke_run
    cells = results["scenarios"]["instances"]
    counts = results["parameters"]["instance_counts"]
    assert set(cells) == {f"{n}-{broker}" for n in counts for broker in ("redis", "cluster")}
    for key, cell in cells.items():
        assert "error" not in cell, (key, cell)
        saturation = cell["saturation"]
        assert saturation["delivery_ratio_min"] == pytest.approx(1.0, abs=0.01), key
        assert saturation["server_cpu_us_per_delivery"]["median"] > 0, key
        for window in saturation["windows"]:
            assert len(window["server_cpu_percent"]) == cell["instances"] + 1, key
            assert all(cpu > 0 for cpu in window["server_cpu_percent"]), (key, window)
    page = (docs / "PERFORMANCE.md").read_text()
    assert "| 2 x cluster |" in page
    assert "| 1 x redis |" in page


def test_edge_costs_are_measured_both_ways(smoke_run: Smoke) -> None:
    """The same fan-out and churn run direct and through haproxy with TLS, both complete."""
    results, _ = smoke_run
    cells = results["scenarios"]["edge"]
    for key in ("fanout-direct", "fanout-edge"):
        assert cells[key]["saturation"]["delivery_ratio_min"] == pytest.approx(1.0, abs=0.01)
    for key in ("churn-direct", "churn-edge"):
        assert cells[key]["per_s"]["median"] > 0, cells[key]


def test_report_replaces_only_the_generated_section(smoke_run: Smoke) -> None:
    """PERFORMANCE.md keeps its prose, gets tables with ratios, and links plots that exist."""
    results, docs = smoke_run
    page = (docs / "PERFORMANCE.md").read_text()
    assert page.startswith("# Performance\n\nprose\n")
    assert page.rstrip().endswith("after")
    assert "\nold\n" not in page
    assert "| realtime | 20 |" in page
    assert "x baseline" in page
    for png in ("fanout.png", "connections.png"):
        assert f"(perf/{png})" in page
        assert (docs / "perf" / png).read_bytes().startswith(b"\x89PNG")
    assert results["versions"]["picows"] != "missing"
