"""Stack settings: coercion of YAML/Pulumi values, errors naming realtime-fly:<key>, secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.errors import ConfigError
from infra.flytoml.model import Duration, ProxyProtoOptions
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.render import render_fly_toml
from infra.flytoml.rules import config_findings
from infra.stack.settings import (
    CONFIG_KEYS,
    LOCAL_PORT_BASE,
    OBJECT_KEYS,
    PROJECT,
    SECRETS,
    load_stack_file,
    settings_from_config,
    stack_key_for,
)

REPO = Path(__file__).resolve().parents[2]
STACK_FILES = sorted(REPO.glob("Pulumi.*.yaml"))
FLY = {"org": "example-org", "machines": 1, "tokenSigningKey": True}


def _error(values: dict[str, object], **kwargs: bool) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        settings_from_config(values, stack="test", **kwargs)
    return caught.value


def test_contract_names() -> None:
    """The project name, secrets and keys the Pulumi program relies on are as agreed."""
    assert PROJECT == "realtime-fly"
    assert [(s.key, s.env_name, s.required) for s in SECRETS] == [
        ("tokenSigningKey", "TOKEN_SIGNING_KEY", True),
        ("redisUrl", "REDIS_URL", False),
    ]
    assert {"target", "app", "org", "machines", "broker", "websocket", "http"} <= set(CONFIG_KEYS)
    assert not {s.key for s in SECRETS} & set(CONFIG_KEYS)


def test_defaults() -> None:
    """A fly stack with only org, machines and the signing key gets the documented defaults."""
    settings = settings_from_config(FLY, stack="staging")
    assert (settings.stack, settings.target, settings.org) == ("staging", "fly", "example-org")
    assert (settings.flyctl, settings.machines) == ("flyctl", 1)
    assert settings.secrets_set == frozenset({"tokenSigningKey"})
    fly = settings.fly
    assert fly.app == "realtime-staging"
    assert (fly.primary_region, fly.kill_signal, fly.kill_timeout) == (
        "iad",
        "SIGTERM",
        Duration("30s"),
    )
    assert (fly.deploy.strategy, fly.deploy.wait_timeout) == ("rolling", Duration("10m0s"))
    assert fly.env == (
        ("WS_PORT", "8081"),
        ("HTTP_PORT", "8080"),
        ("METRICS_PORT", "9091"),
        ("LOG_FORMAT", "json"),
        ("ALLOWED_ORIGINS", "https://realtime-staging.fly.dev"),
    )
    assert fly.websocket.ports[0].handlers == ("tls",)
    assert fly.http_service is not None
    assert fly.http_service.checks[0].path == "/healthz"
    assert (fly.machines, fly.broker) == (1, "memory")


def test_pulumi_strings_are_coerced() -> None:
    """Values as Pulumi hands them over (ints and bools as text, objects as JSON) are typed."""
    settings = settings_from_config(
        {
            **FLY,
            "machines": "1",
            "swapSizeMb": "512",
            "websocket": json.dumps({"softLimit": 100, "hardLimit": "200", "port": 9443}),
            "http": json.dumps({"forceHttps": "false", "internalPort": 8000}),
            "env": json.dumps({"LOG_LEVEL": "debug"}),
        },
        stack="s",
    )
    fly = settings.fly
    assert fly.swap_size_mb == 512
    assert fly.websocket.concurrency is not None
    assert (fly.websocket.concurrency.soft_limit, fly.websocket.concurrency.hard_limit) == (
        100,
        200,
    )
    assert fly.websocket.public_port == 9443
    assert fly.http_service is not None
    assert (fly.http_service.force_https, fly.http_service.internal_port) == (False, 8000)
    assert ("HTTP_PORT", "8000") in fly.env
    assert ("LOG_LEVEL", "debug") in fly.env


def test_websocket_http_handler_names_the_stack_key() -> None:
    """handlers [tls, http] fails naming realtime-fly:websocket.handlers with the PU02 reason."""
    error = _error({**FLY, "websocket": {"handlers": ["tls", "http"]}})
    assert error.key == "realtime-fly:websocket.handlers"
    assert error.value == ("tls", "http")
    assert "[PU02]" in error.reason
    assert "services[0].ports[0].handlers" in error.reason


def test_websocket_h2_alpn_names_the_stack_key() -> None:
    """An h2 ALPN entry fails naming realtime-fly:websocket.alpn."""
    assert _error({**FLY, "websocket": {"alpn": ["h2"]}}).key == "realtime-fly:websocket.alpn"


def test_proxy_proto() -> None:
    """websocket.proxyProto v2 adds the proxy_proto handler; other values are refused."""
    settings = settings_from_config({**FLY, "websocket": {"proxyProto": "v2"}}, stack="s")
    port = settings.fly.websocket.ports[0]
    assert port.handlers == ("tls", "proxy_proto")
    assert port.proxy_proto_options == ProxyProtoOptions(version="v2")
    error = _error({**FLY, "websocket": {"proxyProto": "v3"}})
    assert (error.key, error.value) == ("realtime-fly:websocket.proxyProto", "v3")


@pytest.mark.parametrize(
    ("values", "key", "value"),
    [
        ({"bogus": 1}, "realtime-fly:bogus", 1),
        ({"websocket": {"bogus": 1}}, "realtime-fly:websocket.bogus", 1),
        ({"machines": "two"}, "realtime-fly:machines", "two"),
        ({"machines": True}, "realtime-fly:machines", True),
        ({"target": "aws"}, "realtime-fly:target", "aws"),
        ({"broker": "kafka"}, "realtime-fly:broker", "kafka"),
        ({"killTimeout": 30}, "realtime-fly:killTimeout", 30),
        ({"killTimeout": "30"}, "realtime-fly:killTimeout", "30"),
        ({"websocket": "{not json"}, "realtime-fly:websocket", "{not json"),
        ({"websocket": {"handlers": "tls"}}, "realtime-fly:websocket.handlers", "tls"),
        ({"http": {"forceHttps": "yes"}}, "realtime-fly:http.forceHttps", "yes"),
        ({"vm": {"size": "huge"}}, "realtime-fly:vm.size", "huge"),
        ({"vm": {"memory": "lots"}}, "realtime-fly:vm.memory", "lots"),
        ({"killSignal": "SIGHUP"}, "realtime-fly:killSignal", "SIGHUP"),
        ({"deploy": {"strategy": "bluegreen!"}}, "realtime-fly:deploy.strategy", "bluegreen!"),
        ({"http": {"autoStopMachines": "yes"}}, "realtime-fly:http.autoStopMachines", "yes"),
        ({"websocket": {"softLimit": 2000}}, "realtime-fly:websocket.softLimit", 2000),
        ({"websocket": {"port": 443}}, "realtime-fly:websocket.port", 443),
        ({"websocket": {"internalPort": 8080}}, "realtime-fly:websocket.internalPort", 8080),
        ({"env": {"WS_PORT": "1"}}, "realtime-fly:env.WS_PORT", "1"),
        ({"env": {"METRICS_PORT": "1"}}, "realtime-fly:env.METRICS_PORT", "1"),
        ({"env": {"FLY_REGION": "x"}}, "realtime-fly:env.FLY_REGION", "FLY_REGION"),
        ({"env": {"DEBUG": ["x"]}}, "realtime-fly:env.DEBUG", ["x"]),
        ({"machines": 2}, "realtime-fly:machines", 2),
    ],
)
def test_bad_values_name_the_key(values: dict[str, object], key: str, value: object) -> None:
    """A bad value fails with ConfigError naming realtime-fly:<key> and the value."""
    error = _error({**FLY, **values})
    assert (error.key, error.value) == (key, value)
    assert str(error).startswith(f"{key} = ")


def test_local_port_base() -> None:
    """localPortBase defaults to 10000 and takes a multiple of 1000 (typed or as text)."""
    assert LOCAL_PORT_BASE == 10000
    assert settings_from_config(FLY, stack="s").local_port_base == 10000
    for value in (2000, "30000", 50000):
        settings = settings_from_config({**FLY, "localPortBase": value}, stack="s")
        assert settings.local_port_base == int(value)


@pytest.mark.parametrize("value", [1000, 2500, 51000, 0, -3000, "10k", 10000.0, True])
def test_bad_local_port_base_is_refused(value: object) -> None:
    """A base outside [2000, 50000] or not a multiple of 1000 names the key and the value."""
    error = _error({**FLY, "localPortBase": value})
    assert (error.key, error.value) == ("realtime-fly:localPortBase", value)


def test_many_machines_need_redis() -> None:
    """Two machines with the in-memory broker are refused; with redis they are accepted."""
    error = _error({**FLY, "machines": 2})
    assert "realtime-fly:broker: redis" in error.reason
    settings = settings_from_config(
        {**FLY, "machines": 2, "broker": "redis", "redisUrl": True}, stack="p"
    )
    assert (settings.machines, settings.fly.broker) == (2, "redis")


def test_org_required_for_fly() -> None:
    """The fly target needs an org; the local target does not."""
    assert _error({"machines": 1, "tokenSigningKey": True}).key == "realtime-fly:org"
    settings_from_config({"target": "local", "machines": 1}, stack="dev")


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"org": "o", "machines": 1}, "realtime-fly:tokenSigningKey"),
        (
            {"org": "o", "machines": 2, "broker": "redis", "tokenSigningKey": True},
            "realtime-fly:redisUrl",
        ),
    ],
)
def test_required_secrets(values: dict[str, object], key: str) -> None:
    """Missing secrets fail for fly stacks, unless the caller does not require them (the CLI)."""
    assert _error(values).key == key
    settings_from_config(values, stack="s", require_secrets=False)


def test_redis_url_without_redis_broker_is_refused() -> None:
    """A redisUrl secret with broker memory is refused (the backend would silently use it)."""
    error = _error({**FLY, "redisUrl": "redis://:hunter2@host:6379"})
    assert error.key == "realtime-fly:redisUrl"
    assert "hunter2" not in str(error)


def test_secret_values_never_kept_or_shown() -> None:
    """Only the presence of a secret is kept; its value appears in no error message."""
    secret = "s3cr3t-signing-key"
    settings = settings_from_config({**FLY, "tokenSigningKey": secret}, stack="s")
    assert settings.secrets_set == frozenset({"tokenSigningKey"})
    assert secret not in repr(settings)
    error = _error({**FLY, "tokenSigningKey": secret, "env": {"TOKEN_SIGNING_KEY": secret}})
    assert error.key == "realtime-fly:env.TOKEN_SIGNING_KEY"
    assert secret not in str(error)


def test_load_stack_file_reads_secure_values_as_presence(tmp_path: Path) -> None:
    """A Pulumi.<stack>.yaml with secure values yields presence only; other namespaces pass."""
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(
        "config:\n"
        "  pulumi:tags: {team: rt}\n"
        "  realtime-fly:org: o\n"
        "  realtime-fly:machines: 2\n"
        "  realtime-fly:broker: redis\n"
        "  realtime-fly:tokenSigningKey:\n    secure: AAABAHQ1\n"
        "  realtime-fly:redisUrl:\n    secure: AAABAHQ2\n",
        encoding="utf-8",
    )
    settings = load_stack_file(path)
    assert settings.stack == "prod"
    assert settings.secrets_set == frozenset({"tokenSigningKey", "redisUrl"})
    assert "AAABAHQ" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        ("Pulumi.x.yaml", "config: [1, 2]\n", "Pulumi.x.yaml:config"),
        ("Pulumi.x.yaml", "config:\n  app: x\n", "app"),
        ("Pulumi.x.yaml", "config: {realtime-fly:bogus: {secure: AAAB}}\n", "realtime-fly:bogus"),
        ("fly.yaml", "config: {}\n", "fly.yaml"),
    ],
)
def test_load_stack_file_errors(tmp_path: Path, name: str, text: str, key: str) -> None:
    """Malformed stack files fail with ConfigError naming the key; secure values stay hidden."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_stack_file(path, require_secrets=False)
    assert caught.value.key.endswith(key)
    assert "AAAB" not in str(caught.value)


