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

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

import yaml

from infra.errors import ConfigError
from infra.flytoml.model import (
    TLS_VERSIONS,
    Broker,
    Build,
    Concurrency,
    Deploy,
    Duration,
    FlyConfig,
    HttpCheck,
    HttpService,
    Metrics,
    Vm,
    WebSocketService,
)
from infra.flytoml.rules import Finding

__all__ = [
    "CONFIG_KEYS",
    "LOCAL_PORT_BASE",
    "OBJECT_KEYS",
    "PROJECT",
    "SECRETS",
    "SecretSpec",
    "StackSettings",
    "load_stack_file",
    "settings_from_config",
    "stack_key_for",
]

PROJECT: Final = "realtime-fly"
LOCAL_PORT_BASE: Final = 10000
"""Default of ``localPortBase``: where the local target's ports start (docs/LOCAL.md)."""
_LOCAL_PORT_BASE_RANGE: Final = (2000, 50000)


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

CONFIG_KEYS: Final[tuple[str, ...]] = (
    "target",
    "app",
    "org",
    "primaryRegion",
    "machines",
    "broker",
    "flyctl",
    "localPortBase",
    "killSignal",
    "killTimeout",
    "swapSizeMb",
    "vm",
    "deploy",
    "build",
    "env",
    "http",
    "websocket",
    "metrics",
)

OBJECT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    # the fields of each object-valued key (documented in docs/CONFIG.md)
    "vm": ("size", "memory", "cpus"),
    "deploy": ("strategy", "maxUnavailable", "waitTimeout", "releaseCommand"),
    "build": ("dockerfile", "ignorefile", "buildTarget", "image"),
    "http": (
        "internalPort",
        "forceHttps",
        "autoStopMachines",
        "autoStartMachines",
        "minMachinesRunning",
        "softLimit",
        "hardLimit",
        "checkPath",
    ),
    "websocket": (
        "port",
        "internalPort",
        "handlers",
        "alpn",
        "tlsVersions",
        "softLimit",
        "hardLimit",
        "proxyProto",
    ),
    "metrics": ("path", "port"),
}

_SECRET_KEYS: Final = frozenset(spec.key for spec in SECRETS)
_SECRET_ENV: Final = {spec.env_name: spec.key for spec in SECRETS}
_RESERVED_ENV: Final = {"WS_PORT": "websocket.internalPort", "HTTP_PORT": "http.internalPort"}
_INTEGER = re.compile(r"[+-]?\d+")

# fly.toml key (as the rules name it) -> stack config key; the longest matching prefix wins.
_STACK_KEYS: Final[tuple[tuple[str, str], ...]] = (
    ("services[0].ports[0].handlers", "websocket.handlers"),
    ("services[0].ports[0].tls_options.alpn", "websocket.alpn"),
    ("services[0].ports[0].tls_options.versions", "websocket.tlsVersions"),
    ("services[0].ports[0].proxy_proto_options", "websocket.proxyProto"),
    ("services[0].ports[0].port", "websocket.port"),
    ("services[0].internal_port", "websocket.internalPort"),
    ("services[0].concurrency.soft_limit", "websocket.softLimit"),
    ("services[0].concurrency.hard_limit", "websocket.hardLimit"),
    ("services", "websocket"),
    ("http_service.internal_port", "http.internalPort"),
    ("http_service.force_https", "http.forceHttps"),
    ("http_service.auto_stop_machines", "http.autoStopMachines"),
    ("http_service.auto_start_machines", "http.autoStartMachines"),
    ("http_service.min_machines_running", "http.minMachinesRunning"),
    ("http_service.concurrency.soft_limit", "http.softLimit"),
    ("http_service.concurrency.hard_limit", "http.hardLimit"),
    ("http_service.checks", "http.checkPath"),
    ("http_service", "http"),
    ("app", "app"),
    ("primary_region", "primaryRegion"),
    ("kill_signal", "killSignal"),
    ("kill_timeout", "killTimeout"),
    ("swap_size_mb", "swapSizeMb"),
    ("vm[0].size", "vm.size"),
    ("vm[0].memory", "vm.memory"),
    ("vm[0].cpus", "vm.cpus"),
    ("vm", "vm"),
    ("deploy.strategy", "deploy.strategy"),
    ("deploy.max_unavailable", "deploy.maxUnavailable"),
    ("deploy.wait_timeout", "deploy.waitTimeout"),
    ("deploy.release_command", "deploy.releaseCommand"),
    ("deploy", "deploy"),
    ("build", "build"),
    ("metrics", "metrics"),
    ("deployment.machines", "machines"),
    ("deployment.broker", "broker"),
)


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


