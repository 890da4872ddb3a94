"""Rendering: golden files per stack, deterministic output, durations as strings, comments."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from infra.errors import ConfigError
from infra.flytoml.model import Build, Deploy, Duration, FlyConfig, Restart, TopLevelCheck
from infra.flytoml.render import render_fly_toml
from infra.stack.settings import load_stack_file

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
STACKS = ["dev", "staging", "production"]


def _stack(name: str) -> FlyConfig:
    return load_stack_file(REPO / f"Pulumi.{name}.yaml", require_secrets=False).fly


@pytest.mark.parametrize("stack", STACKS)
def test_golden(stack: str) -> None:
    """Each stack renders exactly its golden file (regenerate: python -m infra render --stack
    NAME > tests/infra/golden/NAME.fly.toml, then review the diff)."""
    expected = (GOLDEN / f"{stack}.fly.toml").read_text(encoding="utf-8")
    assert render_fly_toml(_stack(stack), stack=stack) == expected


def test_deterministic() -> None:
    """Rendering the same config twice gives the same text."""
    config = _stack("production")
    assert render_fly_toml(config) == render_fly_toml(config)


def test_header_says_generated_and_where_to_change() -> None:
    """The header names the stack file and the render command and records the deployment."""
    text = render_fly_toml(_stack("production"), stack="production")
    header = text.splitlines()[:3]
    assert header[0] == "# Generated from Pulumi.production.yaml by the Pulumi program or by"
    assert "`python -m infra render --stack production`: do not edit" in header[1]
    assert header[2] == '# deployment: machines = 2, broker = "redis"'


def test_websocket_service_is_commented() -> None:
    """The WebSocket service carries short comments on tcp, ["tls"] and the ALPN pin."""
    text = render_fly_toml(_stack("staging"))
    service = text[text.index("[[services]]") :]
    assert "raw TCP with TLS terminated at Fly's edge" in service
    assert '# handlers = ["tls"] only: no "http" handler in front of the 101 upgrade' in service
    assert "ALPN pinned to" in service


def test_durations_are_strings_everywhere() -> None:
    """Every duration in the file is a TOML string, never a bare number."""
    config = dataclasses.replace(
        _stack("staging"),
        checks=(TopLevelCheck(name="web", grace_period=Duration("5s")),),
        deploy=Deploy(wait_timeout=Duration("2m")),
    )
    data = tomllib.loads(render_fly_toml(config))
    assert data["kill_timeout"] == "30s"
    assert data["deploy"]["wait_timeout"] == "2m"
    assert data["services"][0]["tcp_checks"][0] == {
        "interval": "15s",
        "timeout": "2s",
        "grace_period": "10s",
    }
    assert data["http_service"]["checks"][0]["interval"] == "15s"
    assert data["checks"]["web"]["grace_period"] == "5s"


def test_sections_and_keys() -> None:
    """The fly.toml keys come out where Fly expects them ([[vm]], [[restart]], [checks.name])."""
    config = dataclasses.replace(
        _stack("production"),
        build=Build(dockerfile="Dockerfile", ignorefile=".dockerignore"),
        restarts=(Restart(policy="always", retries=3),),
        checks=(TopLevelCheck(name="web"),),
        swap_size_mb=256,
    )
    data = tomllib.loads(render_fly_toml(config))
    assert data["build"] == {"dockerfile": "Dockerfile", "ignorefile": ".dockerignore"}
    assert data["restart"] == [{"policy": "always", "retries": 3}]
    assert data["vm"] == [{"size": "shared-cpu-2x", "memory": "1gb"}]
    assert data["metrics"] == [{"port": 9091, "path": "/metrics"}]
    assert data["swap_size_mb"] == 256
    assert data["env"]["LOG_FORMAT"] == "json"
    assert data["env"]["ALLOWED_ORIGINS"].startswith("https://")
    (port,) = data["services"][0]["ports"]
    assert port == {
        "port": 8081,
        "handlers": ["tls"],
        "tls_options": {"alpn": ["http/1.1"], "versions": ["TLSv1.2", "TLSv1.3"]},
    }
    assert "machines" not in data
    assert "broker" not in data


def test_invalid_config_cannot_be_rendered() -> None:
    """Rendering checks first: the PU02 configuration never reaches a file."""
    config = _stack("staging")
    port = dataclasses.replace(config.websocket.ports[0], handlers=("tls", "http"))
    broken = dataclasses.replace(
        config, services=(dataclasses.replace(config.websocket, ports=(port,)),)
    )
    with pytest.raises(ConfigError) as caught:
        render_fly_toml(broken)
    assert caught.value.key == "services[0].ports[0].handlers"
