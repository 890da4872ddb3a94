"""Centrifugo v6, the Go peer: built once from the Go module proxy with the machine's Go.

The binary is cached under ``~/.cache/realtime-fly/bench/centrifugo-<version>/`` (minutes to
build the first time at ``nice``, instant afterwards). Only the Go module proxy is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CENTRIFUGO_MODULE = "github.com/centrifugal/centrifugo/v6"
CENTRIFUGO_VERSION = "v6.9.1"
CENTRIFUGO_NAMESPACE = "bench"
"""The namespace of every benchmark channel (must match bench.protocols)."""
BUILD_TIMEOUT = 1800.0


class CentrifugoUnavailable(RuntimeError):
    """Centrifugo cannot be built here; the message says why (shown in the report)."""


def cache_dir() -> Path:
    return Path.home() / ".cache" / "realtime-fly" / "bench" / f"centrifugo-{CENTRIFUGO_VERSION}"


def ensure_binary(*, build: bool = True) -> Path:
    """The cached binary, built with ``go install`` first if needed (``build=False``: only
    look). Raises :class:`CentrifugoUnavailable` naming what is missing or the build error."""
    binary = cache_dir() / "centrifugo"
    if binary.exists():
        return binary
    if not build:
        raise CentrifugoUnavailable(f"centrifugo {CENTRIFUGO_VERSION} is not built at {binary}")
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise CentrifugoUnavailable("go is not installed: centrifugo is built from source")
    cache_dir().mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(cache_dir()), "CGO_ENABLED": "0"}
    # the version stamp release builds set (otherwise `centrifugo version` says 0.0.0)
    stamp = f"-X {CENTRIFUGO_MODULE}/internal/build.Version={CENTRIFUGO_VERSION.lstrip('v')}"
    argv = [
        "nice",
        "-n",
        "10",
        go,
        "install",
        "-trimpath",
        "-ldflags",
        f"-s -w {stamp}",
        f"{CENTRIFUGO_MODULE}@{CENTRIFUGO_VERSION}",
    ]
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise CentrifugoUnavailable(
            f"go install {CENTRIFUGO_MODULE}@{CENTRIFUGO_VERSION} took over {BUILD_TIMEOUT:g}s"
        ) from None
    if done.returncode != 0 or not binary.exists():
        raise CentrifugoUnavailable(
            f"go install {CENTRIFUGO_MODULE}@{CENTRIFUGO_VERSION} failed"
            f" ({done.returncode}): {done.stderr.strip()[-800:]}"
        )
    return binary


def version(binary: Path) -> str:
    """What the binary says about itself (``centrifugo version``)."""
    done = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, check=False, timeout=30
    )
    return (done.stdout or done.stderr).strip()
