"""LocalCommandProvider decides replace/update like pulumi-command and runs real shell commands"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.deploy.local_command import CommandFailed, LocalCommandProvider
from infra.engine.runner import DEV_PASSPHRASE, EngineError, engine_environment

PROPS: dict[str, object] = {
    "create": "echo hi",
    "update": None,
    "delete": None,
    "dir": None,
    "environment": {},
    "stdin": None,
    "triggers": ["sha256:a"],
    "logging": "stdout_and_stderr",
}


def test_unchanged_inputs_are_no_change() -> None:
    """Same inputs: no update, no replacement."""
    diff = LocalCommandProvider().diff("id", dict(PROPS), dict(PROPS))
    assert diff.changes is False
    assert diff.replaces == []


def test_a_trigger_change_replaces_deleting_first() -> None:
    """A new trigger value replaces the resource, delete before create."""
    diff = LocalCommandProvider().diff("id", dict(PROPS), {**PROPS, "triggers": ["sha256:b"]})
    assert diff.changes is True
    assert diff.replaces == ["triggers"]
    assert diff.delete_before_replace is True


def test_another_input_change_is_an_update() -> None:
    """A changed command or environment updates in place."""
    diff = LocalCommandProvider().diff("id", dict(PROPS), {**PROPS, "environment": {"A": "1"}})
    assert diff.changes is True
    assert diff.replaces == []


def test_create_runs_with_environment_stdin_and_dir(tmp_path: Path) -> None:
    """The command sees its environment, stdin and working directory; stdout is an output."""
    props = {
        **PROPS,
        "create": 'read line; echo "$GREETING $line $(basename "$PWD")"',
        "environment": {"GREETING": "hello"},
        "stdin": "world\n",
        "dir": str(tmp_path),
    }
    result = LocalCommandProvider().create(props)
    assert result.outs is not None
    assert result.outs["stdout"] == f"hello world {tmp_path.name}"


def test_update_runs_update_else_create(tmp_path: Path) -> None:
    """update uses the update line when set, the create line otherwise."""
    provider = LocalCommandProvider()
    with_update = provider.update("id", dict(PROPS), {**PROPS, "update": "echo updated"})
    assert with_update.outs is not None
    assert with_update.outs["stdout"] == "updated"
    without = provider.update("id", dict(PROPS), dict(PROPS))
    assert without.outs is not None
    assert without.outs["stdout"] == "hi"


def test_delete_runs_the_delete_line(tmp_path: Path) -> None:
    """delete runs only when a delete line is set."""
    marker = tmp_path / "deleted"
    LocalCommandProvider().delete("id", {**PROPS, "delete": f"touch {marker}"})
    assert marker.exists()
    LocalCommandProvider().delete("id", dict(PROPS))


def test_failure_carries_status_and_output_unless_logging_is_none() -> None:
    """A failing command raises with its status; with logging none its output is withheld."""
    failing = {**PROPS, "create": "echo secret-looking-output; exit 4"}
    with pytest.raises(CommandFailed, match="status 4: secret-looking-output"):
        LocalCommandProvider().create(failing)
    with pytest.raises(CommandFailed) as caught:
        LocalCommandProvider().create({**failing, "logging": "none"})
    assert "secret-looking-output" not in str(caught.value)
    assert str(caught.value) == "command exited with status 4"


def test_dev_stack_gets_the_development_passphrase(tmp_path: Path) -> None:
    """Without PULUMI_CONFIG_PASSPHRASE the dev stack uses the documented dev value."""
    env = engine_environment("dev", tmp_path, {"PATH": "/usr/bin"})
    assert env["PULUMI_CONFIG_PASSPHRASE"] == DEV_PASSPHRASE
    assert env["PATH"].startswith(f"{tmp_path}:")
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"


def test_command_implementation_follows_the_plugin_on_path(tmp_path: Path) -> None:
    """Without pulumi-resource-command on PATH the component is told to use LocalCommand."""
    assert engine_environment("dev", tmp_path, {"PATH": ""})["REALTIME_FLY_COMMAND"] == "dynamic"
    plugin = tmp_path / "pulumi-resource-command"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    assert engine_environment("dev", tmp_path, {"PATH": ""})["REALTIME_FLY_COMMAND"] == "plugin"


def test_other_stacks_need_a_passphrase(tmp_path: Path) -> None:
    """A non-dev stack without a passphrase is refused, naming the stack."""
    with pytest.raises(EngineError, match="stack 'staging': set PULUMI_CONFIG_PASSPHRASE"):
        engine_environment("staging", tmp_path, {})
    env = engine_environment("staging", tmp_path, {"PULUMI_CONFIG_PASSPHRASE": "given"})
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "given"
