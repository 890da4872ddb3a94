"""The stack config schema: every ``realtime-fly:*`` key in one table.

Each :class:`Key` names a stack key, the kind of value it takes, its default and the fly.toml key
it becomes. The defaults of keys that map onto the fly.toml model are *read from the model*
(``WebSocketService()``, ``HttpService()``, ``Deploy()``...), so the stack and the model cannot
disagree about them. Everything else is derived from this table: the allowed keys of each level,
the map from a fly.toml key back to the stack key that produced it (for error messages), and the
typed reader :class:`infra.stack.values.Values` that checks each value against its key's kind.
docs/CONFIG.md documents the same table (tests/infra/test_schema.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from infra.flytoml.model import (
    Build,
    Concurrency,
    Deploy,
    Duration,
    FlyConfig,
    HttpService,
    Metrics,
    Vm,
    WebSocketService,
)

__all__ = [
    "CONFIG_KEYS",
    "KEYS",
    "LOCAL_PORT_BASE",
    "OBJECT_KEYS",
    "PROJECT",
    "Key",
    "Kind",
    "key_named",
    "stack_key_for",
]

PROJECT: Final = "realtime-fly"
LOCAL_PORT_BASE: Final = 10000
"""Default of ``localPortBase``: where the local target's ports start (docs/LOCAL.md)."""

