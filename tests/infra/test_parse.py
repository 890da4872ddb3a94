"""Parsing: exact round trip of our own output, unknown keys and raw-value findings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.errors import ConfigError
from infra.flytoml.model import (
    Build,
    Concurrency,
    Deploy,
    Duration,
    FlyConfig,
    HttpCheck,
    HttpOptions,
    HttpResponseOptions,
    HttpService,
    Metrics,
    Mount,
    Restart,
    Service,
    ServicePort,
    Static,
    TlsOptions,
    TopLevelCheck,
    Vm,
    WebSocketService,
)
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.render import render_fly_toml
from infra.flytoml.rules import config_findings
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


_vms = st.sampled_from(
    [
        Vm(size="shared-cpu-1x"),
        Vm(size="performance-2x", memory="4gb"),
        Vm(size="shared-cpu-2x", memory="1024", processes=("app",)),
    ]
)
_deploys = st.sampled_from(
    [
        Deploy(),
        Deploy(strategy="immediate", release_command="bin/migrate --yes"),
        Deploy(
            release_command="bin/migrate",
            release_command_timeout=Duration("5m0s"),
            release_command_vm=Vm(size="shared-cpu-2x", memory="1gb"),
        ),
    ]
)
_top_checks = st.sampled_from(
    [
        (),
        (
            TopLevelCheck(
                name="tls",
                type="http",
                port=8080,
                protocol="https",
                tls_skip_verify=True,
                tls_server_name="x.internal",
                headers=(("X-Probe", "1"),),
            ),
        ),
    ]
)
_other_services = st.sampled_from(
    [
        (),
        (
            Service(
                protocol="udp",
                internal_port=5000,
                ports=(
                    ServicePort(start_port=5000, end_port=5009),
                    ServicePort(
                        port=5443,
                        handlers=("tls", "http"),
                        http_options=HttpOptions(compress=True, idle_timeout=60),
                    ),
                ),
            ),
        ),
    ]
)


def _http_with_options(processes: tuple[str, ...]) -> HttpService:
    """[http_service] with tls_options, http_options (kept as read) and a rich check."""
    return HttpService(
        processes=processes,
        tls_options=TlsOptions(alpn=("h2", "http/1.1")),
        checks=(HttpCheck(path="/healthz", protocol="http", headers=(("Host", "x"),)),),
        http_options=HttpOptions(
            idle_timeout=600,
            h2_backend=True,
            headers_read_timeout=10,
            response=HttpResponseOptions(headers=(("X-Frame-Options", "DENY"), ("Server", False))),
        ),
        extra=(("machine_checks", [{"command": ["true"], "image": "busybox"}]),),
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
    processes = draw(st.sampled_from([(), (("app", "bin/server --port 8080"),)]))
    grouped: tuple[str, ...] = ("app",) if processes else ()
    return FlyConfig(
        app=draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)),
        primary_region=draw(st.sampled_from([None, "iad", "ams", "syd"])),
        kill_signal=draw(st.sampled_from(["SIGTERM", "SIGINT", None])),
        kill_timeout=Duration.of_seconds(draw(st.integers(1, 300))),
        swap_size_mb=draw(st.none() | st.integers(0, 4096)),
        env=(("WS_PORT", str(ws_port)), ("HTTP_PORT", "8080"), *env.items()),
        http_service=draw(
            st.sampled_from([None, HttpService(processes=grouped), _http_with_options(grouped)])
        ),
        services=(
            dataclasses.replace(websocket, processes=grouped),
            *(dataclasses.replace(other, processes=grouped) for other in draw(_other_services)),
        ),
        vms=(draw(_vms),),
        metrics=draw(
            st.sampled_from([(), (Metrics(),), (Metrics(port=9091, processes=("app",)),)])
        ),
        processes=processes,
        mounts=draw(st.sampled_from([(), (Mount(source="data", destination="/data"),)])),
        build=draw(
            st.sampled_from([None, Build(), Build(build_target="prod", compression="zstd")])
        ),
        deploy=draw(_deploys),
        console_command=draw(st.sampled_from([None, "/bin/sh -l"])),
        checks=draw(_top_checks),
        statics=draw(
            st.sampled_from(
                [(), (Static(guest_path="/app/public", url_prefix="/static", index_document="i"),)]
            )
        ),
        restarts=draw(st.sampled_from([(), (Restart(policy="always", processes=("app",)),)])),
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


def test_without_ws_port_there_is_no_websocket_service() -> None:
    """A file without [env] WS_PORT (any other app) has no WebSocket service, even on 8081."""
    config = parse_fly_toml('app = "x"\n[[services]]\ninternal_port = 8081\n').config
    assert config.websocket_index is None
    assert "websocket-missing" not in {f.rule for f in config_findings(config)}


def test_ws_port_without_its_service_is_an_error() -> None:
    """[env] WS_PORT marks the file as carrying the WebSocket: its service must exist."""
    text = 'app = "x"\n[env]\nWS_PORT = "8081"\n[[services]]\ninternal_port = 9000\n'
    errors = [f for f in config_findings(parse_fly_toml(text).config) if f.severity == "error"]
    assert [(f.rule, f.key) for f in errors] == [("websocket-missing", "services")]


def test_unknown_keys_are_the_keys_flyctl_does_not_know() -> None:
    """Keys flyctl knows pass silently (kept for render); keys it does not know are reported:
    unknown-key where its --strict looks, ignored-key inside [[services]] where it does not."""
    text = """
