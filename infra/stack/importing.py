"""``python -m infra import PATH --stack NAME``: a hand-kept fly.toml -> ``Pulumi.<NAME>.yaml``.

:func:`stack_values` maps a parsed fly.toml onto the stack keys of ``infra.stack.schema`` (the
inverse of ``settings._fly_config``). What the keys cannot say is not guessed at: the stack is
rendered back (``settings_from_config`` then ``render_fly_toml``), both files are read the way
flyctl loads them (``parse_fly_toml``: types converted; then flyctl's defaults applied and
durations compared by length, :func:`flyctl_view`), and every path whose value differs is
reported: *lost* (the file sets it, the stack cannot) or *added* (the stack's app sets it, the
file did not: the backend's own ``[env]``, its metrics, its TCP check). So the report is
computed, not listed by hand, and cannot miss a key.

Never imported: ``[env]`` names that look secret (flyctl's own list, ``env-secret-name``) and the
stack's secrets (``TOKEN_SIGNING_KEY``, ``REDIS_URL``): the report names them with the command
that stores them as secrets, never their values. Not in fly.toml at all, so asked for by name:
``org``, ``machines`` and ``broker`` (``machines``/``broker`` come from the ``# deployment:`` line
of a file this project rendered).

Writing the result into ``Pulumi.<NAME>.yaml`` is :mod:`infra.stack.stackfile`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from infra.flytoml.fly_rules import env_names
from infra.flytoml.model import Duration, FlyConfig, Service, WebSocketService
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.render import render_fly_toml
from infra.flytoml.toml_edit import go_duration
from infra.stack.schema import PROJECT
from infra.stack.settings import SECRETS, settings_from_config
from infra.stack.stackfile import ASKED, plain_default

__all__ = [
    "Difference",
    "ImportResult",
    "flyctl_view",
    "import_fly_toml",
    "stack_values",
]

_SECRET_ENV: Final = {spec.env_name: spec.key for spec in SECRETS}
_DERIVED_ENV: Final = ("WS_PORT", "HTTP_PORT", "METRICS_PORT", "REDIS_CLUSTER")
_TOML_NAMES: Final = {"vms": "vm", "restarts": "restart", "build_target": "build-target"}
_SKIPPED_FIELDS: Final = frozenset({"machines", "broker"})
_FLYCTL_DEFAULTS: Final[dict[str, object]] = {
    "kill_signal": "SIGINT",  # FLY.md: the docs' default
    "kill_timeout": "5s",  # FLY.md: kill_timeout default 5s
}
_PLACEHOLDER: Final[dict[str, object]] = {"org": "-", "machines": 1, "broker": "memory"}
"""Used only to render the stack for the comparison when the caller gave no value."""

Kind = Literal["lost", "added"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One path where the stack's fly.toml differs from the imported file."""

    kind: Kind
    path: str
    value: object
    """The file's value (lost) or the stack's (added); ``None`` for [env] (never echoed)."""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportResult:
    """The stack values, what the stack cannot carry, what it adds, what the user must set."""

    values: dict[str, object]
    differences: tuple[Difference, ...]
    secrets: tuple[str, ...]
    """Messages for secret-looking [env] names (not imported)."""
    asked: tuple[str, ...]
    """``realtime-fly:*`` keys fly.toml cannot carry and the caller did not give."""
    rendered: str

    @property
    def lost(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.kind == "lost")

    @property
    def added(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.kind == "added")


# -- fly.toml model -> stack values ------------------------------------------------------------


def _put(values: dict[str, object], name: str, value: object) -> None:
    """Set ``name`` (``section.field`` for object keys) unless it is the key's default."""
    if value is None:
        return
    if isinstance(value, Duration):
        value = value.text
    if isinstance(value, tuple):
        value = list(value)
    if value == plain_default(name):
        return
    section, _, field = name.partition(".")
    if field:
        target = values.setdefault(section, {})
        assert isinstance(target, dict)
        target[field] = value
    else:
        values[name] = value


def _secret_names(config: FlyConfig) -> dict[str, str]:
    """[env] names not to import, each with the message saying where it belongs."""
    names: dict[str, str] = {}
    for finding in env_names(config):
        name = finding.key.removeprefix("env.")
        names[name] = ""
    for name, _value in config.env:
        if name in _SECRET_ENV:
            names[name] = ""
    for name in names:
        key = _SECRET_ENV.get(name)
        if key is not None:
            how = f"`pulumi config set --secret {PROJECT}:{key}` (value from stdin)"
        else:
            how = (
                "`pulumi config set --secret` it if this stack should own it, or keep it a Fly "
                "secret (`fly secrets import --app <app>`, value from stdin)"
            )
        names[name] = f"env.{name} looks like a secret: not imported into fly.toml config; {how}"
    return names


