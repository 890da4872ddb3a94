"""A real Redis Cluster on loopback for the tests: three masters and three replicas.

Six Debian ``redis-server`` processes with the local target's command line
(``infra.local.redis_cluster.cluster_node_argv``: ``--cluster-enabled yes``, here a 1 s node
timeout so a failover takes seconds), joined by ``redis-cli --cluster create --cluster-replicas
1`` (``cluster_create_argv``).
``running_cluster()`` yields a started cluster and always stops every node (test modules wrap
it in a module-scoped fixture). Faults: :meth:`RedisClusterNodes.kill` (SIGKILL a node),
:meth:`RedisClusterNodes.reshard` (``redis-cli --cluster reshard``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from redis.cluster import key_slot

from infra.local.loopback import free_port
from infra.local.redis_cluster import cluster_create_argv, cluster_node_argv

__all__ = ["NODE_TIMEOUT_MS", "RedisClusterNodes", "running_cluster", "slot_of"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
NODE_TIMEOUT_MS = 1000
"""``cluster-node-timeout``: a master is failed over about two of these after it dies."""


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


@dataclass
class Node:
    port: int
    bus_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=2)


class RedisClusterNodes:
    """Six nodes; after :meth:`start` three are masters, each with one replica."""

    def __init__(self, size: int = 6) -> None:
        root = Path(tempfile.mkdtemp(prefix="redis-cluster-test-"))
        # the bus port is given: the default, port + 10000, may not exist for a free port
        self.nodes = [Node(free_port(), free_port(), root / str(i)) for i in range(size)]

    @property
    def url(self) -> str:
        """REDIS_URL: a live node; the client reads the slot map from it."""
        return f"redis://{(self.live() or self.nodes)[0].address}/0"

    def start(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            argv = [
                *cluster_node_argv(
                    node.port,
                    bus_port=node.bus_port,
                    directory=node.directory,
                    node_timeout_ms=NODE_TIMEOUT_MS,
                    binary=REDIS_SERVER,
                ),
                "--logfile",
                str(node.directory / "redis.log"),
            ]
            node.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait(lambda n=node: n.client().ping(), deadline, f"{node.address} answers")
        subprocess.run(
            cluster_create_argv([node.port for node in self.nodes], binary=REDIS_CLI),
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        self.wait_ok(deadline - time.monotonic())

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Every live node reports ``cluster_state:ok`` and agrees on three masters, and
        every live replica's link to its master is up."""
        deadline = time.monotonic() + timeout
        for node in self.live():
            self._wait(
                lambda n=node: (
                    n.client().info("replication")["role"] == "master"
                    or n.client().info("replication")["master_link_status"] == "up"
                ),
                deadline,
                f"{node.address} is a master or a synced replica",
            )
            self._wait(
                lambda n=node: (
                    n.client().cluster("info")["cluster_state"] == "ok"
                    and len(self.masters(n)) == 3
                ),
                deadline,
                f"{node.address} sees the cluster ok",
            )

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def masters(self, via: Node | None = None) -> dict[str, list[tuple[int, int]]]:
        """Master address -> its slot ranges, as ``via`` (a live node) sees them."""
        node = via or self.live()[0]
        owners: dict[str, list[tuple[int, int]]] = {}
        for start, end, master, *_ in node.client().execute_command("CLUSTER SLOTS"):
            owners.setdefault(f"{master[0]}:{master[1]}", []).append((int(start), int(end)))
        return owners

    def owner(self, key: str) -> Node:
        """The live node that masters ``key``'s slot."""
        slot = slot_of(key)
        for address, ranges in self.masters().items():
            if any(start <= slot <= end for start, end in ranges):
                return next(n for n in self.nodes if n.address == address)
        raise AssertionError(f"no master for slot {slot}")

    def node_id(self, node: Node) -> str:
        return str(node.client().execute_command("CLUSTER MYID"))

    def kill(self, node: Node) -> None:
        """SIGKILL: no goodbye to clients nor to the other nodes."""
        assert node.process is not None
        node.process.kill()
        node.process.wait(timeout=5)

    def reshard(self, source: Node, target: Node, slots: int, pipeline: int = 10) -> None:
        """``redis-cli --cluster reshard``: move ``slots`` slots (the source's lowest first)
        with their keys from ``source`` to ``target``, live, ``pipeline`` keys per MIGRATE."""
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "reshard",
                source.address,
                "--cluster-from",
                self.node_id(source),
                "--cluster-to",
                self.node_id(target),
                "--cluster-slots",
                str(slots),
                "--cluster-pipeline",
                str(pipeline),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def flush(self) -> None:
        for address in self.masters():
            host, port = address.rsplit(":", 1)
            Redis(host=host, port=int(port)).flushall()

    def stop(self) -> None:
        for node in self.nodes:
            process, node.process = node.process, None
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=5)

    @staticmethod
    def _wait(check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while True:
            try:
                if check():
                    return
            except OSError:
                pass
            except Exception as exc:
                if "CLUSTERDOWN" not in str(exc) and "Connection" not in type(exc).__name__:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster: timed out waiting until {what}")
            time.sleep(0.05)


@contextmanager
def running_cluster() -> Iterator[RedisClusterNodes]:
    """A started 3+3 cluster, stopped afterwards; skips without redis-server/redis-cli."""
    if not (Path(REDIS_SERVER).exists() and Path(REDIS_CLI).exists()):
        pytest.skip("redis-server and redis-cli are not installed (apt-get install redis-server)")
    cluster = RedisClusterNodes()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
