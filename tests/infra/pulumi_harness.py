"""Run the Pulumi program (``__main__.py``) for a stack against the engine's mock monitor.

The mock is the engine boundary only (``pulumi.runtime.set_mocks``): the program, the
component, the plans and the model all run for real. The monitor records every resource
registration as the engine would receive it: type, name, inputs (with secrets still marked),
dependencies, parent and options.
"""

from __future__ import annotations

import asyncio
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "realtime-fly"
# How the wire format marks a secret value: {SIG_KEY: SECRET_SIG, "value": ...}.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

# Secret values the tests set; no fly.toml, command line or log may ever contain them.
SECRET_VALUES = {
    "tokenSigningKey": "sk-test-3f1c9a-do-not-leak-0123456789abcdef",
    "redisUrl": "redis://default:hunter2-do-not-leak@redis.internal:6379/0",
}


@dataclass
class Registration:
    """One resource registration as the engine saw it."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    raw: dict[str, Any]
    dependencies: list[str]
    parent: str
    retain_on_delete: bool
    additional_secret_outputs: list[str]

    def is_secret(self, *path: str) -> bool:
        """Whether the input at ``path`` reached the engine marked as a secret."""
        value: Any = self.raw
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "command:local:Command":
            state.setdefault("stdout", "")
            state.setdefault("stderr", "")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    inputs=pulumi.runtime.rpc.deserialize_properties(request.object),
                    raw=json_format.MessageToDict(request.object),
                    dependencies=list(request.dependencies),
                    parent=request.parent,
                    retain_on_delete=bool(request.retainOnDelete),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                )
            )
        return response


@dataclass
class ProgramRun:
    """What one run of the program registered."""

    registrations: list[Registration] = field(default_factory=list)

    def commands(self) -> list[Registration]:
        return [r for r in self.registrations if r.type == "command:local:Command"]

    def command(self, step: str) -> Registration:
        matches = [r for r in self.commands() if r.name.endswith(f"-{step}")]
        assert len(matches) == 1, f"expected one command for step {step!r}, got {matches}"
        return matches[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}


def stack_config(stack: str, *, secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The config map the engine hands the program for ``Pulumi.<stack>.yaml`` (+ secrets)."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, str] = {}
    for key, value in (data.get("config") or {}).items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    for key, value in (secrets or {}).items():
        config[f"{PROJECT}:{key}"] = value
    return config


def stack_secrets(stack: str) -> dict[str, str]:
    """The secrets a platform team sets for ``stack``: the signing key, and Redis if it uses it."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    uses_redis = (data.get("config") or {}).get(f"{PROJECT}:broker") == "redis"
    return {k: v for k, v in SECRET_VALUES.items() if k != "redisUrl" or uses_redis}


def run_program(
    stack: str,
    *,
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
) -> ProgramRun:
    """Run ``__main__.py`` for ``stack`` under the mock monitor; return the registrations."""
    if config is None:
        secrets = stack_secrets(stack)
        config = stack_config(stack, secrets=secrets)
        secret_keys = [f"{PROJECT}:{key}" for key in secrets]
    # Pulumi's runtime drives its own event loop; async tests elsewhere may have closed the last.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    monitor = _RecordingMonitor(_Mocks())
    pulumi.runtime.set_mocks(_Mocks(), project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys or [])
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "__main__.py"))))
    finally:
        pulumi.runtime.set_all_config({}, [])
        asyncio.set_event_loop(None)
        loop.close()
    return ProgramRun(registrations=monitor.registrations)
