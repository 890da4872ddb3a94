"""Tests for infra.deploy.targets.fly: the flyctl argv builders and the secrets stdin format."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
    release_digest,
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
    assert steps["scale-iad"].create[3] == "1"
    assert steps["secrets"].stdin_secrets == ("TOKEN_SIGNING_KEY",)
    assert steps["deploy"].dir == "build/x/app"


# --- regions (issue 15) ---------------------------------------------------------------------


def _regions(**extra: object) -> StackSettings:
    return _settings(broker="redis", redisUrl=True, **extra)


def test_scale_count_with_a_region_puts_the_flag_before_app_and_yes() -> None:
    """`fly scale count N --region R --app A --yes`: count.go:27-38 (the count argument, and the
    --region, --app and --yes flags of the command)."""
    assert scale_count_argv("fly", app="a", count=2, region="ams") == [
        "fly", "scale", "count", "2", "--region", "ams", "--app", "a", "--yes",
    ]  # fmt: skip
    assert scale_count_argv("fly", app="a", count=0, region="syd")[3] == "0"


def test_every_region_is_scaled_on_its_own_in_turn() -> None:
    """One step per region (named by region), the primary first, each after the last."""
    settings = _regions(machines=2, regions={"syd": 1, "ams": 3})
    plan = fly_plan(settings, fly_toml="app = 'x'\n", context=CONTEXT)
    names = [step.name for step in plan.steps]
    assert names[-4:] == ["scale-iad", "scale-ams", "scale-syd", "smoke"]
    steps = {step.name: step for step in plan.steps}
    assert steps["scale-iad"].create == tuple(
        scale_count_argv("flyctl", app="chat-prod", count=2, region="iad")
    )
    assert steps["scale-ams"].create == tuple(
        scale_count_argv("flyctl", app="chat-prod", count=3, region="ams")
    )
    assert steps["scale-syd"].create[3:6] == ("1", "--region", "syd")
    # in turn: each `fly scale count` leases every machine of the app (count_machines.go:133)
    assert steps["scale-iad"].depends_on == ("deploy",)
    assert steps["scale-ams"].depends_on == ("scale-iad",)
    assert steps["scale-syd"].depends_on == ("scale-ams",)
    assert steps["smoke"].depends_on == ("scale-syd",)
    # --ha is about the primary region's first deploy: 2 machines there
    assert "--ha=true" in steps["deploy"].create


def test_a_removed_region_is_scaled_to_zero_and_the_primary_never_is() -> None:
    """Deleting a further region's step (the region left `regions`) runs `count 0 --region R`;
    the primary region's step deletes nothing (the app and its machines are retained)."""
    plan = fly_plan(_regions(regions={"ams": 1}), fly_toml="app = 'x'\n", context=CONTEXT)
    steps = {step.name: step for step in plan.steps}
    assert steps["scale-ams"].delete == tuple(
        scale_count_argv("flyctl", app="chat-prod", count=0, region="ams")
    )
    assert steps["scale-iad"].delete is None
    assert not steps["scale-ams"].triggers  # a count change updates in place, never replaces


def test_a_region_at_zero_keeps_its_step() -> None:
    """`ams: 0` is an explicit `fly scale count 0 --region ams` (0 is a valid absolute count,
    count.go:95-107)."""
    plan = fly_plan(_settings(regions={"ams": 0}), fly_toml="app = 'x'\n", context=CONTEXT)
    steps = {step.name: step for step in plan.steps}
    assert steps["scale-ams"].create[3:6] == ("0", "--region", "ams")


def test_a_single_region_stack_names_its_region_too() -> None:
    """Without --region flyctl spreads the count over every region that has a machine
    (count_machines.go:56-57): the plan always names the primary region."""
    plan = fly_plan(_settings(machines=1), fly_toml="app = 'x'\n", context=CONTEXT)
    steps = {step.name: step for step in plan.steps}
    assert [name for name in steps if name.startswith("scale")] == ["scale-iad"]
    assert steps["scale-iad"].create[3:6] == ("1", "--region", "iad")
    assert steps["smoke"].depends_on == ("scale-iad",)


def test_a_region_count_change_changes_only_that_regions_line() -> None:
    """What `pulumi preview --diff` shows for {ams: 1} -> {ams: 2}: one step's command line."""
    before = fly_plan(_regions(regions={"ams": 1}), fly_toml="x", context=CONTEXT)
    after = fly_plan(_regions(regions={"ams": 2}), fly_toml="x", context=CONTEXT)
    changed = [
        old.name
        for old, new in zip(before.steps, after.steps, strict=True)
        if old.create_line() != new.create_line()
    ]
    assert changed == ["scale-ams"]


def test_release_digest_ignores_the_machine_count_only() -> None:
    """Scaling (any region) leaves the deploy trigger alone; a broker or a real key change not."""
    from infra.flytoml.render import render_fly_toml

    def digest(**extra: object) -> str:
        settings = _regions(**extra)
        return release_digest(render_fly_toml(settings.fly, stack="prod"))

    base = digest(regions={"ams": 1})
    assert digest(regions={"ams": 3}) == base
    assert digest(machines=2, regions={"ams": 1, "syd": 2}) == base
    assert digest(regions={"ams": 1}, killTimeout="60s") != base
    assert digest(regions={"ams": 1}, primaryRegion="lhr") != base
    memory = _settings()
    assert release_digest(render_fly_toml(memory.fly, stack="prod")) != base  # broker differs


_FLYCTL_MIRROR = Path(os.environ.get("FLYCTL_SOURCE_GIT_DIR", "/work/.mirror/superfly+flyctl/repo"))


def _flyctl_source(path: str) -> str:
    """A file of flyctl v0.4.87's source from a bare git mirror; skip when there is none (the
    flyctl binary cannot be built here: tests/integration/test_flyctl_cli.py runs the real
    parser where it can)."""
    if not (_FLYCTL_MIRROR / "HEAD").exists():
        pytest.skip(f"no flyctl source mirror at {_FLYCTL_MIRROR} (FLYCTL_SOURCE_GIT_DIR)")
    result = subprocess.run(
        ["git", f"--git-dir={_FLYCTL_MIRROR}", "show", f"v0.4.87:{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"flyctl v0.4.87 {path} not in the mirror: {result.stderr.strip()}")
    return result.stdout


def test_scale_count_argv_matches_flyctls_own_command_definition() -> None:
    """Every word of `fly scale count N --region R --app A --yes` is declared by flyctl
    v0.4.87's `scale count` command (count.go:27-43, flagnames/constants.go)."""
    count = _flyctl_source("internal/command/scale/count.go")
    names = _flyctl_source("internal/flag/flagnames/constants.go")
    argv = scale_count_argv("flyctl", app="a", count=2, region="ams")
    assert argv[1:3] == ["scale", "count"]
    assert 'command.New("count [count]"' in count  # the count is the first argument
    assert "cmd.Args = cobra.MinimumNArgs(1)" in count
    assert int(argv[3]) >= 0  # strconv.Atoi, absolute without a sign (count.go:95-107)
    flags = [word.removeprefix("--") for word in argv if word.startswith("--")]
    assert flags == ["region", "app", "yes"]
    assert 'Name: "region", Shorthand: "r"' in count
    assert "flag.App()," in count
    assert "flag.Yes()," in count
    assert 'App = "app"' in names
    assert 'Yes = "yes"' in names
    # --region is read as one comma-separated list (count_machines.go:52-55)
    machines = _flyctl_source("internal/command/scale/count_machines.go")
    assert 'regions = strings.Split(v, ",")' in machines
