"""fly.toml text -> model, read the way flyctl v0.4.87 reads it, dropping nothing.

:func:`parse_fly_toml` applies flyctl's conversions (internal/appconfig/patches.go): ports and
internal ports written as strings, the legacy ``concurrency = "soft,hard"`` string (type
``requests``), non-string ``[env]`` values and numeric ``[[vm]] memory`` become what flyctl makes
of them, ``build_target`` is read as ``build-target``, ``[processes]`` may be the legacy list of
``{name, command}``. A bare number where a duration belongs is read as fly-go reads it and
reported (``duration-bare-integer``): seconds for ``kill_timeout`` (patches.go:60-61),
milliseconds in ``[[services]]`` checks and top-level ``[checks]`` (patches.go:484-489),
nanoseconds everywhere else, ``[[http_service.checks]]`` included (no patch touches it).

Keys the model has no field for are kept in ``extra`` and, when flyctl does not know them,
reported (``infra.flytoml.reader``); a value of the wrong type is a ``type`` error. The
WebSocket service is the ``[[services]]`` entry ``[env] WS_PORT`` marks (``infra.flytoml.model``).
Our own output round-trips exactly: ``parse_fly_toml(render_fly_toml(c)).config == c``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Final, cast

from infra.errors import ConfigError
from infra.flytoml.findings import Finding
from infra.flytoml.model import (
    Broker,
    Build,
    Concurrency,
    Deploy,
    FlyConfig,
    HttpService,
    ProxyProtoOptions,
    Service,
    ServicePort,
    TopLevelCheck,
    Vm,
    WebSocketService,
)
from infra.flytoml.parse_tables import (
    headers,
    http_check,
    http_options,
    metrics,
    mount,
    restart,
    static,
    tcp_check,
    timing,
    tls_options,
)
from infra.flytoml.reader import TableReader, go_string

__all__ = ["ParseResult", "parse_fly_toml"]

_ALIASES: Final = {
    "vm": ("compute", "computes", "vm"),
    "mounts": ("mount", "mounts"),
    "metrics": ("metric", "metrics"),
}
"""The names flyctl's patches merge into one section (patches.go:230-289); render writes the
section's own name."""
_DEPLOYMENT = re.compile(r'^# deployment: machines = (\d+), broker = "(memory|redis)"$', re.M)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseResult:
    """The model of a file plus what parsing found (unknown keys, raw-value problems)."""

    config: FlyConfig
    findings: tuple[Finding, ...]

    @property
    def unknown_keys(self) -> tuple[str, ...]:
        """Dotted keys present in the file that the model does not hold."""
        return tuple(f.key for f in self.findings if f.rule == "unknown-key")


def _concurrency(table: TableReader) -> Concurrency | None:
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
                    "to load it, patches.go:394)",
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


def _port(table: TableReader) -> ServicePort:
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
            tls_options=tls_options(table.table("tls_options")),
            http_options=http_options(table.table("http_options")),
            proxy_proto_options=proxy_options,
        )
    )


def _service(table: TableReader, *, websocket: bool) -> Service:
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
            tcp_checks=tuple(tcp_check(check) for check in table.tables("tcp_checks")),
            http_checks=tuple(
                http_check(check, bare="ms") for check in table.tables("http_checks")
            ),
            processes=table.texts("processes"),
        )
    )


def _auto_stop(table: TableReader) -> str | None:
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


def _http_service(table: TableReader | None) -> HttpService | None:
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
            tls_options=tls_options(table.table("tls_options")),
            http_options=http_options(table.table("http_options")),
            checks=tuple(http_check(check, bare="ns") for check in table.tables("checks")),
            processes=table.texts("processes"),
        )
    )


def _processes(root: TableReader) -> tuple[tuple[str, str], ...]:
    """``[processes]``: a table of commands, or the legacy list of ``{name, command}``
    (patches.go:118-156)."""
    value = root.peek("processes")
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        root.raw("processes")
        return tuple(
            (go_string(item["name"]), go_string(item.get("command", "")))
            for item in cast(list[dict[str, object]], value)
            if "name" in item
        )
    return root.pairs("processes")


def _websocket_port(env: tuple[tuple[str, str], ...]) -> int | None:
    value = dict(env).get("WS_PORT", "").strip()
    return int(value) if value.isdigit() else None


def _vm(table: TableReader) -> Vm:
    memory = table.peek("memory")
    if isinstance(memory, int | float) and not isinstance(memory, bool):
        table.raw("memory")
        text: str | None = go_string(memory)  # flyctl's castToString: a bare number is MB
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


def _build(table: TableReader | None) -> Build | None:
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


def _deploy(table: TableReader | None) -> Deploy:
    if table is None:
        return Deploy()
    return table.finish(
        Deploy(
            strategy=table.text("strategy") or "rolling",
            max_unavailable=table.number("max_unavailable"),
            wait_timeout=table.duration("wait_timeout", bare="ns") or Deploy().wait_timeout,
            release_command=table.text("release_command"),
            release_command_timeout=table.duration("release_command_timeout", bare="ns"),
            release_command_vm=_vm(vm) if (vm := table.table("release_command_vm")) else None,
        )
    )


def _top_check(name: str, table: TableReader) -> TopLevelCheck:
    interval, timeout, grace_period = timing(table, bare="ms")
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
            headers=headers(table),
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
    root = TableReader(data, path="", findings=findings)
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
    deployment = _DEPLOYMENT.search(text)  # machines and broker: fly.toml has no key for them
    machines = int(deployment.group(1)) if deployment else None
    broker = cast(Broker, deployment.group(2)) if deployment else "memory"
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
        vms=tuple(_vm(table) for name in _ALIASES["vm"] for table in root.tables(name)),
        mounts=tuple(mount(table) for name in _ALIASES["mounts"] for table in root.tables(name)),
        metrics=tuple(metrics(t) for name in _ALIASES["metrics"] for t in root.tables(name)),
        restarts=tuple(restart(table) for table in root.tables("restart")),
        checks=tuple(_top_check(name, table) for name, table in root.named_tables("checks")),
        statics=tuple(static(table) for table in root.tables("statics")),
        machines=machines,
        broker=broker,
    )
    config = root.finish(config)
    return ParseResult(config=config, findings=tuple(findings))
