"""The Fly plan run twice against a recording fake flyctl: no second app, no second address.

``_up`` runs every step of ``fly_plan`` (but the smoke check, which needs the real Internet) the
way the engine's command provider does (``LocalCommandProvider``: ``/bin/sh -c`` line, stdin,
environment, working directory), with ``tests/infra/fake_flyctl.py`` first on PATH as
``flyctl``. A second ``_up`` is what ``pulumi up`` does after a lost state, or after
``pulumi destroy`` (which retains the app: no step deletes anything on Fly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.deploy.local_command import CommandFailed, LocalCommandProvider
from infra.deploy.plan import Plan, PlanContext
from infra.deploy.targets.fly import apps_create_argv, fly_plan, ips_v6_argv
from infra.deploy.targets.fly_secrets import secrets_stdin
from infra.flytoml.render import render_fly_toml
from infra.stack.settings import settings_from_config
from tests.infra.fake_flyctl import install

ROOT = Path(__file__).resolve().parents[2]
APP = "chat-prod"
SECRETS = {
    "TOKEN_SIGNING_KEY": 'k3y-with "quotes", a \\ backslash # and spaces  ',
    "REDIS_URL": "redis://default:p@ss#w0rd@redis.internal:6379/0",
}


@dataclass
class FakeFly:
    env: dict[str, str]
    state_path: Path
    log_path: Path

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def calls(self, *words: str) -> int:
        """How many recorded invocations start with ``words``."""
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        argvs = [json.loads(line)["argv"] for line in lines]
        return sum(argv[: len(words)] == list(words) for argv in argvs)

    def flyctl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.state_path.parent / "bin" / "flyctl"), *argv],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=False,
        )


@pytest.fixture
def fake_fly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFly:
    monkeypatch.chdir(ROOT)  # commands run from the project root, as under `pulumi up`
    state, log = tmp_path / "state.json", tmp_path / "log.jsonl"
    env = install(tmp_path / "bin", state=state, log=log)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return FakeFly(env=env, state_path=state, log_path=log)


def _plan(build_dir: Path) -> Plan:
    values: dict[str, object] = {
        "target": "fly",
        "app": APP,
        "org": "acme",
        "machines": 2,
        "broker": "redis",
        "tokenSigningKey": True,
        "redisUrl": True,
    }
    settings = settings_from_config(values, stack="production")
    context = PlanContext(
        python=sys.executable,
        backend_dir="backend",
        build_dir=str(build_dir),
        backend_digest="sha256:test",
    )
    return fly_plan(settings, fly_toml=render_fly_toml(settings.fly, stack="production"),
                    context=context)  # fmt: skip


def _props(step_name: str, plan: Plan) -> dict[str, Any]:
    step = next(step for step in plan.steps if step.name == step_name)
    stdin = step.stdin
    if step.stdin_secrets:
        stdin = secrets_stdin({name: SECRETS[name] for name in step.stdin_secrets})
    return {
        "create": step.create_line(),
        "update": step.update_line(),
        "delete": step.delete_line(),
        "dir": step.dir,
        "environment": {name: SECRETS[name] for name in step.secret_environment},
        "stdin": stdin,
        "logging": step.logging,
    }


def _up(plan: Plan) -> dict[str, str]:
    """Create every step (but smoke) in order, like a `pulumi up` with no state; stdout by step."""
    provider = LocalCommandProvider()
    done: dict[str, str] = {}
    for step in plan.steps:
        if step.name == "smoke":
            continue
        outs = provider.create(_props(step.name, plan)).outs or {}
        # the last line: what fly_ensure did (flyctl's own output comes before it)
        done[step.name] = str(outs["stdout"]).rsplit("\n", 1)[-1]
    return done


def _destroy(plan: Plan) -> None:
    """Delete every step in reverse, like `pulumi destroy` (a step without delete does nothing)."""
    provider = LocalCommandProvider()
    for step in reversed(plan.steps):
        if not step.retain_on_delete:
            provider.delete("id", _props(step.name, plan))


@pytest.mark.parametrize("between", ["lost state", "destroy"])
def test_second_up_adopts_the_app_and_addresses_instead_of_creating_more(
    fake_fly: FakeFly, tmp_path: Path, between: str
) -> None:
    """After a lost state or a destroy, `up` again plans no second app and no second address."""
    plan = _plan(tmp_path / "build")
    first = _up(plan)
    if between == "destroy":
        _destroy(plan)
    second = _up(plan)

    assert first["app"] == f"app {APP}: created in org acme"
    assert first["ips-v6"] == f"ips {APP}: allocated v6"
    assert first["ips-v4"] == f"ips {APP}: allocated shared_v4"
    assert second["app"] == f"app {APP}: adopted, it already exists in org acme"
    assert second["ips-v6"] == f"ips {APP}: adopted v6 2a09:8280:1::1"
    assert second["ips-v4"] == f"ips {APP}: adopted shared_v4 66.241.124.1"

    assert fake_fly.calls("apps", "create") == 1
    assert fake_fly.calls("ips", "allocate-v6") == 1
    assert fake_fly.calls("ips", "allocate-v4") == 1
    assert fake_fly.calls("apps", "list") == 2
    assert fake_fly.calls("ips", "list") == 4
    state = fake_fly.state()
    assert list(state["apps"]) == [APP]
    assert [ip["Type"] for ip in state["ips"][APP]] == ["v6"]
    assert state["shared_v4"][APP] == ["66.241.124.1"]
    assert fake_fly.calls("deploy") == 2
    assert state["secrets"][APP] == SECRETS  # byte-identical through the fake's flyctl parser


def test_the_fake_answers_a_second_create_like_flyctl(fake_fly: FakeFly) -> None:
    """Raw `apps create` fails the second time and `allocate-v6` gives a second address."""
    assert fake_fly.flyctl(*apps_create_argv("flyctl", app=APP, org="acme")[1:]).returncode == 0
    again = fake_fly.flyctl(*apps_create_argv("flyctl", app=APP, org="acme")[1:])
    assert again.returncode == 1
    assert again.stderr == "Error: Validation failed: Name has already been taken\n"
    for _ in range(2):
        assert fake_fly.flyctl(*ips_v6_argv("flyctl", app=APP)[1:]).returncode == 0
    assert len(fake_fly.state()["ips"][APP]) == 2


def test_an_app_left_by_a_failed_first_run_is_adopted_and_its_addresses_allocated(
    fake_fly: FakeFly, tmp_path: Path
) -> None:
    """The app exists but has no address yet: adopt it, allocate each address once."""
    assert fake_fly.flyctl("apps", "create", APP, "--org", "acme").returncode == 0
    out = _up(_plan(tmp_path / "build"))
    assert out["app"] == f"app {APP}: adopted, it already exists in org acme"
    assert out["ips-v6"] == f"ips {APP}: allocated v6"
    assert fake_fly.calls("apps", "create") == 1
    assert fake_fly.calls("ips", "allocate-v6") == 1


def test_a_dedicated_v4_is_adopted_in_place_of_a_shared_one(
    fake_fly: FakeFly, tmp_path: Path
) -> None:
    """An app with a dedicated IPv4 already has IPv4 ingress: no shared address is added."""
    assert fake_fly.flyctl("apps", "create", APP, "--org", "acme").returncode == 0
    state = fake_fly.state()
    state["ips"][APP] = [{"ID": "ip_9", "Address": "137.66.1.1", "Type": "v4", "Region": "global",
                          "CreatedAt": "2026-12-01T00:00:00Z", "ServiceName": "",
                          "Network": None}]  # fmt: skip
    fake_fly.state_path.write_text(json.dumps(state))
    out = _up(_plan(tmp_path / "build"))
    assert out["ips-v4"] == f"ips {APP}: adopted v4 137.66.1.1"
    assert fake_fly.calls("ips", "allocate-v4") == 0


def test_an_app_of_the_same_name_in_another_org_is_refused_naming_both(
    fake_fly: FakeFly, tmp_path: Path
) -> None:
    """The app is not silently adopted from another org: the step fails and says where it is."""
    assert fake_fly.flyctl("apps", "create", APP, "--org", "other").returncode == 0
    with pytest.raises(
        CommandFailed, match=r"exists in org other, not in acme \(realtime-fly:org\)"
    ):
        _up(_plan(tmp_path / "build"))
    assert fake_fly.calls("ips", "allocate-v6") == 0


def test_a_failing_listing_fails_the_step_with_flyctls_message(
    fake_fly: FakeFly, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When flyctl cannot list (here: no token), nothing is created and its error is shown."""
    monkeypatch.delenv("FLY_API_TOKEN")
    with pytest.raises(
        CommandFailed, match=r"`apps list --json` exited with status 1: Error: no access token"
    ):
        _up(_plan(tmp_path / "build"))
    assert fake_fly.calls("apps", "create") == 0
