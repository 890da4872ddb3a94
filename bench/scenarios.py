"""The measured workloads. Each takes running servers and a load generator, returns plain data.

Shapes of the numbers (every figure lands in the run's JSON):

* a *window* publishes for ``window_seconds``, waits for in-flight deliveries, then reads the
  counters: delivered messages per second, publish rate, delivery ratio (deliveries over
  published x members: 1.0 means nobody missed anything), latency percentiles from the sampled
  members, CPU of server(s) and generator as a share of one core;
* *saturation* is a closed loop (each sender keeps ``inflight`` messages on the way until it
  gets its own back); the *ramp* then offers 10/25/50/75 % of that publish rate open loop;
  the 50 % point is the one the latency target speaks of, 10 % shows latency at low load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.clients import ConnSpec
from bench.loadgen import LoadGenerator
from bench.servers import Server

RAMP = (0.1, 0.25, 0.5, 0.75)
LATENCY_POINT = 0.5


@dataclass(frozen=True, slots=True)
class Params:
    """Sizes and durations of one run (``quick`` shrinks every one of them)."""

    sizes: tuple[int, ...] = (100, 1000, 5000)
    senders: int = 4
    inflight: int = 4
    window_seconds: float = 3.0
    warmup_seconds: float = 2.0
    rounds: int = 3
    idle_connections: int = 10_000
    idle_rooms_size: int = 50
    idle_settle_seconds: float = 5.0
    idle_seconds: float = 30.0
    churn_seconds: float = 4.0
    churn_concurrency: int = 32
    redis_size: int = 1000
    edge_size: int = 1000
    instance_counts: tuple[int, ...] = (1, 2, 4)
    """Backends sharing one room in the ``instances`` scenario (``redis_size`` members)."""
    workers: int = 2
    ramp: tuple[float, ...] = RAMP
    """Shares of the saturation publish rate offered open loop after the saturation rounds."""

    @classmethod
    def quick(cls) -> Params:
        return cls(
            sizes=(100, 500),
            window_seconds=1.5,
            warmup_seconds=0.5,
            rounds=1,
            idle_connections=1000,
            idle_settle_seconds=1.0,
            idle_seconds=3.0,
            churn_seconds=1.5,
            redis_size=300,
            edge_size=300,
        )

    @classmethod
    def smoke(cls) -> Params:
        return cls(
            sizes=(20,),
            senders=2,
            window_seconds=0.5,
            warmup_seconds=0.2,
            rounds=1,
            idle_connections=40,
            idle_settle_seconds=0.2,
            idle_seconds=0.5,
            churn_seconds=0.5,
            churn_concurrency=4,
            redis_size=20,
            edge_size=20,
            instance_counts=(1, 2),
            ramp=(LATENCY_POINT,),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile by nearest rank (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return float(ordered[index])


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every value of repeated rounds."""
    return {
        "median": statistics.median(values) if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "rounds": list(values),
    }


class CpuMeter:
    """CPU seconds of the servers and of the generator's processes over an interval."""

    def __init__(self, servers: Sequence[Server], loadgen: LoadGenerator) -> None:
        self._servers = servers
        self._loadgen = loadgen
        self._started = 0.0
        self._server0: list[float] = []
        self._gen0 = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._server0 = [s.cpu_seconds() for s in self._servers]
        self._gen0 = _generator_cpu(self._loadgen)

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._started
        servers = [s.cpu_seconds() - c for s, c in zip(self._servers, self._server0, strict=True)]
        generator = _generator_cpu(self._loadgen) - self._gen0
        return {
            "wall_seconds": wall,
            "server_cpu_seconds": sum(servers),
            "server_cpu_percent": [100 * c / wall for c in servers],
            "generator_cpu_percent": 100 * generator / wall,
        }