def stack_values(
    config: FlyConfig, *, secrets: Mapping[str, str] | None = None
) -> dict[str, object]:
    """The ``realtime-fly:*`` values (without the prefix) that render ``config`` as closely as
    the stack keys can; what they cannot say is found by :func:`import_fly_toml`."""
    skipped = _secret_names(config) if secrets is None else secrets
    values: dict[str, object] = {"app": config.app}
    _put(values, "primaryRegion", config.primary_region)
    _put(values, "killSignal", config.kill_signal or _FLYCTL_DEFAULTS["kill_signal"])
    _put(values, "killTimeout", config.kill_timeout or Duration("5s"))
    _put(values, "swapSizeMb", config.swap_size_mb)
    if config.build is not None:
        build = config.build
        _put(values, "build.dockerfile", build.dockerfile)
        _put(values, "build.ignorefile", build.ignorefile)
        _put(values, "build.buildTarget", build.build_target)
        _put(values, "build.image", build.image)
    deploy = config.deploy
    _put(values, "deploy.strategy", deploy.strategy)
    _put(values, "deploy.maxUnavailable", deploy.max_unavailable)
    _put(values, "deploy.waitTimeout", deploy.wait_timeout)
    _put(values, "deploy.releaseCommand", deploy.release_command)
    _http(values, config)
    websocket = next((s for s in config.services if isinstance(s, WebSocketService)), None)
    if websocket is not None:
        _websocket(values, websocket)
    if config.vms:
        vm = config.vms[0]
        _put(values, "vm.size", vm.size)
        _put(values, "vm.memory", vm.memory)
        _put(values, "vm.cpus", vm.cpus)
    if config.metrics:
        _put(values, "metrics.port", config.metrics[0].port)
        _put(values, "metrics.path", config.metrics[0].path)
    _env(values, config, skipped)
    return values


def _http(values: dict[str, object], config: FlyConfig) -> None:
    http = config.http_service
    if http is None:
        return
    _put(values, "http.internalPort", http.internal_port)
    _put(values, "http.forceHttps", http.force_https)
    _put(values, "http.autoStopMachines", http.auto_stop_machines)
    _put(values, "http.autoStartMachines", http.auto_start_machines)
    _put(values, "http.minMachinesRunning", http.min_machines_running)
    if http.concurrency is not None:
        _put(values, "http.softLimit", http.concurrency.soft_limit)
        _put(values, "http.hardLimit", http.concurrency.hard_limit)
    if http.checks:
        _put(values, "http.checkPath", http.checks[0].path)


def _websocket(values: dict[str, object], service: Service) -> None:
    _put(values, "websocket.internalPort", service.internal_port)
    if service.ports:
        port = service.ports[0]
        _put(values, "websocket.port", port.port or None)
        if port.proxy_proto_options is not None:
            _put(values, "websocket.proxyProto", port.proxy_proto_options.version)
        _put(values, "websocket.handlers", port.handlers)
        if port.tls_options is not None:
            _put(values, "websocket.alpn", port.tls_options.alpn)
            _put(values, "websocket.tlsVersions", port.tls_options.versions)
    if service.concurrency is not None:
        _put(values, "websocket.softLimit", service.concurrency.soft_limit)
        _put(values, "websocket.hardLimit", service.concurrency.hard_limit)


def _env(values: dict[str, object], config: FlyConfig, skipped: Mapping[str, str]) -> None:
    if dict(config.env).get("REDIS_CLUSTER") == "1":  # the backend reads only 0 or 1
        values["redis"] = "cluster"
    env: dict[str, object] = {}
    for name, value in config.env:
        if name in skipped or name in _DERIVED_ENV:
            continue
        if name == "LOG_FORMAT" and value == "json":
            continue
        if name == "ALLOWED_ORIGINS" and value == f"https://{config.app}.fly.dev":
            continue
        env[name] = value
    if env:
        values["env"] = env


# -- comparing as flyctl would -----------------------------------------------------------------


