"""Results -> Markdown tables (with ratios to the baseline) and PNG plots (matplotlib, Agg).

``write_docs`` replaces the generated part of docs/PERFORMANCE.md, between the
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` lines, and writes docs/perf/*.png; the
prose around the markers is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
PEER_ORDER = ("baseline", "realtime", "centrifugo")
COLORS = {"baseline": "#9e9e9e", "realtime": "#1f77b4", "centrifugo": "#ff7f0e"}

TARGETS = {
    "fanout_ratio": 1.0,
    "p99_ms": 50.0,
    "idle_kb": 20.0,
    "handshakes_per_s": 1000.0,
    "redis_ratio": 0.6,
}


BOUND_PERCENT = 90.0
"""A process at or above this share of its core is what bounds a saturation figure."""

GOALS = {
    "fanout_vs_centrifugo": 1.0,
    "cpu_per_delivery_vs_centrifugo": 1.0,
    "p99_ms": 50.0,
    "p99_vs_centrifugo": 1.0,
    "churn_vs_centrifugo": 1.0,
    "cpu_per_session_vs_centrifugo": 1.0,
    "idle_vs_baseline": 1.0,
    "redis_cpu_vs_memory": 1.2,
}
"""Issue 13's goals: ratios within one run (Centrifugo, the baseline, one instance)."""


def bound(server_cpu: float | None, generator_cpu: float | None) -> str:
    """Which side bounds a figure measured at saturation: the one near a full core
    (``both``: neither can be told apart; ``neither``: latency or the closed loop)."""
    server = server_cpu is not None and server_cpu >= BOUND_PERCENT
    generator = generator_cpu is not None and generator_cpu >= BOUND_PERCENT
    if server and generator:
        return "both"
    return "server" if server else "generator" if generator else "neither"


def _median(block: dict[str, Any] | None, key: str) -> float | None:
    if not block or key not in block:
        return None
    value = block[key]
    if isinstance(value, dict):
        median = value.get("median")
        return float(median) if median is not None else None
    return float(value) if value is not None else None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def _spread(block: dict[str, Any] | None, digits: int = 0) -> str:
    if not block or block.get("median") is None:
        return "-"
    median, low, high = block["median"], block["min"], block["max"]
    if len(block.get("rounds", [])) <= 1:
        return _fmt(median, digits)
    return f"{_fmt(median, digits)} ({_fmt(low, digits)}-{_fmt(high, digits)})"


def _point(result: dict[str, Any], fraction: float) -> dict[str, Any] | None:
    for point in result.get("ramp", []):
        if point["fraction"] == fraction:
            found: dict[str, Any] = point
            return found
    return None


def one_line(scenario: str, value: dict[str, Any]) -> str:
    """A short progress line for the log."""
    if "error" in value:
        return f"ERROR {value['error']}"
    if scenario in ("fanout", "redis") or "saturation" in value:
        sat = value["saturation"]
        half = _point(value, 0.5) or {}
        return (
            f"{_fmt(_median(sat, 'delivered_per_s'))} deliveries/s at saturation, "
            f"p99 {_fmt(_median(half, 'p99_ms'), 1)} ms at 50%, "
            f"delivery ratio {sat.get('delivery_ratio_min')}"
        )
    if scenario == "idle":
        per = value.get("rss_per_connection_bytes")
        return (
            f"{value['connections']} connections, "
            f"{_fmt(per / 1024 if per else None, 1)} KiB RSS each, "
            f"idle CPU {_fmt(value['idle_cpu_percent'], 1)}%"
        )
    if "per_s" in value:
        rate, p99 = _median(value, "per_s"), _median(value, "p99_ms")
        return f"{_fmt(rate)} sessions/s, p99 {_fmt(p99, 1)} ms"
    return str(value)[:200]


def _peers(cells: dict[str, Any]) -> list[str]:
    names = {key.split("@")[0] for key in cells}
    return [p for p in PEER_ORDER if p in names]


