"""Tests for infra.deploy.targets.fly: the flyctl argv builders and the secrets stdin format."""

from __future__ import annotations

import pytest

from infra.deploy.plan import PlanContext
from infra.deploy.targets.fly import (
    apps_create_argv,
    apps_list_argv,
    deploy_argv,
    ensure_app_argv,
    ensure_ip_argv,
    fly_plan,
    ips_list_argv,
    ips_v4_shared_argv,
    ips_v6_argv,
    public_urls,
    scale_count_argv,
    secrets_import_argv,
    secrets_stdin,
    smoke_argv,
)
from infra.deploy.targets.fly_secrets import UncarriableSecretError
from infra.stack.settings import StackSettings, settings_from_config

CONTEXT = PlanContext(
    python=".venv/bin/python", backend_dir="backend", build_dir="build/x", backend_digest="d"
)


def _settings(**extra: object) -> StackSettings:
    values: dict[str, object] = {
        "target": "fly",
        "app": "chat-prod",
        "org": "acme",
        "machines": 1,
        "tokenSigningKey": True,
    }
    values.update(extra)
    return settings_from_config(values, stack="prod")


def test_apps_create_names_the_org() -> None:
    """Without a terminal flyctl refuses `apps create` unless --org is given."""
    assert apps_create_argv("flyctl", app="chat", org="acme") == [
        "flyctl", "apps", "create", "chat", "--org", "acme",
    ]  # fmt: skip


def test_ip_allocation_is_explicit_and_shared_v4() -> None:
    """IPv6 plus a shared IPv4: a dedicated v4 costs money and needs --yes."""
    assert ips_v6_argv("fly", app="a") == ["fly", "ips", "allocate-v6", "--app", "a"]
    assert ips_v4_shared_argv("fly", app="a") == [
        "fly", "ips", "allocate-v4", "--shared", "--app", "a",
    ]  # fmt: skip


def test_listings_ask_flyctl_for_json() -> None:
    """The checks read `apps list --json` (all orgs) and `ips list --app A --json`."""
    assert apps_list_argv("fly") == ["fly", "apps", "list", "--json"]
    assert ips_list_argv("fly", app="a") == ["fly", "ips", "list", "--app", "a", "--json"]


def test_create_steps_check_first_through_fly_ensure() -> None:
    """app, ips-v6 and ips-v4 run fly_ensure (adopt or create), never a bare create."""
    plan = fly_plan(_settings(), fly_toml="app = 'x'\n", context=CONTEXT)
    steps = {step.name: step for step in plan.steps}
    assert steps["app"].create == tuple(
        ensure_app_argv(".venv/bin/python", "flyctl", app="chat-prod", org="acme")
    )
    assert steps["app"].create[:4] == (
        ".venv/bin/python", "-m", "infra.deploy.targets.fly_ensure", "app",
    )  # fmt: skip
    assert steps["app"].retain_on_delete
    assert steps["ips-v6"].create[-2:] == ("--kind", "v6")
    assert steps["ips-v4"].create[-2:] == ("--kind", "shared-v4")
    assert steps["ips-v4"].create == tuple(
        ensure_ip_argv(".venv/bin/python", "flyctl", app="chat-prod", kind="shared-v4")
    )


def test_secrets_import_stages_only_when_asked() -> None:
    """Create stages (no machine yet); update applies and rolls the machines."""
    assert secrets_import_argv("fly", app="a", stage=True)[-1] == "--stage"
    assert "--stage" not in secrets_import_argv("fly", app="a", stage=False)


def test_deploy_argv_pins_remote_builder_strategy_timeout_and_ha() -> None:
    """Every deploy choice is explicit on the command line, none left to flyctl's defaults."""
    argv = deploy_argv(
        "flyctl", app="a", config="fly.toml", strategy="bluegreen", wait_timeout="10m0s",
        high_availability=False,
    )  # fmt: skip
    assert argv[:3] == ["flyctl", "deploy", "."]
    assert argv[argv.index("--config") + 1] == "fly.toml"
    assert argv[argv.index("--strategy") + 1] == "bluegreen"
    assert argv[argv.index("--wait-timeout") + 1] == "10m0s"
    assert "--ha=false" in argv
    assert "--remote-only" in argv
    assert "--yes" in argv


def test_scale_and_smoke_argv() -> None:
    """Scaling names the count; the smoke check gets URLs only (its key comes from env)."""
    assert scale_count_argv("fly", app="a", count=3) == [
        "fly", "scale", "count", "3", "--app", "a", "--yes",
    ]  # fmt: skip
    argv = smoke_argv("py", wss_url="wss://a.fly.dev:8081/", https_url="https://a.fly.dev/")
    assert argv == [
        "py", "-m", "infra.deploy.smoke", "--wss-url", "wss://a.fly.dev:8081/",
        "--https-url", "https://a.fly.dev/",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("plain", 'K="plain"'),
        ("has # hash", 'K="has # hash"'),
        ('quote " and \\ slash', 'K="quote " and \\ slash"'),
        ('odd " before # hash', "K='odd \" before # hash'"),
        ("two\nlines", 'K="""two\nlines"""'),
    ],
)
def test_secrets_stdin_writes_values_as_they_are(value: str, line: str) -> None:
    """flyctl un-escapes nothing, so values go as is; the quotes keep a # from cutting them."""
    assert secrets_stdin({"K": value}) == line + "\n"


def test_secrets_stdin_is_sorted_and_refuses_what_flyctl_would_change() -> None:
    """Lines are in a stable order; a value flyctl would change is refused by name only."""
    assert secrets_stdin({"B": "2", "A": "1"}) == 'A="1"\nB="2"\n'
    with pytest.raises(UncarriableSecretError, match="secret K") as info:
        secrets_stdin({"K": 'a"""\nb'})
    assert 'a"""' not in str(info.value)


def test_public_urls_use_the_websocket_public_port() -> None:
    """The WSS URL carries the WebSocket service's public port, the HTTPS URL the default 443."""
    settings = _settings(websocket={"port": 9443, "internalPort": 8081})
    assert public_urls(settings) == ("https://chat-prod.fly.dev/", "wss://chat-prod.fly.dev:9443/")


def test_single_machine_stack_deploys_without_ha_and_scales_to_one() -> None:
    """machines = 1 turns flyctl's --ha default off and scales to exactly one machine."""
    settings = _settings()
    plan = fly_plan(settings, fly_toml="app = 'x'\n", context=CONTEXT)
    steps = {step.name: step for step in plan.steps}
    assert "--ha=false" in steps["deploy"].create
    assert steps["scale"].create[3] == "1"
    assert steps["secrets"].stdin_secrets == ("TOKEN_SIGNING_KEY",)
    assert steps["deploy"].dir == "build/x/app"
