"""The load generator: worker processes (:mod:`bench.clients`) driven over pipes.

Connections are spread round-robin over the processes; every command goes to all processes at
once and their answers are merged. The coordinator itself sends no traffic.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import psutil

from bench.clients import ConnSpec, serve


class LoadGenError(RuntimeError):
    """A worker process failed a command; the message names the command and the error."""


class LoadGenerator:
    """``workers`` client processes, optionally pinned to ``cpus``."""

    def __init__(
        self,
        *,
        workers: int,
        secret: str,
        cpus: Sequence[int] | None = None,
        ca_file: str | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[BaseProcess] = []
        for _ in range(workers):
            ours, theirs = context.Pipe()
            process = context.Process(target=serve, args=(theirs, secret, ca_file), daemon=True)
            process.start()
            if cpus:
                psutil.Process(process.pid).cpu_affinity(list(cpus))
            self._pipes.append(ours)
            self._processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def __len__(self) -> int:
        return len(self._pipes)

    def call(
        self, command: str, per_worker: Sequence[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Send ``command`` to every process (``per_worker[i]`` for process ``i``, else
        ``kwargs``), wait for all answers; raise :class:`LoadGenError` on any error."""
        for index, pipe in enumerate(self._pipes):
            pipe.send((command, per_worker[index] if per_worker is not None else kwargs))
        answers = [pipe.recv() for pipe in self._pipes]
        for answer in answers:
            if "error" in answer:
                raise LoadGenError(f"load generator command {command} failed: {answer['error']}")
        return answers

    def open(self, specs: Sequence[ConnSpec]) -> dict[str, Any]:
        """Open ``specs`` spread over the processes; merged counts and errors."""
        shares: list[list[ConnSpec]] = [[] for _ in self._pipes]
        for index, spec in enumerate(specs):
            shares[index % len(shares)].append(spec)
        started = time.monotonic()
        answers = self.call("open", [{"specs": share} for share in shares])
        errors: dict[str, int] = {}
        for answer in answers:
            for reason, count in answer["errors"].items():
                errors[reason] = errors.get(reason, 0) + count
        return {
            "opened": sum(a["opened"] for a in answers),
            "errors": errors,
            "join_retries": sum(a["join_retries"] for a in answers),
            "seconds": time.monotonic() - started,
        }

    def stats(self) -> dict[str, Any]:
        """Merged counters of every process since the last reset."""
        answers = self.call("stats")
        lost: dict[str, int] = {}
        for answer in answers:
            for reason, count in answer["lost_reasons"].items():
                lost[reason] = lost.get(reason, 0) + count
        latencies: list[int] = []
        for answer in answers:
            latencies += answer["latency_ns"]
        return {
            "delivered": sum(a["delivered"] for a in answers),
            "published": sum(a["published"] for a in answers),
            "open": sum(a["open"] for a in answers),
            "lost": sum(a["lost"] for a in answers),
            "lost_reasons": lost,
            "latency_ns": latencies,
            "cpu_seconds": sum(a["cpu_seconds"] for a in answers),
        }

    def close(self) -> None:
        self.call("close")

    def stop(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("quit", {}))
                if pipe.poll(10):
                    pipe.recv()
            except (OSError, EOFError):
                pass
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
