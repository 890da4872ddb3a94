"""The fly.toml model and its rules: one case per rule, each naming the offending key."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.flytoml import fly_rules, port_rules
from infra.flytoml import rules as checks
from infra.flytoml.model import (
    Build,
    Concurrency,
    ConfigError,
    Deploy,
    Duration,
    FlyConfig,
    HttpCheck,
    HttpService,
    Metrics,
    Mount,
    ProxyProtoOptions,
    Restart,
    Service,
    ServicePort,
    TcpCheck,
    TlsOptions,
    TopLevelCheck,
    Vm,
    WebSocketService,
)
from infra.flytoml.rules import (
    PU02_REASON,
    check_config,
    check_service,
    config_findings,
    service_findings,
)

BASE = FlyConfig(
    app="realtime-test",
    primary_region="iad",
    env=(("WS_PORT", "8081"), ("HTTP_PORT", "8080")),
    http_service=HttpService(),
    services=(WebSocketService(),),
    vms=(Vm(),),
    metrics=(Metrics(),),
    checks=(TopLevelCheck(name="web"),),
    machines=1,
)


def _ws(**changes: object) -> FlyConfig:
    service = dataclasses.replace(BASE.websocket, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(BASE, services=(service,))


def _ws_port(**changes: object) -> FlyConfig:
    port = dataclasses.replace(BASE.websocket.ports[0], **changes)  # type: ignore[arg-type]
    return _ws(ports=(port,))


def _ws_tls(**changes: object) -> FlyConfig:
    tls = dataclasses.replace(_WS_TLS, **changes)  # type: ignore[arg-type]
    return _ws_port(tls_options=tls)


def _extra(*services: Service) -> FlyConfig:
    return dataclasses.replace(BASE, services=(*BASE.services, *services))


def _http(**changes: object) -> FlyConfig:
    return dataclasses.replace(BASE, http_service=HttpService(**changes))  # type: ignore[arg-type]


_WS_TLS = TlsOptions(alpn=("http/1.1",), versions=("TLSv1.2", "TLSv1.3"))
_NO_CHECKS = dataclasses.replace(
    BASE,
    checks=(),
    http_service=HttpService(checks=()),
    services=(WebSocketService(tcp_checks=()),),
)

# rule id, how to break the base config, the key the error must name
ERROR_CASES: list[tuple[str, Callable[[], FlyConfig], str]] = [
    (
        "ws-http-handler",
        lambda: _ws_port(handlers=("tls", "http")),
        "services[0].ports[0].handlers",
    ),
    (
        "ws-alpn-h2",
        lambda: _ws_tls(alpn=("h2", "http/1.1")),
        "services[0].ports[0].tls_options.alpn",
    ),
    ("ws-protocol", lambda: _ws(protocol="udp"), "services[0].protocol"),
    ("ws-no-port", lambda: _ws(ports=()), "services[0].ports"),
    (
        "force-https-without-http",
        lambda: _ws_port(force_https=True),
        "services[0].ports[0].force_https",
    ),
    (
        "proxy-proto-options-without-handler",
        lambda: _ws_port(proxy_proto_options=ProxyProtoOptions(version="v2")),
        "services[0].ports[0].proxy_proto_options",
    ),
    (
        "proxy-proto-version",
        lambda: _ws_port(
            handlers=("tls", "proxy_proto"), proxy_proto_options=ProxyProtoOptions(version="v3")
        ),
        "services[0].ports[0].proxy_proto_options.version",
    ),
    (
        "unknown-handler",
        lambda: _ws_port(handlers=("tls", "edge_http")),
        "services[0].ports[0].handlers",
    ),
    (
        "tls-version",
        lambda: _ws_tls(versions=("TLSv1.1",)),
        "services[0].ports[0].tls_options.versions",
    ),
    ("port-range", lambda: _ws_port(port=70000), "services[0].ports[0].port"),
    ("http-service-port-clash", lambda: _ws_port(port=443), "services[0].ports[0].port"),
    (
        "duplicate-public-port",
        lambda: _extra(Service(internal_port=9000, ports=(ServicePort(port=8081),))),
        "services[1].ports[0].port",
    ),
    (
        "duplicate-internal-port",
        lambda: _extra(Service(internal_port=8081, ports=(ServicePort(port=9000),))),
        "services[1].internal_port",
    ),
    (
        "service-protocol",
        lambda: _extra(Service(protocol="http", internal_port=9000)),
        "services[1].protocol",
    ),
    (
        "ws-concurrency-type",
        lambda: _ws(concurrency=Concurrency(type="requests", soft_limit=10, hard_limit=20)),
        "services[0].concurrency.type",
    ),
    (
        "concurrency-limits",
        lambda: _ws(concurrency=Concurrency(soft_limit=2000, hard_limit=1500)),
        "services[0].concurrency.soft_limit",
    ),
    (
        "concurrency-type",
        lambda: _http(concurrency=Concurrency(type="bytes")),
        "http_service.concurrency.type",
    ),
    (
        "check-interval",
        lambda: dataclasses.replace(
            BASE, checks=(TopLevelCheck(name="web", interval=Duration("1s")),)
        ),
        "checks.web.interval",
    ),
    (
        "check-timeout",
        lambda: dataclasses.replace(
            BASE, checks=(TopLevelCheck(name="web", timeout=Duration("1m1s")),)
        ),
        "checks.web.timeout",
    ),
    (
        "check-without-port",
        lambda: dataclasses.replace(
            BASE, http_service=None, checks=(TopLevelCheck(name="web", port=None),)
        ),
        "checks.web.port",
    ),
    (
        "release-command-shlex",
        lambda: dataclasses.replace(BASE, deploy=Deploy(release_command="migrate 'x")),
        "deploy.release_command",
    ),
    (
        "canary-with-mounts",
        lambda: dataclasses.replace(
            BASE, deploy=Deploy(strategy="canary"), mounts=(Mount(source="d", destination="/d"),)
        ),
        "deploy.strategy",
    ),
    (
        "service-processes",
        lambda: dataclasses.replace(BASE, processes=(("web", "run"),)),
        "http_service.processes",
    ),
    (
        "processes-shlex",
        lambda: dataclasses.replace(
            BASE,
            processes=(("app", 'run "x'),),
            http_service=HttpService(processes=("app",)),
            services=(WebSocketService(processes=("app",)),),
        ),
        "processes.app",
    ),
    (
        "console-command-shlex",
        lambda: dataclasses.replace(BASE, console_command="sh -c 'x"),
        "console_command",
    ),
    (
        "mount-initial-size",
        lambda: dataclasses.replace(
            BASE, mounts=(Mount(source="d", destination="/d", initial_size="500mb"),)
        ),
        "mounts[0].initial_size",
    ),
    (
        "mount-initial-size",
        lambda: dataclasses.replace(
            BASE, mounts=(Mount(source="d", destination="/d", initial_size="1.5 terabytes"),)
        ),
        "mounts[0].initial_size",
    ),
    (
        "restart-processes",
        lambda: dataclasses.replace(BASE, restarts=(Restart(processes=("worker",)),)),
        "restart[0].processes",
    ),
    (
        "build-compression",
        lambda: dataclasses.replace(BASE, build=Build(compression="brotli")),
        "build.compression",
    ),
    (
        "vm-memory-range",
        lambda: dataclasses.replace(BASE, vms=(Vm(size="shared-cpu-1x", memory="4gb"),)),
        "vm[0].memory",
    ),
    (
        "duration-range",
        lambda: dataclasses.replace(BASE, kill_timeout=Duration("301s")),
        "kill_timeout",
    ),
    ("kill-signal", lambda: dataclasses.replace(BASE, kill_signal="SIGHUP"), "kill_signal"),
    (
        "deploy-strategy",
        lambda: dataclasses.replace(BASE, deploy=Deploy(strategy="blue")),
        "deploy.strategy",
    ),
    (
        "deploy-max-unavailable",
        lambda: dataclasses.replace(BASE, deploy=Deploy(max_unavailable=0)),
        "deploy.max_unavailable",
    ),
    (
        "bluegreen-without-check",
        lambda: dataclasses.replace(_NO_CHECKS, deploy=Deploy(strategy="bluegreen")),
        "deploy.strategy",
    ),
    (
        "auto-stop-machines",
        lambda: _http(auto_stop_machines="yes"),
        "http_service.auto_stop_machines",
    ),
    (
        "env-fly-prefix",
        lambda: dataclasses.replace(BASE, env=(("FLY_REGION", "x"),)),
        "env.FLY_REGION",
    ),
    ("vm-size", lambda: dataclasses.replace(BASE, vms=(Vm(size="shared-cpu-3x"),)), "vm[0].size"),
    ("vm-memory", lambda: dataclasses.replace(BASE, vms=(Vm(memory="lots"),)), "vm[0].memory"),
    ("vm-memory", lambda: dataclasses.replace(BASE, vms=(Vm(memory="0mb"),)), "vm[0].memory"),
    (
        "restart-policy",
        lambda: dataclasses.replace(BASE, restarts=(Restart(policy="sometimes"),)),
        "restart[0].policy",
    ),
    (
        "check-type",
        lambda: dataclasses.replace(BASE, checks=(TopLevelCheck(name="web", type="grpc"),)),
        "checks.web.type",
    ),
    (
        "port-range",
        lambda: dataclasses.replace(BASE, metrics=(Metrics(port=0),)),
        "metrics[0].port",
    ),
    (
        "machines-without-broker",
        lambda: dataclasses.replace(BASE, machines=2),
        "deployment.machines",
    ),
    ("machines-range", lambda: dataclasses.replace(BASE, machines=0), "deployment.machines"),
    ("websocket-missing", lambda: dataclasses.replace(BASE, services=()), "services"),
]

WARNING_CASES: list[tuple[str, Callable[[], FlyConfig], str]] = [
    (
        "check-duration",
        lambda: _ws(tcp_checks=(TcpCheck(interval=Duration("500ms")),)),
        "services[0].tcp_checks[0].interval",
    ),
    (
        "check-duration",
        lambda: _extra(
            Service(
                internal_port=9000,
                ports=(ServicePort(port=9000, handlers=("tls",)),),
                http_checks=(HttpCheck(timeout=Duration("61s")),),
            )
        ),
        "services[1].http_checks[0].timeout",
    ),
    (
        "check-duration",
        lambda: _http(checks=(HttpCheck(grace_period=Duration("0.5s")),)),
        "http_service.checks[0].grace_period",
    ),
    (
        "build-strategies",
        lambda: dataclasses.replace(BASE, build=Build(image="nginx:1")),
        "build",
    ),
    (
        "max-unavailable-strategy",
        lambda: dataclasses.replace(BASE, deploy=Deploy(strategy="immediate", max_unavailable=0.5)),
        "deploy.max_unavailable",
    ),
    (
        "service-without-ports",
        lambda: _extra(Service(internal_port=9000)),
        "services[1].ports",
    ),
    (
        "env-secret-name",
        lambda: dataclasses.replace(BASE, env=(*BASE.env, ("STRIPE_SECRET", "x"))),
        "env.STRIPE_SECRET",
    ),
    (
        "pu02-prone",
        lambda: _extra(
            Service(internal_port=9000, ports=(ServicePort(port=9000, handlers=("tls", "http")),))
        ),
        "services[1].ports[0].handlers",
    ),
    (
        "metrics-public-port",
        lambda: dataclasses.replace(BASE, metrics=(Metrics(port=8080),)),
        "metrics[0].port",
    ),
    (
        "service-protocol",
        lambda: _extra(Service(protocol=None, internal_port=9000, ports=(ServicePort(port=9000),))),
        "services[1].protocol",
    ),
    (
        "http-service-port-clash",
        lambda: _extra(Service(internal_port=9000, ports=(ServicePort(port=443),))),
        "services[1].ports[0].port",
    ),
    (
        "duplicate-public-port",
        lambda: _extra(
            Service(internal_port=9000, ports=(ServicePort(port=9000),)),
            Service(internal_port=9001, ports=(ServicePort(port=9000),)),
        ),
        "services[2].ports[0].port",
    ),
    (
        "ws-alpn-missing",
        lambda: _ws_port(tls_options=None),
        "services[0].ports[0].tls_options.alpn",
    ),
    ("ws-concurrency-default", lambda: _ws(concurrency=None), "services[0].concurrency.soft_limit"),
    (
        "ws-edge-cap",
        lambda: _ws(concurrency=Concurrency(soft_limit=1000, hard_limit=3000)),
        "services[0].concurrency.hard_limit",
    ),
]


def test_base_config_is_clean() -> None:
    """The config every rule case starts from has no finding at all."""
    assert config_findings(BASE) == []
    check_config(BASE)


@pytest.mark.parametrize(
    ("rule", "build", "key"), ERROR_CASES, ids=[f"{c[0]}:{c[2]}" for c in ERROR_CASES]
)
def test_error_rule_names_the_key(rule: str, build: Callable[[], FlyConfig], key: str) -> None:
    """Breaking one thing makes check() raise that rule's error naming the key and the value."""
    config = build()
    first = next(f for f in config_findings(config) if f.severity == "error")
    assert (first.rule, first.key) == (rule, key)
    with pytest.raises(ConfigError) as caught:
        check_config(config)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key} = ")
    assert caught.value.reason == first.message


