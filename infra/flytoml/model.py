"""The typed model of the fly.toml sections this project emits.

Frozen, keyword-only dataclasses; no Pulumi and no TOML library here. ``render`` turns a
:class:`FlyConfig` into text, ``parse`` turns text back into one, and the rules in
``infra.flytoml.rules`` judge it: :meth:`FlyConfig.check` raises the first error as a
:class:`ConfigError`, :meth:`FlyConfig.findings` returns every finding (what ``lint`` prints).

Field types are deliberately loose where fly.toml is (``str`` for handlers, signals, sizes):
the model must be able to hold a wrong file so that lint can say what is wrong with it.

Which ``[[services]]`` entry is the WebSocket service? The entry that is a
:class:`WebSocketService` instance. A file says so with ``[env] WS_PORT`` (the port this
project's backend listens on for WebSockets; every file the project renders sets it): ``parse``
makes the first ``[[services]]`` entry whose ``internal_port`` equals it a
:class:`WebSocketService`, and reports ``websocket-missing`` when there is none. A file without
``WS_PORT`` (any other app) has no WebSocket service: the project's WebSocket rules leave it
alone, except that the incident's shape (a port other than 80/443 behind ``["tls", "http"]``)
is reported as ``pu02-prone``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from infra.errors import ConfigError
from infra.flytoml.sections import (
    AUTO_STOP_VALUES,
    DEPLOY_STRATEGIES,
    EDGE_CONNECTION_CAP,
    HANDLERS,
    KILL_SIGNALS,
    RESTART_POLICIES,
    TLS_VERSIONS,
    VM_SIZES,
    WEBSOCKET_PORT,
    Build,
    Concurrency,
    Deploy,
    Duration,
    Extra,
    HttpCheck,
    HttpOptions,
    HttpResponseOptions,
    Metrics,
    Mount,
    ProxyProtoOptions,
    Restart,
    ServicePort,
    Static,
    TcpCheck,
    TlsOptions,
    TopLevelCheck,
    Vm,
)

__all__ = [
    "AUTO_STOP_VALUES",
    "DEPLOY_STRATEGIES",
    "EDGE_CONNECTION_CAP",
    "HANDLERS",
    "KILL_SIGNALS",
    "RESTART_POLICIES",
    "TLS_VERSIONS",
    "VM_SIZES",
    "WEBSOCKET_PORT",
    "Broker",
    "Build",
    "Concurrency",
    "ConfigError",
    "Deploy",
    "Duration",
    "Extra",
    "FlyConfig",
    "HttpCheck",
    "HttpOptions",
    "HttpResponseOptions",
    "HttpService",
    "Metrics",
    "Mount",
    "ProxyProtoOptions",
    "Restart",
    "Service",
    "ServicePort",
    "Static",
    "TcpCheck",
    "TlsOptions",
    "TopLevelCheck",
    "Vm",
    "WebSocketService",
]

Broker = Literal["memory", "redis"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """One ``[[services]]`` entry. ``protocol`` is ``None`` when the file leaves it out."""

    protocol: str | None = "tcp"
    internal_port: int
    ports: tuple[ServicePort, ...] = ()
    auto_stop_machines: str | None = None
    auto_start_machines: bool | None = None
    min_machines_running: int | None = None
    concurrency: Concurrency | None = None
    tcp_checks: tuple[TcpCheck, ...] = ()
    http_checks: tuple[HttpCheck, ...] = ()
    processes: tuple[str, ...] = ()
    extra: Extra = field(default=(), hash=False)


_WS_TLS_OPTIONS: Final = TlsOptions(alpn=("http/1.1",), versions=TLS_VERSIONS)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketService(Service):
    """The WebSocket ``[[services]]`` entry: raw TCP after TLS terminated at Fly's edge.

    The defaults are the fix for PU02: ``protocol = "tcp"``, one public port 8081 with
    ``handlers = ["tls"]`` (no ``http`` handler), ALPN pinned to ``http/1.1`` so the edge never
    negotiates h2, TLS 1.2/1.3, ``connections`` concurrency 1000/1500 (Fly's default soft
    limit of 20 is far too low for WebSockets; the hard limit stays under the 2048 per-edge
    cap) and a TCP health check. Build variants with :meth:`build`; :meth:`check` refuses any
    combination that would reintroduce the failure, and rendering checks first.
    """

    protocol: str | None = "tcp"
    internal_port: int = WEBSOCKET_PORT
    ports: tuple[ServicePort, ...] = (
        ServicePort(port=WEBSOCKET_PORT, handlers=("tls",), tls_options=_WS_TLS_OPTIONS),
    )
    concurrency: Concurrency | None = Concurrency(  # noqa: RUF009  (frozen, shared safely)
        type="connections", soft_limit=1000, hard_limit=1500
    )
    tcp_checks: tuple[TcpCheck, ...] = (TcpCheck(),)

    @classmethod
    def build(
        cls,
        *,
        port: int = WEBSOCKET_PORT,
        internal_port: int = WEBSOCKET_PORT,
        handlers: tuple[str, ...] = ("tls",),
        alpn: tuple[str, ...] = ("http/1.1",),
        tls_versions: tuple[str, ...] = TLS_VERSIONS,
        soft_limit: int = 1000,
        hard_limit: int = 1500,
        check: TcpCheck | None = None,
        proxy_proto: str | None = None,
    ) -> WebSocketService:
        """The WebSocket service from flat settings; ``proxy_proto`` ("v1"/"v2") adds the
        ``proxy_proto`` handler and its options so the app sees client addresses."""
        proxy_options = None
        if proxy_proto is not None:
            proxy_options = ProxyProtoOptions(version=proxy_proto)
            if "proxy_proto" not in handlers:
                handlers = (*handlers, "proxy_proto")
        return cls(
            internal_port=internal_port,
            ports=(
                ServicePort(
                    port=port,
                    handlers=handlers,
                    tls_options=TlsOptions(alpn=alpn, versions=tls_versions),
                    proxy_proto_options=proxy_options,
                ),
            ),
            concurrency=Concurrency(
                type="connections", soft_limit=soft_limit, hard_limit=hard_limit
            ),
            tcp_checks=(check if check is not None else TcpCheck(),),
        )

    @property
    def public_port(self) -> int:
        """The public port clients connect to (``wss://<app>.fly.dev:<public_port>/``)."""
        if not self.ports:
            raise ConfigError(
                key="services.ports", value=[], reason="the websocket service has no public port"
            )
        numbers = self.ports[0].numbers
        if not numbers:
            raise ConfigError(
                key="services.ports", value=[], reason="the websocket service has no public port"
            )
        return numbers[0]

    @property
    def proxy_proto(self) -> str | None:
        """The PROXY protocol version the first port sends, or ``None``."""
        if self.ports and self.ports[0].proxy_proto_options is not None:
            return self.ports[0].proxy_proto_options.version
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpService:
    """``[http_service]``: the HTTP API behind Fly's HTTP proxy on public ports 80 and 443."""

    internal_port: int = 8080
    force_https: bool | None = True
    auto_stop_machines: str | None = "off"
    auto_start_machines: bool | None = True
    min_machines_running: int | None = None
    concurrency: Concurrency | None = Concurrency(  # noqa: RUF009  (frozen, shared safely)
        type="requests", soft_limit=200, hard_limit=250
    )
    tls_options: TlsOptions | None = None
    http_options: HttpOptions | None = None
    checks: tuple[HttpCheck, ...] = (HttpCheck(),)
    processes: tuple[str, ...] = ()
    extra: Extra = field(default=(), hash=False)


# -- the whole file ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FlyConfig:
    """A whole fly.toml, plus two deployment facts that fly.toml has no key for.

    ``machines`` (how many machines run the app; ``None`` = not declared) and ``broker``
    (whether the instances share a Redis) are rendered as the ``# deployment:`` comment line
    and read back by ``parse``; they let the rules refuse in-memory rooms split across machines.
    ``env`` is a tuple of (name, value) pairs in file order.
    """

    app: str
    primary_region: str | None = None
    kill_signal: str | None = "SIGTERM"
    kill_timeout: Duration | None = Duration("30s")  # noqa: RUF009  (frozen)
    swap_size_mb: int | None = None
    console_command: str | None = None
    build: Build | None = None
    deploy: Deploy = Deploy()  # noqa: RUF009  (frozen)
    env: tuple[tuple[str, str], ...] = ()
    processes: tuple[tuple[str, str], ...] = ()
    http_service: HttpService | None = None
    services: tuple[Service, ...] = (WebSocketService(),)
    vms: tuple[Vm, ...] = ()
    mounts: tuple[Mount, ...] = ()
    metrics: tuple[Metrics, ...] = ()
    restarts: tuple[Restart, ...] = ()
    checks: tuple[TopLevelCheck, ...] = ()
    statics: tuple[Static, ...] = ()
    extra: Extra = field(default=(), hash=False)
    machines: int | None = None
    broker: Broker = "memory"

    @property
    def websocket_index(self) -> int | None:
        """The position of the WebSocket service in ``services``, or ``None``."""
        for index, service in enumerate(self.services):
            if isinstance(service, WebSocketService):
                return index
        return None

    @property
    def websocket(self) -> WebSocketService:
        """The WebSocket service; ``ConfigError`` naming ``services`` when there is none."""
        index = self.websocket_index
        if index is None:
            raise ConfigError(
                key="services",
                value=[service.internal_port for service in self.services],
                reason="no websocket service",
            )
        service = self.services[index]
        assert isinstance(service, WebSocketService)
        return service
