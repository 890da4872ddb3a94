"""infra.deploy.targets.local plans the dev stack here: redis, two backends, a TLS edge"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from infra.deploy.plan import Plan, PlanContext
from infra.deploy.targets.local import instance_ports, local_instances, local_plan, redis_port
from infra.flytoml.render import render_fly_toml
from infra.local.edge import Instance
from infra.local.haproxy import instance_spec, parse_instance
from infra.stack.settings import StackSettings, load_stack_file

REPO = Path(__file__).resolve().parents[2]
CONTEXT = PlanContext(
    python=".venv/bin/python",
    backend_dir="backend",
    build_dir="build/dev",
    backend_digest="sha256:backend",
)


@pytest.fixture(scope="module")
def settings() -> StackSettings:
    return load_stack_file(REPO / "Pulumi.dev.yaml", require_secrets=False)


@pytest.fixture(scope="module")
def plan(settings: StackSettings) -> Plan:
    return local_plan(settings, fly_toml=render_fly_toml(settings.fly), context=CONTEXT)


def _step(plan: Plan, name: str):  # type: ignore[no-untyped-def]
    return next(step for step in plan.steps if step.name == name)


def test_steps_run_in_dependency_order(plan: Plan) -> None:
    """fly.toml first, the edge after both backends, the smoke check last."""
    names = [step.name for step in plan.steps]
    assert names[0] == "fly-toml"
    assert names[-1] == "smoke"
    assert names.index("edge") > max(names.index("app-1"), names.index("app-2"))
    assert set(_step(plan, "edge").depends_on) >= {"edge-config", "app-1", "app-2"}


def test_outputs_are_the_edge_urls(plan: Plan) -> None:
    """The stack answers on the edge's stand-ins of 443 and 8081."""
    assert plan.https_url == "https://localhost:18443/"
    assert plan.wss_url == "wss://localhost:18081/"


def test_each_long_running_process_is_stopped_on_delete(plan: Plan) -> None:
    """redis, both backends and the edge are started detached and stopped by delete."""
    for name in ("redis", "app-1", "app-2", "edge"):
        step = _step(plan, name)
        assert step.create[1:5] == ("-m", "infra.local.supervise", "start", name)
        assert step.delete is not None
        assert step.delete[1:5] == ("-m", "infra.local.supervise", "stop", name)


def test_redis_runs_without_persistence_on_its_port(plan: Plan) -> None:
    """redis-server binds loopback with RDB and AOF off."""
    argv = _step(plan, "redis").create
    server = argv[argv.index("redis-server") :]
    assert server == (
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        "16379",
        "--save",
        "",
        "--appendonly",
        "no",
    )


def test_backends_get_distinct_ports_and_the_shared_broker(plan: Plan) -> None:
    """Two instances with their own ports, the same redis and the edge's wss URL."""
    one, two = (_step(plan, name).environment for name in ("app-1", "app-2"))
    assert (one["WS_PORT"], one["HTTP_PORT"]) == ("21081", "21080")
    assert (two["WS_PORT"], two["HTTP_PORT"]) == ("22081", "22080")
    for env in (one, two):
        assert env["REDIS_URL"] == "redis://127.0.0.1:16379/0"
        assert env["DEV_TOKENS"] == "1"
        assert env["PUBLIC_WS_URL"] == "wss://localhost:18081/"
        assert env["HOST"] == "127.0.0.1"


def test_every_port_follows_the_port_base(settings: StackSettings) -> None:
    """localPortBase 30000 moves redis, both backends, the edge and the URLs by 20000."""
    moved_settings = replace(settings, local_port_base=30000)
    moved = local_plan(moved_settings, fly_toml=render_fly_toml(settings.fly), context=CONTEXT)
    assert (moved.https_url, moved.wss_url) == (
        "https://localhost:38443/",
        "wss://localhost:38081/",
    )
    assert redis_port(30000) == 36379
    redis = _step(moved, "redis").create
    assert redis[redis.index("--port") + 1] == "36379"
    assert redis[redis.index("--wait-tcp") + 1] == "127.0.0.1:36379"
    one, two = (_step(moved, name).environment for name in ("app-1", "app-2"))
    assert (one["WS_PORT"], one["HTTP_PORT"], two["WS_PORT"]) == ("41081", "41080", "42081")
    assert one["REDIS_URL"] == "redis://127.0.0.1:36379/0"
    assert one["PUBLIC_WS_URL"] == "wss://localhost:38081/"
    config = _step(moved, "edge-config").create
    assert config[config.index("--port-base") + 1] == "30000"
    assert "app-1:8080=41080,8081=41081" in config
    edge = _step(moved, "edge").create
    assert edge[edge.index("--wait-tcp") + 1] == "127.0.0.1:38081"
    assert "wss://localhost:38081/" in _step(moved, "smoke").create


