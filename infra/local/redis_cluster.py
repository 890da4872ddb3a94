"""A Redis Cluster of three masters and three replicas on this machine.

The local target runs it for a stack with ``realtime-fly:redis: cluster`` (``make up`` then shows
the backends on a cluster, as production would run on one), and the tests start the same nodes
with the same command lines. Each node is Debian's ``redis-server`` with persistence off,
``--cluster-enabled yes`` and an explicit cluster bus port (the default, port + 10000, may not
exist for a high port); ``redis-cli --cluster create --cluster-replicas 1`` joins them.

    python -m infra.local.redis_cluster start --state DIR --base PORT   # idempotent
    python -m infra.local.redis_cluster stop --state DIR

``start`` starts the six nodes detached (``infra.local.supervise``: pid and log files in DIR),
creates the cluster when the nodes do not form one yet, and returns once every node reports
``cluster_state:ok``. ``stop`` stops them and removes their directories (the data is not
persistent; a new cluster is formed on the next start).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import redis

from infra.local.loopback import LOOPBACK, redis_server_argv
from infra.local.supervise import SuperviseError, start, stop, wait_tcp

__all__ = [
    "NODES",
    "cluster_create_argv",
    "cluster_node_argv",
    "cluster_ports",
    "main",
    "node_ports",
]

NODES: Final = 6
"""Three masters, each with one replica."""
NODE_TIMEOUT_MS: Final = 5000
"""How long a master may be unreachable before its replica is promoted (Redis's default 15 s
is long for a demo; tests use less)."""
_BUS_OFFSET: Final = 100


def node_ports(base: int) -> list[int]:
    """The nodes' client ports for a ``localPortBase``: ``base + 7000`` ... ``base + 7005``
    (17000-17005 with the default base); each node's bus port is its port + 100."""
    return [base + 7000 + index for index in range(NODES)]


def cluster_ports(base: int) -> list[int]:
    """Every port a cluster at ``base`` listens on: the nodes' client ports and their bus
    ports (what a free-port search must find free)."""
    return [port + offset for port in node_ports(base) for offset in (0, _BUS_OFFSET)]


def cluster_node_argv(
    port: int,
    *,
    bus_port: int,
    directory: Path,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
    binary: str = "redis-server",
) -> list[str]:
    """One cluster node on 127.0.0.1:``port`` (bus on ``bus_port``), persistence off, its
    ``nodes.conf`` in ``directory``; replicas sync at once (a replica that never synced cannot
    be promoted)."""
    return [
        *redis_server_argv(port, binary=binary, directory=directory),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        str(bus_port),
        "--cluster-node-timeout",
        str(node_timeout_ms),
        "--repl-diskless-sync-delay",
        "0",
    ]


def cluster_create_argv(ports: Sequence[int], *, binary: str = "redis-cli") -> list[str]:
    """``redis-cli --cluster create`` of the nodes on ``ports``, one replica per master."""
    return [
        binary,
        "--cluster",
        "create",
        *(f"{LOOPBACK}:{port}" for port in ports),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
    ]


def _cluster_info(port: int) -> dict[str, object]:
    with redis.Redis(host=LOOPBACK, port=port, socket_timeout=2) as client:
        info: dict[str, object] = client.cluster("info")
        return info


def _formed(port: int) -> bool:
    return int(str(_cluster_info(port).get("cluster_known_nodes", 0))) >= NODES


def _ready(port: int) -> bool:
    """The node sees the cluster ok, and is a master or a replica whose link is up (a replica
    that never synced cannot be promoted)."""
    if _cluster_info(port).get("cluster_state") != "ok":
        return False
    with redis.Redis(host=LOOPBACK, port=port, socket_timeout=2, decode_responses=True) as client:
        replication: dict[str, object] = client.info("replication")
    return replication.get("role") == "master" or replication.get("master_link_status") == "up"


def _wait_ok(ports: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while not _ready(port):
            if time.monotonic() > deadline:
                raise SuperviseError(f"redis cluster node {port}: not ok or not synced")
            time.sleep(0.1)


def cluster_start(state: Path, base: int, *, timeout: float = 60.0) -> list[int]:
    """Start the nodes (those already running are kept) and form the cluster if needed."""
    ports = node_ports(base)
    for index, port in enumerate(ports):
        directory = state / "redis-cluster" / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        argv = cluster_node_argv(port, bus_port=port + _BUS_OFFSET, directory=directory)
        start(f"redis-{index + 1}", argv, state=state)
        wait_tcp(LOOPBACK, port, timeout=timeout)
    if not _formed(ports[0]):
        created = subprocess.run(
            cluster_create_argv(ports), capture_output=True, text=True, check=False, timeout=60
        )
        if created.returncode != 0:
            raise SuperviseError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
    _wait_ok(ports, timeout)
    return ports


def cluster_stop(state: Path) -> None:
    """Stop every node and remove the nodes' directories."""
    for index in range(NODES):
        stop(f"redis-{index + 1}", state=state)
    shutil.rmtree(state / "redis-cluster", ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.redis_cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    started = commands.add_parser("start", help="start the six nodes and form the cluster")
    started.add_argument("--state", type=Path, required=True)
    started.add_argument("--base", type=int, required=True, help="the stack's localPortBase")
    stopped = commands.add_parser("stop", help="stop the nodes and remove their data")
    stopped.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            ports = cluster_start(args.state, args.base)
            print(f"redis cluster ok on {', '.join(str(p) for p in ports)}")
        else:
            cluster_stop(args.state)
    except (SuperviseError, OSError, redis.RedisError) as exc:
        print(f"redis cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
