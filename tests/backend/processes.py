"""Helpers for tests and scripts that run servers as processes on loopback."""

from __future__ import annotations

from pathlib import Path

import psutil

from infra.local.loopback import free_port

__all__ = ["BACKEND", "cpu_seconds", "free_port", "rss_kib"]

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB."""
    return int(psutil.Process(pid).memory_info().rss) // 1024
