"""The Pulumi program run per stack under the engine's mock monitor (``set_mocks``).

Asserts on what reaches the engine: the flyctl command resources, their order, triggers,
options, and that no secret value travels unmarked or appears in a command line.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import pytest

from infra.deploy.plan import text_digest, tree_digest
from infra.deploy.targets.fly import release_digest
from infra.errors import ConfigError
from infra.flytoml.render import render_fly_toml
from infra.stack.settings import load_stack_file
from tests.infra.pulumi_harness import (
    PROJECT,
    ROOT,
    SECRET_SIG,
    SECRET_VALUES,
    SIG_KEY,
    ProgramRun,
    run_program,
    stack_config,
    stack_secrets,
)

FLY_STACKS = ["staging", "production"]
FLY_STEPS = ["fly-toml", "app", "ips-v6", "ips-v4", "secrets", "deploy", "scale-iad", "smoke"]


@pytest.fixture(scope="module", params=FLY_STACKS)
def fly_run(request: pytest.FixtureRequest) -> tuple[str, ProgramRun]:
    stack: str = request.param
    return stack, run_program(stack)


def test_fly_stack_registers_one_command_per_pipeline_step(
    fly_run: tuple[str, ProgramRun],
) -> None:
    """Every step of the flyctl pipeline is one command resource named after the app."""
    stack, run = fly_run
    app = load_stack_file(ROOT / f"Pulumi.{stack}.yaml", require_secrets=False).fly.app
    names = sorted(r.name for r in run.commands())
    assert names == sorted(f"{app}-{step}" for step in FLY_STEPS)


def test_every_command_is_a_child_of_the_component(fly_run: tuple[str, ProgramRun]) -> None:
    """Each command is parented to the FlyApp component, which the stack owns."""
    _, run = fly_run
    components = [r for r in run.registrations if r.type == "realtime-fly:index:FlyApp"]
    assert len(components) == 1
    for command in run.commands():
        assert command.parent == components[0].urn


@pytest.mark.parametrize(
    ("step", "needs"),
    [
        ("ips-v6", {"app"}),
        ("ips-v4", {"app"}),
        ("secrets", {"app"}),
        ("deploy", {"fly-toml", "ips-v6", "ips-v4", "secrets"}),
        ("scale-iad", {"deploy"}),
        ("smoke", {"scale-iad"}),
    ],
)
def test_dependencies_order_the_pipeline(
    fly_run: tuple[str, ProgramRun], step: str, needs: set[str]
) -> None:
    """IPs exist before the first deploy; the smoke check runs after the machines are scaled."""
    _, run = fly_run
    urns = run.by_urn()
    deps = {urns[urn].name.rsplit("-", 1)[-1] for urn in run.command(step).dependencies}
    expected = {name.rsplit("-", 1)[-1] for name in needs}
    assert deps == expected


def test_app_is_retained_and_nothing_else_is(fly_run: tuple[str, ProgramRun]) -> None:
    """Destroying the stack never deletes the Fly app (and its volumes, IPs, certificates)."""
    _, run = fly_run
    retained = [r.name for r in run.commands() if r.retain_on_delete]
    assert retained == [run.command("app").name]


def test_fly_toml_is_an_input_of_the_first_step(fly_run: tuple[str, ProgramRun]) -> None:
    """The rendered fly.toml is the materialise step's stdin, so previews show its line diff."""
    stack, run = fly_run
    settings = load_stack_file(ROOT / f"Pulumi.{stack}.yaml", require_secrets=False)
    stdin = run.command("fly-toml").inputs["stdin"]
    assert stdin == render_fly_toml(settings.fly, stack=stack)
    assert 'protocol = "tcp"' in stdin
    assert 'handlers = ["tls"]' in stdin


