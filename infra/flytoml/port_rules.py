"""Rules across services: public ports that clash, metrics on a port a public service exposes.

Platform rules flyctl does not check (flyctl issue #2521): a clash is an error when the
WebSocket service is one side, else a warning (flyctl accepts the file).
"""

from __future__ import annotations

from collections.abc import Iterator

from infra.flytoml.findings import Finding
from infra.flytoml.model import FlyConfig

__all__ = ["metrics_ports", "port_clashes"]


def _error(rule: str, key: str, value: object, message: str) -> Finding:
    return Finding(rule=rule, severity="error", key=key, value=value, message=message)


def _warning(rule: str, key: str, value: object, message: str) -> Finding:
    return Finding(rule=rule, severity="warning", key=key, value=value, message=message)


def port_clashes(config: FlyConfig) -> Iterator[Finding]:
    """Public ports are unique per protocol (a TCP and a UDP service may share 5000, docs:
    networking/udp-and-tcp); ``[http_service]`` takes TCP 80 and 443. A clash is an error when
    the WebSocket service is one side (its port would not reach it), else a warning (flyctl
    accepts it and the proxy picks one)."""
    public: dict[tuple[str, int], tuple[str, bool]] = {}
    ws_internal: int | None = None
    if config.http_service is not None:
        public = {("tcp", 80): ("http_service", False), ("tcp", 443): ("http_service", False)}
    websocket_index = config.websocket_index
    if websocket_index is not None:
        ws_internal = config.services[websocket_index].internal_port
        if config.http_service is not None and config.http_service.internal_port == ws_internal:
            yield _error(
                "duplicate-internal-port",
                f"services[{websocket_index}].internal_port",
                ws_internal,
                "already used by http_service.internal_port",
            )
    for index, service in enumerate(config.services):
        websocket = index == websocket_index
        if not websocket and service.internal_port == ws_internal:
            yield _error(
                "duplicate-internal-port",
                f"services[{index}].internal_port",
                service.internal_port,
                f"already the websocket service's internal port (services[{websocket_index}])",
            )
        protocol = service.protocol or "tcp"
        for position, port in enumerate(service.ports):
            port_key = f"services[{index}].ports[{position}].port"
            for number in port.numbers:
                owner, owner_is_ws = public.get((protocol, number), ("", False))
                make = _error if websocket or owner_is_ws else _warning
                if owner == "http_service":
                    yield make(
                        "http-service-port-clash",
                        port_key,
                        number,
                        "[http_service] already takes public ports 80 and 443; use another port",
                    )
                elif owner:
                    yield make(
                        "duplicate-public-port", port_key, number, f"already used by {owner}"
                    )
                public.setdefault((protocol, number), (port_key, websocket))


def metrics_ports(config: FlyConfig) -> Iterator[Finding]:
    """``metrics-public-port`` (warning): Fly scrapes ``[[metrics]]`` inside the machine, so a
    port a public service also forwards to serves the metrics to anyone (issue 12)."""
    exposed: dict[int, str] = {}
    if config.http_service is not None:
        exposed[config.http_service.internal_port] = "http_service.internal_port"
    for index, service in enumerate(config.services):
        if service.ports:
            exposed.setdefault(service.internal_port, f"services[{index}].internal_port")
    for index, metrics in enumerate(config.metrics):
        if not 1 <= metrics.port <= 65535:
            yield _error(
                "port-range", f"metrics[{index}].port", metrics.port, "must be between 1 and 65535"
            )
        elif metrics.port in exposed:
            yield _warning(
                "metrics-public-port",
                f"metrics[{index}].port",
                metrics.port,
                f"{exposed[metrics.port]} exposes this port publicly, so anyone can read the "
                "metrics; serve them on an internal port no service forwards to",
            )
