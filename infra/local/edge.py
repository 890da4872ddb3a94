"""The local TLS edge: an haproxy configuration rendered from the services of the fly.toml model.

Fly's proxy is replaced on a developer machine by haproxy doing what each ``[[services.ports]]``
entry asks, so the local deployment exercises the same service definitions as production:

- a port whose handlers include ``tls`` terminates TLS with the development certificate, with
  the ALPN list of its ``tls_options`` (``http/1.1`` for the WebSocket port) and its TLS versions;
- a port whose handlers include ``http`` is proxied in ``mode http`` (``force_https`` redirects
  to the service's TLS port); any other port is a raw ``mode tcp`` pass-through;
- ``proxy_proto`` makes haproxy send a PROXY protocol header (``proxy_proto_options.version``);
- the service's ``http_checks`` (else its ``tcp_checks``) become haproxy health checks, with the
  shortest interval and timeout among them;
- every service balances over all backend instances (two locally, like ``fly deploy --ha``).

``[http_service]`` is expanded the way Fly expands it: one tcp service on public ports 80
(``["http"]``) and 443 (``["tls", "http"]``). Public ports are privileged or clash with the
backends' own ports, so the edge listens on :func:`edge_port`: the stack's ``localPortBase``
(default 10000) plus the public port, plus 8000 more for a port below 1024 (80 -> 18080,
443 -> 18443, 8081 -> 18081 by default).

Pure functions only: nothing here touches the file system or runs haproxy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infra.flytoml.model import Duration, FlyConfig, HttpCheck, Service, ServicePort, TcpCheck

__all__ = [
    "PRIVILEGED_PORT_SHIFT",
    "EdgeError",
    "Instance",
    "edge_port",
    "fly_services",
    "render_haproxy",
]

PRIVILEGED_PORT_SHIFT = 8000
"""Added, on top of the port base, to public ports below 1024 (443 -> base + 8443)."""
_HTTP_ALPN_DEFAULT = ("h2", "http/1.1")
_TUNNEL_TIMEOUT = "1h"


class EdgeError(ValueError):
    """The services cannot be served by the local edge; the message names the port."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """One local backend process: its name and where each internal port listens."""

    name: str
    """Server name in haproxy and in the supervisor (``app-1``)."""
    ports: Mapping[int, int]
    """Internal port of the service (as in fly.toml) -> local port of this instance."""
    host: str = "127.0.0.1"


def edge_port(public_port: int, *, base: int) -> int:
    """The unprivileged local port standing in for a public port: ``base + public_port``, plus
    :data:`PRIVILEGED_PORT_SHIFT` below 1024 (base 10000: 443 -> 18443, 8081 -> 18081)."""
    if not 0 < public_port < 65536:
        raise EdgeError(f"public port must be 1-65535, got {public_port}")
    port = base + public_port + (PRIVILEGED_PORT_SHIFT if public_port < 1024 else 0)
    if port > 65535:
        raise EdgeError(f"public port {public_port} has no local edge port ({port} > 65535)")
    return port


def fly_services(config: FlyConfig) -> tuple[Service, ...]:
    """The services Fly's proxy serves: ``[http_service]`` expanded, then ``[[services]]``."""
    expanded: list[Service] = []
    http = config.http_service
    if http is not None:
        expanded.append(
            Service(
                protocol="tcp",
                internal_port=http.internal_port,
                ports=(
                    ServicePort(port=80, handlers=("http",), force_https=http.force_https),
                    ServicePort(port=443, handlers=("tls", "http")),
                ),
                concurrency=http.concurrency,
                http_checks=http.checks,
            )
        )
    expanded.extend(config.services)
    return tuple(expanded)


def _seconds(duration: Duration | None, default: float) -> float:
    return default if duration is None else duration.seconds


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _mode(port: ServicePort) -> str:
    return "http" if "http" in port.handlers else "tcp"


def _bind_options(port: ServicePort, certificate: str) -> str:
    if "tls" not in port.handlers:
        return ""
    options = port.tls_options
    alpn = options.alpn if options is not None and options.alpn else ()
    if not alpn and _mode(port) == "http":
        alpn = _HTTP_ALPN_DEFAULT
    parts = [f"ssl crt {certificate}"]
    if alpn:
        parts.append("alpn " + ",".join(alpn))
    versions = sorted(options.versions) if options is not None and options.versions else []
    if versions:
        parts.append(f"ssl-min-ver {versions[0]} ssl-max-ver {versions[-1]}")
    return " " + " ".join(parts)


