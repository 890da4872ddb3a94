"""fly.toml text -> model, read the way flyctl v0.4.87 reads it, dropping nothing.

:func:`parse_fly_toml` applies flyctl's conversions (internal/appconfig/patches.go): ports and
internal ports written as strings, the legacy ``concurrency = "soft,hard"`` string (type
``requests``), non-string ``[env]`` values and numeric ``[[vm]] memory`` become what flyctl makes
of them, ``build_target`` is read as ``build-target``, ``[processes]`` may be the legacy list of
``{name, command}``. A bare number where a duration belongs is read as fly-go reads it and
reported (``duration-bare-integer``): seconds for ``kill_timeout`` (patches.go:60-61),
milliseconds in ``[[services]]`` checks and top-level ``[checks]`` (patches.go:484-489),
nanoseconds everywhere else, ``[[http_service.checks]]`` included (no patch touches it).

A key the model has no field for is kept in the table's ``extra`` (render writes it back). When
flyctl does not know it either (``infra.flytoml.vocabulary``) it is reported: ``unknown-key``
where ``fly config validate --strict`` looks, ``ignored-key`` where it does not (inside
``[[services]]``, ``[[vm]]``, ``[mounts]``, ``[[metrics]]``). A value of the wrong type is a
``type`` error. The WebSocket service is the first ``[[services]]`` entry whose
``internal_port`` equals ``[env] WS_PORT`` (see ``infra.flytoml.model``). For our own output the
round trip is exact: ``parse_fly_toml(render_fly_toml(c)).config == c``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from typing import Final, Literal, TypeVar, cast

from infra.errors import ConfigError
from infra.flytoml.findings import Finding
from infra.flytoml.model import (
    Broker,
    Build,
    Concurrency,
    Deploy,
    Duration,
    Extra,
    FlyConfig,
    HttpCheck,
    HttpService,
    Metrics,
    Mount,
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
from infra.flytoml.vocabulary import ROOT, STRICT_SKIPPED, UNKNOWN, Node

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


_T = TypeVar("_T")


def _shown(value: object) -> object:
    return value if isinstance(value, str | int | float) else "..."


class _Table:
    """One TOML table being read: remembers which keys were used; ``done()`` keeps the rest
    as the table's ``extra`` and reports those flyctl does not know."""

    def __init__(
        self,
        data: dict[str, object],
        *,
        path: str,
        findings: list[Finding],
        node: Node = ROOT,
        strict: bool = True,
    ) -> None:
        self._data = data
        self._path = path
        self._findings = findings
        self._node = node
        self._strict = strict
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

    def port(self, name: str) -> int | None:
        """An integer, or a string of digits (flyctl's castToInt, patches.go:578-608)."""
        value = self.peek(name)
        if isinstance(value, str) and value.strip().isdigit():
            self.raw(name)
            return int(value.strip())
        return self.integer(name)

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

    def pairs(self, name: str) -> tuple[tuple[str, str], ...]:
        """A table of strings; other scalars become strings as Go's ``%v`` writes them
        (flyctl's castToString, patches.go:610-616)."""
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.wrong(name, value, "a table")
            return ()
        pairs = []
        for key, item in cast(dict[str, object], value).items():
            if isinstance(item, dict | list):
                self.wrong(f"{name}.{key}", item, "a string")
                continue
            pairs.append((key, _go_string(item)))
        return tuple(pairs)

    def duration(self, name: str, *, bare: _Unit) -> Duration | None:
        """A duration string; a bare number is read the way fly-go reads it, and reported."""
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._findings.append(
                Finding(
                    rule="duration-bare-integer",
                    severity="warning",
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

    def _child(self, name: str, data: dict[str, object], path: str) -> _Table:
        node = self._node.child(name) or UNKNOWN
        strict = self._strict and not (self._path == "" and name in STRICT_SKIPPED)
        return _Table(data, path=path, findings=self._findings, node=node, strict=strict)

    def table(self, name: str) -> _Table | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, dict):
            return self._child(name, cast(dict[str, object], value), self.key(name))
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
                self._child(name, item, f"{self.key(name)}[{index}]")
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

    def done(self) -> Extra:
        """The keys no reader asked for, in the order render writes them (scalars, tables,
        arrays of tables; file order within each); those flyctl does not know are reported."""
        extra = []
        for name, value in self._data.items():
            if name not in self._used:
                extra.append((name, value))
                _judge(
                    self._node,
                    name,
                    value,
                    key=self.key(name),
                    strict=self._strict,
                    findings=self._findings,
                    root=self._path == "",
                )
        return tuple(sorted(extra, key=_render_order))

    def finish(self, result: _T) -> _T:
        """``result`` with this table's unread keys as its ``extra``."""
        return replace(result, extra=self.done())  # type: ignore[type-var]


def _render_order(item: tuple[str, object]) -> int:
    value = item[1]
    if isinstance(value, dict):
        return 1
    if isinstance(value, list) and value and all(isinstance(entry, dict) for entry in value):
        return 2
    return 0


def _judge(
    node: Node,
    name: str,
    value: object,
    *,
    key: str,
    strict: bool,
    findings: list[Finding],
    root: bool = False,
) -> None:
    """Report ``name`` (and, inside it, every key) that flyctl does not know."""
    if not node.knows(name):
        findings.append(
            Finding(
                rule="unknown-key" if strict else "ignored-key",
                severity="warning",
                key=key,
                value=_shown(value),
                message="flyctl v0.4.87 does not know this key"
                + ("" if strict else " (and its --strict does not look here: it is ignored)"),
            )
        )
        return
    child = node.child(name)
    if child is None or child.free:
        return
    strict = strict and not (root and name in STRICT_SKIPPED)
    entries: list[tuple[str, object]] = []
    if isinstance(value, dict):
        entries = [("", value)]
    elif isinstance(value, list):
        entries = [(f"[{index}]", item) for index, item in enumerate(value)]
    for suffix, entry in entries:
        if isinstance(entry, dict):
            for sub, item in cast(dict[str, object], entry).items():
                _judge(
                    child, sub, item, key=f"{key}{suffix}.{sub}", strict=strict, findings=findings
                )


def _go_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _concurrency(table: _Table) -> Concurrency | None:
    """``concurrency``: a table, or the legacy ``"soft,hard"`` string, which flyctl turns into
    type "requests" (patches.go:388-413)."""
    legacy = table.peek("concurrency")
    if isinstance(legacy, str):
        table.raw("concurrency")
        soft, _, hard = legacy.partition(",")
        if not (soft.strip().isdigit() and hard.strip().isdigit()):
            table.report(
                Finding(
                    rule="type",
                    severity="error",
                    key=table.key("concurrency"),
                    value=legacy,
                    message=f"Unknown value '{legacy}' for concurrency limits (flyctl refuses "
                    "to load it, patches.go:392)",
                )
            )
            return None
        return Concurrency(type="requests", soft_limit=int(soft), hard_limit=int(hard))
    sub = table.table("concurrency")
    if sub is None:
        return None
    return sub.finish(
        Concurrency(
            type=sub.text("type"),
            soft_limit=sub.integer("soft_limit"),
            hard_limit=sub.integer("hard_limit"),
        )
    )


def _timing(
    table: _Table, *, bare: _Unit
) -> tuple[Duration | None, Duration | None, Duration | None]:
    """interval, timeout, grace_period of a check."""
    return (
        table.duration("interval", bare=bare),
        table.duration("timeout", bare=bare),
        table.duration("grace_period", bare=bare),
    )


def _headers(table: _Table) -> tuple[tuple[str, str], ...]:
    """Check ``headers``: a table, or the legacy list of ``{name, value}`` (patches.go:507)."""
    value = table.peek("headers")
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        table.raw("headers")
        return tuple(
            (_go_string(item.get("name", "")), _go_string(item.get("value", "")))
            for item in cast(list[dict[str, object]], value)
        )
    return table.pairs("headers")


def _http_check(table: _Table, *, bare: _Unit) -> HttpCheck:
    interval, timeout, grace_period = _timing(table, bare=bare)
    return table.finish(
        HttpCheck(
            interval=interval,
            timeout=timeout,
            grace_period=grace_period,
            method=table.text("method"),
            path=table.text("path") or "",
            protocol=table.text("protocol"),
            tls_skip_verify=table.boolean("tls_skip_verify"),
            tls_server_name=table.text("tls_server_name"),
            headers=_headers(table),
        )
    )


def _tcp_check(table: _Table) -> TcpCheck:
    interval, timeout, grace_period = _timing(table, bare="ms")
    return table.finish(TcpCheck(interval=interval, timeout=timeout, grace_period=grace_period))


def _tls_options(table: _Table | None) -> TlsOptions | None:
    if table is None:
        return None
    return table.finish(
        TlsOptions(
            alpn=table.texts("alpn"),
            versions=table.texts("versions"),
            default_self_signed=table.boolean("default_self_signed"),
        )
    )


def _port(table: _Table) -> ServicePort:
    proxy_options = None
    proxy = table.table("proxy_proto_options")
    if proxy is not None:
        proxy_options = proxy.finish(ProxyProtoOptions(version=proxy.text("version") or "v1"))
    return table.finish(
        ServicePort(
            port=table.port("port") or 0,
            start_port=table.port("start_port"),
            end_port=table.port("end_port"),
            handlers=table.texts("handlers"),
            force_https=table.boolean("force_https"),
            tls_options=_tls_options(table.table("tls_options")),
            proxy_proto_options=proxy_options,
        )
    )


def _service(table: _Table, *, websocket: bool) -> Service:
    cls = WebSocketService if websocket else Service
    return table.finish(
        cls(
            protocol=table.text("protocol"),
            internal_port=table.port("internal_port") or 0,
            ports=tuple(_port(port) for port in table.tables("ports")),
            auto_stop_machines=_auto_stop(table),
            auto_start_machines=table.boolean("auto_start_machines"),
            min_machines_running=table.integer("min_machines_running"),
            concurrency=_concurrency(table),
            tcp_checks=tuple(_tcp_check(check) for check in table.tables("tcp_checks")),
            http_checks=tuple(
                _http_check(check, bare="ms") for check in table.tables("http_checks")
            ),
            processes=table.texts("processes"),
        )
    )


def _auto_stop(table: _Table) -> str | None:
    """``auto_stop_machines``: a legacy boolean is read as "stop"/"off" and reported."""
    if isinstance(table.peek("auto_stop_machines"), bool):
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
    return table.finish(
        HttpService(
            internal_port=table.port("internal_port") or 0,
            force_https=table.boolean("force_https"),
            auto_stop_machines=_auto_stop(table),
            auto_start_machines=table.boolean("auto_start_machines"),
            min_machines_running=table.integer("min_machines_running"),
            concurrency=_concurrency(table),
            tls_options=_tls_options(table.table("tls_options")),
            checks=tuple(_http_check(check, bare="ns") for check in table.tables("checks")),
            processes=table.texts("processes"),
        )
    )


def _processes(root: _Table) -> tuple[tuple[str, str], ...]:
    """``[processes]``: a table of commands, or the legacy list of ``{name, command}``
    (patches.go:118-156)."""
    value = root.peek("processes")
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        root.raw("processes")
        return tuple(
            (_go_string(item["name"]), _go_string(item.get("command", "")))
            for item in cast(list[dict[str, object]], value)
            if "name" in item
        )
    return root.pairs("processes")


def _websocket_port(env: tuple[tuple[str, str], ...]) -> int | None:
    value = dict(env).get("WS_PORT", "").strip()
    return int(value) if value.isdigit() else None


def _vm(table: _Table) -> Vm:
    memory = table.peek("memory")
    if isinstance(memory, int | float) and not isinstance(memory, bool):
        table.raw("memory")
        text: str | None = _go_string(memory)  # flyctl's castToString: a bare number is MB
    else:
        text = table.text("memory")
    return table.finish(
        Vm(
            size=table.text("size"),
            memory=text,
            cpus=table.integer("cpus"),
            cpu_kind=table.text("cpu_kind"),
            processes=table.texts("processes"),
        )
    )


def _mount(table: _Table) -> Mount:
    size = table.peek("initial_size")
    if isinstance(size, int) and not isinstance(size, bool):
        table.raw("initial_size")
        initial_size: str | None = str(size)
    else:
        initial_size = table.text("initial_size")
    return table.finish(
        Mount(
            source=table.text("source") or "",
            destination=table.text("destination") or "",
            initial_size=initial_size,
            processes=table.texts("processes"),
        )
    )


def _build(table: _Table | None) -> Build | None:
    if table is None:
        return None
    target = table.text("build-target")
    if target is None:
        target = table.text("build_target")
    return table.finish(
        Build(
            dockerfile=table.text("dockerfile"),
            ignorefile=table.text("ignorefile"),
            build_target=target,
            image=table.text("image"),
            compression=table.text("compression"),
        )
    )


def _deploy(table: _Table | None) -> Deploy:
    if table is None:
        return Deploy()
    return table.finish(
        Deploy(
            strategy=table.text("strategy") or "rolling",
            max_unavailable=table.number("max_unavailable"),
            wait_timeout=table.duration("wait_timeout", bare="ns") or Deploy().wait_timeout,
            release_command=table.text("release_command"),
            release_command_timeout=table.duration("release_command_timeout", bare="ns"),
        )
    )


def _top_check(name: str, table: _Table) -> TopLevelCheck:
    interval, timeout, grace_period = _timing(table, bare="ms")
    return table.finish(
        TopLevelCheck(
            name=name,
            type=table.text("type"),
            port=table.port("port"),
            path=table.text("path"),
            method=table.text("method"),
            interval=interval,
            timeout=timeout,
            grace_period=grace_period,
            protocol=table.text("protocol"),
            tls_skip_verify=table.boolean("tls_skip_verify"),
            tls_server_name=table.text("tls_server_name"),
            headers=_headers(table),
            processes=table.texts("processes"),
        )
    )


def _metrics(table: _Table) -> Metrics:
    return table.finish(
        Metrics(
            port=table.port("port") or 0,
            path=table.text("path") or "",
            processes=table.texts("processes"),
        )
    )


def _restart(table: _Table) -> Restart:
    return table.finish(
        Restart(
            policy=table.text("policy") or "",
            retries=table.integer("retries"),
            processes=table.texts("processes"),
        )
    )


def parse_fly_toml(text: str) -> ParseResult:
    """Parse fly.toml text; raise ConfigError (key ``fly.toml``) on a TOML syntax error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key="fly.toml", value="<toml>", reason=f"invalid TOML: {exc}") from None
    findings: list[Finding] = []
    root = _Table(data, path="", findings=findings)
    env = root.pairs("env")
    websocket_port = _websocket_port(env)
    services: list[Service] = []
    for table in root.tables("services"):
        is_websocket = (
            websocket_port is not None
            and not any(isinstance(s, WebSocketService) for s in services)
            and table.peek("internal_port") in (websocket_port, str(websocket_port))
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
        console_command=root.text("console_command"),
        build=_build(root.table("build")),
        deploy=_deploy(root.table("deploy")),
        env=env,
        processes=_processes(root),
        http_service=_http_service(root.table("http_service")),
        services=tuple(services),
        vms=tuple(_vm(table) for table in root.tables("vm")),
        mounts=tuple(_mount(table) for table in root.tables("mounts")),
        metrics=tuple(_metrics(table) for table in root.tables("metrics")),
        restarts=tuple(_restart(table) for table in root.tables("restart")),
        checks=tuple(_top_check(name, table) for name, table in root.named_tables("checks")),
        machines=machines,
        broker=broker,
    )
    config = root.finish(config)
    return ParseResult(config=config, findings=tuple(findings))
