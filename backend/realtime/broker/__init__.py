"""Brokers: the shared state behind the transport (see :mod:`realtime.broker.base`)."""

from __future__ import annotations

import importlib

from realtime.broker.base import Appended, Broker, BrokerError, Kind, OnEvent, Recovery
from realtime.broker.memory import MemoryBroker
from realtime.settings import Settings

__all__ = [
    "Appended",
    "Broker",
    "BrokerError",
    "Kind",
    "MemoryBroker",
    "OnEvent",
    "Recovery",
    "create_broker",
]


def create_broker(settings: Settings, on_event: OnEvent) -> Broker:
    """The in-memory broker when REDIS_URL is unset, else ``realtime.broker.redis``'s.

    The Redis module must define ``create(settings, on_event) -> Broker``.
    """
    if not settings.redis_url:
        return MemoryBroker(on_event, history_size=settings.history_size)
    try:
        module = importlib.import_module("realtime.broker.redis")
    except ImportError as exc:
        if exc.name != "realtime.broker.redis":
            raise
        raise BrokerError("REDIS_URL is set but the redis broker is not available") from None
    broker: Broker = module.create(settings, on_event)
    return broker
