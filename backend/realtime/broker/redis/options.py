"""How the Redis broker uses Redis, built from :class:`realtime.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from realtime.settings import Settings

_D: dict[str, Any] = {f.name: f.default for f in fields(Settings)}
"""Settings' defaults: written once, there."""


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Defaults are production defaults; the environment is read by Settings only."""

    url: str = field(repr=False)
    history_size: int = _D["history_size"]
    # retention
    history_ttl: int = _D["history_ttl"]
    idempotency_ttl: int = _D["idempotency_ttl"]
    # presence: a dead instance's entries vanish within presence_ttl + presence_heartbeat
    presence_ttl: float = _D["presence_ttl"]
    presence_heartbeat: float = _D["presence_heartbeat"]
    # connection
    key_prefix: str = _D["redis_key_prefix"]
    cluster: bool = _D["redis_cluster"]
    command_timeout: float = 2.0
    reconnect_max: float = 2.0
    subscribe_batch: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisOptions:
        return cls(
            url=settings.redis_url,
            history_size=settings.history_size,
            history_ttl=settings.history_ttl,
            idempotency_ttl=settings.idempotency_ttl,
            presence_ttl=settings.presence_ttl,
            presence_heartbeat=settings.presence_heartbeat,
            key_prefix=settings.redis_key_prefix,
            cluster=settings.redis_cluster,
        )
