"""``LocalCommand``: pulumi-command's ``local.Command`` semantics as a Python dynamic provider.

Why: the Go module proxy reachable here refuses ``github.com/pulumi/pulumi-command/provider``
(403 "This module version is not available"), so the ``pulumi-resource-command`` plugin cannot
be built on this machine or in CI, while the engine itself can (``scripts/toolchain.sh``). A
dynamic provider runs inside the engine like any provider (``pulumi-resource-pulumi-python``,
shipped in the sdk module) and needs no plugin download, so ``make up`` can still go through the
real engine. Where the plugin exists, ``pulumi_command.local.Command`` remains the component's
choice; this class accepts the same inputs the component uses:

- ``create`` runs on create; ``update`` (else ``create``) when another input changes;
  ``delete`` on destroy and before a replacement;
- a change of ``triggers`` REPLACES the resource (delete, then create), as pulumi-command does;
- ``environment`` is added to the provider's environment, ``stdin`` is fed to the command,
  ``dir`` is the working directory (relative to the program's directory);
- outputs ``stdout`` and ``stderr`` (trailing newline removed); a failure raises with the exit
  status and, unless ``logging`` is ``"none"``, the end of the output.

Commands run with ``/bin/sh -c`` like pulumi-command's. Secret inputs stay secret in the state
(the engine encrypts them); mark ``stdout``/``stderr`` secret with ``additional_secret_outputs``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from infra.deploy import COMMAND_IMPLEMENTATION_VARIABLE

__all__ = [
    "COMMAND_IMPLEMENTATION_VARIABLE",
    "CommandFailed",
    "LocalCommand",
    "LocalCommandProvider",
]


_INPUTS = ("create", "update", "delete", "dir", "environment", "stdin", "logging")
_TAIL = 2000


class CommandFailed(Exception):
    """A command exited non-zero; the message has the status and, if logged, its output."""


def _run(line: str, props: Mapping[str, Any]) -> tuple[str, str]:
    env = dict(os.environ)
    env.update(props.get("environment") or {})
    result = subprocess.run(
        ["/bin/sh", "-c", line],
        cwd=props.get("dir") or None,
        env=env,
        input=props.get("stdin") or "",
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = ""
        if props.get("logging", "stdout_and_stderr") != "none":
            detail = f": {(result.stdout + result.stderr)[-_TAIL:].strip()}"
        raise CommandFailed(f"command exited with status {result.returncode}{detail}")
    return result.stdout.removesuffix("\n"), result.stderr.removesuffix("\n")


class LocalCommandProvider(ResourceProvider):
    """The dynamic provider behind :class:`LocalCommand`."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        stdout, stderr = _run(props["create"], props)
        return CreateResult(
            id_=uuid.uuid4().hex, outs={**props, "stdout": stdout, "stderr": stderr}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = (
            ["triggers"] if (olds.get("triggers") or []) != (news.get("triggers") or []) else []
        )
        changes = bool(replaces) or any(olds.get(key) != news.get(key) for key in _INPUTS)
        return DiffResult(changes=changes, replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        stdout, stderr = _run(news.get("update") or news["create"], news)
        return UpdateResult(outs={**news, "stdout": stdout, "stderr": stderr})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("delete"):
            _run(props["delete"], props)


class LocalCommand(Resource):
    """A shell command run by the engine on create, update and delete (see the module doc)."""

    stdout: pulumi.Output[str]
    stderr: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        create: str,
        update: str | None = None,
        delete: str | None = None,
        dir: str | None = None,
        environment: Mapping[str, pulumi.Input[str]] | None = None,
        stdin: pulumi.Input[str] | None = None,
        triggers: Sequence[pulumi.Input[str]] | None = None,
        logging: str = "stdout_and_stderr",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "create": create,
            "update": update,
            "delete": delete,
            "dir": dir,
            "environment": dict(environment or {}),
            "stdin": stdin,
            "triggers": list(triggers or []),
            "logging": logging,
            "stdout": None,
            "stderr": None,
        }
        super().__init__(LocalCommandProvider(), name, props, opts)
