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

import re
from dataclasses import dataclass, field
from typing import Final, Literal

from infra.errors import ConfigError
from infra.flytoml.findings import Finding, Judge, ServiceJudge, raise_first

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
    "HttpService",
    "Metrics",
    "Mount",
    "ProxyProtoOptions",
    "Restart",
    "Service",
    "ServicePort",
    "TcpCheck",
    "TlsOptions",
    "TopLevelCheck",
    "Vm",
    "WebSocketService",
    "register_rules",
]

Broker = Literal["memory", "redis"]

HANDLERS: Final = frozenset({"http", "tls", "pg_tls", "proxy_proto"})
TLS_VERSIONS: Final = ("TLSv1.2", "TLSv1.3")
KILL_SIGNALS: Final = ("SIGINT", "SIGTERM", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGSTOP")
DEPLOY_STRATEGIES: Final = ("rolling", "immediate", "canary", "bluegreen")
AUTO_STOP_VALUES: Final = ("off", "stop", "suspend")
RESTART_POLICIES: Final = ("always", "never", "on-failure")
VM_SIZES: Final = frozenset(
    [f"shared-cpu-{n}x" for n in (1, 2, 4, 6, 8)]
    + [f"performance-{n}x" for n in (1, 2, 4, 6, 8, 10, 12, 14, 16)]
    + ["a10", "l40s", "a100-40gb", "a100-80gb"]
)
"""fly-go v0.9.5's ``MachinePresets`` (machine_types.go:558-579)."""
WEBSOCKET_PORT: Final = 8081
"""The WebSocket port (internal and public) unless ``[env] WS_PORT`` says otherwise."""
EDGE_CONNECTION_CAP: Final = 2048
"""Fly's limit of concurrent connections per edge per app."""

Extra = tuple[tuple[str, object], ...]
"""Keys of a table that the model has no field for, in file order, kept as read so that
rendering writes them back (flyctl knows most of them; lint reports the ones it does not)."""


_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


@dataclass(frozen=True, slots=True)
class Duration:
    """A Go duration string (``"15s"``, ``"10m0s"``); always rendered as a string.

    ``text`` keeps the form it was written in, so rendering reproduces it exactly;
    ``seconds`` is its value. A bare number is not a duration (fly-go would read an integer
    as nanoseconds): ``Duration("15")`` raises ``ValueError``.
    """

    text: str

    def __post_init__(self) -> None:
        if self.text != "0" and not _DURATION.fullmatch(self.text):
            raise ValueError(f'not a duration like "15s" or "10m0s": {self.text!r}')

    @property
    def seconds(self) -> float:
        """The duration in seconds."""
        return sum(
            float(number) * _UNIT_SECONDS[unit]
            for number, unit in _DURATION_PART.findall(self.text)
        )

    @classmethod
    def of_seconds(cls, seconds: int) -> Duration:
        """A duration of whole seconds, written ``"<n>s"``."""
        return cls(f"{seconds}s")

    def __str__(self) -> str:
        return self.text


# -- [build], [deploy], [[vm]], [[metrics]], [[restart]] ---------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Build:
    """``[build]``: how flyctl builds the image (the build context is chosen by the caller)."""

    dockerfile: str | None = "Dockerfile"
    ignorefile: str | None = None
    build_target: str | None = None
    """Rendered ``build-target``, flyctl's key (``build_target`` is an alias, patches.go:172)."""
    image: str | None = None
    compression: str | None = None
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deploy:
    """``[deploy]``: the release strategy and how long flyctl waits for healthy machines."""

    strategy: str = "rolling"
    max_unavailable: float | None = None
    wait_timeout: Duration = Duration("5m0s")
    release_command: str | None = None
    release_command_timeout: Duration | None = None
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Vm:
    """One ``[[vm]]`` entry: a size preset and/or explicit memory (``"512mb"``) and cpus."""

    size: str | None = "shared-cpu-1x"
    memory: str | None = "512mb"
    cpus: int | None = None
    cpu_kind: str | None = None
    processes: tuple[str, ...] = ()
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """One ``[[metrics]]`` entry: where Fly scrapes Prometheus metrics inside the machine."""

    port: int = 9091
    """An internal port no service forwards to (issue 12: ``metrics-public-port``)."""
    path: str = "/metrics"
    processes: tuple[str, ...] = ()
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart:
    """One ``[[restart]]`` entry: the machine restart policy."""

    policy: str = "on-failure"
    retries: int | None = None
    processes: tuple[str, ...] = ()
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One ``[[mounts]]`` entry (``[mounts]`` is the same with one entry): a volume."""

    source: str
    destination: str
    initial_size: str | None = None
    processes: tuple[str, ...] = ()
    extra: Extra = field(default=(), hash=False)


# -- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpCheck:
    """``[[services.tcp_checks]]``: the machine accepts a TCP connection on the service port."""

    interval: Duration | None = Duration("15s")
    timeout: Duration | None = Duration("2s")
    grace_period: Duration | None = Duration("10s")
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpCheck:
    """``[[http_service.checks]]`` or ``[[services.http_checks]]``: GET ``path`` answers 2xx."""

    interval: Duration | None = Duration("15s")
    timeout: Duration | None = Duration("2s")
    grace_period: Duration | None = Duration("10s")
    method: str | None = "GET"
    path: str = "/healthz"
    protocol: str | None = None
    tls_skip_verify: bool | None = None
    tls_server_name: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopLevelCheck:
    """One top-level ``[checks.<name>]`` machine check (used by deploys, not by the proxy)."""

    name: str
    type: str | None = "http"
    port: int | None = 8080
    path: str | None = "/healthz"
    method: str | None = None
    interval: Duration | None = Duration("15s")
    timeout: Duration | None = Duration("2s")
    grace_period: Duration | None = None
    protocol: str | None = None
    tls_skip_verify: bool | None = None
    tls_server_name: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    processes: tuple[str, ...] = ()
    extra: Extra = field(default=(), hash=False)


# -- services ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Concurrency:
    """``concurrency``: what the proxy counts (``connections`` / ``requests``) and the limits."""

    type: str | None = "connections"
    soft_limit: int | None = None
    hard_limit: int | None = None
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsOptions:
    """``tls_options`` of a port: the ALPN protocols the edge offers and the TLS versions."""

    alpn: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    default_self_signed: bool | None = None
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyProtoOptions:
    """``proxy_proto_options``: the PROXY protocol version (needs the ``proxy_proto`` handler)."""

    version: str = "v1"
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    """One ``[[services.ports]]`` entry: a public port (or the range ``start_port`` to
    ``end_port``) and the edge handlers in front of it."""

    port: int = 0
    """The public port; 0 when the entry opens a range or names no port (not rendered)."""
    start_port: int | None = None
    end_port: int | None = None
    handlers: tuple[str, ...] = ()
    force_https: bool | None = None
    tls_options: TlsOptions | None = None
    proxy_proto_options: ProxyProtoOptions | None = None
    extra: Extra = field(default=(), hash=False)

    @property
    def numbers(self) -> range:
        """Every public port this entry opens (empty when it names none)."""
        if self.port:
            return range(self.port, self.port + 1)
        if self.start_port is not None and self.end_port is not None:
            return range(self.start_port, self.end_port + 1)
        return range(0)


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

    def findings(self, *, index: int) -> list[Finding]:
        """The service rules' findings on this entry on its own, keyed ``services[index]``
        (judged as the WebSocket service when it is a :class:`WebSocketService`)."""
        return _rules().service(self, index)

    def check(self, *, index: int) -> None:
        """Raise the first error of :meth:`findings` as a ``ConfigError``."""
        raise_first(self.findings(index=index))


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
    concurrency: Concurrency | None = Concurrency(
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
    concurrency: Concurrency | None = Concurrency(type="requests", soft_limit=200, hard_limit=250)
    tls_options: TlsOptions | None = None
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
    kill_timeout: Duration | None = Duration("30s")
    swap_size_mb: int | None = None
    console_command: str | None = None
    build: Build | None = None
    deploy: Deploy = Deploy()
    env: tuple[tuple[str, str], ...] = ()
    processes: tuple[tuple[str, str], ...] = ()
    http_service: HttpService | None = None
    services: tuple[Service, ...] = (WebSocketService(),)
    vms: tuple[Vm, ...] = ()
    mounts: tuple[Mount, ...] = ()
    metrics: tuple[Metrics, ...] = ()
    restarts: tuple[Restart, ...] = ()
    checks: tuple[TopLevelCheck, ...] = ()
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

    def findings(self) -> list[Finding]:
        """Every finding of every rule, errors and warnings, in rule order."""
        return _rules().config(self)

    def check(self) -> None:
        """Raise the first error finding as a ``ConfigError``; warnings do not raise."""
        raise_first(self.findings())


# -- the rules, registered by ``infra.flytoml.rules`` (which imports this module, not the reverse)


@dataclass(frozen=True, slots=True)
class _Rules:
    config: Judge
    service: ServiceJudge


_REGISTERED: list[_Rules] = []


def register_rules(*, config: Judge, service: ServiceJudge) -> None:
    """Install the rule set that ``check()``/``findings()`` apply (called once by ``rules``;
    ``infra/flytoml/__init__.py`` imports ``rules`` so it is always installed)."""
    _REGISTERED[:] = [_Rules(config=config, service=service)]


def _rules() -> _Rules:
    if not _REGISTERED:
        raise RuntimeError("infra.flytoml.rules is not loaded")
    return _REGISTERED[0]