Kind = Literal[
    "text", "choice", "integer", "number", "boolean", "duration", "texts", "object", "counts"
]
"""``counts``: an object of names to integers whose names are free (``regions``: ``{ams: 1}``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """One stack config key (``section.field`` for the fields of an object-valued key)."""

    name: str
    """Without the project prefix: ``machines``, ``websocket.softLimit``."""
    kind: Kind
    default: object = None
    """The value used when the key is absent (``None``: unset)."""
    toml: str | None = None
    """The fly.toml key it renders to, named as the rules name keys (``services[0].internal_port``);
    ``None`` for keys that are not in fly.toml (``target``, ``org``...)."""
    choices: tuple[str, ...] = ()
    """The allowed values of a ``choice`` key."""


_FLY: Final = FlyConfig(app="-")
_WS: Final = WebSocketService()
_WS_PORT: Final = _WS.ports[0]
_HTTP: Final = HttpService()
_VM: Final = Vm()
_DEPLOY: Final = Deploy()
_BUILD: Final = Build()
_METRICS: Final = Metrics()


def _limits(concurrency: Concurrency | None) -> tuple[int | None, int | None]:
    if concurrency is None:
        return None, None
    return concurrency.soft_limit, concurrency.hard_limit


_WS_SOFT, _WS_HARD = _limits(_WS.concurrency)
_HTTP_SOFT, _HTTP_HARD = _limits(_HTTP.concurrency)
_WS_TLS = _WS_PORT.tls_options
_SERVICE: Final = "services[0]"
_PORT: Final = f"{_SERVICE}.ports[0]"

KEYS: Final[tuple[Key, ...]] = (
    Key(name="target", kind="choice", default="fly", choices=("fly", "local")),
    Key(name="app", kind="text", toml="app"),  # default realtime-<stack>, set by the caller
    Key(name="org", kind="text"),
    # The model leaves primary_region out by default; a stack always names one.
    Key(name="primaryRegion", kind="text", default="iad", toml="primary_region"),
    Key(name="machines", kind="integer", default=2, toml="deployment.machines"),
    Key(
        name="broker",
        kind="choice",
        default="memory",
        toml="deployment.broker",
        choices=("memory", "redis"),
    ),
    # How the backend reaches Redis: one server, or a Redis Cluster ([env] REDIS_CLUSTER = "1")
    Key(
        name="redis",
        kind="choice",
        default="single",
        toml="env.REDIS_CLUSTER",
        choices=("single", "cluster"),
    ),
    Key(name="flyctl", kind="text", default="flyctl"),
    Key(name="localPortBase", kind="integer", default=LOCAL_PORT_BASE),
    Key(name="killSignal", kind="text", default=_FLY.kill_signal, toml="kill_signal"),
    Key(name="killTimeout", kind="duration", default=_FLY.kill_timeout, toml="kill_timeout"),
    Key(name="swapSizeMb", kind="integer", default=_FLY.swap_size_mb, toml="swap_size_mb"),
    Key(name="vm", kind="object", toml="vm"),
    Key(name="vm.size", kind="text", default=_VM.size, toml="vm[0].size"),
    Key(name="vm.memory", kind="text", default=_VM.memory, toml="vm[0].memory"),
    Key(name="vm.cpus", kind="integer", default=_VM.cpus, toml="vm[0].cpus"),
    Key(name="deploy", kind="object", toml="deploy"),
    Key(name="deploy.strategy", kind="text", default=_DEPLOY.strategy, toml="deploy.strategy"),
    Key(
        name="deploy.maxUnavailable",
        kind="number",
        default=_DEPLOY.max_unavailable,
        toml="deploy.max_unavailable",
    ),
    # The model's default is flyctl's (5m0s, internal/command/deploy/machines.go:39), right for
    # files it parses; a stack deliberately waits longer (the value every stack has deployed
    # with: a rolling deploy waits for each machine's checks in turn, after a cold image pull).
    Key(
        name="deploy.waitTimeout",
        kind="duration",
        default=Duration("10m0s"),
        toml="deploy.wait_timeout",
    ),
    Key(
        name="deploy.releaseCommand",
        kind="text",
        default=_DEPLOY.release_command,
        toml="deploy.release_command",
    ),
    Key(name="build", kind="object", toml="build"),
    Key(name="build.dockerfile", kind="text", default=_BUILD.dockerfile, toml="build.dockerfile"),
    Key(name="build.ignorefile", kind="text", default=_BUILD.ignorefile, toml="build.ignorefile"),
    Key(
        name="build.buildTarget",
        kind="text",
        default=_BUILD.build_target,
        toml="build.build_target",
    ),
    Key(name="build.image", kind="text", default=_BUILD.image, toml="build.image"),
    Key(name="env", kind="object", toml="env"),
    Key(name="http", kind="object", toml="http_service"),
    Key(
        name="http.internalPort",
        kind="integer",
        default=_HTTP.internal_port,
        toml="http_service.internal_port",
    ),
    Key(
        name="http.forceHttps",
        kind="boolean",
        default=_HTTP.force_https,
        toml="http_service.force_https",
    ),
    Key(
        name="http.autoStopMachines",
        kind="text",
        default=_HTTP.auto_stop_machines,
        toml="http_service.auto_stop_machines",
    ),
    Key(
        name="http.autoStartMachines",
        kind="boolean",
        default=_HTTP.auto_start_machines,
        toml="http_service.auto_start_machines",
    ),
    Key(
        name="http.minMachinesRunning",
        kind="integer",
        default=_HTTP.min_machines_running,
        toml="http_service.min_machines_running",
    ),
    Key(
        name="http.softLimit",
        kind="integer",
        default=_HTTP_SOFT,
        toml="http_service.concurrency.soft_limit",
    ),
    Key(
        name="http.hardLimit",
        kind="integer",
        default=_HTTP_HARD,
        toml="http_service.concurrency.hard_limit",
    ),
    Key(
        name="http.checkPath",
        kind="text",
        default=_HTTP.checks[0].path,
        toml="http_service.checks",
    ),
    Key(name="websocket", kind="object", toml="services"),
    Key(name="websocket.port", kind="integer", default=_WS_PORT.port, toml=f"{_PORT}.port"),
    Key(
        name="websocket.internalPort",
        kind="integer",
        default=_WS.internal_port,
        toml=f"{_SERVICE}.internal_port",
    ),
    Key(
        name="websocket.handlers",
        kind="texts",
        default=_WS_PORT.handlers,
        toml=f"{_PORT}.handlers",
    ),
    Key(
        name="websocket.alpn",
        kind="texts",
        default=_WS_TLS.alpn if _WS_TLS else (),
        toml=f"{_PORT}.tls_options.alpn",
    ),
    Key(
        name="websocket.tlsVersions",
        kind="texts",
        default=_WS_TLS.versions if _WS_TLS else (),
        toml=f"{_PORT}.tls_options.versions",
    ),
    Key(
        name="websocket.softLimit",
        kind="integer",
        default=_WS_SOFT,
        toml=f"{_SERVICE}.concurrency.soft_limit",
    ),
    Key(
        name="websocket.hardLimit",
        kind="integer",
        default=_WS_HARD,
        toml=f"{_SERVICE}.concurrency.hard_limit",
    ),
    Key(
        name="websocket.proxyProto",
        kind="text",
        toml=f"{_PORT}.proxy_proto_options",
    ),
    Key(name="metrics", kind="object", toml="metrics"),
    Key(name="metrics.port", kind="integer", default=_METRICS.port, toml="metrics[0].port"),
    Key(name="metrics.path", kind="text", default=_METRICS.path, toml="metrics[0].path"),
    # Machines per region, e.g. {iad: 2, ams: 1}; the primary region's count is `machines`
    # (infra.stack.settings reads and checks it; not a fly.toml key: `fly scale count --region`).
    Key(name="regions", kind="counts"),
)

_BY_NAME: Final = {key.name: key for key in KEYS}


def key_named(name: str) -> Key:
    """The schema row of ``name`` (``websocket.softLimit``); ``KeyError`` for an unknown name."""
    return _BY_NAME[name]


CONFIG_KEYS: Final[tuple[str, ...]] = tuple(key.name for key in KEYS if "." not in key.name)
"""The top-level keys (secrets are listed apart, in ``infra.stack.settings.SECRETS``)."""

OBJECT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    key.name: tuple(
        field.name.split(".", 1)[1] for field in KEYS if field.name.startswith(f"{key.name}.")
    )
    for key in KEYS
    if key.kind == "object" and key.name != "env"
}
"""The fields of each object-valued key (``env`` takes any variable name)."""

# fly.toml key -> stack key, longest prefix first (so ``services[0].internal_port`` beats
# ``services``).
_BY_TOML: Final = sorted(
    ((key.toml, key.name) for key in KEYS if key.toml is not None),
    key=lambda pair: len(pair[0]),
    reverse=True,
)


def stack_key_for(toml_key: str) -> str:
    """The ``realtime-fly:<key>`` config key that produces a fly.toml key (for error messages)."""
    for prefix, name in _BY_TOML:
        if toml_key == prefix or toml_key.startswith((f"{prefix}.", f"{prefix}[")):
            suffix = toml_key[len(prefix) :] if name == "env" else ""
            return f"{PROJECT}:{name}{suffix}"
    return f"{PROJECT}:{toml_key}"
