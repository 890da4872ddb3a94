"""Pulumi components: ``FlyApp`` turns a stack's plan into ``pulumi_command.local.Command``s.

The component is a thin interpreter. The fly.toml text comes from the typed model
(``infra.flytoml.render``), the ordered commands from the stack's deploy target
(``infra.deploy.targets``), and this module only maps each :class:`infra.deploy.plan.Step` onto
one command resource, the same way for every target:

- argv lists become quoted shell lines; secrets never do: they travel as secret ``environment``
  values or as secret ``stdin``, and a step that handles secrets logs nothing and marks its
  ``stdout``/``stderr`` secret;
- ``triggers`` replace a step (digests of fly.toml and the backend tree, never the wall clock);
- ``depends_on`` names become resource dependencies, so the engine runs the pipeline in order;
- ``add_previous_output_in_env`` is off (large previous output breaks the next run).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pulumi
from pulumi_command import local

from infra.deploy.local_command import COMMAND_IMPLEMENTATION_VARIABLE, LocalCommand
from infra.deploy.plan import Plan, PlanContext, Step
from infra.deploy.targets.fly_secrets import secrets_stdin
from infra.flytoml.render import render_fly_toml
from infra.stack.settings import StackSettings

__all__ = ["FlyApp", "FlyAppArgs", "PlanBuilder"]

PlanBuilder = Callable[[StackSettings, str, PlanContext], Plan]
"""A deploy target: (settings, rendered fly.toml, context) -> plan."""

_LOGGING = {
    "stdout_and_stderr": local.Logging.STDOUT_AND_STDERR,
    "stderr": local.Logging.STDERR,
    "stdout": local.Logging.STDOUT,
    "none": local.Logging.NONE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FlyAppArgs:
    """Inputs of a :class:`FlyApp`."""

    settings: StackSettings
    """The validated stack settings (``infra.deploy.config.read_stack``)."""

    secrets: Mapping[str, pulumi.Output[str]]
    """Secret values by Fly secret / environment variable name."""

    context: PlanContext
    """Where the commands find the interpreter, the backend and the build directory."""

    plan_builder: PlanBuilder
    """The stack's deploy target (``infra.deploy.targets.plan_for``)."""


def _secret_stdin(
    names: tuple[str, ...], secrets: Mapping[str, pulumi.Output[str]]
) -> pulumi.Output[str]:
    """The ``NAME=VALUE`` lines for ``fly secrets import``, as a Pulumi secret.

    ``infra.deploy.config`` has already refused (at preview) any value these lines cannot carry
    byte-identical; should one reach here, ``secrets_stdin`` raises naming the secret only.
    """
    values = {name: secrets[name] for name in names}
    lines: pulumi.Output[str] = pulumi.Output.all(**values).apply(secrets_stdin)
    return cast("pulumi.Output[str]", pulumi.Output.secret(lines))


class FlyApp(pulumi.ComponentResource):
    """One Fly.io application (or its local stand-in) deployed from the typed model."""

    app_name: pulumi.Output[str]
    """The Fly app name."""
    https_url: pulumi.Output[str]
    """Public URL of the HTTP API and demo page."""
    wss_url: pulumi.Output[str]
    """Public URL of the WebSocket service (raw TCP, TLS at the edge)."""
    fly_toml: pulumi.Output[str]
    """The rendered fly.toml."""

    def __init__(
        self, name: str, args: FlyAppArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("realtime-fly:index:FlyApp", name, {}, opts)
        settings = args.settings
        fly_toml = render_fly_toml(settings.fly, stack=settings.stack)
        plan = args.plan_builder(settings, fly_toml, args.context)
        missing = {
            name
            for step in plan.steps
            for name in (*step.stdin_secrets, *step.secret_environment)
            if name not in args.secrets
        }
        if missing:
            raise ValueError(f"plan needs secrets that the stack does not set: {sorted(missing)}")

        self.commands: dict[str, pulumi.CustomResource] = {}
        for step in plan.steps:
            self.commands[step.name] = self._command(name, step, args.secrets)

        self.app_name = pulumi.Output.from_input(settings.fly.app)
        self.https_url = pulumi.Output.from_input(plan.https_url)
        self.wss_url = pulumi.Output.from_input(plan.wss_url)
        self.fly_toml = pulumi.Output.from_input(fly_toml)
        self.register_outputs(
            {
                "app_name": self.app_name,
                "https_url": self.https_url,
                "wss_url": self.wss_url,
                "fly_toml": self.fly_toml,
            }
        )

    def _command(
        self, prefix: str, step: Step, secrets: Mapping[str, pulumi.Output[str]]
    ) -> pulumi.CustomResource:
        handles_secrets = bool(step.stdin_secrets or step.secret_environment)
        environment: dict[str, pulumi.Input[str]] = dict(step.environment)
        for secret_name in step.secret_environment:
            environment[secret_name] = cast(
                "pulumi.Output[str]", pulumi.Output.secret(secrets[secret_name])
            )
        stdin: pulumi.Input[str] | None = step.stdin
        if step.stdin_secrets:
            stdin = _secret_stdin(step.stdin_secrets, secrets)
        logging = "none" if handles_secrets else step.logging
        opts = pulumi.ResourceOptions(
            parent=self,
            depends_on=[self.commands[dep] for dep in step.depends_on],
            retain_on_delete=step.retain_on_delete,
            additional_secret_outputs=["stdout", "stderr"] if handles_secrets else None,
        )
        name = f"{prefix}-{step.name}"
        inputs: dict[str, Any] = {
            "create": step.create_line(),
            "update": step.update_line(),
            "delete": step.delete_line(),
            "dir": step.dir,
            "environment": environment or None,
            "stdin": stdin,
            "triggers": list(step.triggers) or None,
        }
        if os.environ.get(COMMAND_IMPLEMENTATION_VARIABLE) == "dynamic":
            # The pulumi-resource-command plugin cannot be had here (docs/LOCAL.md): the same
            # inputs and semantics, run by a dynamic provider inside the real engine.
            return LocalCommand(name, **inputs, logging=logging, opts=opts)
        return local.Command(
            name,
            **inputs,
            logging=_LOGGING[logging],
            add_previous_output_in_env=False,
            opts=opts,
        )
