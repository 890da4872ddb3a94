"""The fly.toml model's building blocks: values, checks, ports and the smaller sections.

``infra.flytoml.model`` re-exports every name here and adds the services and the whole file;
import from there. Frozen, keyword-only dataclasses; no Pulumi and no TOML library here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

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
    "Build",
    "Concurrency",
    "Deploy",
    "Duration",
    "Extra",
    "HttpCheck",
    "HttpOptions",
    "HttpResponseOptions",
    "Metrics",
    "Mount",
    "ProxyProtoOptions",
    "Restart",
    "ServicePort",
    "Static",
    "TcpCheck",
    "TlsOptions",
    "TopLevelCheck",
    "Vm",
]

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
    release_command_vm: Vm | None = None
    """The machine size the release command runs on (flyctl's ``Compute``, config.go:117)."""
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
class HttpResponseOptions:
    """``http_options.response``: headers the edge sets on responses (a value may be a string,
    a list, or false to remove the header) and ``pristine`` (no Fly headers added)."""

    headers: tuple[tuple[str, object], ...] = ()
    pristine: bool | None = None
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOptions:
    """``http_options`` of ``[http_service]`` or a port (fly-go ``HTTPOptions``):
    ``idle_timeout`` and ``headers_read_timeout`` are whole seconds."""

    compress: bool | None = None
    h2_backend: bool | None = None
    idle_timeout: int | None = None
    headers_read_timeout: int | None = None
    response: HttpResponseOptions | None = None
    extra: Extra = field(default=(), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Static:
    """One ``[[statics]]`` entry: files the edge serves from the image (or a Tigris bucket)."""

    guest_path: str
    url_prefix: str
    tigris_bucket: str | None = None
    index_document: str | None = None
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
    http_options: HttpOptions | None = None
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
