"""The processes under test: the backend, the peers, redis-server and the TLS edge.

Each is started in its own session with its output in a log file under the run's work
directory, waited for on its TCP port and stopped with SIGTERM (SIGKILL after a grace). The
signing secret reaches servers through their environment only, never a command line or file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.centrifugo import CENTRIFUGO_NAMESPACE
from infra.local.loopback import (
    free_port,
    free_port_base,
    port_is_free,
    redis_server_argv,
    spawn,
    stop_group,
)
from infra.local.supervise import SuperviseError, running, wait_tcp

REPO = Path(__file__).resolve().parents[1]
BACKEND = Path(os.environ.get("BENCH_BACKEND", REPO / "backend"))
BACKEND_VENV = REPO / ".venv-backend"
"""The backend's own environment, ``backend/requirements.txt`` only, as in its image
(``make bench`` creates it). Without it the backend runs on the bench's interpreter, whose
virtualenv also holds the infra's packages: PyJWT then imports ``cryptography`` (about
10 MB of RSS the shipped backend does not have)."""


def backend_python() -> str:
    """The interpreter the backend runs on: :data:`BACKEND_VENV` when it exists."""
    python = BACKEND_VENV / "bin" / "python"
    return str(python) if python.exists() else sys.executable


"""The backend measured: this checkout's, or another ``backend/`` directory (before/after
comparisons of a change) named by ``BENCH_BACKEND`` or ``--backend``."""
START_TIMEOUT = 30.0


class ServerError(RuntimeError):
    """A server did not start; the message names the command and shows its log's tail."""


@dataclass
class Server:
    """One running process under test and where clients reach it."""

    name: str
    url: str
    protocol: str
    process: subprocess.Popen[bytes] | None
    log: Path
    extra: dict[str, object] = field(default_factory=dict)
    nodes: tuple[int, ...] = ()
    """Pids counted as this server when it has no process of its own (a cluster's nodes)."""

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else self.nodes[0]

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.process.pid,) if self.process is not None else self.nodes

    def rss(self) -> int:
        """Resident set size in bytes, every node's summed (none of ours fork)."""
        return sum(int(psutil.Process(pid).memory_info().rss) for pid in self.pids)

    def cpu_seconds(self) -> float:
        """User and system CPU seconds so far, every node's summed."""
        total = 0.0
        for pid in self.pids:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        return total

    def pin(self, cpus: Sequence[int] | None) -> None:
        if cpus:
            process = psutil.Process(self.pid)
            for thread in process.threads():
                with contextlib.suppress(psutil.Error, OSError):
                    os.sched_setaffinity(thread.id, list(cpus))
            process.cpu_affinity(list(cpus))


@contextlib.contextmanager
def _running(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    workdir: Path,
    env: Mapping[str, str],
    cwd: Path = REPO,
    cpus: Sequence[int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    log = workdir / f"{name}.log"
    process = spawn(argv, log=log, cwd=cwd, env=env)
    try:
        if cpus:
            psutil.Process(process.pid).cpu_affinity(list(cpus))
        try:
            wait_tcp("127.0.0.1", port, timeout=START_TIMEOUT, process=process, log=log)
        except SuperviseError as exc:
            raise ServerError(str(exc)) from None
        yield process
    finally:
        stop_group(process, timeout=15)


def _base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}


BACKEND_LIMITS = {
    # every limit stays on and is checked per frame; the values are raised so that the
    # benchmark's few senders and thousands of connections are measured, not refused
    "RATE_LIMIT_PER_SECOND": "1000000",
    "RATE_LIMIT_BURST": "1000000",
    "MAX_CONNECTIONS": "60000",
}


@contextlib.contextmanager
def backend(
    workdir: Path,
    *,
    secret: str,
    name: str = "realtime",
    redis_url: str = "",
    cpus: Sequence[int] | None = None,
    extra_env: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> Iterator[Server]:
    """``python -m realtime`` with every feature on (auth, presence, history, limits), run
    from ``source`` (a ``backend/`` directory; default this checkout's, see ``--backend``)."""
    ws_port, http_port = free_port(), free_port()
    env = {
        **_base_env(),
        "HOST": "127.0.0.1",
        "WS_PORT": str(ws_port),
        "HTTP_PORT": str(http_port),
        "METRICS_PORT": str(free_port()),
        "TOKEN_SIGNING_KEY": secret,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        **BACKEND_LIMITS,
        **(extra_env or {}),
    }
    argv = [backend_python(), "-m", "realtime"]
    with _running(
        name, argv, port=ws_port, workdir=workdir, env=env, cwd=source or BACKEND, cpus=cpus
    ) as process:
        yield Server(
            name,
            f"ws://127.0.0.1:{ws_port}/",
            "realtime",
            process,
            workdir / f"{name}.log",
            {"http_port": http_port, "ws_port": ws_port},
        )


@contextlib.contextmanager
def baseline(workdir: Path, *, cpus: Sequence[int] | None = None) -> Iterator[Server]:
    """The websockets documentation's broadcast server (bench/peers/websockets_broadcast.py)."""
    port = free_port()
    argv = [sys.executable, str(REPO / "bench" / "peers" / "websockets_broadcast.py"), str(port)]
    with _running(
        "baseline", argv, port=port, workdir=workdir, env=_base_env(), cpus=cpus
    ) as process:
        yield Server(
            "baseline", f"ws://127.0.0.1:{port}/", "baseline", process, workdir / "baseline.log"
        )


def centrifugo_config(port: int) -> dict[str, object]:
    """Channels equivalent to the backend's rooms: one namespace with presence, join/leave
    pushed to every member, history (offsets and epoch) of 500, client-side subscribe and
    publish, HS256 tokens (the secret comes from the environment)."""
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "error"},
        "usage_stats": {"disabled": True},
        "client": {"allowed_origins": ["*"]},
        "channel": {
            "namespaces": [
                {
                    "name": CENTRIFUGO_NAMESPACE,
                    "presence": True,
                    "join_leave": True,
                    "force_push_join_leave": True,
                    "history_size": 500,
                    "history_ttl": "300s",
                    "allow_subscribe_for_client": True,
                    "allow_publish_for_subscriber": True,
                }
            ]
        },
    }


