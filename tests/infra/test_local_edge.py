"""infra.local.edge renders an haproxy configuration from the fly.toml model's services"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.flytoml.model import Duration as D
from infra.flytoml.model import (
    FlyConfig,
    HttpCheck,
    HttpService,
    Service,
    ServicePort,
    TcpCheck,
    WebSocketService,
)
from infra.local.certs import ensure_certificates
from infra.local.edge import EdgeError, Instance, edge_port, fly_services, render_haproxy

INSTANCES = (
    Instance(name="app-1", ports={8080: 28080, 8081: 28081}),
    Instance(name="app-2", ports={8080: 29080, 8081: 29081}),
)
CERT = "/tmp/edge.pem"
BASE = 10000


def _config(**overrides: object) -> FlyConfig:
    fields: dict[str, object] = {"app": "demo", "http_service": HttpService()}
    fields.update(overrides)
    return FlyConfig(**fields)  # type: ignore[arg-type]


def _section(text: str, header: str) -> list[str]:
    """The lines of one haproxy section, without its header."""
    lines = text.splitlines()
    start = lines.index(header)
    body: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        body.append(line.strip())
    return body


def test_edge_ports_use_the_documented_offsets() -> None:
    """80, 443 and 8081 answer locally on 18080, 18443 and 18081 with the default base."""
    assert [edge_port(p, base=BASE) for p in (80, 443, 8081)] == [18080, 18443, 18081]


def test_edge_ports_follow_the_port_base() -> None:
    """Another base moves every stand-in by the difference (base 30000: 38443, 38081)."""
    assert [edge_port(p, base=30000) for p in (80, 443, 8081)] == [38080, 38443, 38081]
    assert edge_port(8081, base=50000) == 58081


@pytest.mark.parametrize("port", [0, 65536, 60000])
def test_edge_port_refuses_ports_it_cannot_map(port: int) -> None:
    """A public port with no local stand-in is refused, naming the port."""
    with pytest.raises(EdgeError, match=str(port)):
        edge_port(port, base=BASE)


def test_rendered_binds_and_redirect_follow_the_port_base() -> None:
    """With base 30000 the frontends bind 38080, 38443, 38081 and 80 redirects to 38443."""
    text = render_haproxy(_config(), instances=INSTANCES, certificate=CERT, port_base=30000)
    binds = [line.split()[1] for line in text.splitlines() if line.strip().startswith("bind ")]
    assert binds == ["127.0.0.1:38080", "127.0.0.1:38443", "127.0.0.1:38081"]
    assert any("redirect prefix" in line and ":38443 " in line for line in text.splitlines())


def test_http_service_expands_like_fly() -> None:
    """[http_service] becomes a tcp service on 80 (http) and 443 (tls, http) before [[services]]."""
    services = fly_services(_config())
    assert [(p.port, p.handlers) for p in services[0].ports] == [
        (80, ("http",)),
        (443, ("tls", "http")),
    ]
    assert services[0].internal_port == 8080
    assert isinstance(services[1], WebSocketService)


def test_websocket_tls_port_terminates_tls_with_its_alpn_in_tcp_mode() -> None:
    """The WebSocket port binds with ssl, the model's ALPN list and TLS versions, raw tcp."""
    text = render_haproxy(_config(), instances=INSTANCES, certificate=CERT, port_base=BASE)
    frontend = _section(text, "frontend public_8081")
    assert "mode tcp" in frontend
    assert (
        f"bind 127.0.0.1:18081 ssl crt {CERT} alpn http/1.1 ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3"
    ) in frontend
    assert "default_backend service_1_tcp" in frontend


def test_http_handler_ports_are_mode_http() -> None:
    """Ports with the http handler are proxied in mode http, TLS on 443 only."""
    text = render_haproxy(_config(), instances=INSTANCES, certificate=CERT, port_base=BASE)
    plain = _section(text, "frontend public_80")
    secure = _section(text, "frontend public_443")
    assert "mode http" in plain
    assert "bind 127.0.0.1:18080" in plain
    assert "mode http" in secure
    assert f"bind 127.0.0.1:18443 ssl crt {CERT} alpn h2,http/1.1" in secure


def test_force_https_redirects_to_the_local_tls_port() -> None:
    """force_https on port 80 redirects to the edge's 443 stand-in, not to the same port."""
    text = render_haproxy(_config(), instances=INSTANCES, certificate=CERT, port_base=BASE)
    assert any("redirect prefix" in line and ":18443" in line for line in text.splitlines())
    no_force = _config(http_service=HttpService(force_https=False))
    assert "redirect" not in render_haproxy(
        no_force, instances=INSTANCES, certificate=CERT, port_base=BASE
    )


def test_raw_port_without_handlers_is_tcp_without_tls() -> None:
    """A port with no handlers is a plain tcp pass-through."""
    raw = Service(internal_port=8081, ports=(ServicePort(port=9000),))
    text = render_haproxy(
        _config(http_service=None, services=(raw,)),
        instances=INSTANCES,
        certificate=CERT,
        port_base=BASE,
    )
    frontend = _section(text, "frontend public_9000")
    assert frontend[:2] == ["mode tcp", "bind 127.0.0.1:19000"]
    assert "ssl" not in text


