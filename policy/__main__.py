"""realtime-fly's CrossGuard policy pack: mandatory checks on the inputs of command resources.

Command resources are ``command:local:Command`` (and ``LocalCommand``, see ``DYNAMIC``).

- ``fly-toml-websocket-service``: the ``<app>-fly-toml`` step's ``stdin`` IS the rendered
  fly.toml; its WebSocket service must be tcp, handlers ["tls"] (or with proxy_proto), ALPN
  ["http/1.1"], concurrency type connections;
- ``fly-toml-durations``: every duration in that fly.toml is a string;
- ``no-secrets-on-command-lines``: no ``FLY_API_TOKEN=``, ``--access-token``, ``-t <token>``
  or ``secrets set NAME=value`` in any ``create``/``update``/``delete`` line;
- ``secrets-step-logs-nothing``: the ``<app>-secrets`` step sets ``logging: none``.

Run it with ``pulumi preview --policy-pack policy``. The checks themselves live in
``fly_guards`` (pure functions, unit tested in tests/integration/test_policy.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fly_guards import (
    command_line_problems,
    duration_problems,
    parse_fly_toml,
    secrets_step_problems,
    websocket_service_problems,
)
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

COMMAND: Final = "command:local:Command"
DYNAMIC: Final = "pulumi-python:dynamic:Resource"
"""``infra.deploy.local_command.LocalCommand``, the dynamic provider the component uses where the
command plugin cannot be had: same inputs; it counts as a command when it has a ``create`` line."""
COMMAND_FIELDS: Final = ("create", "update", "delete")


def _is_command(args: ResourceValidationArgs) -> bool:
    if args.resource_type == COMMAND:
        return True
    return args.resource_type == DYNAMIC and isinstance(args.props.get("create"), str)


def _report(args: ResourceValidationArgs, report: ReportViolation, problems: list[str]) -> None:
    for problem in problems:
        report(f"{args.name}: {problem}", None)


def _fly_toml_check(
    check: Callable[[dict[str, object]], list[str]],
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """A validation applying ``check`` to the parsed stdin of every ``*-fly-toml`` command."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if not args.name.endswith("-fly-toml") or not _is_command(args):
            return
        document, problems = parse_fly_toml(args.props.get("stdin"))
        if document is not None:
            problems = check(document)
        _report(args, report, problems)

    return validate


def _command_lines(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not _is_command(args):
        return
    for field in COMMAND_FIELDS:
        _report(args, report, command_line_problems(field, args.props.get(field)))


def _secrets_logging(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.name.endswith("-secrets") and _is_command(args):
        _report(args, report, secrets_step_problems(args.props.get("logging")))


PolicyPack(
    name="realtime-fly",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name="fly-toml-websocket-service",
            description="The WebSocket service in the rendered fly.toml is raw TCP with TLS at "
            'Fly\'s edge: protocol tcp, handlers ["tls"], ALPN ["http/1.1"], connections',
            validate=_fly_toml_check(websocket_service_problems),
        ),
        ResourceValidationPolicy(
            name="fly-toml-durations",
            description="Every duration in the rendered fly.toml is a string such as 15s",
            validate=_fly_toml_check(duration_problems),
        ),
        ResourceValidationPolicy(
            name="no-secrets-on-command-lines",
            description="No token or secret value on a command's create/update/delete line",
            validate=_command_lines,
        ),
        ResourceValidationPolicy(
            name="secrets-step-logs-nothing",
            description="The step that imports Fly secrets logs nothing",
            validate=_secrets_logging,
        ),
    ],
)
