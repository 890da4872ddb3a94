"""Tests for infra.deploy.plan: step checks, digests, the materialise step and its module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.deploy.plan import (
    Plan,
    PlanContext,
    Step,
    check_plan,
    materialise_step,
    shell_line,
    text_digest,
    tree_digest,
)

ROOT = Path(__file__).resolve().parents[2]

CONTEXT = PlanContext(
    python=".venv/bin/python",
    backend_dir="backend",
    build_dir="build/dev",
    backend_digest="sha256:abc",
)


def test_shell_line_quotes_every_argument() -> None:
    """An argument with spaces or shell metacharacters stays one argument."""
    line = shell_line(["flyctl", "apps", "create", "a b", "--org", "$(rm -rf /)"])
    assert line == "flyctl apps create 'a b' --org '$(rm -rf /)'"


def test_check_plan_refuses_duplicate_names() -> None:
    """Two steps with one name would be two resources with one URN."""
    steps = [Step(name="a", create=("true",)), Step(name="a", create=("true",))]
    with pytest.raises(ValueError, match="'a' appears twice"):
        check_plan(steps)


def test_check_plan_refuses_forward_or_unknown_dependencies() -> None:
    """A dependency must name an earlier step, so the plan's order is its run order."""
    steps = [Step(name="b", create=("true",), depends_on=("a",)), Step(name="a", create=("true",))]
    with pytest.raises(ValueError, match="unknown step 'a'"):
        Plan(steps=tuple(steps), https_url="https://x/", wss_url="wss://x/")


def test_text_digest_is_stable_and_separates_parts() -> None:
    """The digest of ("ab", "c") differs from ("a", "bc"): parts are delimited."""
    assert text_digest("a", "b") == text_digest("a", "b")
    assert text_digest("ab", "c") != text_digest("a", "bc")


def test_tree_digest_ignores_caches_and_follows_content(tmp_path: Path) -> None:
    """Bytecode caches do not change the digest; a changed file does."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    before = tree_digest(tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0junk")
    assert tree_digest(tmp_path) == before
    (tmp_path / "pkg" / "mod.py").write_text("x = 2\n")
    assert tree_digest(tmp_path) != before


def test_tree_digest_does_not_depend_on_the_tree_location(tmp_path: Path) -> None:
    """The same tree copied elsewhere has the same digest, so CI and laptops agree."""
    original = tmp_path / "a" / "backend"
    (original / "realtime").mkdir(parents=True)
    (original / "realtime" / "app.py").write_text("print('hi')\n")
    (original / "Dockerfile").write_text("FROM python:3.11-slim\n")
    copy = tmp_path / "elsewhere" / "backend"
    shutil.copytree(original, copy)
    assert tree_digest(copy) == tree_digest(original)


def test_materialise_step_passes_the_toml_as_stdin_and_ships_the_backend() -> None:
    """The fly.toml is an input (a line diff in previews); shipping adds the backend trigger."""
    step = materialise_step(CONTEXT, "app = 'x'\n", ship_backend=True)
    assert step.stdin == "app = 'x'\n"
    assert step.create == (
        ".venv/bin/python",
        "-m",
        "infra.deploy.materialize",
        "--out",
        "build/dev",
        "--ship",
        "backend",
    )
    assert step.triggers == ("sha256:abc",)
    local = materialise_step(CONTEXT, "app = 'x'\n", ship_backend=False)
    assert "--ship" not in local.create
    assert local.triggers == ()


def test_materialize_module_writes_the_file_and_the_deploy_context(tmp_path: Path) -> None:
    """`python -m infra.deploy.materialize` writes fly.toml and a clean copy of the backend beside
    it."""
    backend = tmp_path / "backend"
    (backend / "__pycache__").mkdir(parents=True)
    (backend / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (backend / "Dockerfile").write_text("FROM scratch\n")
    out = tmp_path / "build"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy.materialize",
            "--out",
            str(out),
            "--ship",
            str(backend),
        ],
        input="app = 'demo'\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "fly.toml").read_text() == "app = 'demo'\n"
    assert (out / "app" / "fly.toml").read_text() == "app = 'demo'\n"
    assert (out / "app" / "Dockerfile").is_file()
    assert not (out / "app" / "__pycache__").exists()


def test_materialize_module_refuses_empty_input(tmp_path: Path) -> None:
    """An empty stdin is a usage error (exit 2), not an empty fly.toml."""
    result = subprocess.run(
        [sys.executable, "-m", "infra.deploy.materialize", "--out", str(tmp_path)],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "empty fly.toml" in result.stderr
    assert not (tmp_path / "fly.toml").exists()