def test_deploy_is_triggered_by_content_digests(fly_run: tuple[str, ProgramRun]) -> None:
    """The deploy's triggers are the fly.toml and backend digests: no clock, no randomness
    (the fly.toml one leaves out the machine count of its `# deployment:` comment, which the
    scale steps apply without a redeploy)."""
    stack, run = fly_run
    deploy = run.command("deploy")
    fly_toml = run.command("fly-toml").inputs["stdin"]
    assert deploy.inputs["triggers"] == [release_digest(fly_toml), tree_digest(ROOT / "backend")]
    assert release_digest(fly_toml) != text_digest(fly_toml)  # the count is there, and left out
    again = run_program(stack)
    assert again.command("deploy").inputs["triggers"] == deploy.inputs["triggers"]


def test_deploy_command_line(fly_run: tuple[str, ProgramRun]) -> None:
    """The deploy runs from the deploy context with the stack's strategy and a remote builder."""
    stack, run = fly_run
    settings = load_stack_file(ROOT / f"Pulumi.{stack}.yaml", require_secrets=False)
    deploy = run.command("deploy")
    assert deploy.inputs["dir"] == f"build/{stack}/app"
    line = deploy.inputs["create"]
    assert line.startswith("flyctl deploy . --config fly.toml")
    assert f"--strategy {settings.fly.deploy.strategy}" in line
    assert "--remote-only" in line
    ha = "true" if settings.machines > 1 else "false"
    assert f"--ha={ha}" in line


def test_secrets_travel_on_secret_stdin_and_are_never_logged(
    fly_run: tuple[str, ProgramRun],
) -> None:
    """`fly secrets import` reads the secrets from a secret stdin, logs nothing, hides output."""
    stack, run = fly_run
    secrets = run.command("secrets")
    assert secrets.is_secret("stdin")
    assert secrets.inputs["logging"] == "none"
    assert sorted(secrets.additional_secret_outputs) == ["stderr", "stdout"]
    assert "--stage" in secrets.inputs["create"]
    assert "--stage" not in secrets.inputs["update"]
    stdin = secrets.raw["stdin"]["value"]
    assert f'TOKEN_SIGNING_KEY="{SECRET_VALUES["tokenSigningKey"]}"' in stdin
    redis_expected = stack == "production"
    assert (f'REDIS_URL="{SECRET_VALUES["redisUrl"]}"' in stdin) is redis_expected


def test_smoke_check_gets_the_signing_key_as_a_secret_environment_variable(
    fly_run: tuple[str, ProgramRun],
) -> None:
    """The smoke check mints its token from a secret env var, never from argv."""
    _, run = fly_run
    smoke = run.command("smoke")
    assert smoke.is_secret("environment", "TOKEN_SIGNING_KEY")
    assert smoke.inputs["logging"] == "none"
    assert "wss://" in smoke.inputs["create"]


