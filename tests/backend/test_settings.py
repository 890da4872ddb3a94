"""Settings from the environment: defaults, parsing, errors that name the variable."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from realtime.settings import Settings, SettingsError

KEY = "k" * 32


def test_defaults_are_the_documented_production_defaults() -> None:
    """Only TOKEN_SIGNING_KEY is required; the rest default as docs/BACKEND.md says."""
    settings = Settings.from_env({"TOKEN_SIGNING_KEY": KEY})
    assert (settings.host, settings.http_port, settings.ws_port) == ("0.0.0.0", 8080, 8081)
    assert settings.allowed_origins == ()
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
    assert not settings.dev_tokens
    assert settings.redis_url == ""
    assert settings.history_size == 500
    assert settings.drain_seconds == 10.0
    assert settings.metrics_port == 9091


def test_values_are_parsed() -> None:
    """Numbers, booleans and the origin list are read from their variables."""
    settings = Settings.from_env(
        {
            "DEV_TOKENS": "1",
            "HTTP_PORT": "9000",
            "WS_PORT": "9001",
            "ALLOWED_ORIGINS": "https://a.example, https://b.example:8443",
            "RATE_LIMIT_PER_SECOND": "2.5",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "text",
            "METRICS_PORT": "9002",
        }
    )
    assert settings.dev_tokens
    assert (settings.http_port, settings.ws_port) == (9000, 9001)
    assert settings.allowed_origins == ("https://a.example", "https://b.example:8443")
    assert settings.rate_limit_per_second == 2.5
    assert (settings.log_level, settings.log_format) == ("DEBUG", "text")
    assert settings.metrics_port == 9002


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "TOKEN_SIGNING_KEY is required"),
        ({"TOKEN_SIGNING_KEY": "short"}, "TOKEN_SIGNING_KEY is too short: 5 characters"),
        ({"DEV_TOKENS": "yes"}, "DEV_TOKENS must be 0 or 1, got 'yes'"),
        ({"TOKEN_SIGNING_KEY": KEY, "WS_PORT": "70000"}, "WS_PORT must be a port number"),
        ({"TOKEN_SIGNING_KEY": KEY, "HTTP_PORT": "8081"}, "HTTP_PORT and WS_PORT must differ"),
        ({"TOKEN_SIGNING_KEY": KEY, "METRICS_PORT": "x"}, "METRICS_PORT must be a port number"),
        (
            {"TOKEN_SIGNING_KEY": KEY, "METRICS_PORT": "8080"},
            "METRICS_PORT must differ from HTTP_PORT .* both are 8080",
        ),
        (
            {"TOKEN_SIGNING_KEY": KEY, "WS_PORT": "9091"},
            "METRICS_PORT must differ from WS_PORT .* both are 9091",
        ),
        ({"TOKEN_SIGNING_KEY": KEY, "HISTORY_SIZE": "0"}, "HISTORY_SIZE must be a positive"),
        ({"TOKEN_SIGNING_KEY": KEY, "DRAIN_SECONDS": "nan"}, "DRAIN_SECONDS must be a positive"),
        ({"TOKEN_SIGNING_KEY": KEY, "LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or text"),
        ({"TOKEN_SIGNING_KEY": KEY, "LOG_LEVEL": "loud"}, "LOG_LEVEL must be a logging level"),
        (
            {"TOKEN_SIGNING_KEY": KEY, "ALLOWED_ORIGINS": "chat.example"},
            "ALLOWED_ORIGINS entries must look like",
        ),
    ],
)
def test_bad_values_name_the_variable_and_value(env: dict[str, str], message: str) -> None:
    """Each bad setting raises SettingsError naming the variable (and the value)."""
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_the_signing_key_is_never_shown() -> None:
    """Neither errors nor repr reveal TOKEN_SIGNING_KEY."""
    secret = "s3cr3t-but-too-short"
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"TOKEN_SIGNING_KEY": secret})
    assert secret not in str(raised.value)
    assert KEY not in repr(Settings.from_env({"TOKEN_SIGNING_KEY": KEY}))


def test_every_setting_is_documented() -> None:
    """Each field of Settings is read from its upper-case variable, listed in the docs."""
    docs = Path(__file__).parents[2] / "docs"
    text = (docs / "BACKEND.md").read_text() + (docs / "WEBSOCKET_INFRASTRUCTURE.md").read_text()
    missing = [f.name.upper() for f in fields(Settings) if f"`{f.name.upper()}`" not in text]
    assert missing == []


def test_redis_broker_variables_are_settings() -> None:
    """The Redis broker's variables are read (and refused) by Settings, with or without Redis."""
    settings = Settings.from_env(
        {
            "TOKEN_SIGNING_KEY": KEY,
            "HISTORY_TTL": "60",
            "IDEMPOTENCY_TTL": "30",
            "PRESENCE_TTL": "3",
            "PRESENCE_HEARTBEAT": "1.5",
            "REDIS_KEY_PREFIX": "stage",
        }
    )
    assert (settings.history_ttl, settings.idempotency_ttl) == (60, 30)
    assert (settings.presence_ttl, settings.presence_heartbeat) == (3.0, 1.5)
    assert settings.redis_key_prefix == "stage"
    defaults = Settings.from_env({"TOKEN_SIGNING_KEY": KEY, "REDIS_KEY_PREFIX": ""})
    assert (defaults.history_ttl, defaults.idempotency_ttl) == (86_400, 600)
    assert (defaults.presence_ttl, defaults.presence_heartbeat, defaults.redis_key_prefix) == (
        20.0,
        5.0,
        "rt",
    )
    with pytest.raises(SettingsError, match=r"^IDEMPOTENCY_TTL must be a positive integer"):
        Settings.from_env({"TOKEN_SIGNING_KEY": KEY, "IDEMPOTENCY_TTL": "-1"})
