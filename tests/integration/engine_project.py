"""A copy of this project in a temporary directory, run by the real Pulumi engine (the CLI).

Engine tests never touch the checkout's ``.pulumi-state`` or ``build/``: each copies the program
(``Pulumi.yaml``, ``__main__.py``, ``infra/``, ``backend/`` and the stack files it names) into
its own directory, with its own file state backend, ``PULUMI_HOME`` and a random passphrase,
and runs ``pulumi`` there with the environment ``make up`` uses
(:func:`infra.engine.runner.engine_environment`: the toolchain's bin dir on PATH, this venv's
interpreter as ``PULUMI_PYTHON_CMD``, the command implementation the plugins allow).

The engine comes from ``scripts/toolchain.sh`` (or a user's ``pulumi`` on PATH). A test skips,
quoting the module proxy's recorded refusal, when a tool it needs cannot be built here, and
fails when the toolchain was simply never built.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.engine.runner import engine_environment, toolchain_bin

__all__ = [
    "REPO",
    "VENV",
    "EngineProject",
    "EngineRun",
    "copy_project",
    "engine_or_skip",
    "with_virtualenv",
]

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
ENGINE_TOOLS = ("pulumi", "pulumi-language-python")
"""What every engine test needs; a test may ask for more (``pulumi-resource-command``)."""


def engine_or_skip(bin_dir: Path, tools: Sequence[str] = ENGINE_TOOLS) -> Path:
    """The engine (the toolchain's, else a user's on PATH); skip with the proxy's recorded
    refusal when one of ``tools`` cannot be had, fail if the toolchain is unbuilt."""
    found: dict[str, Path] = {}
    for name in tools:
        path = str(bin_dir / name) if (bin_dir / name).exists() else shutil.which(name)
        if path is not None:
            found[name] = Path(path)
            continue
        refusal = bin_dir.parent / "unavailable" / name
        if refusal.exists():
            pytest.skip(f"{name} could not be built here: {refusal.read_text().strip()[:300]}")
        pytest.fail(f"{name} missing from {bin_dir}: run `scripts/toolchain.sh ensure`")
    return found["pulumi"]


def with_virtualenv(path: Path) -> None:
    """Point a copied Pulumi.yaml / PulumiPolicy.yaml at this interpreter's venv (absolute)."""
    text = path.read_text()
    edited = re.sub(r"(?m)^(\s+virtualenv:).*$", rf"\1 {VENV}", text)
    assert edited != text, path
    path.write_text(edited)


@dataclass(frozen=True, slots=True)
class EngineRun:
    """One ``pulumi`` invocation: its exit status, stdout + stderr, and wall time."""

    returncode: int
    output: str
    seconds: float


@dataclass(frozen=True, kw_only=True)
class EngineProject:
    """A copy of the project with a private file backend (``state``) and ``PULUMI_HOME``."""

    directory: Path
    state: Path
    pulumi: Path
    env: dict[str, str]
    transcript: list[str] = field(default_factory=list)
    """Every run's captured stdout and stderr, in order (for checks on what the engine said)."""

    def run(
        self,
        *args: str,
        succeed: bool | None = True,
        stdin: str | None = None,
        timeout: float = 240,
    ) -> EngineRun:
        """Run ``pulumi ARGS --non-interactive`` (``stdin`` as its input); assert it succeeds
        (or, with ``succeed=False``, fails; ``None``: either)."""
        start = time.monotonic()
        result = subprocess.run(
            [str(self.pulumi), *args, "--non-interactive"],
            cwd=self.directory,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.monotonic() - start
        output = result.stdout + result.stderr
        self.transcript.append(output)
        assert succeed is None or (result.returncode == 0) is succeed, (
            f"pulumi {args[0]}: {result.returncode}\n{output}"
        )
        return EngineRun(returncode=result.returncode, output=output, seconds=seconds)


def copy_project(
    root: Path, *, stack: str, tools: Sequence[str] = ENGINE_TOOLS, keep_salt: bool = False
) -> EngineProject:
    """Copy the program and ``Pulumi.<stack>.yaml`` into ``root/project`` (its Pulumi.yaml
    pointed at this venv), give it ``root/state`` and ``root/home``, and ``stack init`` it.

    The stack file's ``encryptionsalt`` is dropped (unless ``keep_salt``): the copy gets a
    random passphrase of its own, and ``stack init`` writes a salt for it.
    """
    bin_dir = toolchain_bin(build=False)
    pulumi = engine_or_skip(bin_dir, tools)
    directory = root / "project"
    directory.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(REPO / name, directory / name)
    stack_text = (REPO / f"Pulumi.{stack}.yaml").read_text()
    if not keep_salt:
        stack_text = re.sub(r"(?m)^encryptionsalt:.*\n?", "", stack_text)
    (directory / f"Pulumi.{stack}.yaml").write_text(stack_text)
    ignore = shutil.ignore_patterns("__pycache__", "build")
    for name in ("infra", "backend"):
        shutil.copytree(REPO / name, directory / name, ignore=ignore)
    with_virtualenv(directory / "Pulumi.yaml")
    state = root / "state"
    state.mkdir()
    base = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(16),
    }
    env = {**base, **engine_environment(stack, bin_dir, base)}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        PULUMI_HOME=str(root / "home"),
        PYTHONPATH=str(directory),
    )
    project = EngineProject(directory=directory, state=state, pulumi=pulumi, env=env)
    project.run("stack", "init", stack)
    return project
