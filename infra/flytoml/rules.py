"""The rule set: every rule turns a model into :class:`Finding` values.

One mechanism serves both callers: :meth:`FlyConfig.check` raises the first *error* finding as
a :class:`ConfigError` (stack settings, rendering, ``pulumi preview``), and ``lint`` prints all
findings. Rules run in a fixed order, WebSocket service rules first, so the first error is the
most telling one (for ``handlers = ["tls", "http"]`` it is the PU02 explanation).

Three kinds of rule: Fly's own (``infra.flytoml.fly_rules``: what flyctl v0.4.87 refuses or
warns about, with its severity); the platform rules flyctl does not check but the docs and
FLY.md state (handlers, TLS versions, PROXY protocol, concurrency; flyctl issue #2521), here;
and the project's WebSocket rules (:data:`WEBSOCKET_RULES`), which judge only the service a
file marks as the WebSocket (``[env] WS_PORT``, see ``infra.flytoml.model``), plus
``pu02-prone`` for the incident's shape in any file.

Every finding names a dotted fly.toml key (``services[0].ports[0].handlers``, ``env.FLY_X``,
``checks.web.interval``); ``deployment.machines`` and ``deployment.broker`` name the two facts
fly.toml has no key for (see :class:`FlyConfig`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from infra.errors import format_value
from infra.flytoml.findings import Finding, raise_first
from infra.flytoml.fly_rules import fly_findings
from infra.flytoml.model import (
    AUTO_STOP_VALUES,
    EDGE_CONNECTION_CAP,
    HANDLERS,
    KILL_SIGNALS,
    TLS_VERSIONS,
    Concurrency,
    Duration,
    FlyConfig,
    Service,
    ServicePort,
    WebSocketService,
)
from infra.flytoml.port_rules import metrics_ports, port_clashes

__all__ = [
    "PU02_PRONE_REASON",
    "PU02_REASON",
    "WEBSOCKET_RULES",
    "Finding",
    "check_config",
    "check_service",
    "config_findings",
    "service_findings",
]

_PU02_KNOWN: Final = (
    'on a WebSocket port other than 80/443 behind handlers ["tls", "http"], handshakes failed '
    "with [PU02] could not complete HTTP request to instance, and raw TCP with TLS ended at the "
    'edge (protocol "tcp", handlers ["tls"]) fixed it (docs/WEBSOCKET_HANDSHAKE_FIX.md; Fly\'s '
    "http handler does support WebSockets in general)"
)
PU02_REASON: Final = f'the websocket port must not use the "http" handler: {_PU02_KNOWN}'
PU02_PRONE_REASON: Final = (
    f"the incident's shape, if this port carries WebSockets: {_PU02_KNOWN}; declare [env] "
    "WS_PORT to have the WebSocket service checked"
)
WEBSOCKET_RULES: Final = frozenset(
    {
        "websocket-missing",
        "ws-http-handler",
        "ws-alpn-h2",
        "ws-alpn-missing",
        "ws-protocol",
        "ws-no-port",
        "ws-concurrency-type",
        "ws-concurrency-default",
        "ws-edge-cap",
        "pu02-prone",
    }
)
"""The project's WebSocket rules: ``lint --strict`` fails on their warnings too."""
_KILL_TIMEOUT_MAX: Final = 300.0
_FLY_WRITTEN_ENV: Final = frozenset({"FLY_RESTORED_FROM"})
"""FLY_ names Fly itself writes into fly.toml (``fly volumes`` restores)."""


def _error(rule: str, key: str, value: object, message: str) -> Finding:
    return Finding(rule=rule, severity="error", key=key, value=value, message=message)


def _warning(rule: str, key: str, value: object, message: str) -> Finding:
    return Finding(rule=rule, severity="warning", key=key, value=value, message=message)


def _one_of(rule: str, key: str, value: str | None, allowed: tuple[str, ...]) -> Iterator[Finding]:
    if value is not None and value not in allowed:
        yield _error(rule, key, value, f"must be one of {format_value(allowed)}")


def _duration_range(
    key: str, value: Duration | None, *, low: float | None, high: float | None
) -> Iterator[Finding]:
    if value is None:
        return
    if low is not None and value.seconds < low:
        yield _error("duration-range", key, value, f"must be at least {low:g}s")
    elif high is not None and value.seconds > high:
        yield _error("duration-range", key, value, f"must be at most {high:g}s")


def _concurrency(key: str, concurrency: Concurrency) -> Iterator[Finding]:
    yield from _one_of(
        "concurrency-type", f"{key}.type", concurrency.type, ("connections", "requests")
    )
    soft, hard = concurrency.soft_limit, concurrency.hard_limit
    if soft is not None and hard is not None and soft > hard:
        yield _error("concurrency-limits", f"{key}.soft_limit", soft, f"is above hard_limit {hard}")


