"""Issue 13's goals in the report: ratios to Centrifugo and the baseline of the same run, and
which side (server or load generator) bounds each saturation figure."""

from __future__ import annotations

from typing import Any

from bench.report import bound, goals, markdown


def _fan(delivered: float, us: float, server: float, generator: float, p99: float) -> Any:
    return {
        "saturation": {
            "delivered_per_s": {"median": delivered, "min": delivered, "max": delivered},
            "server_cpu_us_per_delivery": {"median": us},
            "server_cpu_percent": {"median": server},
            "generator_cpu_percent": {"median": generator},
            "published_per_s": {"median": delivered / 1000},
            "delivery_ratio_min": 1.0,
        },
        "ramp": [
            {"fraction": 0.1, "p50_ms": {"median": 1.0}, "p99_ms": {"median": 2.0}},
            {"fraction": 0.5, "p50_ms": {"median": 5.0}, "p99_ms": {"median": p99}},
        ],
    }


def _run() -> dict[str, Any]:
    return {
        "profile": "test",
        "started": "2026-01-01T00:00:00",
        "machine": {"cpus": 2, "cpu_model": "x", "python": "3.11", "load_average": [0, 0, 0]},
        "versions": {},
        "parameters": {"sizes": [1000], "rounds": 1, "window_seconds": 1},
        "scenarios": {
            "fanout": {
                "realtime@1000": _fan(300_000, 3.0, 97, 99, 40.0),
                "centrifugo@1000": _fan(200_000, 4.0, 60, 95, 80.0),
                "baseline@1000": _fan(100_000, 9.0, 98, 70, 30.0),
            },
            "churn": {
                "realtime": {
                    "per_s": {"median": 900, "min": 900, "max": 900},
                    "server_cpu_us_per_session": 500,
                },
                "centrifugo": {
                    "per_s": {"median": 1800, "min": 1800, "max": 1800},
                    "server_cpu_us_per_session": 250,
                },
            },
        },
    }


def test_bound_names_the_side_near_a_full_core() -> None:
    assert bound(98, 50) == "server"
    assert bound(50, 97) == "generator"
    assert bound(95, 99) == "both"
    assert bound(40, 40) == "neither"
    assert bound(None, None) == "neither"


def test_goals_are_ratios_to_centrifugo_of_the_same_run() -> None:
    rows = {row["target"]: row for row in goals(_run())}
    fanout = next(
        row for name, row in rows.items() if name.startswith("fan-out at 1,000 members, d")
    )
    assert fanout["measured"] == 1.5
    assert fanout["met"] is True
    assert "realtime both, centrifugo generator" in fanout["target"]
    cpu = rows["fan-out at 1,000 members, server CPU us per delivery vs Centrifugo (x)"]
    assert (cpu["measured"], cpu["met"]) == (0.75, True)
    churn = rows["churn sessions/s vs Centrifugo (x)"]
    assert (churn["measured"], churn["met"]) == (0.5, False)
    session = rows["churn server CPU us per session vs Centrifugo (x)"]
    assert (session["measured"], session["met"]) == (2.0, False)
    assert rows["p99 at 50% of own saturation, 1,000 members (ms)"]["met"] is True
    assert rows["idle RSS per authenticated connection vs baseline (x)"]["met"] is None


def test_tables_show_the_bound_and_latency_at_low_load() -> None:
    page = markdown(_run())
    assert "| generator CPU % | bound by | delivery ratio | p50 / p99 ms at 10% load |" in page
    assert "| 99 | both | 1.0000 | 1.0 / 2.0 |" in page
    assert "### Against Centrifugo and the baseline" in page