@contextlib.contextmanager
def centrifugo(
    workdir: Path, *, binary: Path, secret: str, cpus: Sequence[int] | None = None
) -> Iterator[Server]:
    """Centrifugo v6 with :func:`centrifugo_config`; GOMAXPROCS follows the CPU pinning."""
    port = free_port()
    config = workdir / "centrifugo.json"
    config.write_text(json.dumps(centrifugo_config(port), indent=2))
    env = {
        **_base_env(),
        "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY": secret,
        "GOMAXPROCS": str(len(cpus)) if cpus else str(os.cpu_count() or 1),
    }
    argv = [str(binary), "--config", str(config)]
    with _running("centrifugo", argv, port=port, workdir=workdir, env=env, cpus=cpus) as process:
        server = Server(
            "centrifugo",
            f"ws://127.0.0.1:{port}/connection/websocket",
            "centrifugo",
            process,
            workdir / "centrifugo.log",
        )
        server.pin(cpus)
        yield server


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[Server]:
    """A throwaway redis-server without persistence (its ``url`` is the REDIS_URL)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerError("redis-server not found on PATH: apt-get install redis-server")
    port = free_port()
    argv = redis_server_argv(port, binary=binary, directory=workdir)
    with _running("redis", argv, port=port, workdir=workdir, env=_base_env()) as process:
        yield Server(
            "redis", f"redis://127.0.0.1:{port}/0", "redis", process, workdir / "redis.log"
        )


@contextlib.contextmanager
def redis_cluster(workdir: Path) -> Iterator[Server]:
    """A Redis Cluster of three masters and three replicas (``infra.local.redis_cluster``, the
    local target's nodes and command lines) on a free port base; one :class:`Server` whose CPU
    and RSS are the six nodes' sum. Backends join it with its ``url`` and ``REDIS_CLUSTER=1``."""
    from infra.local.redis_cluster import cluster_ports, cluster_start, cluster_stop  # noqa: PLC0415

    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise ServerError(
            "redis-server or redis-cli not found on PATH: apt-get install redis-server"
        )
    base = free_port_base(cluster_ports, low=20000, high=40000, step=1000)
    state = workdir / "redis-cluster-state"
    try:
        try:
            ports = cluster_start(state, base)
        except SuperviseError as exc:
            raise ServerError(f"redis cluster at base {base}: {exc}") from None
        pids = []
        for index in range(len(ports)):
            record = running(f"redis-{index + 1}", state=state)
            if record is None:
                raise ServerError(f"redis cluster node redis-{index + 1} is not running")
            pids.append(record.pid)
        yield Server(
            "redis-cluster",
            f"redis://127.0.0.1:{ports[0]}/0",
            "redis",
            None,
            state / "redis-1.log",
            {"ports": ports},
            tuple(pids),
        )
    finally:
        cluster_stop(state)


@contextlib.contextmanager
def edge(workdir: Path, *, backend_server: Server) -> Iterator[tuple[str, str, Server]]:
    """haproxy with the configuration of infra.local.edge for the dev services, in front of
    ``backend_server``; yields the wss URL, the CA file clients trust and the edge process."""
    from infra.flytoml.model import FlyConfig, HttpService, WebSocketService  # noqa: PLC0415
    from infra.local.certs import ensure_certificates  # noqa: PLC0415 only this scenario
    from infra.local.edge import Instance, edge_port, render_haproxy  # noqa: PLC0415

    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        raise ServerError("haproxy not found: apt-get install haproxy")
    fly = FlyConfig(
        app="realtime-bench",
        http_service=HttpService(),
        services=(WebSocketService.build(alpn=("http/1.1",)),),
    )
    certificates = ensure_certificates(workdir / "tls", hosts=("localhost", "127.0.0.1"))
    base = 20000 + free_port() % 40 * 100  # a port base nobody else uses in this run
    while not all(port_is_free(edge_port(p, base=base)) for p in (80, 443, 8081)):
        base += 100
    http_internal = HttpService().internal_port
    instance = Instance(
        name="app-1",
        ports={
            http_internal: int(str(backend_server.extra["http_port"])),
            fly.websocket.internal_port: int(str(backend_server.extra["ws_port"])),
        },
    )
    config = workdir / "haproxy.cfg"
    config.write_text(
        render_haproxy(
            fly, instances=(instance,), certificate=str(certificates.edge), port_base=base
        )
    )
    wss_port = edge_port(fly.websocket.public_port, base=base)
    argv = [binary, "-db", "-f", str(config)]
    with _running("haproxy", argv, port=wss_port, workdir=workdir, env=_base_env()) as process:
        server = Server(
            "edge", f"wss://localhost:{wss_port}/", "realtime", process, workdir / "haproxy.log"
        )
        yield f"wss://localhost:{wss_port}/", str(certificates.ca), server