def _fanout_table(results: dict[str, Any]) -> list[str]:
    cells = results["scenarios"].get("fanout", {})
    if not cells:
        return []
    lines = [
        "### Fan-out: one room, N members, all of them receiving",
        "",
        "| peer | members | delivered msg/s at saturation | x baseline | publishes/s "
        "| p50 / p99 ms at 50% load | server CPU % | server CPU us / delivery "
        "| generator CPU % | bound by | delivery ratio | p50 / p99 ms at 10% load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for size in results["parameters"]["sizes"]:
        base = _median(cells.get(f"baseline@{size}", {}).get("saturation"), "delivered_per_s")
        for peer in _peers(cells):
            cell = cells.get(f"{peer}@{size}")
            if cell is None:
                continue
            if "error" in cell:
                lines.append(
                    f"| {peer} | {size:,} | error: {cell['error'][:120]} | | | | | | | | | |"
                )
                continue
            sat = cell["saturation"]
            half = _point(cell, 0.5) or {}
            low = _point(cell, 0.1) or {}
            delivered = _median(sat, "delivered_per_s")
            server_cpu = _median(sat, "server_cpu_percent")
            generator_cpu = _median(sat, "generator_cpu_percent")
            lines.append(
                f"| {peer} | {size:,} | {_spread(sat['delivered_per_s'])} "
                f"| {_ratio(delivered, base)} | {_fmt(_median(sat, 'published_per_s'))} "
                f"| {_fmt(_median(half, 'p50_ms'), 1)} / {_fmt(_median(half, 'p99_ms'), 1)} "
                f"| {_fmt(server_cpu)} "
                f"| {_fmt(_median(sat, 'server_cpu_us_per_delivery'), 2)} "
                f"| {_fmt(generator_cpu)} | {bound(server_cpu, generator_cpu)} "
                f"| {_fmt(sat.get('delivery_ratio_min'), 4)} "
                f"| {_fmt(_median(low, 'p50_ms'), 1)} / {_fmt(_median(low, 'p99_ms'), 1)} |"
            )
    return [*lines, ""]


def _idle_table(results: dict[str, Any]) -> list[str]:
    cells = results["scenarios"].get("idle", {})
    if not cells:
        return []
    lines = [
        "### Idle: authenticated connections, each in two rooms with presence, pings running",
        "",
        "| peer | connections | RSS / connection KiB | x baseline | RSS added / connection KiB "
        "| idle CPU % of a core | CPU us / connection / s | open after idle |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = cells.get("baseline", {}).get("rss_per_connection_bytes")
    for peer in _peers(cells):
        cell = cells[peer]
        if "error" in cell:
            lines.append(f"| {peer} | error: {cell['error'][:120]} | | | | | | |")
            continue
        per = cell["rss_per_connection_bytes"]
        added = cell["rss_added_per_connection_bytes"]
        lines.append(
            f"| {peer} | {cell['connections']:,} | {_fmt(per / 1024 if per else None, 1)} "
            f"| {_ratio(per, base)} | {_fmt(added / 1024 if added else None, 1)} "
            f"| {_fmt(cell['idle_cpu_percent'], 2)} "
            f"| {_fmt(cell['idle_cpu_us_per_connection_per_s'], 3)} "
            f"| {cell['open_after_idle']:,} |"
        )
    return [*lines, ""]


def _churn_table(results: dict[str, Any]) -> list[str]:
    cells = results["scenarios"].get("churn", {})
    if not cells:
        return []
    lines = [
        "### Connection churn: handshake, auth, join with presence, disconnect",
        "",
        "| peer | sessions/s | x baseline | p50 / p99 ms per session | server CPU % "
        "| server CPU us / session | generator CPU % | bound by |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    base = _median(cells.get("baseline"), "per_s")
    for peer in _peers(cells):
        cell = cells[peer]
        if "error" in cell:
            lines.append(f"| {peer} | error: {cell['error'][:120]} | | | | | | |")
            continue
        server_cpu = _median(cell, "server_cpu_percent")
        generator_cpu = _median(cell, "generator_cpu_percent")
        lines.append(
            f"| {peer} | {_spread(cell['per_s'])} | {_ratio(_median(cell, 'per_s'), base)} "
            f"| {_fmt(_median(cell, 'p50_ms'), 1)} / {_fmt(_median(cell, 'p99_ms'), 1)} "
            f"| {_fmt(server_cpu)} "
            f"| {_fmt(_median(cell, 'server_cpu_us_per_session'))} "
            f"| {_fmt(generator_cpu)} | {bound(server_cpu, generator_cpu)} |"
        )
    return [*lines, ""]


def _fanout_rows(cells: dict[str, Any], title: str, base_key: str) -> list[str]:
    lines = [
        title,
        "",
        "| setup | delivered msg/s at saturation | x first row | p50 / p99 ms at 50% load "
        "| server CPU % (all processes) | server CPU us / delivery | delivery ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = _median(cells.get(base_key, {}).get("saturation"), "delivered_per_s")
    for key, cell in cells.items():
        if not isinstance(cell, dict) or "saturation" not in cell:
            if isinstance(cell, dict) and "error" in cell:
                lines.append(f"| {key} | error: {cell['error'][:120]} | | | | | |")
            continue
        sat = cell["saturation"]
        half = _point(cell, 0.5) or {}
        lines.append(
            f"| {key} | {_spread(sat['delivered_per_s'])} "
            f"| {_ratio(_median(sat, 'delivered_per_s'), base)} "
            f"| {_fmt(_median(half, 'p50_ms'), 1)} / {_fmt(_median(half, 'p99_ms'), 1)} "
            f"| {_fmt(_median(sat, 'server_cpu_percent'))} "
            f"| {_fmt(_median(sat, 'server_cpu_us_per_delivery'), 2)} "
            f"| {_fmt(sat.get('delivery_ratio_min'), 4)} |"
        )
    return [*lines, ""]


def _redis_table(results: dict[str, Any]) -> list[str]:
    cells = results["scenarios"].get("redis", {})
    if not cells:
        return []
    size = results["parameters"]["redis_size"]
    return _fanout_rows(
        cells,
        f"### Two instances through one redis-server ({size:,} members split across them)",
        "one-instance-memory",
    )


def _cluster_table(results: dict[str, Any]) -> list[str]:
    """The two-instance scenario on one redis-server and on the 3+3 cluster, side by side."""
    cluster = results["scenarios"].get("cluster", {})
    if not cluster:
        return []
    size = results["parameters"]["redis_size"]
    single = results["scenarios"].get("redis", {}).get("two-instances-redis")
    cells = {**({"two-instances-redis": single} if single else {}), **cluster}
    return _fanout_rows(
        cells,
        f"### Two instances on one redis-server and on a Redis Cluster of 3 masters + 3 replicas "
        f"({size:,} members split across them)",
        "two-instances-redis",
    )


def _instances_table(results: dict[str, Any]) -> list[str]:
    """1, 2, 4 ... backends sharing one room: throughput and CPU per delivery, backends' and
    Redis's CPU apart (Redis is the last server of every window)."""
    cells = results["scenarios"].get("instances", {})
    if not cells:
        return []
    size = results["parameters"]["redis_size"]
    lines = [
        f"### Instances sharing one room ({size:,} members split across them)",
        "",
        "| instances on | delivered msg/s at saturation | x 1 instance | p50 / p99 ms at 50% load "
        "| backends CPU % | Redis CPU % | generator CPU % | server CPU us / delivery "
        "| delivery ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, cell in cells.items():
        if "error" in cell:
            lines.append(f"| {key} | error: {cell['error'][:120]} | | | | | | | |")
            continue
        sat = cell["saturation"]
        half = _point(cell, 0.5) or {}
        first = cells.get(f"1-{cell['broker']}", {}).get("saturation")
        windows = sat["windows"]
        backends = [sum(w["server_cpu_percent"][:-1]) for w in windows]
        broker = [w["server_cpu_percent"][-1] for w in windows]
        lines.append(
            f"| {cell['instances']} x {cell['broker']} | {_spread(sat['delivered_per_s'])} "
            f"| {_ratio(_median(sat, 'delivered_per_s'), _median(first, 'delivered_per_s'))} "
            f"| {_fmt(_median(half, 'p50_ms'), 1)} / {_fmt(_median(half, 'p99_ms'), 1)} "
            f"| {_fmt(sum(backends) / len(backends))} | {_fmt(sum(broker) / len(broker))} "
            f"| {_fmt(_median(sat, 'generator_cpu_percent'))} "
            f"| {_fmt(_median(sat, 'server_cpu_us_per_delivery'), 2)} "
            f"| {_fmt(sat.get('delivery_ratio_min'), 4)} |"
        )
    return [*lines, ""]


def _edge_table(results: dict[str, Any]) -> list[str]:
    cells = results["scenarios"].get("edge", {})
    if not cells:
        return []
    size = results["parameters"]["edge_size"]
    fan = {k: v for k, v in cells.items() if k.startswith("fanout") or k == "setup"}
    lines = _fanout_rows(
        fan,
        f"### Through the local TLS edge (haproxy) versus direct ({size:,} members)",
        "fanout-direct",
    )
    churn = {k: v for k, v in cells.items() if k.startswith("churn")}
    if churn:
        lines += [
            "| setup | sessions/s (TLS handshake included via the edge) | x direct "
            "| p50 / p99 ms per session | CPU us / session (backend + haproxy) "
            "| generator CPU % |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        base = _median(churn.get("churn-direct"), "per_s")
        for key, cell in churn.items():
            if "error" in cell:
                lines.append(f"| {key} | error: {cell['error'][:120]} | | | | |")
                continue
            lines.append(
                f"| {key} | {_spread(cell['per_s'])} | {_ratio(_median(cell, 'per_s'), base)} "
                f"| {_fmt(_median(cell, 'p50_ms'), 1)} / {_fmt(_median(cell, 'p99_ms'), 1)} "
                f"| {_fmt(_median(cell, 'server_cpu_us_per_session'))} "
                f"| {_fmt(_median(cell, 'generator_cpu_percent'))} |"
            )
        lines.append("")
    return lines


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The brief's targets against this run: name, measured, target, met (None: not measured)."""
    found: list[dict[str, Any]] = []
    scen = results["scenarios"]
    sizes = results["parameters"]["sizes"]
    size = 1000 if 1000 in sizes else max(sizes)
    fan = scen.get("fanout", {})
    ours = fan.get(f"realtime@{size}", {})
    base = fan.get(f"baseline@{size}", {})
    ours_sat = _median(ours.get("saturation"), "delivered_per_s")
    base_sat = _median(base.get("saturation"), "delivered_per_s")
    ratio = ours_sat / base_sat if ours_sat and base_sat else None
    found.append(
        _target(
            f"fan-out throughput at {size:,} members vs baseline (x)",
            ratio,
            TARGETS["fanout_ratio"],
            higher=True,
            digits=2,
        )
    )
    half = _point(ours, 0.5) if ours else None
    found.append(
        _target(
            f"p99 publish-to-deliver at 50% of saturation, {size:,} members (ms)",
            _median(half, "p99_ms"),
            TARGETS["p99_ms"],
            higher=False,
            digits=1,
        )
    )
    idle = scen.get("idle", {}).get("realtime", {})
    per = idle.get("rss_per_connection_bytes")
    found.append(
        _target(
            "resident memory per idle authenticated connection (KiB)",
            per / 1024 if per else None,
            TARGETS["idle_kb"],
            higher=False,
            digits=1,
        )
    )
    churn = _median(scen.get("churn", {}).get("realtime"), "per_s")
    found.append(
        _target(
            "handshakes per second incl. auth and join",
            churn,
            TARGETS["handshakes_per_s"],
            higher=True,
            digits=0,
        )
    )
    redis = scen.get("redis", {})
    one = _median(redis.get("one-instance-memory", {}).get("saturation"), "delivered_per_s")
    two = _median(redis.get("two-instances-redis", {}).get("saturation"), "delivered_per_s")
    found.append(
        _target(
            "two instances via Redis, per instance vs one instance (x)",
            two / 2 / one if one and two else None,
            TARGETS["redis_ratio"],
            higher=True,
            digits=2,
        )
    )
    one_cost = _median(
        redis.get("one-instance-memory", {}).get("saturation"), "server_cpu_us_per_delivery"
    )
    two_cost = _median(
        redis.get("two-instances-redis", {}).get("saturation"), "server_cpu_us_per_delivery"
    )
    found.append(
        _target(
            "same, per CPU second (backends + redis-server) vs one instance (x), for context",
            one_cost / two_cost if one_cost and two_cost else None,
            TARGETS["redis_ratio"],
            higher=True,
            digits=2,
        )
    )
    return found


def _target(
    name: str, value: float | None, goal: float, *, higher: bool, digits: int
) -> dict[str, Any]:
    met = None if value is None else (value >= goal if higher else value <= goal)
    return {
        "target": name,
        "measured": value,
        "goal": goal,
        "direction": ">=" if higher else "<=",
        "met": met,
        "digits": digits,
    }


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's goals against this run, each a ratio of two figures of the same run."""
    scen = results["scenarios"]
    fan = scen.get("fanout", {})
    found: list[dict[str, Any]] = []

    def sat(key: str, figure: str) -> float | None:
        return _median(fan.get(key, {}).get("saturation"), figure)

    def over(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    for size in results["parameters"]["sizes"]:
        ours, theirs = f"realtime@{size}", f"centrifugo@{size}"
        limits = ", ".join(
            f"{peer} {bound(sat(key, 'server_cpu_percent'), sat(key, 'generator_cpu_percent'))}"
            for peer, key in (("realtime", ours), ("centrifugo", theirs))
        )
        found.append(
            _target(
                f"fan-out at {size:,} members, delivered msg/s vs Centrifugo (x; bound by: "
                f"{limits})",
                over(sat(ours, "delivered_per_s"), sat(theirs, "delivered_per_s")),
                GOALS["fanout_vs_centrifugo"],
                higher=True,
                digits=2,
            )
        )
        found.append(
            _target(
                f"fan-out at {size:,} members, server CPU us per delivery vs Centrifugo (x)",
                over(
                    sat(ours, "server_cpu_us_per_delivery"),
                    sat(theirs, "server_cpu_us_per_delivery"),
                ),
                GOALS["cpu_per_delivery_vs_centrifugo"],
                higher=False,
                digits=2,
            )
        )
    sizes = results["parameters"]["sizes"]
    size = 1000 if 1000 in sizes else max(sizes)
    ours_half = _point(fan.get(f"realtime@{size}", {}), 0.5)
    theirs_half = _point(fan.get(f"centrifugo@{size}", {}), 0.5)
    ours_p99 = _median(ours_half, "p99_ms")
    found.append(
        _target(
            f"p99 at 50% of own saturation, {size:,} members (ms)",
            ours_p99,
            GOALS["p99_ms"],
            higher=False,
            digits=1,
        )
    )
    found.append(
        _target(
            "same p99 vs Centrifugo's p99 at 50% of its saturation (x; its rate is higher)",
            over(ours_p99, _median(theirs_half, "p99_ms")),
            GOALS["p99_vs_centrifugo"],
            higher=False,
            digits=2,
        )
    )
    churn = scen.get("churn", {})
    for figure, goal, name, higher in (
        ("per_s", "churn_vs_centrifugo", "churn sessions/s vs Centrifugo (x)", True),
        (
            "server_cpu_us_per_session",
            "cpu_per_session_vs_centrifugo",
            "churn server CPU us per session vs Centrifugo (x)",
            False,
        ),
    ):
        found.append(
            _target(
                name,
                over(
                    _median(churn.get("realtime"), figure),
                    _median(churn.get("centrifugo"), figure),
                ),
                GOALS[goal],
                higher=higher,
                digits=2,
            )
        )
    idle = scen.get("idle", {})
    found.append(
        _target(
            "idle RSS per authenticated connection vs baseline (x)",
            over(
                idle.get("realtime", {}).get("rss_per_connection_bytes"),
                idle.get("baseline", {}).get("rss_per_connection_bytes"),
            ),
            GOALS["idle_vs_baseline"],
            higher=False,
            digits=2,
        )
    )
    redis = scen.get("redis", {})
    found.append(
        _target(
            "two instances on Redis, CPU us per delivery vs one instance on memory (x)",
            over(
                _median(
                    redis.get("two-instances-redis", {}).get("saturation"),
                    "server_cpu_us_per_delivery",
                ),
                _median(
                    redis.get("one-instance-memory", {}).get("saturation"),
                    "server_cpu_us_per_delivery",
                ),
            ),
            GOALS["redis_cpu_vs_memory"],
            higher=False,
            digits=2,
        )
    )
    return found


def _goals_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "### Against Centrifugo and the baseline (issue 13's goals, ratios within this run)",
        "",
        "| goal | wanted | measured | met |",
        "| --- | ---: | ---: | --- |",
    ]
    for row in goals(results):
        met = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        lines.append(
            f"| {row['target']} | {row['direction']} {_fmt(row['goal'], row['digits'])} "
            f"| {_fmt(row['measured'], row['digits'])} | {met} |"
        )
    return [*lines, ""]


def _targets_table(results: dict[str, Any]) -> list[str]:
    lines = ["### Targets", "", "| target | goal | measured | met |", "| --- | ---: | ---: | --- |"]
    for row in targets(results):
        met = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        lines.append(
            f"| {row['target']} | {row['direction']} {_fmt(row['goal'], row['digits'])} "
            f"| {_fmt(row['measured'], row['digits'])} | {met} |"
        )
    return [*lines, ""]


def markdown(results: dict[str, Any], *, plots: Sequence[str] = ()) -> str:
    """The generated section: run header, targets, one table per scenario, plot links."""
    machine = results["machine"]
    versions = results["versions"]
    params = results["parameters"]
    pinning = (
        f"servers pinned to CPU {params['server_cpus']}, load generator to CPU "
        f"{params['generator_cpus']}"
        if params.get("server_cpus")
        else "no CPU pinning"
    )
    lines = [
        f"Run `{results['profile']}` started {results['started']} on {machine['cpus']} x "
        f"{machine['cpu_model'] or 'CPU'}, Python {machine['python']}, load average "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average'])} at start; {pinning}. "
        f"Backend at git {versions.get('git')} ({versions.get('backend_tree')} tree); "
        f"websockets {versions.get('websockets')}, picows {versions.get('picows')}, "
        f"uvloop {versions.get('uvloop')}"
        + (f", {versions['centrifugo']}" if "centrifugo" in versions else "")
        + f". {params['rounds']} round(s) of {params['window_seconds']:g} s per figure after a "
        f"warm-up; medians with (min-max).",
        "",
    ]
    for peer, note in results.get("notes", {}).items():
        lines += [f"- {peer} not measured: {note}", ""]
    lines += _targets_table(results)
    lines += _goals_table(results)
    lines += _fanout_table(results)
    lines += _idle_table(results)
    lines += _churn_table(results)
    lines += _redis_table(results)
    lines += _cluster_table(results)
    lines += _instances_table(results)
    lines += _edge_table(results)
    for plot in plots:
        lines += [f"![{Path(plot).stem}]({plot})", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the PNGs into ``out``; returns their paths."""
    import matplotlib  # noqa: PLC0415 only needed when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    scen = results["scenarios"]
    fan = scen.get("fanout", {})
    sizes = results["parameters"]["sizes"]
    peers = _peers(fan)
    if fan:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        width = 0.8 / max(1, len(peers))
        for index, peer in enumerate(peers):
            values = []
            lows, highs = [], []
            for size in sizes:
                sat = fan.get(f"{peer}@{size}", {}).get("saturation", {})
                block = sat.get("delivered_per_s", {})
                median = block.get("median") or 0.0
                values.append(median)
                lows.append(median - (block.get("min") or median))
                highs.append((block.get("max") or median) - median)
            xs = [i + index * width for i in range(len(sizes))]
            left.bar(
                xs, values, width, yerr=[lows, highs], label=peer, color=COLORS[peer], capsize=3
            )
        left.set_xticks(
            [i + width * (len(peers) - 1) / 2 for i in range(len(sizes))],
            [f"{s:,} members" for s in sizes],
        )
        left.set_ylabel("delivered messages / s (saturation)")
        left.set_title("Fan-out throughput, one room")
        left.legend()
        size = 1000 if 1000 in sizes else max(sizes)  # the size the latency target names
        for peer in peers:
            cell = fan.get(f"{peer}@{size}", {})
            points = [
                (p["fraction"] * 100, _median(p, "p99_ms"), _median(p, "p50_ms"))
                for p in cell.get("ramp", [])
            ]
            points = [p for p in points if p[1] is not None]
            if points:
                right.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker="o",
                    color=COLORS[peer],
                    label=f"{peer} p99",
                )
                right.plot(
                    [p[0] for p in points],
                    [p[2] for p in points],
                    marker=".",
                    linestyle="--",
                    color=COLORS[peer],
                    label=f"{peer} p50",
                )
        right.axhline(
            TARGETS["p99_ms"], color="red", linewidth=0.8, linestyle=":", label="p99 target"
        )
        right.set_xlabel("offered load, % of the peer's saturation")
        right.set_ylabel("publish-to-deliver latency, ms")
        right.set_yscale("log")
        right.set_title(f"Latency vs load, {size:,} members")
        right.legend(fontsize=7)
        fig.tight_layout()
        path = out / "fanout.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    idle, churn = scen.get("idle", {}), scen.get("churn", {})
    if idle or churn:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        names = [p for p in _peers(idle) if "error" not in idle[p]]
        kb = [(idle[p]["rss_per_connection_bytes"] or 0) / 1024 for p in names]
        added = [(idle[p]["rss_added_per_connection_bytes"] or 0) / 1024 for p in names]
        slots = list(range(len(names)))
        left.bar(
            [x - 0.2 for x in slots],
            kb,
            0.4,
            color=[COLORS[p] for p in names],
            label="process RSS / N",
        )
        left.bar(
            [x + 0.2 for x in slots],
            added,
            0.4,
            color=[COLORS[p] for p in names],
            alpha=0.45,
            hatch="//",
            label="RSS added / N",
        )
        left.set_xticks(slots, names)
        left.axhline(TARGETS["idle_kb"], color="red", linewidth=0.8, linestyle=":", label="target")
        left.set_ylabel("RSS / connection, KiB")
        count = max((idle[p]["connections"] for p in names), default=0)
        left.set_title(f"Idle: {count:,} connections (two rooms, presence)")
        left.legend()
        names = [p for p in _peers(churn) if "error" not in churn[p]]
        rates = [_median(churn[p], "per_s") or 0 for p in names]
        right.bar(names, rates, color=[COLORS[p] for p in names])
        right.axhline(
            TARGETS["handshakes_per_s"], color="red", linewidth=0.8, linestyle=":", label="target"
        )
        right.set_ylabel("sessions / s")
        right.set_title("Connection churn (handshake, auth, join, leave)")
        right.legend()
        fig.tight_layout()
        path = out / "connections.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_docs(results: dict[str, Any], *, docs: Path, results_path: Path) -> list[Path]:
    """Plots into ``docs/perf``, the generated section into ``docs/PERFORMANCE.md``."""
    pngs = plot(results, docs / "perf")
    section = markdown(results, plots=[f"perf/{p.name}" for p in pngs])
    name = results_path.name
    section += f"\nEvery figure of this run: [`{name}`](../bench/results/{name}).\n"
    page = docs / "PERFORMANCE.md"
    text = page.read_text() if page.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")
    return [page, *pngs]


def compare(runs: Sequence[dict[str, Any]]) -> str:
    """The targets of several runs side by side (how much figures move between runs)."""
    header = "| target | goal | " + " | ".join(r["started"][11:16] + " UTC" for r in runs) + " |"
    lines = [header, "| --- | ---: |" + " ---: |" * len(runs)]
    rows = [targets(run) for run in runs]
    for index, first in enumerate(rows[0]):
        cells = [_fmt(row[index]["measured"], first["digits"]) for row in rows]
        goal = f"{first['direction']} {_fmt(first['goal'], first['digits'])}"
        lines.append(f"| {first['target']} | {goal} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report RUN.json...``: the targets of these runs side by side."""
    import json  # noqa: PLC0415
    import sys  # noqa: PLC0415

    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m bench.report RUN.json [RUN.json...]", file=sys.stderr)
        return 2
    print(compare([json.loads(p.read_text()) for p in paths]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
