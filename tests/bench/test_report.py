"""The report's targets and the side-by-side comparison of runs."""

from __future__ import annotations

from typing import Any

from bench.report import compare, targets


def _run(started: str, ours: float, base: float) -> dict[str, Any]:
    def cell(delivered: float) -> dict[str, Any]:
        return {"saturation": {"delivered_per_s": {"median": delivered}}, "ramp": []}

    return {
        "started": started,
        "parameters": {"sizes": [1000]},
        "scenarios": {"fanout": {"realtime@1000": cell(ours), "baseline@1000": cell(base)}},
    }


def test_targets_compare_against_the_baseline_of_the_same_run() -> None:
    """The fan-out target is the backend's throughput over the baseline's, met at >= 1.0;
    targets without figures are reported as not measured."""
    rows = {row["target"]: row for row in targets(_run("2026-01-01T00:00:00", 150.0, 100.0))}
    fanout = rows["fan-out throughput at 1,000 members vs baseline (x)"]
    assert fanout["measured"] == 1.5
    assert fanout["met"] is True
    assert rows["handshakes per second incl. auth and join"]["met"] is None


def test_compare_puts_runs_in_columns() -> None:
    """One column per run, labelled by its start time, one row per target."""
    table = compare(
        [_run("2026-01-01T22:41:00", 150.0, 100.0), _run("2026-01-01T23:03:00", 90.0, 100.0)]
    )
    assert "| 22:41 UTC | 23:03 UTC |" in table
    assert "| 1.50 | 0.90 |" in table
