"""Statistics helpers of the scenarios."""

from __future__ import annotations

from bench.scenarios import percentile, spread


def test_percentile_nearest_rank() -> None:
    """Nearest-rank quantiles: p50 of 1..100 is 50, p99 is 99, the maximum is the top."""
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([], 0.5) is None


def test_spread_reports_median_and_range() -> None:
    """Repeated rounds keep every value besides median, min and max."""
    assert spread([3.0, 1.0, 2.0]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "rounds": [3.0, 1.0, 2.0],
    }