def _generator_cpu(loadgen: LoadGenerator) -> float:
    import psutil  # noqa: PLC0415 type stubs are not installed; keep the import local

    total = 0.0
    for pid in loadgen.pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _window(
    loadgen: LoadGenerator,
    servers: Sequence[Server],
    *,
    members: int,
    seconds: float,
    rate: float = 0.0,
    inflight: int = 4,
    drain: float = 10.0,
) -> dict[str, Any]:
    meter = CpuMeter(servers, loadgen)
    meter.start()
    per_worker = rate / len(loadgen)
    loadgen.call("reset")
    answers = loadgen.call("publish", rate=per_worker, window=inflight, seconds=seconds)
    published = sum(a["published"] for a in answers)
    drained = _wait_delivered(loadgen, published * members, drain)
    cpu = meter.stop()
    stats = loadgen.stats()
    delivered = stats["delivered"]
    latencies = [ns / 1e6 for ns in stats["latency_ns"]]
    return {
        "offered_rate": rate or None,
        "published": published,
        "published_per_s": published / seconds,
        "delivered": delivered,
        "delivered_per_s": delivered / seconds,
        "delivery_ratio": delivered / (published * members) if published else None,
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies) if latencies else None,
            "samples": len(latencies),
        },
        "drain_seconds": drained,
        "open": stats["open"],
        "lost": stats["lost"],
        "lost_reasons": stats["lost_reasons"],
        "server_cpu_seconds": cpu["server_cpu_seconds"],
        "server_cpu_percent": cpu["server_cpu_percent"],
        "generator_cpu_percent": cpu["generator_cpu_percent"],
        "server_cpu_us_per_delivery": (
            1e6 * cpu["server_cpu_seconds"] / delivered if delivered else None
        ),
    }


def _wait_delivered(loadgen: LoadGenerator, expected: int, limit: float) -> float:
    """Wait until ``expected`` deliveries arrived (the window's backlog drained), or nothing
    arrived for 3 s, or ``limit`` seconds passed; returns the seconds waited."""
    started = time.monotonic()
    last, last_change = -1, started
    while time.monotonic() < started + limit:
        now = sum(a["delivered"] for a in loadgen.call("count"))
        if now >= expected:
            break
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > 3.0:
            break
        time.sleep(0.05)
    return time.monotonic() - started