def stack_key_for(toml_key: str) -> str:
    """The ``realtime-fly:<key>`` config key that produces a fly.toml key (for error messages)."""
    if toml_key.startswith("env."):
        return f"{PROJECT}:{toml_key}"
    best = ""
    target = ""
    for prefix, config_key in _STACK_KEYS:
        matches = toml_key == prefix or toml_key.startswith((f"{prefix}.", f"{prefix}["))
        if matches and len(prefix) > len(best):
            best, target = prefix, config_key
    return f"{PROJECT}:{target or toml_key}"


def _shown(value: object) -> object:
    """A value fit for an error message: a Pulumi secure value is never echoed."""
    if isinstance(value, Mapping) and "secure" in value:
        return "[secret]"
    return value


class _Values:
    """Typed access to one mapping of config values; errors name ``realtime-fly:<path>``."""

    def __init__(self, values: Mapping[str, object], *, path: str, allowed: tuple[str, ...]):
        self._values = values
        self._path = path
        for key, value in values.items():
            if key not in allowed:
                raise ConfigError(
                    key=self._key(key),
                    value=_shown(value),
                    reason=f"unknown config key; known keys: {', '.join(allowed)}",
                )

    def _key(self, key: str) -> str:
        return f"{PROJECT}:{self._path}{key}"

    def _get(self, key: str) -> object:
        value = self._values.get(key)
        return None if value == "" else value

    def _fail(self, key: str, value: object, reason: str) -> ConfigError:
        return ConfigError(key=self._key(key), value=value, reason=reason)

    def text(self, key: str, default: str) -> str:
        value = self.optional_text(key)
        return default if value is None else value

    def optional_text(self, key: str) -> str | None:
        value = self._get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._fail(key, value, "must be a string")

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self._fail(key, value, f"must be one of {', '.join(allowed)}")
        return value

    def optional_integer(self, key: str) -> int | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
        raise self._fail(key, value, "must be an integer")

    def integer(self, key: str, default: int) -> int:
        value = self.optional_integer(key)
        return default if value is None else value

    def optional_number(self, key: str) -> float | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise self._fail(key, value, "must be a number")

    def optional_boolean(self, key: str) -> bool | None:
        value = self._get(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self._fail(key, value, "must be true or false")

    def boolean(self, key: str, default: bool) -> bool:
        value = self.optional_boolean(key)
        return default if value is None else value

    def duration(self, key: str, default: str) -> Duration:
        value = self._get(key)
        if value is None:
            return Duration(default)
        if isinstance(value, str):
            try:
                return Duration(value)
            except ValueError:
                pass
        raise self._fail(key, value, 'must be a duration string like "30s" or "10m0s"')

    def texts(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, str):
            value = self._json(key, value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(cast(list[str], value))
        raise self._fail(key, value, "must be a list of strings")

    def mapping(self, key: str) -> dict[str, object]:
        value = self._get(key)
        if value is None:
            return {}
        if isinstance(value, str):
            value = self._json(key, value)
        if isinstance(value, dict) and all(isinstance(name, str) for name in value):
            return cast(dict[str, object], value)
        raise self._fail(key, value, "must be an object")

    def section(self, key: str) -> _Values:
        return _Values(self.mapping(key), path=f"{self._path}{key}.", allowed=OBJECT_KEYS[key])

    def _json(self, key: str, text: str) -> object:
        try:
            return cast(object, json.loads(text))
        except json.JSONDecodeError as exc:
            raise self._fail(key, text, f"is not valid JSON: {exc.msg}") from None


def _present(value: object) -> bool:
    return value is not None and value is not False and value != ""


def _env(values: _Values, *, app: str, ws_port: int, http_port: int) -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {"WS_PORT": str(ws_port), "HTTP_PORT": str(http_port)}
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


def _local_port_base(values: _Values) -> int:
    base = values.integer("localPortBase", LOCAL_PORT_BASE)
    low, high = _LOCAL_PORT_BASE_RANGE
    if base % 1000 or not low <= base <= high:
        raise ConfigError(
            key=f"{PROJECT}:localPortBase",
            value=base,
            reason=f"must be a multiple of 1000 from {low} to {high}",
        )
    return base


def _websocket(values: _Values) -> WebSocketService:
    ws = values.section("websocket")
    proxy_proto = ws.optional_text("proxyProto")
    if proxy_proto is not None and proxy_proto not in ("v1", "v2"):
        raise ConfigError(
            key=f"{PROJECT}:websocket.proxyProto",
            value=proxy_proto,
            reason='must be null, "v1" or "v2"',
        )
    return WebSocketService.build(
        port=ws.integer("port", 8081),
        internal_port=ws.integer("internalPort", 8081),
        handlers=ws.texts("handlers", ("tls",)),
        alpn=ws.texts("alpn", ("http/1.1",)),
        tls_versions=ws.texts("tlsVersions", TLS_VERSIONS),
        soft_limit=ws.integer("softLimit", 1000),
        hard_limit=ws.integer("hardLimit", 1500),
        proxy_proto=proxy_proto,
    )


def _http_service(values: _Values) -> HttpService:
    http = values.section("http")
    check_path = http.text("checkPath", "/healthz")
    return HttpService(
        internal_port=http.integer("internalPort", 8080),
        force_https=http.boolean("forceHttps", True),
        auto_stop_machines=http.text("autoStopMachines", "off"),
        auto_start_machines=http.boolean("autoStartMachines", True),
        min_machines_running=http.optional_integer("minMachinesRunning"),
        concurrency=Concurrency(
            type="requests",
            soft_limit=http.integer("softLimit", 200),
            hard_limit=http.integer("hardLimit", 250),
        ),
        checks=(HttpCheck(path=check_path),),
    )


def _fly_config(values: _Values, *, stack: str, machines: int, broker: Broker) -> FlyConfig:
    app = values.text("app", f"realtime-{stack}")
    websocket = _websocket(values)
    http_service = _http_service(values)
    vm = values.section("vm")
    deploy = values.section("deploy")
    build = values.section("build")
    metrics = values.section("metrics")
    return FlyConfig(
        app=app,
        primary_region=values.text("primaryRegion", "iad"),
        kill_signal=values.text("killSignal", "SIGTERM"),
        kill_timeout=values.duration("killTimeout", "30s"),
        swap_size_mb=values.optional_integer("swapSizeMb"),
        build=Build(
            dockerfile=build.text("dockerfile", "Dockerfile"),
            ignorefile=build.optional_text("ignorefile"),
            build_target=build.optional_text("buildTarget"),
            image=build.optional_text("image"),
        ),
        deploy=Deploy(
            strategy=deploy.text("strategy", "rolling"),
            max_unavailable=deploy.optional_number("maxUnavailable"),
            wait_timeout=deploy.duration("waitTimeout", "10m0s"),
            release_command=deploy.optional_text("releaseCommand"),
        ),
        env=_env(
            values, app=app, ws_port=websocket.internal_port, http_port=http_service.internal_port
        ),
        http_service=http_service,
        services=(websocket,),
        vms=(
            Vm(
                size=vm.text("size", "shared-cpu-1x"),
                memory=vm.text("memory", "512mb"),
                cpus=vm.optional_integer("cpus"),
            ),
        ),
        metrics=(
            Metrics(port=metrics.integer("port", 8080), path=metrics.text("path", "/metrics")),
        ),
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
    reader = _Values(plain, path="", allowed=CONFIG_KEYS)
    target = cast(Literal["fly", "local"], reader.choice("target", "fly", ("fly", "local")))
    org = reader.optional_text("org")
    if target == "fly" and org is None:
        raise ConfigError(
            key=f"{PROJECT}:org",
            value=None,
            reason='required when target is "fly" (`fly orgs list`)',
        )
    machines = reader.integer("machines", 2)
    local_port_base = _local_port_base(reader)
    broker = cast(Broker, reader.choice("broker", "memory", ("memory", "redis")))
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
    fly = _fly_config(reader, stack=stack, machines=machines, broker=broker)
    for finding in fly.findings():
        if finding.severity == "error":
            raise _stack_error(finding)
    return StackSettings(
        stack=stack,
        target=target,
        org=org,
        flyctl=reader.text("flyctl", "flyctl"),
        machines=machines,
        secrets_set=secrets_set,
        fly=fly,
        local_port_base=local_port_base,
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
        raise ConfigError(key=f"{path}:config", value=_shown(config), reason="must be a mapping")
    values: dict[str, object] = {}
    prefix = f"{PROJECT}:"
    for raw_name, value in config.items():
        name = str(raw_name)
        if name.startswith(prefix):
            values[name[len(prefix) :]] = value
        elif ":" not in name:
            raise ConfigError(
                key=name,
                value=_shown(value),
                reason=f"config keys need a namespace: {prefix}{name}",
            )
    return settings_from_config(values, stack=match.group(1), require_secrets=require_secrets)