def test_backends_balance_over_every_instance() -> None:
    """Each backend lists both instances at their own ports for the service's internal port."""
    text = render_haproxy(_config(), instances=INSTANCES, certificate=CERT, port_base=BASE)
    websocket = _section(text, "backend service_1_tcp")
    assert "balance leastconn" in websocket
    assert "server app-1 127.0.0.1:28081 check" in websocket
    assert "server app-2 127.0.0.1:29081 check" in websocket
    api = _section(text, "backend service_0_http")
    assert "server app-1 127.0.0.1:28080 check" in api


def test_http_checks_become_httpchk_with_the_path_and_shortest_interval() -> None:
    """http_checks give an HTTP health check expecting 2xx at the check's interval."""
    service = HttpService(
        checks=(HttpCheck(path="/ready", interval=D("10s"), timeout=D("3s")), HttpCheck())
    )
    text = render_haproxy(
        _config(http_service=service), instances=INSTANCES, certificate=CERT, port_base=BASE
    )
    api = _section(text, "backend service_0_http")
    assert "option httpchk" in api
    assert "http-check send meth GET uri /ready ver HTTP/1.1 hdr Host localhost" in api
    assert "http-check expect rstatus ^2" in api
    assert "default-server inter 10000ms fall 3 rise 2" in api
    assert "timeout check 2000ms" in api


def test_tcp_checks_are_connect_checks() -> None:
    """tcp_checks give a plain connect check (no httpchk) at their interval."""
    websocket = WebSocketService.build(check=TcpCheck(interval=D("5s"), timeout=D("1s")))
    text = render_haproxy(
        _config(http_service=None, services=(websocket,)),
        instances=INSTANCES,
        certificate=CERT,
        port_base=BASE,
    )
    backend = _section(text, "backend service_0_tcp")
    assert "option httpchk" not in backend
    assert "default-server inter 5000ms fall 3 rise 2" in backend


def test_service_without_checks_has_unchecked_servers() -> None:
    """Without checks haproxy is told not to check (servers have no `check`)."""
    plain = Service(internal_port=8081, ports=(ServicePort(port=9000),))
    text = render_haproxy(
        _config(http_service=None, services=(plain,)),
        instances=INSTANCES,
        certificate=CERT,
        port_base=BASE,
    )
    assert "server app-1 127.0.0.1:28081\n" in text


def test_proxy_proto_v2_sends_proxy_v2_to_servers() -> None:
    """The proxy_proto handler with version v2 adds send-proxy-v2 to every server."""
    websocket = WebSocketService.build(proxy_proto="v2")
    text = render_haproxy(
        _config(http_service=None, services=(websocket,)),
        instances=INSTANCES,
        certificate=CERT,
        port_base=BASE,
    )
    assert "server app-2 127.0.0.1:29081 check send-proxy-v2" in text


def test_duplicate_public_ports_are_refused() -> None:
    """Two services on one public port are refused, naming the port."""
    clash = Service(internal_port=8081, ports=(ServicePort(port=443, handlers=("tls",)),))
    with pytest.raises(EdgeError, match="public port 443"):
        render_haproxy(
            _config(services=(clash,)), instances=INSTANCES, certificate=CERT, port_base=BASE
        )


def test_an_instance_missing_an_internal_port_is_refused() -> None:
    """Every instance must listen on every service's internal port."""
    partial = (Instance(name="app-1", ports={8080: 28080}),)
    with pytest.raises(EdgeError, match="instance app-1 has no port for internal port 8081"):
        render_haproxy(_config(), instances=partial, certificate=CERT, port_base=BASE)


def test_no_instances_is_refused() -> None:
    """An edge with nothing behind it is refused."""
    with pytest.raises(EdgeError, match="at least one backend instance"):
        render_haproxy(_config(), instances=(), certificate=CERT, port_base=BASE)


def test_rendering_is_deterministic() -> None:
    """The same model renders the same text (a trigger digest depends on it)."""
    first = render_haproxy(_config(), instances=INSTANCES, certificate=CERT, port_base=BASE)
    assert first == render_haproxy(_config(), instances=INSTANCES, certificate=CERT, port_base=BASE)


@pytest.mark.integration
def test_rendered_config_is_accepted_by_haproxy(tmp_path: Path) -> None:
    """`haproxy -c` accepts the configuration rendered for the default services."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy not installed: `apt-get install haproxy` (.ci/run does)")
    certs = ensure_certificates(tmp_path / "tls")
    websocket = WebSocketService.build(proxy_proto="v1")
    for config in (_config(), _config(services=(websocket,))):
        path = tmp_path / "haproxy.cfg"
        path.write_text(
            render_haproxy(config, instances=INSTANCES, certificate=str(certs.edge), port_base=BASE)
        )
        result = subprocess.run(
            [haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
