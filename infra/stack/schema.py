"""The stack config schema: every ``realtime-fly:*`` key in one table.

Each :class:`Key` names a stack key, the kind of value it takes, its default and the fly.toml key
it becomes. The defaults of keys that map onto the fly.toml model are *read from the model*
(``WebSocketService()``, ``HttpService()``, ``Deploy()``...), so the stack and the model cannot
disagree about them. Everything else is derived from this table: the allowed keys of each level,
the map from a fly.toml key back to the stack key that produced it (for error messages), and the
typed reader :class:`Values` that checks each value against its key's kind. docs/CONFIG.md
documents the same table (tests/infra/test_stack.py compares them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

from infra.errors import ConfigError
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
    "Values",
    "shown",
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


def shown(value: object) -> object:
    """A value fit for an error message: a Pulumi secure value is never echoed."""
    if isinstance(value, Mapping) and "secure" in value:
        return "[secret]"
    return value


_INTEGER = re.compile(r"[+-]?\d+")


class Values:
    """Typed access to one level of config values (the top level or one object-valued key).

    Every read names its key; the kind and the default come from :data:`KEYS`, and a value of
    the wrong kind raises a ``ConfigError`` naming ``realtime-fly:<key>`` and the value.
    """

    def __init__(self, values: Mapping[str, object], *, section: str = "") -> None:
        self._values = values
        self._section = section
        allowed = OBJECT_KEYS[section] if section else CONFIG_KEYS
        for name, value in values.items():
            if name not in allowed:
                raise ConfigError(
                    key=self._key(name),
                    value=shown(value),
                    reason=f"unknown config key; known keys: {', '.join(allowed)}",
                )

    def _name(self, name: str) -> str:
        return f"{self._section}.{name}" if self._section else name

    def _key(self, name: str) -> str:
        return f"{PROJECT}:{self._name(name)}"

    def _schema(self, name: str, *kinds: Kind) -> Key:
        key = _BY_NAME[self._name(name)]
        if key.kind not in kinds:  # a programming error, caught by the tests
            raise TypeError(f"{key.name} is a {key.kind} key, read as {' or '.join(kinds)}")
        return key

    def _get(self, name: str) -> object:
        value = self._values.get(name)
        return None if value == "" else value

    def _fail(self, name: str, value: object, reason: str) -> ConfigError:
        return ConfigError(key=self._key(name), value=value, reason=reason)

    def optional_text(self, name: str) -> str | None:
        """A string, or the key's default (which may be ``None``)."""
        key = self._schema(name, "text", "choice")
        value = self._get(name)
        if value is None:
            return cast(str | None, key.default)
        if not isinstance(value, str):
            raise self._fail(name, value, "must be a string")
        if key.choices and value not in key.choices:
            raise self._fail(name, value, f"must be one of {', '.join(key.choices)}")
        return value

    def text(self, name: str, default: str | None = None) -> str:
        """A string; ``default`` only for keys whose default depends on the stack (``app``)."""
        value = self.optional_text(name)
        if value is None:
            if default is None:
                raise TypeError(f"{self._name(name)} has no default")
            return default
        return value

    def optional_integer(self, name: str) -> int | None:
        key = self._schema(name, "integer")
        value = self._get(name)
        if value is None:
            return cast(int | None, key.default)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
        raise self._fail(name, value, "must be an integer")

    def integer(self, name: str) -> int:
        value = self.optional_integer(name)
        if value is None:
            raise TypeError(f"{self._name(name)} has no default")
        return value

    def optional_number(self, name: str) -> float | None:
        key = self._schema(name, "number")
        value = self._get(name)
        if value is None:
            return cast(float | None, key.default)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise self._fail(name, value, "must be a number")

    def optional_boolean(self, name: str) -> bool | None:
        key = self._schema(name, "boolean")
        value = self._get(name)
        if value is None:
            return cast(bool | None, key.default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self._fail(name, value, "must be true or false")

    def duration(self, name: str) -> Duration | None:
        key = self._schema(name, "duration")
        value = self._get(name)
        if value is None:
            return cast(Duration | None, key.default)
        if isinstance(value, str):
            try:
                return Duration(value)
            except ValueError:
                pass
        raise self._fail(name, value, 'must be a duration string like "30s" or "10m0s"')

    def texts(self, name: str) -> tuple[str, ...]:
        key = self._schema(name, "texts")
        value = self._get(name)
        if value is None:
            return cast(tuple[str, ...], key.default)
        if isinstance(value, str):
            value = self._json(name, value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(cast(list[str], value))
        raise self._fail(name, value, "must be a list of strings")

    def mapping(self, name: str) -> dict[str, object]:
        self._schema(name, "object")
        value = self._get(name)
        if value is None:
            return {}
        if isinstance(value, str):
            value = self._json(name, value)
        if isinstance(value, dict) and all(isinstance(field, str) for field in value):
            return cast(dict[str, object], value)
        raise self._fail(name, value, "must be an object")

    def counts(self, name: str) -> dict[str, int] | None:
        """An object of names to integers (``None`` when unset); each value is checked, and an
        error names ``realtime-fly:<key>.<name>``."""
        self._schema(name, "counts")
        value = self._get(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = self._json(name, value)
        if not isinstance(value, dict) or not all(isinstance(item, str) for item in value):
            raise self._fail(name, value, "must be an object of names to integers")
        counts: dict[str, int] = {}
        for item, raw in cast(dict[str, object], value).items():
            if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
                counts[item] = int(raw)
            elif isinstance(raw, int) and not isinstance(raw, bool):
                counts[item] = raw
            else:
                raise self._fail(f"{name}.{item}", raw, "must be an integer")
        return counts

    def section(self, name: str) -> Values:
        """The reader of one object-valued key's fields."""
        return Values(self.mapping(name), section=self._name(name))

    def _json(self, name: str, text: str) -> object:
        try:
            return cast(object, json.loads(text))
        except json.JSONDecodeError as exc:
            raise self._fail(name, text, f"is not valid JSON: {exc.msg}") from None
