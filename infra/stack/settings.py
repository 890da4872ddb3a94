"""Stack settings: ``Pulumi.<stack>.yaml`` / ``pulumi.Config`` values -> validated model.

:func:`settings_from_config` is the one place that turns a stack's ``realtime-fly:*`` keys into
a :class:`StackSettings` holding the checked :class:`FlyConfig`. The Pulumi program
(``infra.deploy.config``) and the CLI (``python -m infra render``) both call it, so a stack renders
the same fly.toml with or without the engine, and bad config fails here, before any command
runs, with a :class:`ConfigError` naming ``realtime-fly:<key>`` and the value.

Values arrive either typed (YAML: int, bool, dict, list, str) or as the strings Pulumi's
config hands over (``"2"``, ``"true"``, JSON text for objects and lists); both are accepted.
Secret keys are accepted but only their presence is kept: no secret value enters the model,
the rendered file or an error message. Every key is documented in docs/CONFIG.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

import yaml

from infra.errors import ConfigError
from infra.flytoml.findings import Finding
from infra.flytoml.model import (
    Broker,
    Build,
    Concurrency,
    Deploy,
    FlyConfig,
    HttpCheck,
    HttpService,
    Metrics,
    Vm,
    WebSocketService,
)
from infra.flytoml.rules import config_findings
from infra.stack.regions import placements, region_code
from infra.stack.schema import (
    CONFIG_KEYS,
    LOCAL_PORT_BASE,
    OBJECT_KEYS,
    PROJECT,
    stack_key_for,
)
from infra.stack.values import Values, shown

__all__ = [
    "CONFIG_KEYS",
    "LOCAL_PORT_BASE",
    "OBJECT_KEYS",
    "PROJECT",
    "SECRETS",
    "SecretSpec",
    "StackSettings",
    "load_stack_file",
    "region_code",
    "settings_from_config",
    "stack_key_for",
]

_LOCAL_PORT_BASE_RANGE: Final = (2000, 50000)
RedisMode = Literal["single", "cluster"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretSpec:
    """A secret config key and the Fly secret / environment variable it becomes."""

    key: str
    """Config key without the project prefix, e.g. ``tokenSigningKey``."""
    env_name: str
    """The Fly secret name the backend reads, e.g. ``TOKEN_SIGNING_KEY``."""
    required: bool
    """Required for every ``fly`` stack (``redisUrl`` is required when ``broker`` is redis)."""


SECRETS: Final[tuple[SecretSpec, ...]] = (
    SecretSpec(key="tokenSigningKey", env_name="TOKEN_SIGNING_KEY", required=True),
    SecretSpec(key="redisUrl", env_name="REDIS_URL", required=False),
)

_SECRET_KEYS: Final = frozenset(spec.key for spec in SECRETS)
_SECRET_ENV: Final = {spec.env_name: spec.key for spec in SECRETS}
_RESERVED_ENV: Final = {
    "WS_PORT": "websocket.internalPort",
    "HTTP_PORT": "http.internalPort",
    "METRICS_PORT": "metrics.port",
    "REDIS_CLUSTER": "redis",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StackSettings:
    """One stack's validated settings: where it deploys and the fly.toml it deploys."""

    stack: str
    target: Literal["fly", "local"]
    org: str | None
    """The Fly organisation; required when ``target`` is ``fly``."""
    flyctl: str
    """Path to flyctl (``flyctl`` on PATH by default)."""
    machines: int
    """How many machines run the app (Fly's ``--ha`` default is 2)."""
    secrets_set: frozenset[str]
    """The :class:`SecretSpec` keys present in the stack (never their values)."""
    fly: FlyConfig
    """The validated fly.toml model."""
    local_port_base: int = LOCAL_PORT_BASE
    """Where the local target's ports start (``localPortBase``; the fly target ignores it)."""
    redis: RedisMode = "single"
    """How the backend reaches Redis (``realtime-fly:redis``): one server or a Redis Cluster."""
    regions: tuple[tuple[str, int], ...] = ()
    """The further regions (``regions`` minus the primary one) and their machine counts, sorted
    by region code; ``machines`` is the primary region's count."""

    @property
    def placements(self) -> tuple[tuple[str, int], ...]:
        """Machines per region, the primary region first, then :attr:`regions`."""
        return ((self.fly.primary_region or "", self.machines), *self.regions)

    @property
    def total_machines(self) -> int:
        """How many machines run the app across all its regions."""
        return sum(count for _, count in self.placements)


def _present(value: object) -> bool:
    return value is not None and value is not False and value != ""