def _port(prefix: str, port: ServicePort, *, websocket: bool) -> Iterator[Finding]:
    numbers = port.numbers
    if not numbers or not (numbers[0] >= 1 and numbers[-1] <= 65535):
        key = f"{prefix}.port" if port.port or port.start_port is None else f"{prefix}.start_port"
        yield _error(
            "port-range",
            key,
            port.port or [port.start_port, port.end_port],
            "must be a port (or start_port..end_port) between 1 and 65535",
        )
    for handler in port.handlers:
        if handler == "edge_http":
            yield _error(
                "unknown-handler",
                f"{prefix}.handlers",
                port.handlers,
                '"edge_http" is obsolete; use "http"',
            )
        elif handler not in HANDLERS:
            yield _error(
                "unknown-handler",
                f"{prefix}.handlers",
                port.handlers,
                f"unknown handler {format_value(handler)}; allowed: "
                f"{format_value(sorted(HANDLERS))} or none",
            )
    if websocket and "http" in port.handlers:
        yield _error("ws-http-handler", f"{prefix}.handlers", port.handlers, PU02_REASON)
    elif (
        not websocket
        and {"tls", "http"} <= set(port.handlers)
        and any(number not in (80, 443) for number in numbers)
    ):
        yield _warning("pu02-prone", f"{prefix}.handlers", port.handlers, PU02_PRONE_REASON)
    if port.force_https and "http" not in port.handlers:
        yield _error(
            "force-https-without-http",
            f"{prefix}.force_https",
            port.force_https,
            'force_https only works on a port with the "http" handler',
        )
    if port.proxy_proto_options is not None:
        if "proxy_proto" not in port.handlers:
            yield _error(
                "proxy-proto-options-without-handler",
                f"{prefix}.proxy_proto_options",
                port.proxy_proto_options.version,
                'proxy_proto_options needs the "proxy_proto" handler on the same port',
            )
        yield from _one_of(
            "proxy-proto-version",
            f"{prefix}.proxy_proto_options.version",
            port.proxy_proto_options.version,
            ("v1", "v2"),
        )
    tls = port.tls_options
    if tls is not None:
        unknown = [version for version in tls.versions if version not in TLS_VERSIONS]
        if unknown:
            yield _error(
                "tls-version",
                f"{prefix}.tls_options.versions",
                tls.versions,
                f"only {format_value(TLS_VERSIONS)} are allowed",
            )
    if websocket and tls is not None and "h2" in tls.alpn:
        yield _error(
            "ws-alpn-h2",
            f"{prefix}.tls_options.alpn",
            tls.alpn,
            "the edge may negotiate h2 and the websocket backend would receive an HTTP/2 "
            'preface; pin alpn = ["http/1.1"]',
        )
    if websocket and "tls" in port.handlers and (tls is None or not tls.alpn):
        yield _warning(
            "ws-alpn-missing",
            f"{prefix}.tls_options.alpn",
            [],
            'pin tls_options = { alpn = ["http/1.1"] } so the edge never negotiates h2 for the '
            "websocket backend",
        )


def service_findings(service: Service, *, index: int) -> list[Finding]:
    """The findings of one ``[[services]]`` entry at ``services[index]`` on its own."""
    return list(_service(service, index=index))


def _service(service: Service, *, index: int) -> Iterator[Finding]:
    prefix = f"services[{index}]"
    websocket = isinstance(service, WebSocketService)
    for position, port in enumerate(service.ports):
        yield from _port(f"{prefix}.ports[{position}]", port, websocket=websocket)
    if websocket:
        if not service.ports:
            yield _error("ws-no-port", f"{prefix}.ports", [], "the websocket service needs a port")
        if service.protocol != "tcp":
            yield _error(
                "ws-protocol",
                f"{prefix}.protocol",
                service.protocol,
                'the websocket service must use protocol "tcp" (TLS ends at the edge, the '
                "stream passes through raw)",
            )
    elif not service.protocol:
        yield _warning(
            "service-protocol",
            f"{prefix}.protocol",
            service.protocol,
            'no protocol: write "tcp" or "udp" (flyctl passes it on empty)',
        )
    elif service.protocol not in ("tcp", "udp"):
        yield _error(
            "service-protocol", f"{prefix}.protocol", service.protocol, 'must be "tcp" or "udp"'
        )
    concurrency = service.concurrency
    if websocket and concurrency is not None and concurrency.type == "requests":
        yield _error(
            "ws-concurrency-type",
            f"{prefix}.concurrency.type",
            concurrency.type,
            'a websocket is one long connection: count "connections", not HTTP requests',
        )
    if concurrency is not None:
        yield from _concurrency(f"{prefix}.concurrency", concurrency)
    if websocket and (concurrency is None or concurrency.soft_limit is None):
        yield _warning(
            "ws-concurrency-default",
            f"{prefix}.concurrency.soft_limit",
            None,
            "the default soft limit on Fly is 20 connections, far too low for websockets; set "
            'type = "connections" with soft_limit and hard_limit',
        )
    if (
        websocket
        and concurrency is not None
        and concurrency.hard_limit is not None
        and concurrency.hard_limit > EDGE_CONNECTION_CAP
    ):
        yield _warning(
            "ws-edge-cap",
            f"{prefix}.concurrency.hard_limit",
            concurrency.hard_limit,
            f"above the {EDGE_CONNECTION_CAP} concurrent connections Fly accepts per edge per app",
        )
    yield from _one_of(
        "auto-stop-machines",
        f"{prefix}.auto_stop_machines",
        service.auto_stop_machines,
        AUTO_STOP_VALUES,
    )