def test_a_port_base_change_replaces_the_processes(settings: StackSettings, plan: Plan) -> None:
    """Another base changes the triggers of redis, the backends and the edge (a replacement:
    stop on the old ports, start on the new), and of nothing that runs no process."""
    moved_settings = replace(settings, local_port_base=30000)
    fly_toml = render_fly_toml(settings.fly)
    moved = local_plan(moved_settings, fly_toml=fly_toml, context=CONTEXT)
    changed = {
        step.name
        for step, before in zip(moved.steps, plan.steps, strict=True)
        if step.triggers != before.triggers
    }
    assert changed == {"redis", "app-1", "app-2", "edge"}


def test_no_secret_value_enters_the_plan(plan: Plan) -> None:
    """The dev signing key comes from a generated file, never from argv or the environment."""
    for step in plan.steps:
        assert "TOKEN_SIGNING_KEY" not in step.environment
        assert not any("TOKEN_SIGNING_KEY=" in arg for arg in step.create)
    backend = _step(plan, "app-1").create
    assert backend[backend.index("--env-file") + 1] == "build/local/secrets.env"


def test_a_stack_signing_key_is_passed_as_a_secret(settings: StackSettings) -> None:
    """With tokenSigningKey set on the stack, backends and smoke get it as a secret env var."""
    with_key = replace(settings, secrets_set=frozenset({"tokenSigningKey"}))
    plan = local_plan(with_key, fly_toml=render_fly_toml(with_key.fly), context=CONTEXT)
    for name in ("app-1", "app-2", "smoke"):
        assert _step(plan, name).secret_environment == ("TOKEN_SIGNING_KEY",)


def test_backend_or_config_change_restarts_backends_and_edge_follows_config(
    settings: StackSettings, plan: Plan
) -> None:
    """A backend digest change replaces the backends and not the edge; a fly.toml change both."""
    other_backend = PlanContext(
        python=CONTEXT.python,
        backend_dir=CONTEXT.backend_dir,
        build_dir=CONTEXT.build_dir,
        backend_digest="sha256:changed",
    )
    fly_toml = render_fly_toml(settings.fly)
    changed = local_plan(settings, fly_toml=fly_toml, context=other_backend)
    assert _step(changed, "app-1").triggers != _step(plan, "app-1").triggers
    assert _step(changed, "edge").triggers == _step(plan, "edge").triggers
    edited = local_plan(settings, fly_toml=fly_toml + "\n# edited\n", context=CONTEXT)
    assert _step(edited, "edge").triggers != _step(plan, "edge").triggers
    assert _step(edited, "app-2").triggers != _step(plan, "app-2").triggers


def test_edge_config_is_rendered_from_the_materialised_fly_toml(plan: Plan) -> None:
    """The edge reads build/<stack>/fly.toml and knows both instances' ports."""
    argv = _step(plan, "edge-config").create
    assert argv[argv.index("--fly-toml") + 1] == "build/dev/fly.toml"
    specs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--instance"]
    assert specs == ["app-1:8080=21080,8081=21081", "app-2:8080=22080,8081=22081"]


def test_instances_cover_every_internal_port(settings: StackSettings) -> None:
    """Each instance listens on a local port for the HTTP and the WebSocket service."""
    for index, instance in enumerate(local_instances(settings), start=1):
        assert instance.ports == {
            8080: instance_ports(index, 8080, base=10000),
            8081: instance_ports(index, 8081, base=10000),
        }


def test_instance_spec_round_trips() -> None:
    """--instance text parses back to the same instance."""
    instance = Instance(name="app-1", ports={8080: 21080, 8081: 21081})
    assert parse_instance(instance_spec(instance)) == instance


@pytest.mark.parametrize("text", ["app-1", "app-1:", "app-1:8080", ":8080=1", "a:x=1"])
def test_bad_instance_specs_are_refused(text: str) -> None:
    """A malformed --instance names the text."""
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME:INTERNAL=LOCAL"):
        parse_instance(text)


def test_backends_allow_the_edge_origin_of_the_demo_page(plan: Plan) -> None:
    """Browsers load the demo page from the edge's HTTPS port: that origin may open WebSockets."""
    steps = {step.name: step for step in plan.steps}
    for name in ("app-1", "app-2"):
        assert steps[name].environment["ALLOWED_ORIGINS"] == plan.https_url.rstrip("/")
    assert plan.https_url.rstrip("/") == "https://localhost:18443"


def _with(settings: StackSettings, *, machines: int, broker: str, base: int = 10000) -> Plan:
    fly = replace(settings.fly, machines=machines, broker=broker)  # type: ignore[arg-type]
    changed = replace(settings, machines=machines, fly=fly, local_port_base=base)
    return local_plan(changed, fly_toml=render_fly_toml(fly), context=CONTEXT)


def test_one_backend_per_machine(settings: StackSettings) -> None:
    """realtime-fly:machines decides how many backends run, and the edge balances over all."""
    plan = _with(settings, machines=3, broker="redis")
    apps = [step.name for step in plan.steps if step.name.startswith("app-")]
    assert apps == ["app-1", "app-2", "app-3"]
    instances = _step(plan, "edge-config").create
    assert [instances[i + 1] for i, arg in enumerate(instances) if arg == "--instance"] == [
        "app-1:8080=21080,8081=21081",
        "app-2:8080=22080,8081=22081",
        "app-3:8080=23080,8081=23081",
    ]
    assert set(_step(plan, "edge").depends_on) >= {"app-1", "app-2", "app-3"}