@pytest.mark.parametrize(("rule", "build", "key"), WARNING_CASES, ids=[c[0] for c in WARNING_CASES])
def test_warning_rule_names_the_key(rule: str, build: Callable[[], FlyConfig], key: str) -> None:
    """A warning is reported with its key but does not make check() raise."""
    config = build()
    assert [(f.rule, f.key, f.severity) for f in config_findings(config)] == [
        (rule, key, "warning")
    ]
    check_config(config)


def test_http_handler_message_explains_pu02() -> None:
    """The http-handler error says PU02, the 101 upgrade, and the fix (tcp + ["tls"])."""
    with pytest.raises(ConfigError) as caught:
        check_config(_ws_port(handlers=("tls", "http")))
    assert caught.value.value == ("tls", "http")
    assert caught.value.reason == PU02_REASON
    for words in (
        "[PU02]",
        "other than 80/443",
        'handlers ["tls"]',
        'protocol "tcp"',
        "does support WebSockets",
    ):
        assert words in str(caught.value)


def test_edge_http_is_called_obsolete() -> None:
    """The obsolete edge_http handler gets a message saying to use http instead."""
    with pytest.raises(ConfigError, match="obsolete"):
        check_config(_ws_port(handlers=("edge_http",)))


def test_websocket_service_defaults_are_the_fix() -> None:
    """The default WebSocket service is tcp, one 8081 port with ["tls"], ALPN http/1.1."""
    service = WebSocketService()
    assert service.protocol == "tcp"
    assert service.internal_port == 8081
    assert service.public_port == 8081
    (port,) = service.ports
    assert port.handlers == ("tls",)
    assert port.tls_options == TlsOptions(alpn=("http/1.1",), versions=("TLSv1.2", "TLSv1.3"))
    assert service.concurrency == Concurrency(type="connections", soft_limit=1000, hard_limit=1500)
    assert service.tcp_checks == (
        TcpCheck(interval=Duration("15s"), timeout=Duration("2s"), grace_period=Duration("10s")),
    )
    assert service.proxy_proto is None
    assert WebSocketService.build() == service


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_proto_adds_handler_and_options(version: str) -> None:
    """proxy_proto="v2" adds the proxy_proto handler and proxy_proto_options to the port."""
    service = WebSocketService.build(proxy_proto=version)
    assert service.ports[0].handlers == ("tls", "proxy_proto")
    assert service.ports[0].proxy_proto_options == ProxyProtoOptions(version=version)
    assert service.proxy_proto == version
    check_service(service, index=0)


