"""Parsing: exact round trip of our own output, unknown keys and raw-value findings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.errors import ConfigError
from infra.flytoml.model import (
    Duration,
    FlyConfig,
    HttpService,
    Metrics,
    Service,
    Vm,
    WebSocketService,
)
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.render import render_fly_toml
from infra.stack.settings import load_stack_file

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_round_trip_per_stack(stack: str) -> None:
    """parse(render(c)).config == c and render(parse(render(c)).config) == render(c)."""
    config = load_stack_file(REPO / f"Pulumi.{stack}.yaml", require_secrets=False).fly
    text = render_fly_toml(config, stack=stack)
    parsed = parse_fly_toml(text)
    assert parsed.findings == ()
    assert parsed.config == config
    assert render_fly_toml(parsed.config, stack=stack) == text


_env_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: not name.startswith("FLY_") and name not in ("WS_PORT", "HTTP_PORT")
)
_env_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x24F, exclude_characters="\x7f"), max_size=12
)


@st.composite
def _configs(draw: st.DrawFn) -> FlyConfig:
    ws_port = draw(st.integers(1024, 65535).filter(lambda p: p != 8080))
    hard = draw(st.integers(1, 2048))
    websocket = WebSocketService.build(
        port=draw(st.integers(1, 65535).filter(lambda p: p not in (80, 443))),
        internal_port=ws_port,
        soft_limit=draw(st.integers(1, hard)),
        hard_limit=hard,
        tls_versions=draw(st.sampled_from([("TLSv1.2", "TLSv1.3"), ("TLSv1.3",)])),
        proxy_proto=draw(st.sampled_from([None, "v1", "v2"])),
    )
    machines = draw(st.integers(1, 4))
    env = draw(st.dictionaries(_env_names, _env_values, max_size=3))
    return FlyConfig(
        app=draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)),
        primary_region=draw(st.sampled_from([None, "iad", "ams", "syd"])),
        kill_signal=draw(st.sampled_from(["SIGTERM", "SIGINT", None])),
        kill_timeout=Duration.of_seconds(draw(st.integers(1, 300))),
        swap_size_mb=draw(st.none() | st.integers(0, 4096)),
        env=(("WS_PORT", str(ws_port)), ("HTTP_PORT", "8080"), *env.items()),
        http_service=draw(st.sampled_from([None, HttpService()])),
        services=(websocket,),
        vms=(Vm(size=draw(st.sampled_from(["shared-cpu-1x", "performance-2x"]))),),
        metrics=draw(st.sampled_from([(), (Metrics(),)])),
        machines=machines,
        broker="redis" if machines > 1 else draw(st.sampled_from(["memory", "redis"])),
    )


@settings(max_examples=60, deadline=None)
@given(_configs())
def test_round_trip_generated(config: FlyConfig) -> None:
    """Any valid generated config survives render -> parse unchanged."""
    text = render_fly_toml(config)
    parsed = parse_fly_toml(text)
    assert parsed.findings == ()
    assert parsed.config == config


def test_websocket_service_found_by_ws_port() -> None:
    """The entry whose internal_port equals [env] WS_PORT is the WebSocket service."""
    text = """
app = "x"
[env]
WS_PORT = "9000"
[[services]]
protocol = "tcp"
internal_port = 8081
[[services]]
protocol = "tcp"
internal_port = 9000
"""
    config = parse_fly_toml(text).config
    assert [type(s) for s in config.services] == [Service, WebSocketService]
    assert config.websocket_index == 1


def test_websocket_service_defaults_to_8081() -> None:
    """Without WS_PORT, the entry on internal port 8081 is the WebSocket service."""
    config = parse_fly_toml('app = "x"\n[[services]]\ninternal_port = 8081\n').config
    assert config.websocket_index == 0
    assert config.websocket.protocol is None


def test_unknown_keys_are_reported() -> None:
    """Keys the model does not hold become unknown-key warnings, at any depth."""
    text = """