app = "x"
console_command = "/bin/sh"
scale = 2
[experimental]
auto_rollback = true
private_network = true
[processes]
app = "run"
[http_service]
internal_port = 8080
processes = ["app"]
[[http_service.checks]]
path = "/"
restart_limit = 0
[[services]]
internal_port = 9000
protocol = "tcp"
processes = ["app"]
[[services.ports]]
start_port = 9000
end_port = 9009
handlers = ["tls"]
[[services.tcp_checks]]
restart_limit = 3
"""
    result = parse_fly_toml(text)
    assert set(result.unknown_keys) == {
        "scale",
        "experimental.private_network",
        "http_service.checks[0].restart_limit",
    }
    assert [(f.rule, f.key) for f in result.findings if f.rule == "ignored-key"] == [
        ("ignored-key", "services[0].tcp_checks[0].restart_limit")
    ]
    assert {f.severity for f in result.findings} == {"warning"}
    config = result.config
    assert config.console_command == "/bin/sh"
    assert config.processes == (("app", "run"),)
    assert config.services[0].ports[0].numbers == range(9000, 9010)
    assert ("experimental", {"auto_rollback": True, "private_network": True}) in config.extra


@pytest.mark.parametrize(
    ("text", "key", "severity", "duration"),
    [
        ('app = "x"\n[deploy]\nwait_timeout = 600\n', "deploy.wait_timeout", "warning", "600ns"),
        ('app = "x"\nkill_timeout = 30\n', "kill_timeout", "warning", "30s"),
        (
            'app = "x"\n[http_service]\ninternal_port = 8080\n[[http_service.checks]]\n'
            'interval = 15000\npath = "/"\n',
            "http_service.checks[0].interval",
            "warning",
            "15000ns",  # [[http_service.checks]] is not patched: fly-go reads nanoseconds
        ),
        (
            'app = "x"\n[[services]]\ninternal_port = 1\n[[services.tcp_checks]]\ntimeout = 2000\n',
            "services[0].tcp_checks[0].timeout",
            "warning",
            "2000ms",
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
        *(c.timeout for s in result.config.services for c in s.tcp_checks),
    ]
    assert Duration(duration) in durations


def test_bare_milliseconds_then_warn_as_flyctl_does() -> None:
    """A check interval of 15 (milliseconds to fly-go) is also below the 1s minimum: flyctl
    warns and raises it to 1s (validation.go:216-220)."""
    text = (
        'app = "x"\n[[services]]\ninternal_port = 8081\nprotocol = "tcp"\n'
        "[[services.tcp_checks]]\ninterval = 15\n"
    )
    (finding,) = [
        f for f in config_findings(parse_fly_toml(text).config) if f.rule == "check-duration"
    ]
    assert finding.severity == "warning"
    assert finding.message == (
        "Service TCP check has an interval less than 1 second (15ms); this will be raised to "
        "1 second"
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("app = 5\n", "app"),
        ('app = "x"\nkill_timeout = "soon"\n', "kill_timeout"),
        ('app = "x"\n[[services]]\ninternal_port = "http"\n', "services[0].internal_port"),
        ('app = "x"\n[[services]]\ninternal_port = 1\nports = 5\n', "services[0].ports"),
        ('app = "x"\n[env]\nDEBUG = [1]\n', "env.DEBUG"),
        (
            'app = "x"\n[[services]]\ninternal_port = 1\nconcurrency = "20"\n',
            "services[0].concurrency",
        ),
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
    """memory = 512 is kept as "512", which flyctl reads as megabytes (patches.go castToString,
    helpers/units.go ParseSize)."""
    config = parse_fly_toml('app = "x"\n[[vm]]\nmemory = 512\n').config
    assert config.vms == (Vm(size=None, memory="512"),)
    assert [f for f in config_findings(config) if f.rule.startswith("vm-")] == []


def test_flyctl_conversions() -> None:
    """String ports, integer [env] values and the legacy concurrency string are read the way
    flyctl's patches read them, without a finding."""
    text = """
app = "x"
[env]
DEBUG = 1
VERBOSE = true
[[services]]
internal_port = "8080"
protocol = "tcp"
concurrency = "20,25"
[[services.ports]]
port = "443"
handlers = ["tls", "http"]
"""
    result = parse_fly_toml(text)
    assert result.findings == ()
    config = result.config
    assert config.env == (("DEBUG", "1"), ("VERBOSE", "true"))
    service = config.services[0]
    assert (service.internal_port, service.ports[0].port) == (8080, 443)
    assert service.concurrency == Concurrency(type="requests", soft_limit=20, hard_limit=25)


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
