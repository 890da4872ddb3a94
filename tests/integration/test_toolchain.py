"""The Pulumi toolchain built by scripts/toolchain.sh runs real Python programs end to end

These tests drive the real engine against a file state backend in a temporary directory. They
never build: CI runs `scripts/toolchain.sh ensure` first, and a missing engine fails the test
with the command to run. A component the Go module proxy refused to serve (recorded by the
script under <key>/unavailable/) skips only the test that needs it, quoting the recorded error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra.engine.runner import toolchain_bin

pytestmark = [pytest.mark.integration, pytest.mark.engine]

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
PASSPHRASE = "toolchain-test-only"


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    """The toolchain's bin dir; fails when the engine has not been built."""
    path = toolchain_bin(build=False)
    if not (path / "pulumi").exists() and shutil.which("pulumi") is None:
        pytest.fail(f"no pulumi engine in {path}: run `scripts/toolchain.sh ensure` first")
    return path


def _require(bin_dir: Path, name: str) -> None:
    """Skip with the recorded proxy error when a component could not be had, fail if unbuilt."""
    if (bin_dir / name).exists() or shutil.which(name) is not None:
        return
    refusal = bin_dir.parent / "unavailable" / name
    if refusal.exists():
        pytest.skip(f"{name} could not be built here: {refusal.read_text().strip()[:300]}")
    pytest.fail(f"{name} missing from {bin_dir}: run `scripts/toolchain.sh ensure`")


def _engine_env(bin_dir: Path, tmp_path: Path) -> dict[str, str]:
    """An environment pointing the engine at a private home and a file state backend."""
    state = tmp_path / "state"
    state.mkdir()
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PULUMI_HOME=str(tmp_path / "home"),
        PULUMI_BACKEND_URL=f"file://{state}",
        PULUMI_CONFIG_PASSPHRASE=PASSPHRASE,
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PULUMI_PYTHON_CMD=str(VENV / "bin" / "python"),
    )
    return env


def _run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, (
        f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def test_engine_reports_its_version(bin_dir: Path) -> None:
    """The built engine runs and reports the version it was built with."""
    pulumi = bin_dir / "pulumi"
    if not pulumi.exists():
        pytest.skip("a pulumi from PATH is in use: its version is the user's")
    out = subprocess.run([str(pulumi), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("v3.")


def test_engine_copies_python_exec_script_executable(bin_dir: Path) -> None:
    """The language host's exec script and the dynamic provider script sit next to the engine."""
    if not (bin_dir / "pulumi").exists():
        pytest.skip("a pulumi from PATH is in use: its scripts are the user's")
    for name in ("pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        assert os.access(bin_dir / name, os.X_OK), name


INLINE_DRIVER = textwrap.dedent(
    """
    from __future__ import annotations

    import subprocess
    import sys

    import pulumi
    from pulumi import automation as auto
    from pulumi.dynamic import CreateResult, Resource, ResourceProvider


    class EchoProvider(ResourceProvider):
        def create(self, props):
            out = subprocess.run(
                ["echo", props["word"]], capture_output=True, text=True, check=True
            ).stdout.strip()
            return CreateResult(id_=f"echo-{out}", outs={**props, "stdout": out})


    class Echo(Resource):
        stdout: pulumi.Output[str]

        def __init__(self, name, word):
            super().__init__(EchoProvider(), name, {"word": word, "stdout": None})


    def program():
        pulumi.export("stdout", Echo("hello", "hi").stdout)


    stack = auto.create_or_select_stack(
        stack_name="dev", project_name="toolchaininline", program=program
    )
    up = stack.up(on_output=lambda _line: None)
    print("UP", up.summary.result, up.outputs["stdout"].value)
    down = stack.destroy(on_output=lambda _line: None)
    print("DESTROY", down.summary.result)
    """
)


def test_engine_runs_inline_python_program_with_dynamic_provider(
    bin_dir: Path, tmp_path: Path
) -> None:
    """`pulumi up` then `pulumi destroy` of a Python program hosted in-process by the SDK."""
    driver = tmp_path / "driver.py"
    driver.write_text(INLINE_DRIVER)
    env = _engine_env(bin_dir, tmp_path)
    out = _run([sys.executable, str(driver)], cwd=tmp_path, env=env)
    assert "UP succeeded hi" in out
    assert "DESTROY succeeded" in out


PROJECT_MAIN = textwrap.dedent(
    """
    import pulumi
    from pulumi_command import local

    hi = local.Command("hi", create="echo hi")
    pulumi.export("stdout", hi.stdout)
    """
)


def test_engine_runs_python_project_with_command_provider(bin_dir: Path, tmp_path: Path) -> None:
    """A `runtime: python` project with one local.Command goes up, says hi and is destroyed."""
    _require(bin_dir, "pulumi-language-python")
    _require(bin_dir, "pulumi-resource-command")
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        f"name: toolchaincheck\nruntime:\n  name: python\n  options:\n    virtualenv: {VENV}\n"
    )
    (project / "__main__.py").write_text(PROJECT_MAIN)
    env = _engine_env(bin_dir, tmp_path)
    pulumi = shutil.which("pulumi", path=env["PATH"]) or "pulumi"
    _run([pulumi, "stack", "init", "dev", "--non-interactive"], cwd=project, env=env)
    _run([pulumi, "up", "--yes", "--non-interactive", "--skip-preview"], cwd=project, env=env)
    assert _run([pulumi, "stack", "output", "stdout"], cwd=project, env=env).strip() == "hi"
    _run([pulumi, "destroy", "--yes", "--non-interactive"], cwd=project, env=env)