def test_websocket_service_check_refuses_http_handler() -> None:
    """A WebSocketService built with the http handler cannot pass check_service()."""
    with pytest.raises(ConfigError) as caught:
        check_service(WebSocketService.build(handlers=("tls", "http")), index=2)
    assert caught.value.key == "services[2].ports[0].handlers"


def test_findings_carry_the_real_service_index() -> None:
    """A broken second service is named services[1], on its own and inside the config."""
    broken = Service(internal_port=9000, protocol="sctp", ports=(ServicePort(port=9000),))
    config = _extra(broken)
    assert ("service-protocol", "services[1].protocol") in {
        (f.rule, f.key) for f in config_findings(config)
    }
    assert [f.key for f in service_findings(broken, index=1)] == ["services[1].protocol"]


def test_plain_service_check_allows_http_handler() -> None:
    """The PU02 rule is about the WebSocket service only: other services may use http."""
    service = Service(internal_port=9000, ports=(ServicePort(port=9000, handlers=("tls", "http")),))
    check_service(service, index=1)


def test_websocket_property_names_services_when_missing() -> None:
    """Asking for the WebSocket service of a config without one raises naming services."""
    with pytest.raises(ConfigError) as caught:
        _ = dataclasses.replace(BASE, services=()).websocket
    assert caught.value.key == "services"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("10m0s", 600.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5s", 1.5), ("0", 0.0)],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    """A duration keeps its text and knows its value in seconds."""
    duration = Duration(text)
    assert duration.seconds == pytest.approx(seconds)
    assert str(duration) == text


@pytest.mark.parametrize("text", ["15", "", "s", "15 s", "-5s", "15sec"])
def test_duration_refuses_non_durations(text: str) -> None:
    """A bare number or malformed text is not a duration."""
    with pytest.raises(ValueError, match="not a duration"):
        Duration(text)


def test_duration_of_seconds() -> None:
    """of_seconds writes whole seconds as "<n>s"."""
    assert Duration.of_seconds(30) == Duration("30s")


def test_models_are_frozen() -> None:
    """Model values cannot be changed after construction."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE.app = "other"  # type: ignore[misc]


def test_every_rule_has_a_case() -> None:
    """Each rule id in infra/flytoml/rules.py is exercised by a case above (a new rule needs
    one)."""
    source = Path(checks.__file__).read_text(encoding="utf-8")
    source += Path(fly_rules.__file__).read_text(encoding="utf-8")
    source += Path(port_rules.__file__).read_text(encoding="utf-8")
    rules = set(re.findall(r'(?:_error|_warning|_one_of|make)\(\s*"([a-z0-9-]+)"', source))
    covered = {case[0] for case in ERROR_CASES + WARNING_CASES}
    assert rules - covered == set()
    assert len(rules) > 30