def _env(
    values: Values, *, app: str, ws_port: int, http_port: int, metrics_port: int, redis: RedisMode
) -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {
        "WS_PORT": str(ws_port),
        "HTTP_PORT": str(http_port),
        "METRICS_PORT": str(metrics_port),
    }
    if redis == "cluster":
        env["REDIS_CLUSTER"] = "1"
    env["LOG_FORMAT"] = "json"
    # The demo page is served by the app itself: its origin may open WebSockets (the backend
    # refuses every other browser origin; set env.ALLOWED_ORIGINS to widen or change it).
    env["ALLOWED_ORIGINS"] = f"https://{app}.fly.dev"
    for name, value in values.mapping("env").items():
        key = f"{PROJECT}:env.{name}"
        if name in _RESERVED_ENV:
            reason = f"is set from {PROJECT}:{_RESERVED_ENV[name]}"
            raise ConfigError(key=key, value=value, reason=reason)
        if name in _SECRET_ENV:
            raise ConfigError(
                key=key,
                value="[secret]",
                reason=f"is a secret: set {PROJECT}:{_SECRET_ENV[name]} with "
                "`pulumi config set --secret`",
            )
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(key=key, value=value, reason="must be a string")
        env[name] = str(value)
    return tuple(env.items())


def _local_port_base(values: Values) -> int:
    base = values.integer("localPortBase")
    low, high = _LOCAL_PORT_BASE_RANGE
    if base % 1000 or not low <= base <= high:
        raise ConfigError(
            key=f"{PROJECT}:localPortBase",
            value=base,
            reason=f"must be a multiple of 1000 from {low} to {high}",
        )
    return base


def _websocket(values: Values) -> WebSocketService:
    ws = values.section("websocket")
    # proxyProto's value is judged once, by the model's rule (proxy-proto-version)
    proxy_proto = ws.optional_text("proxyProto")
    return WebSocketService.build(
        port=ws.integer("port"),
        internal_port=ws.integer("internalPort"),
        handlers=ws.texts("handlers"),
        alpn=ws.texts("alpn"),
        tls_versions=ws.texts("tlsVersions"),
        soft_limit=ws.integer("softLimit"),
        hard_limit=ws.integer("hardLimit"),
        proxy_proto=proxy_proto,
    )


def _http_service(values: Values) -> HttpService:
    http = values.section("http")
    check_path = http.text("checkPath")
    return HttpService(
        internal_port=http.integer("internalPort"),
        force_https=http.optional_boolean("forceHttps"),
        auto_stop_machines=http.optional_text("autoStopMachines"),
        auto_start_machines=http.optional_boolean("autoStartMachines"),
        min_machines_running=http.optional_integer("minMachinesRunning"),
        concurrency=Concurrency(
            type="requests",
            soft_limit=http.optional_integer("softLimit"),
            hard_limit=http.optional_integer("hardLimit"),
        ),
        checks=(HttpCheck(path=check_path),),
    )


def _fly_config(
    values: Values,
    *,
    stack: str,
    primary_region: str,
    machines: int,
    broker: Broker,
    redis: RedisMode,
) -> FlyConfig:
    app = values.text("app", f"realtime-{stack}")
    websocket = _websocket(values)
    http_service = _http_service(values)
    vm = values.section("vm")
    deploy = values.section("deploy")
    build = values.section("build")
    metrics_section = values.section("metrics")
    metrics = Metrics(port=metrics_section.integer("port"), path=metrics_section.text("path"))
    return FlyConfig(
        app=app,
        primary_region=primary_region,
        kill_signal=values.optional_text("killSignal"),
        kill_timeout=values.optional_duration("killTimeout"),
        swap_size_mb=values.optional_integer("swapSizeMb"),
        build=Build(
            dockerfile=build.optional_text("dockerfile"),
            ignorefile=build.optional_text("ignorefile"),
            build_target=build.optional_text("buildTarget"),
            image=build.optional_text("image"),
        ),
        deploy=Deploy(
            strategy=deploy.text("strategy"),
            max_unavailable=deploy.optional_number("maxUnavailable"),
            wait_timeout=deploy.duration("waitTimeout"),
            release_command=deploy.optional_text("releaseCommand"),
        ),
        env=_env(
            values,
            app=app,
            ws_port=websocket.internal_port,
            http_port=http_service.internal_port,
            metrics_port=metrics.port,
            redis=redis,
        ),
        http_service=http_service,
        services=(websocket,),
        vms=(
            Vm(
                size=vm.optional_text("size"),
                memory=vm.optional_text("memory"),
                cpus=vm.optional_integer("cpus"),
            ),
        ),
        metrics=(metrics,),
        machines=machines,
        broker=broker,
    )


