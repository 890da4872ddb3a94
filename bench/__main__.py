"""``python -m bench``: run the suite, write bench/results/<time>.json and docs/PERFORMANCE.md.

Profiles: full (default, ~13-18 min on 2 cores), ``--quick`` or ``BENCH_QUICK=1`` (~4 min),
``--smoke`` (seconds, what the test suite runs). Peers: ``baseline`` (websockets' broadcast
example), ``realtime`` (this backend), ``centrifugo`` (built from the Go module proxy).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench import centrifugo as centrifugo_build
from bench import report, scenarios, servers
from bench.loadgen import LoadGenerator
from bench.scenarios import Params

logger = logging.getLogger("bench")

PEERS = ("baseline", "realtime", "centrifugo")
SCENARIOS = ("fanout", "idle", "churn", "redis", "cluster", "instances", "edge")
RESULTS = servers.REPO / "bench" / "results"


def _raise_fd_limit(wanted: int = 65536) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _command_output(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""
    )


def _machine() -> dict[str, Any]:
    import psutil  # noqa: PLC0415

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
    }


def _versions(centrifugo_binary: Path | None) -> dict[str, str]:
    from importlib.metadata import version  # noqa: PLC0415

    found: dict[str, str] = {}
    for package in ("websockets", "picows", "uvloop", "redis", "PyJWT", "psutil"):
        try:
            found[package] = version(package)
        except Exception:
            found[package] = "missing"
    found["git"] = _command_output(["git", "-C", str(servers.REPO), "rev-parse", "--short", "HEAD"])
    dirty = _command_output(
        ["git", "-C", str(servers.REPO), "status", "--porcelain", "backend/realtime"]
    )
    found["backend_tree"] = "modified" if dirty else "clean"
    found["backend_python"] = servers.backend_python()
    found["backend_has_cryptography"] = _command_output(
        [
            servers.backend_python(),
            "-c",
            "import importlib.util; print(importlib.util.find_spec('cryptography') is not None)",
        ]
    )
    found["redis-server"] = _command_output(["redis-server", "--version"])
    found["haproxy"] = _command_output([shutil.which("haproxy") or "/usr/sbin/haproxy", "-v"])
    if centrifugo_binary is not None:
        found["centrifugo"] = centrifugo_build.version(centrifugo_binary)
    return found


class Run:
    """One invocation: shared secret, work directory, CPU layout, results being filled."""

    def __init__(self, params: Params, *, pin: bool, workdir: Path) -> None:
        self.params = params
        self.secret = secrets.token_urlsafe(32)
        self.workdir = workdir
        two = (os.cpu_count() or 1) >= 2
        self.server_cpus: list[int] | None = [0] if pin and two else None
        self.generator_cpus: list[int] | None = [1] if pin and two else None
        self.centrifugo: Path | None = None
        self.results: dict[str, Any] = {"scenarios": {}}

    def peer(
        self, name: str, *, cpus: Sequence[int] | None
    ) -> AbstractContextManager[servers.Server]:
        if name == "baseline":
            return servers.baseline(self.workdir, cpus=cpus)
        if name == "realtime":
            return servers.backend(self.workdir, secret=self.secret, cpus=cpus)
        if name == "centrifugo" and self.centrifugo is not None:
            return servers.centrifugo(
                self.workdir, binary=self.centrifugo, secret=self.secret, cpus=cpus
            )
        raise ValueError(f"unknown or unavailable peer {name!r}")

    def record(self, scenario: str, key: str, measure: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        logger.info("%s %s: running", scenario, key)
        try:
            value = measure()
        except Exception as exc:
            logger.exception("%s %s failed", scenario, key)
            value = {"error": f"{type(exc).__name__}: {exc}"[:600]}
        value["elapsed_seconds"] = time.monotonic() - started
        self.results["scenarios"].setdefault(scenario, {})[key] = value
        logger.info("%s %s: %s", scenario, key, report.one_line(scenario, value))


def _fanout(run: Run, loadgen: LoadGenerator, peers: Sequence[str]) -> None:
    for size in run.params.sizes:
        for peer in peers:

            def measure(peer: str = peer, size: int = size) -> dict[str, Any]:
                with run.peer(peer, cpus=run.server_cpus) as server:
                    specs = scenarios.members(
                        [(server.url, server.protocol)],
                        size,
                        room="fanout",
                        senders=run.params.senders,
                    )
                    return scenarios.fanout(loadgen, [server], specs, run.params)

            run.record("fanout", f"{peer}@{size}", measure)


def _idle(run: Run, loadgen: LoadGenerator, peers: Sequence[str]) -> None:
    for peer in peers:

        def measure(peer: str = peer) -> dict[str, Any]:
            with run.peer(peer, cpus=run.server_cpus) as server:
                return scenarios.idle(loadgen, server, run.params.idle_connections, run.params)

        run.record("idle", peer, measure)


def _churn(run: Run, loadgen: LoadGenerator, peers: Sequence[str]) -> None:
    for peer in peers:

        def measure(peer: str = peer) -> dict[str, Any]:
            with run.peer(peer, cpus=run.server_cpus) as server:
                return scenarios.churn(
                    loadgen, [server], [(server.url, server.protocol)], run.params
                )

        run.record("churn", peer, measure)


def _redis(run: Run, loadgen: LoadGenerator) -> None:
    size = run.params.redis_size
    ramp = (scenarios.LATENCY_POINT,)

    def one() -> dict[str, Any]:
        with (
            servers.redis_server(run.workdir) as redis,
            servers.backend(
                run.workdir, secret=run.secret, name="realtime-a", redis_url=redis.url
            ) as a,
        ):
            specs = scenarios.members(
                [(a.url, a.protocol)], size, room="shared", senders=run.params.senders
            )
            return scenarios.fanout(loadgen, [a, redis], specs, run.params, ramp=ramp)

    def memory() -> dict[str, Any]:
        with servers.backend(run.workdir, secret=run.secret, name="realtime-m") as m:
            specs = scenarios.members(
                [(m.url, m.protocol)], size, room="shared", senders=run.params.senders
            )
            return scenarios.fanout(loadgen, [m], specs, run.params, ramp=ramp)

    def two() -> dict[str, Any]:
        with (
            servers.redis_server(run.workdir) as redis,
            servers.backend(
                run.workdir, secret=run.secret, name="realtime-a", redis_url=redis.url
            ) as a,
            servers.backend(
                run.workdir, secret=run.secret, name="realtime-b", redis_url=redis.url
            ) as b,
        ):
            specs = scenarios.members(
                [(a.url, a.protocol), (b.url, b.protocol)],
                size,
                room="shared",
                senders=run.params.senders,
            )
            return scenarios.fanout(loadgen, [a, b, redis], specs, run.params, ramp=ramp)

    run.record("redis", "one-instance-memory", memory)
    run.record("redis", "one-instance-redis", one)
    run.record("redis", "two-instances-redis", two)


def _backends(
    run: Run, stack: contextlib.ExitStack, broker: servers.Server, count: int, *, cluster: bool
) -> list[servers.Server]:
    """``count`` backends on ``broker`` (a redis-server, or a cluster with REDIS_CLUSTER=1)."""
    env = {"REDIS_CLUSTER": "1"} if cluster else {}
    kind = "cluster" if cluster else "redis"
    return [
        stack.enter_context(
            servers.backend(
                run.workdir,
                secret=run.secret,
                name=f"realtime-{kind}-{count}-{index}",
                redis_url=broker.url,
                extra_env=env,
            )
        )
        for index in range(count)
    ]


def _shared_room(
    run: Run,
    loadgen: LoadGenerator,
    broker: servers.Server,
    count: int,
    *,
    cluster: bool,
    room: str,
) -> dict[str, Any]:
    """``redis_size`` members of one room split round-robin over ``count`` backends on
    ``broker``; saturation then the 50 % point; CPU is the backends' and the broker's."""
    with contextlib.ExitStack() as stack:
        backends = _backends(run, stack, broker, count, cluster=cluster)
        specs = scenarios.members(
            [(b.url, b.protocol) for b in backends],
            run.params.redis_size,
            room=room,
            senders=run.params.senders,
        )
        result = scenarios.fanout(
            loadgen, [*backends, broker], specs, run.params, ramp=(scenarios.LATENCY_POINT,)
        )
    result["instances"] = count
    result["broker"] = "cluster" if cluster else "redis"
    return result


def _instances(run: Run, loadgen: LoadGenerator, cluster: Callable[[], servers.Server]) -> None:
    """1, 2, 4 ... backends sharing one room on one redis-server, then on the cluster: delivered
    msg/s and server CPU (backends + Redis) per delivery."""
    with servers.redis_server(run.workdir) as redis:
        for count in run.params.instance_counts:
            run.record(
                "instances",
                f"{count}-redis",
                lambda count=count: _shared_room(  # type: ignore[misc]
                    run, loadgen, redis, count, cluster=False, room=f"instances-redis-{count}"
                ),
            )
    for count in run.params.instance_counts:
        run.record(
            "instances",
            f"{count}-cluster",
            lambda count=count: _shared_room(  # type: ignore[misc]
                run, loadgen, cluster(), count, cluster=True, room=f"instances-cluster-{count}"
            ),
        )


def _edge(run: Run) -> None:
    size = run.params.edge_size
    ramp = (scenarios.LATENCY_POINT,)
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(
            servers.backend(run.workdir, secret=run.secret, name="realtime-edge")
        )
        wss, ca_file, haproxy = stack.enter_context(
            servers.edge(run.workdir, backend_server=backend)
        )
        loadgen = stack.enter_context(
            LoadGenerator(workers=run.params.workers, secret=run.secret, ca_file=ca_file)
        )
        measured = [backend, haproxy]
        for label, url in (("direct", backend.url), ("edge", wss)):

            def fan(url: str = url, label: str = label) -> dict[str, Any]:
                specs = scenarios.members(
                    [(url, "realtime")], size, room=f"edge-{label}", senders=run.params.senders
                )
                return scenarios.fanout(loadgen, measured, specs, run.params, ramp=ramp)

            def churn(url: str = url) -> dict[str, Any]:
                return scenarios.churn(loadgen, measured, [(url, "realtime")], run.params)

            run.record("edge", f"fanout-{label}", fan)
            run.record("edge", f"churn-{label}", churn)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") == "1",
        help="small sizes, short windows (also BENCH_QUICK=1)",
    )
    profile.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suite runs")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument(
        "--sizes", help="comma-separated fan-out room sizes instead of the profile's (5000)"
    )
    parser.add_argument(
        "--backend",
        type=Path,
        help="measure the backend in this directory instead (before/after a change)",
    )
    parser.add_argument(
        "--rounds", type=int, help="measured windows per figure instead of the profile's"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON")
    parser.add_argument(
        "--docs",
        type=Path,
        default=servers.REPO / "docs",
        help="write PERFORMANCE.md and perf/*.png here",
    )
    parser.add_argument("--no-docs", action="store_true", help="write only the JSON")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin servers to CPU 0 and the generator to CPU 1",
    )
    parser.add_argument(
        "--no-build", action="store_true", help="skip centrifugo unless it is built already"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    params = Params.smoke() if args.smoke else Params.quick() if args.quick else Params()
    if args.sizes:
        params = dataclasses.replace(params, sizes=tuple(int(s) for s in args.sizes.split(",")))
    if args.rounds:
        params = dataclasses.replace(params, rounds=args.rounds)
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    peers = [p for p in args.peers.split(",") if p]
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = sorted(set(peers) - set(PEERS)) + sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        logger.error("unknown peer or scenario: %s", ", ".join(unknown))
        return 2
    if args.backend is not None:
        if not (args.backend / "realtime" / "__main__.py").exists():
            logger.error("--backend %s has no realtime/__main__.py", args.backend)
            return 2
        servers.BACKEND = args.backend.resolve()
    fd_limit = _raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="realtime-bench-") as tmp:
        run = Run(params, pin=not args.no_pin, workdir=Path(tmp))
        notes: dict[str, str] = {}
        if "centrifugo" in peers:
            try:
                run.centrifugo = centrifugo_build.ensure_binary(build=not args.no_build)
            except centrifugo_build.CentrifugoUnavailable as exc:
                notes["centrifugo"] = str(exc)
                logger.warning("centrifugo skipped: %s", exc)
                peers.remove("centrifugo")
        started = datetime.datetime.now(datetime.UTC)
        run.results.update(
            {
                "profile": profile,
                "started": started.isoformat(timespec="seconds"),
                "machine": _machine(),
                "versions": _versions(run.centrifugo),
                "parameters": {
                    **params.as_dict(),
                    "peers": peers,
                    "scenarios": chosen,
                    "server_cpus": run.server_cpus,
                    "generator_cpus": run.generator_cpus,
                    "fd_limit": fd_limit,
                    "backend_env": servers.BACKEND_LIMITS,
                    "backend_dir": str(servers.BACKEND),
                },
                "notes": notes,
            }
        )
        with LoadGenerator(
            workers=params.workers, secret=run.secret, cpus=run.generator_cpus
        ) as loadgen:
            if "fanout" in chosen:
                _fanout(run, loadgen, peers)
            if "idle" in chosen:
                _idle(run, loadgen, peers)
            if "churn" in chosen:
                _churn(run, loadgen, peers)
        if {"redis", "cluster", "instances", "edge"} & set(chosen):
            with (
                LoadGenerator(workers=params.workers, secret=run.secret) as loadgen,
                contextlib.ExitStack() as cluster_stack,
            ):
                if "redis" in chosen:
                    _redis(run, loadgen)
                started_cluster: list[servers.Server] = []

                def cluster() -> servers.Server:
                    """One 3+3 cluster for both scenarios, started on first use."""
                    if not started_cluster:
                        started_cluster.append(
                            cluster_stack.enter_context(servers.redis_cluster(run.workdir))
                        )
                    return started_cluster[0]

                if "cluster" in chosen:
                    run.record(
                        "cluster",
                        "two-instances-cluster",
                        lambda: _shared_room(
                            run, loadgen, cluster(), 2, cluster=True, room="shared-cluster"
                        ),
                    )
                if "instances" in chosen:
                    _instances(run, loadgen, cluster)
            if "edge" in chosen:
                try:
                    _edge(run)
                except Exception as exc:
                    logger.exception("edge scenario could not start")
                    run.results["scenarios"].setdefault("edge", {})["setup"] = {
                        "error": f"{type(exc).__name__}: {exc}"[:600]
                    }
        run.results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        run.results["machine"]["load_average_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{profile}.json"
    path.write_text(json.dumps(run.results, indent=1))
    logger.info("results: %s", path)
    if not args.no_docs:
        written = report.write_docs(run.results, docs=args.docs, results_path=path)
        logger.info("docs: %s", ", ".join(str(p) for p in written))
    print(report.markdown(run.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