def _unmarked_strings(value: Any) -> list[str]:
    """Every string in a wire-format value that is NOT inside a secret wrapper."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return []
        return [s for item in value.values() for s in _unmarked_strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _unmarked_strings(item)]
    return [value] if isinstance(value, str) else []


def test_no_secret_value_reaches_the_engine_unmarked(fly_run: tuple[str, ProgramRun]) -> None:
    """No input of any resource carries a secret value in plaintext (state, previews, logs)."""
    _, run = fly_run
    for registration in run.registrations:
        for text in _unmarked_strings(registration.raw):
            for secret in SECRET_VALUES.values():
                assert secret not in text, f"{registration.name} leaks a secret"
        for key in ("create", "update", "delete"):
            line = registration.inputs.get(key) or ""
            assert not any(secret in line for secret in SECRET_VALUES.values())


def test_invalid_websocket_handlers_fail_before_any_command() -> None:
    """handlers ["tls", "http"] (the PU02 incident) fails the program naming the key."""
    config = stack_config("production", secrets=stack_secrets("production"))
    websocket = json.loads(config.get(f"{PROJECT}:websocket", "{}"))
    websocket["handlers"] = ["tls", "http"]
    config[f"{PROJECT}:websocket"] = json.dumps(websocket)
    keys = [f"{PROJECT}:{key}" for key in stack_secrets("production")]
    with pytest.raises(ConfigError, match=r"realtime-fly:websocket\.handlers") as info:
        run_program("production", config=config, secret_keys=keys)
    assert "PU02" in str(info.value)


def test_plaintext_secret_config_is_refused() -> None:
    """A signing key set without --secret is refused, and its value is not echoed."""
    config = stack_config("staging", secrets=stack_secrets("staging"))
    with pytest.raises(ConfigError, match="realtime-fly:tokenSigningKey") as info:
        run_program("staging", config=config, secret_keys=[])
    assert SECRET_VALUES["tokenSigningKey"] not in str(info.value)


def test_misspelt_config_key_is_refused() -> None:
    """A typo such as realtime-fly:machine is an error, never silently ignored."""
    config = stack_config("staging", secrets=stack_secrets("staging"))
    config[f"{PROJECT}:machine"] = "3"
    keys = [f"{PROJECT}:{key}" for key in stack_secrets("staging")]
    with pytest.raises(ConfigError, match="realtime-fly:machine"):
        run_program("staging", config=config, secret_keys=keys)


def test_fly_stack_without_signing_key_fails_naming_it() -> None:
    """A fly stack must set realtime-fly:tokenSigningKey (the backend refuses to start without)."""
    config = stack_config("staging")
    with pytest.raises(ConfigError, match="realtime-fly:tokenSigningKey"):
        run_program("staging", config=config, secret_keys=[])


def test_short_signing_key_is_refused_without_showing_it() -> None:
    """A key the backend would refuse (< 32 characters) fails the preview; only its length shows."""
    secrets = stack_secrets("staging")
    secrets["tokenSigningKey"] = "too-short-key"
    config = stack_config("staging", secrets=secrets)
    keys = [f"{PROJECT}:{key}" for key in secrets]
    with pytest.raises(ConfigError, match="realtime-fly:tokenSigningKey") as info:
        run_program("staging", config=config, secret_keys=keys)
    assert "too-short-key" not in str(info.value)
    assert "13 characters" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("tokenSigningKey", "k" * 70_000, "64 KiB"),
        ("tokenSigningKey", "-----BEGIN KEY-----\r\n" + "k" * 40 + "\r\n", "CRLF"),
        ("redisUrl", 'redis://u:p"w#x@h:6379\nsecond line', "odd number"),
    ],
)
def test_secret_fly_would_change_is_refused_at_preview_by_key(
    key: str, value: str, reason: str
) -> None:
    """A secret `fly secrets import` cannot store byte-identical fails the preview by its key."""
    secrets = stack_secrets("production")
    secrets[key] = value
    config = stack_config("production", secrets=secrets)
    keys = [f"{PROJECT}:{name}" for name in secrets]
    with pytest.raises(ConfigError, match=f"realtime-fly:{key}") as info:
        run_program("production", config=config, secret_keys=keys)
    assert reason in str(info.value)
    assert value not in str(info.value)
    assert "k" * 40 not in str(info.value)


# --- regions (issue 15) ---------------------------------------------------------------------


def _regions_run(regions: dict[str, int], *, machines: int = 2) -> ProgramRun:
    secrets = stack_secrets("production")
    config = stack_config("production", secrets=secrets)
    config[f"{PROJECT}:machines"] = str(machines)
    config[f"{PROJECT}:regions"] = json.dumps(regions)  # as `pulumi config set` stores it
    return run_program(
        "production", config=config, secret_keys=[f"{PROJECT}:{key}" for key in secrets]
    )


def _inputs(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {
        command.name.removeprefix("realtime-production-"): command.inputs
        for command in run.commands()
    }


def test_two_regions_register_a_scale_command_per_region_in_turn() -> None:
    """{iad: 2, ams: 1} (iad primary): `scale-iad` then `scale-ams`, then the smoke check."""
    run = _regions_run({"ams": 1})
    assert sorted(_inputs(run)) == sorted([*FLY_STEPS, "scale-ams"])
    urns = run.by_urn()
    dependency = {
        step: [urns[urn].name for urn in run.command(step).dependencies]
        for step in ("scale-iad", "scale-ams", "smoke")
    }
    assert dependency == {
        "scale-iad": ["realtime-production-deploy"],
        "scale-ams": ["realtime-production-scale-iad"],
        "smoke": ["realtime-production-scale-ams"],
    }
    assert run.command("scale-iad").inputs["create"] == (
        "flyctl scale count 2 --region iad --app realtime-production --yes"
    )
    ams = run.command("scale-ams").inputs
    assert ams["create"] == "flyctl scale count 1 --region ams --app realtime-production --yes"
    assert ams["delete"] == "flyctl scale count 0 --region ams --app realtime-production --yes"
    assert not run.command("scale-iad").inputs.get("delete")
    assert 'primary_region = "iad"' in run.command("fly-toml").inputs["stdin"]


def test_a_region_change_previews_as_line_diffs_and_redeploys_nothing() -> None:
    """{ams: 1} -> {ams: 2}: what `pulumi preview --diff` compares. Two inputs change: the
    scale-ams command line and one line of fly.toml (the total in its `# deployment:` comment);
    the deploy and smoke triggers do not, so no machine restarts and no WebSocket drops."""
    before, after = _inputs(_regions_run({"ams": 1})), _inputs(_regions_run({"ams": 2}))
    assert sorted(before) == sorted(after)
    changed = {
        (step, key)
        for step in before
        for key in set(before[step]) | set(after[step])
        if before[step].get(key) != after[step].get(key)
    }
    assert changed == {("scale-ams", "create"), ("fly-toml", "stdin")}
    assert after["scale-ams"]["create"].startswith("flyctl scale count 2 --region ams ")
    diff = [
        line
        for line in difflib.unified_diff(
            before["fly-toml"]["stdin"].splitlines(), after["fly-toml"]["stdin"].splitlines(), n=0
        )
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert diff == [
        '-# deployment: machines = 3, broker = "redis"',
        '+# deployment: machines = 4, broker = "redis"',
    ]


def test_adding_and_removing_a_region_adds_and_removes_its_command() -> None:
    """A new region is a new command (previewed as `+ scale-syd`); a region left out is a
    deleted one, whose delete scales it to 0."""
    one, two = _inputs(_regions_run({"ams": 1})), _inputs(_regions_run({"ams": 1, "syd": 1}))
    assert set(two) - set(one) == {"scale-syd"}
    assert two["scale-syd"]["create"].startswith("flyctl scale count 1 --region syd ")
    assert two["scale-syd"]["delete"].startswith("flyctl scale count 0 --region syd ")
    assert two["deploy"]["triggers"] == one["deploy"]["triggers"]


def test_regions_on_the_memory_broker_fail_the_preview_naming_the_key() -> None:
    config = stack_config("staging", secrets=stack_secrets("staging"))
    config[f"{PROJECT}:regions"] = json.dumps({"ams": 1})
    keys = [f"{PROJECT}:{key}" for key in stack_secrets("staging")]
    with pytest.raises(
        ConfigError, match=r"realtime-fly:regions = \{iad = 1, ams = 1\}: 2 machines in total"
    ):
        run_program("staging", config=config, secret_keys=keys)


def test_swapping_the_primary_region_deletes_no_step() -> None:
    """primary iad + {ams: 1} -> primary ams + {iad: 1}: the same two steps, updated in place
    (named by region), so no delete (which the engine runs last, with its stored inputs) can
    scale the new primary to 0; only the delete commands trade places."""
    before = _inputs(_regions_run({"ams": 1}, machines=1))
    secrets = stack_secrets("production")
    config = stack_config("production", secrets=secrets)
    config[f"{PROJECT}:primaryRegion"] = "ams"
    config[f"{PROJECT}:machines"] = "1"
    config[f"{PROJECT}:regions"] = json.dumps({"iad": 1})
    after = _inputs(
        run_program("production", config=config, secret_keys=[f"{PROJECT}:{k}" for k in secrets])
    )
    assert sorted(before) == sorted(after)
    assert before["scale-ams"]["delete"]
    assert not after["scale-ams"].get("delete")
    assert after["scale-iad"]["delete"]
    assert not before["scale-iad"].get("delete")