def members(
    urls: Sequence[tuple[str, str]], size: int, *, room: str, senders: int
) -> list[ConnSpec]:
    """``size`` members of ``room`` split round-robin over ``urls`` ((url, protocol) pairs);
    the first ``senders`` publish; about 50 of them sample latency."""
    stride = max(1, size // 50)
    return [
        ConnSpec(
            url=urls[i % len(urls)][0],
            protocol=urls[i % len(urls)][1],
            user=f"m{i}",
            rooms=(room,),
            sender=i if i < senders else -1,
            sampled=i % stride == 0,
        )
        for i in range(size)
    ]


def _open(loadgen: LoadGenerator, specs: Sequence[ConnSpec]) -> dict[str, Any]:
    opened = loadgen.open(specs)
    if opened["opened"] != len(specs):
        raise ScenarioError(
            f"opened {opened['opened']} of {len(specs)} connections: {opened['errors']}"
        )
    return opened


class ScenarioError(RuntimeError):
    """A scenario could not run as designed; the message says what was short."""


def fanout(
    loadgen: LoadGenerator,
    servers: Sequence[Server],
    specs: Sequence[ConnSpec],
    params: Params,
    *,
    ramp: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Saturation (closed loop, ``rounds`` windows after a warm-up) then the ramp."""
    size = len(specs)
    opened = _open(loadgen, specs)
    time.sleep(0.5)
    try:
        _window(
            loadgen, servers, members=size, seconds=params.warmup_seconds, inflight=params.inflight
        )
        saturation = [
            _window(
                loadgen,
                servers,
                members=size,
                seconds=params.window_seconds,
                inflight=params.inflight,
            )
            for _ in range(params.rounds)
        ]
        publish_rate = statistics.median(w["published_per_s"] for w in saturation)
        points = []
        for fraction in params.ramp if ramp is None else ramp:
            rounds = params.rounds if fraction == LATENCY_POINT else 1
            windows = [
                _window(
                    loadgen,
                    servers,
                    members=size,
                    seconds=params.window_seconds,
                    rate=fraction * publish_rate,
                )
                for _ in range(rounds)
            ]
            points.append({"fraction": fraction, "windows": windows, **_summary(windows)})
    finally:
        loadgen.close()
    return {
        "members": size,
        "setup_seconds": opened["seconds"],
        "join_retries": opened["join_retries"],
        "saturation": {"windows": saturation, **_summary(saturation)},
        "ramp": points,
    }


def _summary(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def values(get: Callable[[dict[str, Any]], Any]) -> list[float]:
        return [float(v) for v in map(get, windows) if v is not None]

    return {
        "delivered_per_s": spread(values(lambda w: w["delivered_per_s"])),
        "published_per_s": spread(values(lambda w: w["published_per_s"])),
        "p50_ms": spread(values(lambda w: w["latency_ms"]["p50"])),
        "p99_ms": spread(values(lambda w: w["latency_ms"]["p99"])),
        "delivery_ratio_min": min(values(lambda w: w["delivery_ratio"]), default=None),
        "server_cpu_percent": spread(values(lambda w: sum(w["server_cpu_percent"]))),
        "generator_cpu_percent": spread(values(lambda w: w["generator_cpu_percent"])),
        "server_cpu_us_per_delivery": spread(values(lambda w: w["server_cpu_us_per_delivery"])),
    }


def idle_members(server: Server, count: int, params: Params) -> list[ConnSpec]:
    """``count`` connections, each in two of ``count / idle_rooms_size`` rooms (about
    ``2 x idle_rooms_size`` members per room)."""
    rooms = max(2, count // params.idle_rooms_size)
    return [
        ConnSpec(
            url=server.url,
            protocol=server.protocol,
            user=f"i{i}",
            rooms=(f"idle-{i % rooms}", f"idle-{(i + 1) % rooms}"),
        )
        for i in range(count)
    ]


def idle(loadgen: LoadGenerator, server: Server, count: int, params: Params) -> dict[str, Any]:
    """``count`` authenticated connections, each in two rooms with presence; RSS and CPU per
    connection once settled, with keepalive pings running."""
    rss_empty = server.rss()
    specs = idle_members(server, count, params)
    opened = loadgen.open(specs)
    try:
        time.sleep(params.idle_settle_seconds)
        rss = server.rss()
        cpu0 = server.cpu_seconds()
        started = time.monotonic()
        time.sleep(params.idle_seconds)
        cpu = server.cpu_seconds() - cpu0
        wall = time.monotonic() - started
        still_open = loadgen.stats()["open"]
    finally:
        loadgen.close()
    connected = opened["opened"]
    return {
        "requested": count,
        "connections": connected,
        "errors": opened["errors"],
        "join_retries": opened["join_retries"],
        "setup_seconds": opened["seconds"],
        "open_after_idle": still_open,
        "rss_empty_bytes": rss_empty,
        "rss_bytes": rss,
        "rss_per_connection_bytes": rss / connected if connected else None,
        "rss_added_per_connection_bytes": (rss - rss_empty) / connected if connected else None,
        "idle_seconds": wall,
        "idle_cpu_percent": 100 * cpu / wall,
        "idle_cpu_us_per_connection_per_s": 1e6 * cpu / wall / connected if connected else None,
    }


def churn(
    loadgen: LoadGenerator,
    servers: Sequence[Server],
    url_protocols: Sequence[tuple[str, str]],
    params: Params,
) -> dict[str, Any]:
    """Sessions per second: WebSocket handshake, auth, join with presence, disconnect."""
    users = 2000
    specs = [
        ConnSpec(
            url=url_protocols[i % len(url_protocols)][0],
            protocol=url_protocols[i % len(url_protocols)][1],
            user=f"c{i}",
            rooms=(f"churn-{i % 100}",),
        )
        for i in range(users)
    ]
    shares: list[list[ConnSpec]] = [specs[i :: len(loadgen)] for i in range(len(loadgen))]

    def run(seconds: float) -> dict[str, Any]:
        meter = CpuMeter(servers, loadgen)
        meter.start()
        answers = loadgen.call(
            "churn",
            [
                {"specs": s, "concurrency": params.churn_concurrency, "seconds": seconds}
                for s in shares
            ],
        )
        cpu = meter.stop()
        done = sum(a["completed"] for a in answers)
        times = [ns / 1e6 for a in answers for ns in a["handshake_ns"]]
        errors: dict[str, int] = {}
        for answer in answers:
            for reason, n in answer["errors"].items():
                errors[reason] = errors.get(reason, 0) + n
        return {
            "completed": done,
            "per_s": done / seconds,
            "errors": errors,
            "session_ms": {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99)},
            "server_cpu_percent": cpu["server_cpu_percent"],
            "server_cpu_us_per_session": 1e6 * cpu["server_cpu_seconds"] / done if done else None,
            "generator_cpu_percent": cpu["generator_cpu_percent"],
        }

    run(params.warmup_seconds)
    windows = [run(params.churn_seconds) for _ in range(params.rounds)]
    return {
        "concurrency": params.churn_concurrency * len(loadgen),
        "windows": windows,
        "per_s": spread([w["per_s"] for w in windows]),
        "p50_ms": spread([w["session_ms"]["p50"] for w in windows if w["session_ms"]["p50"]]),
        "p99_ms": spread([w["session_ms"]["p99"] for w in windows if w["session_ms"]["p99"]]),
        "server_cpu_percent": spread([sum(w["server_cpu_percent"]) for w in windows]),
        "generator_cpu_percent": spread([w["generator_cpu_percent"] for w in windows]),
        "server_cpu_us_per_session": spread(
            [w["server_cpu_us_per_session"] for w in windows if w["server_cpu_us_per_session"]]
        ),
    }
