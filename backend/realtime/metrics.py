"""Prometheus metrics of one server instance, in their own registry."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The instance's metrics; gauges that are cheap to compute are read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "realtime_connections", "Open authenticated WebSocket connections", registry=r
        )
        self.rooms = Gauge("realtime_rooms", "Rooms with a member on this instance", registry=r)
        self.send_queue = Gauge(
            "realtime_send_queue_bytes",
            "Bytes waiting in all connections' send buffers",
            registry=r,
        )
        self.messages_in = Counter("realtime_messages_in", "Client frames received", registry=r)
        self.messages_out = Counter(
            "realtime_messages_out", "Frames written to connections", registry=r
        )
        self.dropped = Counter(
            "realtime_dropped",
            "Frames not delivered because the recipient was closing or failed",
            registry=r,
        )
        self.rate_limited = Counter(
            "realtime_rate_limited", "Connections closed by the rate limit", registry=r
        )
        self.slow_consumers = Counter(
            "realtime_slow_consumers", "Connections closed for a full send buffer", registry=r
        )
        self.errors = Counter(
            "realtime_error_frames", "Error frames sent, by code", ["code"], registry=r
        )
        self.handshakes_refused = Counter(
            "realtime_handshakes_refused",
            "WebSocket handshakes refused, by reason",
            ["reason"],
            registry=r,
        )
        self.closes = Counter(
            "realtime_closes", "Connections closed by the server, by code", ["code"], registry=r
        )

    def watch(self, *, rooms: Callable[[], float], send_queue: Callable[[], float]) -> None:
        """Compute the room count and send queue depth at scrape time."""
        self.rooms.set_function(rooms)
        self.send_queue.set_function(send_queue)

    def render(self) -> bytes:
        return generate_latest(self.registry)
