"""fly.toml text -> model, keeping what the model cannot hold as findings.

:func:`parse_fly_toml` never drops anything silently: a key the model does not know becomes an
``unknown-key`` warning, a value of the wrong type a ``type`` error, and a bare integer where a
duration belongs a ``duration-bare-integer`` finding (fly-go reads it as nanoseconds; only
``kill_timeout`` is seconds and check fields are milliseconds). The WebSocket service is the
first ``[[services]]`` entry whose ``internal_port`` equals ``[env] WS_PORT`` (8081 when absent).
For our own output the round trip is exact: ``parse_fly_toml(render_fly_toml(c)).config == c``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Final, Literal, cast

from infra.errors import ConfigError
from infra.flytoml.findings import Finding
from infra.flytoml.model import (
    WEBSOCKET_PORT,
    Broker,
    Build,
    Concurrency,
    Deploy,
    Duration,
    FlyConfig,
    HttpCheck,
    HttpService,
    Metrics,
    ProxyProtoOptions,
    Restart,
    Service,
    ServicePort,
    TcpCheck,
    TlsOptions,
    TopLevelCheck,
    Vm,
    WebSocketService,
)

__all__ = ["ParseResult", "parse_fly_toml"]

_DEPLOYMENT = re.compile(r'^# deployment: machines = (\d+), broker = "(memory|redis)"$', re.M)
_Unit = Literal["ns", "ms", "s"]
_UNIT_NAMES: Final = {"ns": "nanoseconds", "ms": "milliseconds", "s": "seconds"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseResult:
    """The model of a file plus what parsing found (unknown keys, raw-value problems)."""

    config: FlyConfig
    findings: tuple[Finding, ...]

    @property
    def unknown_keys(self) -> tuple[str, ...]:
        """Dotted keys present in the file that the model does not hold."""
        return tuple(f.key for f in self.findings if f.rule == "unknown-key")


class _Table:
    """One TOML table being read; remembers which keys were used and reports the rest."""

    def __init__(self, data: dict[str, object], *, path: str, findings: list[Finding]) -> None:
        self._data = data
        self._path = path
        self._findings = findings
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def raw(self, name: str) -> object:
        self._used.add(name)
        return self._data.get(name)

    def wrong(self, name: str, value: object, expected: str) -> None:
        self._findings.append(
            Finding(
                rule="type",
                severity="error",
                key=self.key(name),
                value=value if isinstance(value, str | int | float | list) else str(value),
                message=f"must be {expected}",
            )
        )

    def has(self, name: str) -> bool:
        return name in self._data

    def peek(self, name: str) -> object:
        """The raw value without marking the key as read."""
        return self._data.get(name)

    def report(self, finding: Finding) -> None:
        self._findings.append(finding)

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        self.wrong(name, value, "a string")
        return None

    def integer(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self.wrong(name, value, "an integer")
        return None

    def number(self, name: str) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        self.wrong(name, value, "a number")
        return None

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        self.wrong(name, value, "true or false")
        return None

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(cast(list[str], value))
        self.wrong(name, value, "a list of strings")
        return ()

    def duration(self, name: str, *, bare: _Unit) -> Duration | None:
        """A duration string; a bare number is read the way fly-go reads it, and reported."""
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._findings.append(
                Finding(
                    rule="duration-bare-integer",
                    severity="error" if bare == "ns" else "warning",
                    key=self.key(name),
                    value=value,
                    message=f"fly-go reads a bare number here as {_UNIT_NAMES[bare]}; write a "
                    'duration string like "15s"',
                )
            )
            return Duration(f"{value:g}{bare}")
        if isinstance(value, str):
            try:
                return Duration(value)
            except ValueError:
                pass
        self.wrong(name, value, 'a duration string like "15s" or "10m0s"')
        return None

    def table(self, name: str) -> _Table | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, dict):
            return _Table(value, path=self.key(name), findings=self._findings)
        self.wrong(name, value, "a table")
        return None

    def tables(self, name: str) -> list[_Table]:
        """An array of tables (a single table is accepted as one entry)."""
        value = self.raw(name)
        if value is None:
            return []
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return [
                _Table(item, path=f"{self.key(name)}[{index}]", findings=self._findings)
                for index, item in enumerate(cast(list[dict[str, object]], value))
            ]
        self.wrong(name, value, "an array of tables")
        return []

    def named_tables(self, name: str) -> list[tuple[str, _Table]]:
        table = self.table(name)
        if table is None:
            return []
        return [(key, sub) for key in table.names() if (sub := table.table(key)) is not None]

    def names(self) -> list[str]:
        return list(self._data)

    def done(self) -> None:
        """Report every key of this table that no reader asked for."""
        for name, value in self._data.items():
            if name not in self._used:
                self._findings.append(
                    Finding(
                        rule="unknown-key",
                        severity="warning",
                        key=self.key(name),
                        value=value if isinstance(value, str | int | float) else "...",
                        message="not part of the model: lint does not check it and render "
                        "would not write it",
                    )
                )


def _concurrency(table: _Table | None) -> Concurrency | None:
    if table is None:
        return None
    result = Concurrency(
        type=table.text("type"),
        soft_limit=table.integer("soft_limit"),
        hard_limit=table.integer("hard_limit"),
    )
    table.done()
    return result


def _timing(table: _Table) -> tuple[Duration | None, Duration | None, Duration | None]:
    """interval, timeout, grace_period of a check (fly-go reads bare numbers as milliseconds)."""
    return (
        table.duration("interval", bare="ms"),
        table.duration("timeout", bare="ms"),
        table.duration("grace_period", bare="ms"),
    )


def _http_check(table: _Table) -> HttpCheck:
    interval, timeout, grace_period = _timing(table)
    result = HttpCheck(
        interval=interval,
        timeout=timeout,
        grace_period=grace_period,
        method=table.text("method"),
        path=table.text("path") or "",
    )
    table.done()
    return result


def _tcp_check(table: _Table) -> TcpCheck:
    interval, timeout, grace_period = _timing(table)
    result = TcpCheck(interval=interval, timeout=timeout, grace_period=grace_period)
    table.done()
    return result


def _port(table: _Table) -> ServicePort:
    tls_options = None
    tls = table.table("tls_options")
    if tls is not None:
        tls_options = TlsOptions(
            alpn=tls.texts("alpn"),
            versions=tls.texts("versions"),
            default_self_signed=tls.boolean("default_self_signed"),
        )
        tls.done()
    proxy_options = None
    proxy = table.table("proxy_proto_options")
    if proxy is not None:
        proxy_options = ProxyProtoOptions(version=proxy.text("version") or "v1")
        proxy.done()
    result = ServicePort(
        port=table.integer("port") or 0,
        handlers=table.texts("handlers"),
        force_https=table.boolean("force_https"),
        tls_options=tls_options,
        proxy_proto_options=proxy_options,
    )
    table.done()
    return result


def _service(table: _Table, *, websocket: bool) -> Service:
    cls = WebSocketService if websocket else Service
    result = cls(
        protocol=table.text("protocol"),
        internal_port=table.integer("internal_port") or 0,
        ports=tuple(_port(port) for port in table.tables("ports")),
        auto_stop_machines=_auto_stop(table),
        auto_start_machines=table.boolean("auto_start_machines"),
        min_machines_running=table.integer("min_machines_running"),
        concurrency=_concurrency(table.table("concurrency")),
        tcp_checks=tuple(_tcp_check(check) for check in table.tables("tcp_checks")),
        http_checks=tuple(_http_check(check) for check in table.tables("http_checks")),
    )
    table.done()
    return result


def _auto_stop(table: _Table) -> str | None:
    """``auto_stop_machines``: a legacy boolean is read as "stop"/"off" and reported."""
    if isinstance(table.raw("auto_stop_machines"), bool):
        legacy = table.boolean("auto_stop_machines")
        table.report(
            Finding(
                rule="auto-stop-machines",
                severity="warning",
                key=table.key("auto_stop_machines"),
                value=legacy,
                message='a boolean is legacy; write "off", "stop" or "suspend"',
            )
        )
        return "stop" if legacy else "off"
    return table.text("auto_stop_machines")


def _http_service(table: _Table | None) -> HttpService | None:
    if table is None:
        return None
    result = HttpService(
        internal_port=table.integer("internal_port") or 0,
        force_https=table.boolean("force_https"),
        auto_stop_machines=_auto_stop(table),
        auto_start_machines=table.boolean("auto_start_machines"),
        min_machines_running=table.integer("min_machines_running"),
        concurrency=_concurrency(table.table("concurrency")),
        checks=tuple(_http_check(check) for check in table.tables("checks")),
    )
    table.done()
    return result


def _env(table: _Table | None) -> tuple[tuple[str, str], ...]:
    if table is None:
        return ()
    pairs = []
    for name in table.names():
        value = table.raw(name)
        if not isinstance(value, str):
            table.wrong(name, value, "a string")
            value = str(value)
        pairs.append((name, value))
    return tuple(pairs)


def _websocket_port(env: tuple[tuple[str, str], ...]) -> int:
    value = dict(env).get("WS_PORT", "")
    return int(value) if value.isdigit() else WEBSOCKET_PORT


def _vm(table: _Table) -> Vm:
    memory: str | None
    if isinstance(table.raw("memory"), int):
        memory = f"{table.integer('memory')}mb"  # flyctl reads a bare number as megabytes
    else:
        memory = table.text("memory")
    result = Vm(
        size=table.text("size"),
        memory=memory,
        cpus=table.integer("cpus"),
        cpu_kind=table.text("cpu_kind"),
    )
    table.done()
    return result


def _build(table: _Table | None) -> Build | None:
    if table is None:
        return None
    result = Build(
        dockerfile=table.text("dockerfile"),
        ignorefile=table.text("ignorefile"),
        build_target=table.text("build_target"),
        image=table.text("image"),
    )
    table.done()
    return result


def _deploy(table: _Table | None) -> Deploy:
    if table is None:
        return Deploy()
    result = Deploy(
        strategy=table.text("strategy") or "rolling",
        max_unavailable=table.number("max_unavailable"),
        wait_timeout=table.duration("wait_timeout", bare="ns") or Deploy().wait_timeout,
        release_command=table.text("release_command"),
    )
    table.done()
    return result


def _top_check(name: str, table: _Table) -> TopLevelCheck:
    interval, timeout, grace_period = _timing(table)
    result = TopLevelCheck(
        name=name,
        type=table.text("type") or "",
        port=table.integer("port"),
        path=table.text("path"),
        method=table.text("method"),
        interval=interval,
        timeout=timeout,
        grace_period=grace_period,
    )
    table.done()
    return result


def _metrics(table: _Table) -> Metrics:
    result = Metrics(port=table.integer("port") or 0, path=table.text("path") or "")
    table.done()
    return result


def _restart(table: _Table) -> Restart:
    result = Restart(policy=table.text("policy") or "", retries=table.integer("retries"))
    table.done()
    return result


def parse_fly_toml(text: str) -> ParseResult:
    """Parse fly.toml text; raise ConfigError (key ``fly.toml``) on a TOML syntax error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key="fly.toml", value="<toml>", reason=f"invalid TOML: {exc}") from None
    findings: list[Finding] = []
    root = _Table(data, path="", findings=findings)
    env = _env(root.table("env"))
    websocket_port = _websocket_port(env)
    services: list[Service] = []
    for table in root.tables("services"):
        is_websocket = not any(isinstance(s, WebSocketService) for s in services) and (
            table.has("internal_port") and table.peek("internal_port") == websocket_port
        )
        services.append(_service(table, websocket=is_websocket))
    machines: int | None = None
    broker: Broker = "memory"
    deployment = _DEPLOYMENT.search(text)
    if deployment is not None:
        machines = int(deployment.group(1))
        broker = cast(Broker, deployment.group(2))
    config = FlyConfig(
        app=root.text("app") or "",
        primary_region=root.text("primary_region"),
        kill_signal=root.text("kill_signal"),
        kill_timeout=root.duration("kill_timeout", bare="s"),
        swap_size_mb=root.integer("swap_size_mb"),
        build=_build(root.table("build")),
        deploy=_deploy(root.table("deploy")),
        env=env,
        http_service=_http_service(root.table("http_service")),
        services=tuple(services),
        vms=tuple(_vm(table) for table in root.tables("vm")),
        metrics=tuple(_metrics(table) for table in root.tables("metrics")),
        restarts=tuple(_restart(table) for table in root.tables("restart")),
        checks=tuple(_top_check(name, table) for name, table in root.named_tables("checks")),
        machines=machines,
        broker=broker,
    )
    root.done()
    return ParseResult(config=config, findings=tuple(findings))