app = "x"
console_command = "/bin/sh"
[processes]
app = "run"
[[services]]
internal_port = 8081
protocol = "tcp"
processes = ["app"]
[[services.ports]]
port = 8081
handlers = ["tls"]
start_port = 1
"""
    result = parse_fly_toml(text)
    assert set(result.unknown_keys) == {
        "console_command",
        "processes",
        "services[0].processes",
        "services[0].ports[0].start_port",
    }
    assert {f.severity for f in result.findings} == {"warning"}


@pytest.mark.parametrize(
    ("text", "key", "severity", "duration"),
    [
        ('app = "x"\n[deploy]\nwait_timeout = 600\n', "deploy.wait_timeout", "error", "600ns"),
        ('app = "x"\nkill_timeout = 30\n', "kill_timeout", "warning", "30s"),
        (
            'app = "x"\n[http_service]\ninternal_port = 8080\n[[http_service.checks]]\n'
            'interval = 15000\npath = "/"\n',
            "http_service.checks[0].interval",
            "warning",
            "15000ms",
        ),
    ],
)
def test_bare_integer_duration(text: str, key: str, severity: str, duration: str) -> None:
    """A bare number where a duration belongs is reported and read the way fly-go reads it."""
    result = parse_fly_toml(text)
    (finding,) = [f for f in result.findings if f.rule == "duration-bare-integer"]
    assert (finding.key, finding.severity) == (key, severity)
    assert "fly-go reads a bare number" in finding.message
    durations = [
        result.config.deploy.wait_timeout,
        result.config.kill_timeout,
        *(c.interval for c in (result.config.http_service or HttpService(checks=())).checks),
    ]
    assert Duration(duration) in durations


def test_bare_nanoseconds_then_fail_the_range_rule() -> None:
    """A check interval of 15 (milliseconds to fly-go) is also below the 1s minimum."""
    text = (
        'app = "x"\n[[services]]\ninternal_port = 8081\nprotocol = "tcp"\n'
        "[[services.tcp_checks]]\ninterval = 15\n"
    )
    rules = {f.rule for f in parse_fly_toml(text).config.findings()}
    assert "duration-range" in rules


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("app = 5\n", "app"),
        ('app = "x"\nkill_timeout = "soon"\n', "kill_timeout"),
        ('app = "x"\n[[services]]\ninternal_port = "8081"\n', "services[0].internal_port"),
        ('app = "x"\n[[services]]\ninternal_port = 1\nports = 5\n', "services[0].ports"),
        ('app = "x"\n[env]\nDEBUG = 1\n', "env.DEBUG"),
    ],
)
def test_wrong_types_are_errors(text: str, key: str) -> None:
    """A value of the wrong type is an error finding naming the key."""
    findings = [f for f in parse_fly_toml(text).findings if f.rule == "type"]
    assert [f.key for f in findings] == [key]
    assert findings[0].severity == "error"


def test_legacy_boolean_auto_stop() -> None:
    """auto_stop_machines = true is read as "stop" with a warning."""
    result = parse_fly_toml(
        'app = "x"\n[http_service]\ninternal_port = 8080\nauto_stop_machines = true\n'
    )
    assert result.config.http_service is not None
    assert result.config.http_service.auto_stop_machines == "stop"
    assert [f.rule for f in result.findings] == ["auto-stop-machines"]


def test_memory_as_number_means_megabytes() -> None:
    """memory = 512 is read as "512mb" (flyctl reads a bare number as megabytes)."""
    config = parse_fly_toml('app = "x"\n[[vm]]\nmemory = 512\n').config
    assert config.vms == (Vm(size=None, memory="512mb"),)


def test_syntax_error_is_a_config_error() -> None:
    """Invalid TOML raises ConfigError naming fly.toml."""
    with pytest.raises(ConfigError) as caught:
        parse_fly_toml("app = \n")
    assert caught.value.key == "fly.toml"


def test_deployment_comment_is_read() -> None:
    """The header's deployment line restores machines and broker; without it they are unknown."""
    config = load_stack_file(REPO / "Pulumi.production.yaml", require_secrets=False).fly
    text = render_fly_toml(config)
    assert parse_fly_toml(text).config.machines == 2
    stripped = "\n".join(line for line in text.splitlines() if "deployment:" not in line)
    parsed = parse_fly_toml(stripped).config
    assert (parsed.machines, parsed.broker) == (None, "memory")
    assert parsed == dataclasses.replace(config, machines=None, broker="memory")