def test_load_stack_file_invalid_yaml(tmp_path: Path) -> None:
    """Invalid YAML is a ConfigError naming the file."""
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("config: {a: [}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML") as caught:
        load_stack_file(path)
    assert caught.value.key == str(path)


@pytest.mark.parametrize(
    ("toml_key", "stack_key"),
    [
        ("services[0].ports[0].handlers", "websocket.handlers"),
        ("services[0].ports[0].tls_options.alpn", "websocket.alpn"),
        ("services[0].concurrency.type", "websocket"),
        ("http_service.checks[0].interval", "http.checkPath"),
        ("vm[0].memory", "vm.memory"),
        ("env.FLY_X", "env.FLY_X"),
        ("deployment.machines", "machines"),
        ("kill_timeout", "killTimeout"),
    ],
)
def test_stack_key_for(toml_key: str, stack_key: str) -> None:
    """Errors from the model are reported under the stack key that produced the fly.toml key."""
    assert stack_key_for(toml_key) == f"realtime-fly:{stack_key}"


def test_repository_has_the_three_stacks() -> None:
    """dev, staging and production stack files are committed."""
    assert [p.name for p in STACK_FILES] == [
        "Pulumi.dev.yaml",
        "Pulumi.production.yaml",
        "Pulumi.staging.yaml",
    ]