def _stack_error(finding: Finding) -> ConfigError:
    return ConfigError(
        key=stack_key_for(finding.key),
        value=finding.value,
        reason=f"{finding.message} (fly.toml {finding.key})",
    )


def settings_from_config(
    values: Mapping[str, object], *, stack: str, require_secrets: bool = True
) -> StackSettings:
    """Validate one stack's config values (keys without the ``realtime-fly:`` prefix).

    Raises ConfigError naming ``realtime-fly:<key>`` and the value for an unknown key, a bad
    type, a missing org or secret, or any error rule of the fly.toml model. With
    ``require_secrets=False`` (the CLI, which runs without the engine's passphrase) missing
    secrets are not an error.
    """
    plain = {key: value for key, value in values.items() if key not in _SECRET_KEYS}
    secrets_set = frozenset(key for key in _SECRET_KEYS if _present(values.get(key)))
    reader = Values(plain)
    target = cast(Literal["fly", "local"], reader.text("target"))
    org = reader.optional_text("org")
    if target == "fly" and org is None:
        raise ConfigError(
            key=f"{PROJECT}:org",
            value=None,
            reason='required when target is "fly" (`fly orgs list`)',
        )
    primary_region = region_code(f"{PROJECT}:primaryRegion", reader.text("primaryRegion"))
    machines, regions = placements(
        reader, primary=primary_region, machines_set=plain.get("machines") not in (None, "")
    )
    total = machines + sum(count for _, count in regions)
    local_port_base = _local_port_base(reader)
    broker = cast(Broker, reader.text("broker"))
    if regions and total > 1 and broker == "memory":
        raise ConfigError(
            key=f"{PROJECT}:regions",
            value={primary_region: machines, **dict(regions)},
            reason=f"{total} machines in total: with the in-memory broker rooms and presence "
            f"would split between machines; set {PROJECT}:broker: redis (and the redisUrl "
            "secret), one Redis every region reaches",
        )
    redis = cast(RedisMode, reader.text("redis"))
    if redis == "cluster" and broker != "redis":
        raise ConfigError(
            key=f"{PROJECT}:redis",
            value=redis,
            reason=f"needs {PROJECT}:broker: redis (a Redis Cluster is a Redis broker)",
        )
    if broker == "memory" and "redisUrl" in secrets_set:
        raise ConfigError(
            key=f"{PROJECT}:redisUrl",
            value="[secret]",
            reason=f'is set but {PROJECT}:broker is "memory": the backend would use redis; set '
            f"{PROJECT}:broker: redis or remove the secret",
        )
    if require_secrets and target == "fly":
        needed = [spec.key for spec in SECRETS if spec.required]
        if broker == "redis":
            needed.append("redisUrl")
        for key in needed:
            if key not in secrets_set:
                raise ConfigError(
                    key=f"{PROJECT}:{key}",
                    value=None,
                    reason=f"secret required for this stack: `pulumi config set --secret {key}`",
                )
    fly = _fly_config(
        reader,
        stack=stack,
        primary_region=primary_region,
        machines=total,
        broker=broker,
        redis=redis,
    )
    for finding in config_findings(fly):
        if finding.severity == "error":
            raise _stack_error(finding)
    return StackSettings(
        stack=stack,
        target=target,
        org=org,
        flyctl=reader.text("flyctl"),
        machines=machines,
        secrets_set=secrets_set,
        fly=fly,
        local_port_base=local_port_base,
        regions=regions,
        redis=redis,
    )


def load_stack_file(path: Path, *, require_secrets: bool = True) -> StackSettings:
    """Read ``Pulumi.<stack>.yaml`` (secret values appear there as ``{"secure": ...}``).

    Keys of other namespaces (providers, ``pulumi:``) are left alone. Raises ConfigError for
    invalid YAML or config, OSError when the file cannot be read.
    """
    match = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", path.name)
    if match is None:
        raise ConfigError(key=str(path), value=path.name, reason="not a Pulumi.<stack>.yaml file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(
            key=str(path), value="<yaml>", reason=f"invalid YAML: {problem}"
        ) from None
    if document is None:
        document = {}
    config = document.get("config", {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(key=f"{path}:config", value=shown(config), reason="must be a mapping")
    values: dict[str, object] = {}
    prefix = f"{PROJECT}:"
    for raw_name, value in config.items():
        name = str(raw_name)
        if name.startswith(prefix):
            values[name[len(prefix) :]] = value
        elif ":" not in name:
            raise ConfigError(
                key=name,
                value=shown(value),
                reason=f"config keys need a namespace: {prefix}{name}",
            )
    return settings_from_config(values, stack=match.group(1), require_secrets=require_secrets)
