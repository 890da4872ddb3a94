"""Settings read from environment variables (docs/BACKEND.md lists them with defaults)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

_SECRET_NAMES = frozenset({"TOKEN_SIGNING_KEY", "REDIS_URL"})


class SettingsError(Exception):
    """A setting has an invalid value; the message names the variable and the value."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server reads from its environment. Defaults are production defaults."""

    # listeners
    host: str = "0.0.0.0"
    http_port: int = 8080
    ws_port: int = 8081
    public_ws_url: str = ""
    allowed_origins: tuple[str, ...] = ()
    # auth
    token_signing_key: str = field(default="", repr=False)
    dev_tokens: bool = False
    # broker
    redis_url: str = field(default="", repr=False)
    # the Redis broker's retention and presence (a dead instance's presence entries vanish
    # within presence_ttl + presence_heartbeat) and its key namespace
    history_ttl: int = 86_400
    idempotency_ttl: int = 600
    presence_ttl: float = 20.0
    presence_heartbeat: float = 5.0
    redis_key_prefix: str = "rt"
    # limits
    max_connections: int = 10_000
    max_rooms_per_connection: int = 20
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 40
    send_buffer_bytes: int = 1_048_576
    history_size: int = 500
    # timeouts
    hello_timeout: float = 5.0
    drain_seconds: float = 10.0
    typing_ttl: float = 6.0
    typing_throttle: float = 1.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    # logging
    log_level: str = "INFO"
    log_format: str = "json"
    # metrics: their own listener, never exposed by a public service
    metrics_port: int = 9091
    # the Redis broker on a Redis Cluster (REDIS_URL names any node of it)
    redis_cluster: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read settings from ``env``; raises :class:`SettingsError` naming the variable."""
        reader = _Reader(env)
        dev_tokens = reader.get("DEV_TOKENS", _bool, False)
        key = env.get("TOKEN_SIGNING_KEY", "")
        if not key and not dev_tokens:
            raise SettingsError(
                "TOKEN_SIGNING_KEY is required (or set DEV_TOKENS=1 for development)"
            )
        if key and len(key) < 32:
            raise SettingsError(
                f"TOKEN_SIGNING_KEY is too short: {len(key)} characters, "
                "at least 32 (value not shown)"
            )
        log_format = env.get("LOG_FORMAT", "json")
        if log_format not in ("json", "text"):
            raise SettingsError(f"LOG_FORMAT must be json or text, got {log_format!r}")
        log_level = env.get("LOG_LEVEL", "INFO").upper()
        if not isinstance(logging.getLevelName(log_level), int):
            raise SettingsError(f"LOG_LEVEL must be a logging level name, got {log_level!r}")
        origins = tuple(o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        for origin in origins:
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise SettingsError(
                    f"ALLOWED_ORIGINS entries must look like https://host[:port], got {origin!r}"
                )
        settings = cls(
            host=env.get("HOST", "0.0.0.0"),
            http_port=reader.get("HTTP_PORT", _port, 8080),
            ws_port=reader.get("WS_PORT", _port, 8081),
            public_ws_url=env.get("PUBLIC_WS_URL", ""),
            allowed_origins=origins,
            token_signing_key=key,
            dev_tokens=dev_tokens,
            redis_url=env.get("REDIS_URL", ""),
            history_ttl=reader.get("HISTORY_TTL", _positive_int, 86_400),
            idempotency_ttl=reader.get("IDEMPOTENCY_TTL", _positive_int, 600),
            presence_ttl=reader.get("PRESENCE_TTL", _positive_float, 20.0),
            presence_heartbeat=reader.get("PRESENCE_HEARTBEAT", _positive_float, 5.0),
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", "") or "rt",
            max_connections=reader.get("MAX_CONNECTIONS", _positive_int, 10_000),
            max_rooms_per_connection=reader.get("MAX_ROOMS_PER_CONNECTION", _positive_int, 20),
            rate_limit_per_second=reader.get("RATE_LIMIT_PER_SECOND", _positive_float, 20.0),
            rate_limit_burst=reader.get("RATE_LIMIT_BURST", _positive_int, 40),
            send_buffer_bytes=reader.get("SEND_BUFFER_BYTES", _positive_int, 1_048_576),
            history_size=reader.get("HISTORY_SIZE", _positive_int, 500),
            hello_timeout=reader.get("HELLO_TIMEOUT", _positive_float, 5.0),
            drain_seconds=reader.get("DRAIN_SECONDS", _positive_float, 10.0),
            typing_ttl=reader.get("TYPING_TTL", _positive_float, 6.0),
            typing_throttle=reader.get("TYPING_THROTTLE", _positive_float, 1.0),
            ping_interval=reader.get("PING_INTERVAL", _positive_float, 20.0),
            ping_timeout=reader.get("PING_TIMEOUT", _positive_float, 20.0),
            log_level=log_level,
            log_format=log_format,
            metrics_port=reader.get("METRICS_PORT", _port, 9091),
            redis_cluster=reader.get("REDIS_CLUSTER", _bool, False),
        )
        if settings.presence_heartbeat * 2 > settings.presence_ttl:
            raise SettingsError(
                f"PRESENCE_HEARTBEAT must be at most half of PRESENCE_TTL, got "
                f"{settings.presence_heartbeat:g} and {settings.presence_ttl:g}"
            )
        if settings.http_port == settings.ws_port and settings.http_port != 0:
            raise SettingsError(f"HTTP_PORT and WS_PORT must differ, both are {settings.http_port}")
        for name, port in (("HTTP_PORT", settings.http_port), ("WS_PORT", settings.ws_port)):
            if port == settings.metrics_port and port != 0:
                raise SettingsError(
                    f"METRICS_PORT must differ from {name} (metrics stay off the public ports), "
                    f"both are {port}"
                )
        return settings


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, convert: Callable[[str], T], default: T) -> T:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            shown = "(value not shown)" if name in _SECRET_NAMES else repr(raw)
            raise SettingsError(f"{name} {exc}, got {shown}") from None


def _port(raw: str) -> int:
    value = int(raw) if raw.isdigit() else -1
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number 0-65535")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw) if raw.isdigit() else 0
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _bool(raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return raw == "1"