def _http_service(config: FlyConfig) -> Iterator[Finding]:
    http = config.http_service
    if http is None:
        return
    yield from _one_of(
        "auto-stop-machines",
        "http_service.auto_stop_machines",
        http.auto_stop_machines,
        AUTO_STOP_VALUES,
    )
    if http.concurrency is not None:
        yield from _concurrency("http_service.concurrency", http.concurrency)


def _has_health_check(config: FlyConfig) -> bool:
    if config.checks or (config.http_service is not None and config.http_service.checks):
        return True
    return any(service.tcp_checks or service.http_checks for service in config.services)


def _top_level(config: FlyConfig) -> Iterator[Finding]:
    if config.machines is not None and config.machines > 1 and config.broker == "memory":
        yield _error(
            "machines-without-broker",
            "deployment.machines",
            config.machines,
            "with the in-memory broker, rooms and presence would split between machines (Fly "
            "deploys two by default); declare a shared Redis (realtime-fly:broker: redis plus the "
            "secret realtime-fly:redisUrl, set with `pulumi config set --secret`) or run one "
            "machine",
        )
    if config.machines is not None and config.machines < 1:
        yield _error("machines-range", "deployment.machines", config.machines, "must be at least 1")
    yield from _one_of("kill-signal", "kill_signal", config.kill_signal, KILL_SIGNALS)
    yield from _duration_range(
        "kill_timeout", config.kill_timeout, low=None, high=_KILL_TIMEOUT_MAX
    )
    deploy = config.deploy
    if deploy.strategy == "bluegreen" and not _has_health_check(config):
        yield _error(
            "bluegreen-without-check",
            "deploy.strategy",
            deploy.strategy,
            "bluegreen deploys need a health check to decide when to switch over",
        )
    if deploy.max_unavailable is not None and deploy.max_unavailable <= 0:
        yield _error(
            "deploy-max-unavailable",
            "deploy.max_unavailable",
            deploy.max_unavailable,
            "must be a fraction in (0, 1) or a machine count >= 1",
        )
    for name, _value in config.env:
        if name.upper().startswith("FLY_") and name not in _FLY_WRITTEN_ENV:
            yield _error(
                "env-fly-prefix",
                f"env.{name}",
                name,
                "names starting with FLY_ are reserved by Fly, which sets them in the machine "
                "(docs: machines/runtime-environment)",
            )


def config_findings(config: FlyConfig) -> list[Finding]:
    """Every finding for a whole config, in rule order (WebSocket service first)."""
    findings: list[Finding] = []
    websocket_index = config.websocket_index
    ws_port = dict(config.env).get("WS_PORT")
    if websocket_index is None and ws_port is not None:
        findings.append(
            _error(
                "websocket-missing",
                "services",
                [service.internal_port for service in config.services],
                f"[env] WS_PORT = {ws_port} marks this app as carrying the WebSocket, but no "
                "[[services]] entry has that internal_port",
            )
        )
    if websocket_index is not None:
        findings.extend(_service(config.services[websocket_index], index=websocket_index))
    for index, service in enumerate(config.services):
        if index != websocket_index:
            findings.extend(_service(service, index=index))
    findings.extend(_http_service(config))
    findings.extend(port_clashes(config))
    findings.extend(metrics_ports(config))
    findings.extend(_top_level(config))
    findings.extend(fly_findings(config))
    return findings


def check_config(config: FlyConfig) -> None:
    """Raise the first error finding of :func:`config_findings` as a ``ConfigError``; warnings
    do not raise."""
    raise_first(config_findings(config))


def check_service(service: Service, *, index: int) -> None:
    """Raise the first error of one ``[[services]]`` entry judged on its own, keyed
    ``services[index]`` (as the WebSocket service when it is a :class:`WebSocketService`)."""
    raise_first(service_findings(service, index=index))
