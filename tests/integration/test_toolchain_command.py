"""LocalCommand runs commands through the real engine: create, replace on triggers, delete

The engine is the toolchain's (scripts/toolchain.sh); the program is hosted in-process by the
Python SDK (automation API), so no language host plugin is needed either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra.engine.runner import toolchain_bin

pytestmark = [pytest.mark.integration, pytest.mark.engine]

REPO = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent(
    """
    from __future__ import annotations

    import sys

    import pulumi
    from pulumi import automation as auto

    from infra.deploy.local_command import LocalCommand

    action, trigger, log = sys.argv[1], sys.argv[2], sys.argv[3]


    def program() -> None:
        hi = LocalCommand("hi", create="echo hi")
        LocalCommand(
            "marked",
            create=f"echo created-$MARK >> {log}",
            delete=f"echo deleted-$MARK >> {log}",
            environment={"MARK": trigger},
            triggers=[trigger],
        )
        pulumi.export("stdout", hi.stdout)
        if trigger == "fail":
            LocalCommand("broken", create="echo broken-output; exit 3")


    stack = auto.create_or_select_stack(stack_name="dev", project_name="cmd", program=program)
    if action == "up":
        result = stack.up(on_output=lambda _line: None)
        print("UP", result.outputs["stdout"].value)
    else:
        stack.destroy(on_output=lambda _line: None)
        print("DESTROYED")
    """
)


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    bin_dir = toolchain_bin(build=False)
    if not (bin_dir / "pulumi").exists():
        pytest.fail(f"no pulumi engine in {bin_dir}: run `scripts/toolchain.sh ensure` first")
    home = tmp_path_factory.mktemp("engine")
    (home / "state").mkdir()
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "PULUMI_HOME": str(home / "home"),
        "PULUMI_BACKEND_URL": f"file://{home / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "command-test-only",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_PYTHON_CMD": sys.executable,
    }


def _drive(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    driver = cwd / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.run(
        [sys.executable, str(driver), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_create_replace_on_triggers_and_delete(engine_env: dict[str, str], tmp_path: Path) -> None:
    """Up creates; a new trigger deletes then creates; destroy deletes; stdout is an output."""
    log = tmp_path / "log.txt"
    first = _drive(engine_env, tmp_path, "up", "one", str(log))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "UP hi" in first.stdout
    again = _drive(engine_env, tmp_path, "up", "one", str(log))
    assert again.returncode == 0, again.stdout + again.stderr
    assert log.read_text().split() == ["created-one"]
    second = _drive(engine_env, tmp_path, "up", "two", str(log))
    assert second.returncode == 0, second.stdout + second.stderr
    assert log.read_text().split() == ["created-one", "deleted-one", "created-two"]
    gone = _drive(engine_env, tmp_path, "destroy", "two", str(log))
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert log.read_text().split()[-1] == "deleted-two"


def test_a_failing_command_fails_the_update_with_its_status(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    """A command exiting 3 fails `up` with the status and the command's output."""
    log = tmp_path / "log.txt"
    result = _drive(engine_env, tmp_path, "up", "fail", str(log))
    assert result.returncode != 0
    assert "command exited with status 3: broken-output" in result.stdout + result.stderr
    _drive(engine_env, tmp_path, "destroy", "fail", str(log))