def _flatten(value: object, path: str, out: dict[str, object]) -> None:
    if isinstance(value, Duration):
        out[path] = go_duration(round(value.seconds * 1e9))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            if field.name in _SKIPPED_FIELDS:
                continue
            item = getattr(value, field.name)
            if field.name == "extra":
                for name, extra in item:
                    _flatten(extra, f"{path}.{name}" if path else name, out)
                continue
            name = _TOML_NAMES.get(field.name, field.name)
            if field.name == "name" and path.startswith("checks."):
                continue
            _flatten(item, f"{path}.{name}" if path else name, out)
    elif (
        isinstance(value, tuple | list)
        and value
        and all(
            isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            for item in value
        )
    ):
        for name, item in value:
            _flatten(item, f"{path}.{name}", out)
    elif isinstance(value, tuple | list) and value and dataclasses.is_dataclass(value[0]):
        for index, item in enumerate(value):
            name = getattr(item, "name", None)
            if path == "checks" and isinstance(name, str):
                _flatten(item, f"checks.{name}", out)
            else:
                _flatten(item, f"{path}[{index}]", out)
    elif isinstance(value, dict):
        for name, item in value.items():
            _flatten(item, f"{path}.{name}", out)
    elif value is None or value in ((), []) or (path.endswith(".port") and value == 0):
        return  # absent (a port entry that opens a range has no ``port``)
    else:
        out[path] = list(value) if isinstance(value, tuple) else value


def flyctl_view(config: FlyConfig) -> dict[str, object]:
    """``config`` as flyctl compares it: dotted path -> value, durations as Go writes them, absent
    values left out, flyctl's defaults applied (kill_signal, kill_timeout, the Dockerfile, an
    HTTP check's GET)."""
    out: dict[str, object] = {}
    _flatten(config, "", out)
    for path, default in _FLYCTL_DEFAULTS.items():
        out.setdefault(path, default)
    if out.get("build.dockerfile") == "Dockerfile" and "build.image" not in out:
        del out["build.dockerfile"]
    for path in [p for p, v in out.items() if p.endswith(".method") and v == "GET"]:
        if "checks" in path:
            del out[path]
    return out


def _differences(
    original: FlyConfig, rendered: FlyConfig, secrets: Mapping[str, str]
) -> tuple[Difference, ...]:
    before, after = flyctl_view(original), flyctl_view(rendered)
    found: list[Difference] = []
    for path, value in before.items():
        if after.get(path, _MISSING) != value:
            shown = None if path.startswith("env.") else value
            found.append(
                Difference(kind="lost", path=path, value=shown, reason=secrets.get(path[4:], ""))
            )
    for path, value in after.items():
        if path not in before:
            shown = None if path.startswith("env.") else value
            found.append(Difference(kind="added", path=path, value=shown))
    return tuple(found)


_MISSING: Final = object()


# -- the whole import --------------------------------------------------------------------------


def import_fly_toml(
    text: str, *, stack: str, given: Mapping[str, object] | None = None
) -> ImportResult:
    """Import fly.toml ``text`` for ``stack``; ``given`` holds the values fly.toml cannot carry
    (``org``, ``machines``, ``broker``) the caller knows. ConfigError when the file is not
    TOML or the stack it gives fails the model's rules (run ``lint --fix`` first)."""
    parsed = parse_fly_toml(text)
    config = parsed.config
    secrets = _secret_names(config)
    values = stack_values(config, secrets=secrets)
    known = dict(given or {})
    if "machines" not in known and config.machines is not None and "# deployment:" in text:
        known["machines"] = config.machines
        known["broker"] = config.broker
    values.update({key: value for key, value in known.items() if value is not None})
    needed = [key for key in ASKED if not (key == "org" and values.get("target") == "local")]
    asked = tuple(f"{PROJECT}:{key}" for key in needed if key not in values)
    placeholder = dict(_PLACEHOLDER)
    if values.get("redis") == "cluster":
        placeholder["broker"] = "redis"  # a cluster is a Redis broker
    check = {**placeholder, **values}
    settings = settings_from_config(check, stack=stack, require_secrets=False)
    rendered = render_fly_toml(settings.fly, stack=stack)
    differences = _differences(config, parse_fly_toml(rendered).config, secrets)
    return ImportResult(
        values=values,
        differences=differences,
        secrets=tuple(secrets.values()),
        asked=asked,
        rendered=rendered,
    )
