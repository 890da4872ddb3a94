"""Real servers on this machine's loopback: free ports, the redis-server command line, children
in their own session.

One copy of what the local target, the tests and the benchmarks all need to run real processes
(redis-server, haproxy, the backend) side by side without colliding:

- :func:`free_port` / :func:`port_is_free` / :func:`free_port_base`: ports nothing listens on;
- :func:`redis_server_argv`: redis-server bound to 127.0.0.1 with persistence off, the same
  command line for the local target's ``redis`` step, the tests' servers and the bench's;
- :func:`spawn` / :func:`stop_group`: a child in its own session (so stopping it takes its
  children too) with stdout and stderr appended to a log file.

Waiting for a server to listen is :func:`infra.local.supervise.wait_tcp`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "free_port",
    "free_port_base",
    "port_is_free",
    "redis_server_argv",
    "spawn",
    "stop_group",
]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a TCP socket can bind 127.0.0.1:``port`` right now."""
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port_base(
    ports_of: Callable[[int], Iterable[int]], *, low: int, high: int, step: int = 100
) -> int:
    """A port base in ``[low, high)`` (a multiple of ``step``) for which every port of
    ``ports_of(base)`` is free; ``RuntimeError`` after 50 random tries."""
    rng = random.Random()  # noqa: S311  (spreading concurrent runs apart, not security)
    for _ in range(50):
        base = rng.randrange(low, high, step)
        if all(port_is_free(port) for port in ports_of(base)):
            return base
    raise RuntimeError(f"no port base in [{low}, {high}) with all its ports free")


def redis_server_argv(
    port: int, *, binary: str = "redis-server", directory: Path | None = None
) -> list[str]:
    """redis-server on 127.0.0.1:``port`` with persistence off (RDB and AOF), its working
    directory ``directory`` when given (where it would write, were persistence on)."""
    argv = [binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no"]
    if directory is not None:
        argv += ["--dir", str(directory)]
    return argv


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, stdin from /dev/null, output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM to the child's process group, SIGKILL after ``timeout`` seconds; reaped."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