@pytest.mark.parametrize("path", STACK_FILES, ids=[p.name for p in STACK_FILES])
def test_backport_guard(path: Path) -> None:
    """Every committed stack renders a valid fly.toml whose WebSocket service is tcp + ["tls"]
    + alpn ["http/1.1"] on its own public port, apart from [http_service]."""
    settings = load_stack_file(path, require_secrets=False)
    text = render_fly_toml(settings.fly, stack=settings.stack)
    parsed = parse_fly_toml(text)
    assert parsed.findings == ()
    assert [f for f in config_findings(parsed.config) if f.severity == "error"] == []
    websocket = parsed.config.websocket
    assert websocket.protocol == "tcp"
    for port in websocket.ports:
        assert port.handlers == ("tls",)
        assert port.tls_options is not None
        assert port.tls_options.alpn == ("http/1.1",)
        assert port.port not in (80, 443)
    assert settings.machines == 1 or settings.fly.broker == "redis"


def test_config_reference_documents_every_key() -> None:
    """docs/CONFIG.md has a table row for every key, object field and secret."""
    text = (REPO / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)`", text, flags=re.MULTILINE)
    documented = {part for row in rows for part in re.split(r"` / `", row)}
    keys = {key for key in CONFIG_KEYS if key not in OBJECT_KEYS}
    keys |= {f"{key}.{field}" for key, fields in OBJECT_KEYS.items() for field in fields}
    keys |= {spec.key for spec in SECRETS}
    text_cells = set(re.findall(r"`([A-Za-z.]+)`", text))
    assert keys - documented - text_cells == set()


# --- regions (issue 15) ---------------------------------------------------------------------

REDIS = {**FLY, "broker": "redis", "redisUrl": True}
REDIS_ANY = {key: value for key, value in REDIS.items() if key != "machines"}
"""The same without ``machines`` (the primary region's count comes from ``regions``)."""


def test_regions_add_further_regions_to_the_primary_count() -> None:
    """`machines` stays the primary region's count; `regions` adds the others, sorted."""
    settings = settings_from_config(
        {**REDIS, "machines": 2, "regions": {"syd": 1, "ams": 3}}, stack="s"
    )
    assert settings.machines == 2
    assert settings.regions == (("ams", 3), ("syd", 1))
    assert settings.placements == (("iad", 2), ("ams", 3), ("syd", 1))
    assert settings.total_machines == 6
    # the model (and the rendered header line) carry the total, so the multi-machine rule sees it
    assert settings.fly.machines == 6
    assert settings.fly.primary_region == "iad"


def test_regions_may_list_the_primary_region() -> None:
    """{iad: 2, ams: 1} with primaryRegion iad: iad's count is the primary count."""
    values = {**REDIS_ANY, "regions": {"iad": 2, "ams": 1}}
    settings = settings_from_config(values, stack="s")
    assert settings.placements == (("iad", 2), ("ams", 1))
    # the same count in both keys is no conflict
    again = settings_from_config({**values, "machines": 2}, stack="s")
    assert again.placements == settings.placements


def test_regions_as_pulumi_json_text() -> None:
    """`pulumi config set realtime-fly:regions '{"ams": "1"}'` arrives as JSON text."""
    settings = settings_from_config(
        {**REDIS_ANY, "primaryRegion": "lhr", "regions": '{"ams": "1", "lhr": 2}'}, stack="s"
    )
    assert settings.placements == (("lhr", 2), ("ams", 1))


def test_a_single_region_stack_has_no_further_regions() -> None:
    settings = settings_from_config(FLY, stack="s")
    assert (settings.regions, settings.placements, settings.total_machines) == (
        (),
        (("iad", 1),),
        1,
    )


@pytest.mark.parametrize(
    ("regions", "key", "value", "reason"),
    [
        ({"ams": -1}, "regions.ams", -1, "must be 0 or more"),
        ({"ams": 1.5}, "regions.ams", 1.5, "must be an integer"),
        ({"ams": True}, "regions.ams", True, "must be an integer"),
        ({"ams": "two"}, "regions.ams", "two", "must be an integer"),
        (["ams"], "regions", ["ams"], "must be an object of names to integers"),
        ("{ams: 1", "regions", "{ams: 1", "is not valid JSON"),
        ({"AMS": 1}, "regions.AMS", "AMS", "three lowercase letters"),
        ({"amst": 1}, "regions.amst", "amst", "three lowercase letters"),
        ({"sea": 1}, "regions.sea", "sea", "consolidated into 'sjc'"),
        ({"hkg": 1}, "regions.hkg", "hkg", "plan_builder.go"),
        ({"iad": 0, "ams": 2}, "regions.iad", 0, "must run at least one machine"),
        ({"iad": 3}, "regions.iad", 3, "realtime-fly:machines says 1"),
    ],
)
def test_bad_regions_name_the_key(regions: object, key: str, value: object, reason: str) -> None:
    """Every region error names realtime-fly:regions.<code> (or regions) and the value."""
    values = REDIS_ANY if key == "regions.iad" and value == 0 else REDIS
    error = _error({**values, "regions": regions})
    assert error.key == f"realtime-fly:{key}"
    assert error.value == value
    assert reason in error.reason


def test_primary_region_with_no_machine_names_machines() -> None:
    error = _error({**REDIS, "machines": 0, "regions": {"ams": 2}})
    assert (error.key, error.value) == ("realtime-fly:machines", 0)
    assert "primary region (iad) must run at least one machine" in error.reason


@pytest.mark.parametrize("code", ["IAD", "mad", "ia", "i-d", ""])
def test_primary_region_is_checked_like_the_others(code: str) -> None:
    if code == "":  # unset: the default
        assert settings_from_config({**FLY, "primaryRegion": code}, stack="s").placements[0][0]
        return
    error = _error({**FLY, "primaryRegion": code})
    assert error.key == "realtime-fly:primaryRegion"


def test_regions_with_more_than_one_machine_need_redis() -> None:
    """Two regions of one machine each are two machines: the in-memory broker would split rooms."""
    error = _error({**FLY, "regions": {"ams": 1}})
    assert error.key == "realtime-fly:regions"
    assert error.value == {"iad": 1, "ams": 1}
    assert "2 machines in total" in error.reason
    assert "realtime-fly:broker: redis" in error.reason
    # with Redis (and its secret) the same layout is fine; a region at 0 adds no machine
    assert settings_from_config({**REDIS, "regions": {"ams": 1}}, stack="s").total_machines == 2
    assert settings_from_config({**FLY, "regions": {"ams": 0}}, stack="s").total_machines == 1


def test_regions_with_redis_need_the_redis_secret() -> None:
    error = _error({**FLY, "broker": "redis", "regions": {"ams": 1}})
    assert error.key == "realtime-fly:redisUrl"


def test_regions_render_primary_region_and_the_total() -> None:
    """fly.toml names the primary region; the header line records the machines over all regions."""
    settings = settings_from_config(
        {**REDIS_ANY, "primaryRegion": "ams", "regions": {"ams": 2, "iad": 1}}, stack="s"
    )
    text = render_fly_toml(settings.fly, stack="s")
    assert 'primary_region = "ams"' in text
    assert 'machines = 3, broker = "redis"' in text
    assert parse_fly_toml(text).config.machines == 3


def test_redis_cluster_needs_the_redis_broker_and_sets_the_env() -> None:
    """redis: cluster renders [env] REDIS_CLUSTER = "1", needs broker: redis, and the env
    variable cannot be set by hand."""
    base = {"target": "local", "machines": 1}
    error = _error({**base, "redis": "cluster"})
    assert (error.key, error.value) == ("realtime-fly:redis", "cluster")
    settings = settings_from_config({**base, "broker": "redis", "redis": "cluster"}, stack="s")
    assert ("REDIS_CLUSTER", "1") in settings.fly.env
    assert settings.redis == "cluster"
    assert "REDIS_CLUSTER" not in dict(settings_from_config(base, stack="s").fly.env)
    error = _error({**base, "env": {"REDIS_CLUSTER": "1"}})
    assert error.key == "realtime-fly:env.REDIS_CLUSTER"
    error = _error({**base, "broker": "redis", "redis": "sharded"})
    assert error.key == "realtime-fly:redis"