def _proxy_protocol(port: ServicePort) -> str:
    if "proxy_proto" not in port.handlers:
        return ""
    version = port.proxy_proto_options.version if port.proxy_proto_options else "v1"
    return " send-proxy-v2" if version == "v2" else " send-proxy"


def _check_lines(service: Service) -> list[str]:
    checks: Sequence[HttpCheck | TcpCheck] = service.http_checks or service.tcp_checks
    if not checks:
        return []
    interval = min(_seconds(check.interval, 15.0) for check in checks)
    timeout = min(_seconds(check.timeout, 2.0) for check in checks)
    lines = [f"    timeout check {_ms(timeout)}"]
    if service.http_checks:
        first = service.http_checks[0]
        lines += [
            "    option httpchk",
            f"    http-check send meth {first.method or 'GET'} uri {first.path} ver HTTP/1.1"
            " hdr Host localhost",
            "    http-check expect rstatus ^2",
        ]
    lines.append(f"    default-server inter {_ms(interval)} fall 3 rise 2")
    return lines


def _tls_port_of(service: Service) -> int | None:
    for port in service.ports:
        if "tls" in port.handlers:
            return port.port
    return None


def render_haproxy(
    config: FlyConfig,
    *,
    instances: Sequence[Instance],
    certificate: str,
    port_base: int,
    bind: str = "127.0.0.1",
) -> str:
    """The haproxy configuration serving ``config``'s services on the local edge ports.

    ``certificate`` is the PEM file (certificate, chain, key) for TLS ports; ``instances`` are the
    backend processes, each listening on every service's internal port under its own number;
    ``port_base`` is the stack's ``localPortBase`` (see :func:`edge_port`).
    """
    if not instances:
        raise EdgeError("the edge needs at least one backend instance, got none")
    lines = [
        "# Generated by infra.local.edge from the fly.toml model: do not edit.",
        "global",
        "    log stdout format raw local0 info",
        "    maxconn 4096",
        "",
        "defaults",
        "    log global",
        "    option dontlognull",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout client-fin 5s",
        f"    timeout tunnel {_TUNNEL_TIMEOUT}",
        "",
    ]
    seen_ports: dict[int, int] = {}
    for index, service in enumerate(fly_services(config)):
        modes = sorted({_mode(port) for port in service.ports})
        for port in service.ports:
            if port.port in seen_ports:
                raise EdgeError(
                    f"public port {port.port} is used by services {seen_ports[port.port]}"
                    f" and {index}"
                )
            seen_ports[port.port] = index
            mode = _mode(port)
            local = edge_port(port.port, base=port_base)
            lines += [
                f"frontend public_{port.port}",
                f"    mode {mode}",
                f"    bind {bind}:{local}{_bind_options(port, certificate)}",
            ]
            if mode == "http":
                lines += [
                    "    option forwardfor",
                    "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
                    "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
                ]
                tls_port = _tls_port_of(service)
                if port.force_https and "tls" not in port.handlers and tls_port is not None:
                    https_port = edge_port(tls_port, base=port_base)
                    lines.append(
                        "    http-request redirect prefix"
                        f" https://%[req.hdr(host),field(1,:)]:{https_port} code 301"
                    )
            lines += [f"    default_backend service_{index}_{mode}", ""]
        for mode in modes:
            tcp_options = _proxy_protocol(next(p for p in service.ports if _mode(p) == mode))
            lines += [
                f"backend service_{index}_{mode}",
                f"    mode {mode}",
                f"    balance {'leastconn' if mode == 'tcp' else 'roundrobin'}",
                *_check_lines(service),
            ]
            for instance in instances:
                if service.internal_port not in instance.ports:
                    raise EdgeError(
                        f"instance {instance.name} has no port for internal port"
                        f" {service.internal_port}"
                    )
                target = f"{instance.host}:{instance.ports[service.internal_port]}"
                check = " check" if service.http_checks or service.tcp_checks else ""
                lines.append(f"    server {instance.name} {target}{check}{tcp_options}")
            lines.append("")
    return "\n".join(lines)