def test_memory_broker_runs_no_redis(settings: StackSettings) -> None:
    """One machine on the in-memory broker: no redis-server, and no REDIS_URL for the backend."""
    plan = _with(settings, machines=1, broker="memory")
    names = [step.name for step in plan.steps]
    assert "redis" not in names
    assert "app-2" not in names
    assert "REDIS_URL" not in _step(plan, "app-1").environment
    assert "redis" not in _step(plan, "app-1").depends_on


def test_redis_broker_gives_every_backend_the_local_redis(settings: StackSettings) -> None:
    """With broker redis every backend gets the local redis-server's URL."""
    plan = _with(settings, machines=2, broker="redis")
    for name in ("app-1", "app-2"):
        assert _step(plan, name).environment["REDIS_URL"] == "redis://127.0.0.1:16379/0"
        assert "redis" in _step(plan, name).depends_on


def test_too_many_machines_for_the_port_range_names_the_key(settings: StackSettings) -> None:
    """Ports past 65535 are refused at plan time, naming realtime-fly:machines."""
    from infra.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        _with(settings, machines=6, broker="redis", base=50000)
    assert caught.value.key == "realtime-fly:machines"
    assert _with(settings, machines=5, broker="redis", base=50000).steps  # up to 65081


# --- regions (issue 15) ---------------------------------------------------------------------


def _regional(settings: StackSettings, regions: dict[str, int], machines: int = 1) -> Plan:
    from infra.stack.settings import settings_from_config

    regional = settings_from_config(
        {"target": "local", "broker": "redis", "machines": machines, "regions": regions},
        stack="dev",
    )
    return local_plan(regional, fly_toml=render_fly_toml(regional.fly), context=CONTEXT)


def test_regions_run_one_backend_per_machine_of_every_region(settings: StackSettings) -> None:
    """Locally a region is a label: one backend per machine over all regions, each with
    FLY_REGION set as Fly sets it, all on the one redis-server (as all regions share one Redis)."""
    plan = _regional(settings, {"ams": 2, "syd": 1}, machines=1)
    apps = [step for step in plan.steps if step.name.startswith("app-")]
    assert [(step.name, step.environment["FLY_REGION"]) for step in apps] == [
        ("app-1", "iad"),
        ("app-2", "ams"),
        ("app-3", "ams"),
        ("app-4", "syd"),
    ]
    assert {step.environment["REDIS_URL"] for step in apps} == {"redis://127.0.0.1:16379/0"}
    assert set(_step(plan, "edge").depends_on) >= {step.name for step in apps}


def test_a_single_region_stack_labels_its_backends_with_the_primary_region(plan: Plan) -> None:
    for name in ("app-1", "app-2"):
        assert _step(plan, name).environment["FLY_REGION"] == "iad"


def test_too_many_machines_over_regions_names_regions() -> None:
    """The port range counts every region's machines, and the error names realtime-fly:regions."""
    from infra.errors import ConfigError
    from infra.stack.settings import settings_from_config

    values = {"target": "local", "broker": "redis", "machines": 3, "localPortBase": 50000}
    assert len(local_instances(settings_from_config(values, stack="dev"))) == 3
    too_many = settings_from_config({**values, "regions": {"ams": 3}}, stack="dev")
    with pytest.raises(ConfigError) as caught:
        local_instances(too_many)
    assert caught.value.key == "realtime-fly:regions"
    assert caught.value.value == {"iad": 3, "ams": 3}


def test_redis_cluster_runs_six_nodes_and_points_the_backends_at_one(
    settings: StackSettings,
) -> None:
    """redis: cluster starts the local Redis Cluster (3 masters + 3 replicas) and gives every
    backend a node's URL and REDIS_CLUSTER=1."""
    from infra.stack.settings import settings_from_config

    cluster = settings_from_config(
        {"target": "local", "machines": 2, "broker": "redis", "redis": "cluster"}, stack="dev"
    )
    plan = local_plan(cluster, fly_toml=render_fly_toml(cluster.fly), context=CONTEXT)
    redis = _step(plan, "redis")
    assert redis.create[1:] == (
        "-m", "infra.local.redis_cluster", "start", "--state", "build/local", "--base", "10000"
    )  # fmt: skip
    assert redis.delete is not None
    assert redis.delete[1:] == ("-m", "infra.local.redis_cluster", "stop", "--state", "build/local")
    for name in ("app-1", "app-2"):
        environment = _step(plan, name).environment
        assert environment["REDIS_URL"] == "redis://127.0.0.1:17000/0"
        assert environment["REDIS_CLUSTER"] == "1"
    single = _with(settings, machines=2, broker="redis")
    assert _step(single, "app-1").triggers != _step(plan, "app-1").triggers
