"""A private TLS edge for the browser and keepalive tests: one backend behind haproxy, free ports

Everything runs from a temporary directory on ports nobody else holds, so these tests neither
need nor disturb `make up`: the development CA and edge certificate come from
``infra.local.certs``, the haproxy configuration from ``infra.local.edge.render_haproxy`` (the
same renderer the local target uses) with a free port base, and the backend is
``python -m realtime`` with its settings in the environment.

The rendered haproxy configuration gets two test-only changes: a log line per connection naming
the frontend and the negotiated ALPN protocol (``alpn=h2``), written as soon as the connection
is established (``option logasap``), so a test can see what a browser negotiated with the edge;
and ``timeout tunnel`` replaced by the test's value (the keepalive test lowers it to seconds).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, sync_playwright

from infra.flytoml.model import FlyConfig, HttpService, WebSocketService
from infra.local.certs import ensure_certificates
from infra.local.edge import Instance, edge_port, fly_services, render_haproxy
from infra.local.loopback import free_port, free_port_base, spawn, stop_group
from infra.local.supervise import wait_tcp

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # haproxy listens on 127.0.0.1 only; the certificate names localhost
    "--host-resolver-rules=MAP localhost 127.0.0.1",
)
ARTIFACTS = REPO / "test-artifacts"
_LOG_LINE = '    log-format "edge %f alpn=%[ssl_fc_alpn] client=%ci:%cp"\n    option logasap\n'
_START_TIMEOUT = 15.0
_HTTP_INTERNAL_PORT = HttpService().internal_port


def dev_fly_config(*, websocket_alpn: tuple[str, ...] = ("http/1.1",)) -> FlyConfig:
    """The services of the dev stack: ``[http_service]`` on 80/443 and the WebSocket service on
    8081 with the given ALPN list (the project pins ``http/1.1``)."""
    return FlyConfig(
        app="realtime-edge-test",
        http_service=HttpService(),
        services=(WebSocketService.build(alpn=websocket_alpn),),
    )


def spki_sha256(pem: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the first certificate in ``pem``: the form
    Chromium's ``--ignore-certificate-errors-spki-list`` takes."""
    certificate = x509.load_pem_x509_certificate(pem.read_bytes())
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """A running edge: where to reach it and what it logged."""

    https_port: int
    """The stand-in of public port 443 (the demo page, ``mode http``)."""
    wss_port: int
    """The stand-in of the WebSocket service's public port (TLS, then ``mode tcp``)."""
    backend_http_port: int
    backend_ws_port: int
    backend_metrics_port: int
    ca: Path
    spki: str
    """The edge certificate's SPKI hash for Chromium (trust it without a certificate store)."""
    edge_log: Path
    backend_log: Path

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.https_port}/"

    @property
    def wss_url(self) -> str:
        return f"wss://localhost:{self.wss_port}/"

    def client_tls(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A TLS context that trusts the development CA, offering ``alpn`` if given."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if alpn is not None:
            context.set_alpn_protocols(alpn)
        return context

    def alpn_log(self, public_port: int) -> list[str]:
        """The ALPN protocol of every connection the edge logged on ``public_port``'s frontend
        (``"-"`` when none was negotiated)."""
        frontend = f"edge public_{public_port} "
        return [
            line.split("alpn=", 1)[1].split(" ", 1)[0]
            for line in self.edge_log.read_text().splitlines()
            if line.startswith(frontend)
        ]

    def dev_token(self, user: str) -> str:
        """A token from the backend's ``POST /dev/token`` (DEV_TOKENS=1)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.backend_http_port}/dev/token",
            data=json.dumps({"user": user}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 loopback
            token: str = json.load(response)["token"]
            return token


def _instrument(config: str, *, tunnel_timeout: str) -> str:
    """The rendered configuration with the ALPN log line and the test's tunnel timeout."""
    tunnel = re.findall(r"^    timeout tunnel \S+$", config, flags=re.MULTILINE)
    if len(tunnel) != 1 or config.count("\ndefaults\n") != 1:
        raise RuntimeError(f"rendered haproxy configuration changed shape:\n{config}")
    config = config.replace(tunnel[0], f"    timeout tunnel {tunnel_timeout}")
    return config.replace("\ndefaults\n", "\ndefaults\n" + _LOG_LINE, 1)


@contextlib.contextmanager
def running_edge(
    workdir: Path,
    *,
    fly: FlyConfig,
    backend_env: Mapping[str, str] | None = None,
    tunnel_timeout: str = "1h",
    tls_dir: Path | None = None,
) -> Iterator[Edge]:
    """Start one backend and haproxy in front of it (the edge for ``fly``'s services); stop both
    on exit. ``backend_env`` adds or overrides backend settings (``PING_INTERVAL``); edges given
    the same ``tls_dir`` share one certificate (one browser trusts them all)."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy not installed: `apt-get install haproxy` (.ci/run does)")
    certificates = ensure_certificates(tls_dir or workdir / "tls", hosts=("localhost", "127.0.0.1"))
    http_port, ws_port, metrics_port = free_port(), free_port(), free_port()
    public_ports = tuple(p.port for s in fly_services(fly) for p in s.ports)
    # a base whose edge ports are all free (never 10000, the default of make up)
    base = free_port_base(
        lambda base: [edge_port(port, base=base) for port in public_ports], low=11000, high=24000
    )
    https_port = edge_port(443, base=base)
    wss_port = edge_port(fly.websocket.public_port, base=base)
    haproxy_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env = {
        **haproxy_env,
        "HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "WS_PORT": str(ws_port),
        "METRICS_PORT": str(metrics_port),
        "DEV_TOKENS": "1",
        "PUBLIC_WS_URL": f"wss://localhost:{wss_port}/",
        "ALLOWED_ORIGINS": f"https://localhost:{https_port}",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "INFO",
        **(backend_env or {}),
    }
    backend_log = workdir / "backend.log"
    edge_log = workdir / "edge.log"
    config = render_haproxy(
        fly,
        instances=(
            Instance(
                name="app-1",
                ports={_HTTP_INTERNAL_PORT: http_port, fly.websocket.internal_port: ws_port},
            ),
        ),
        certificate=str(certificates.edge),
        port_base=base,
    )
    config = _instrument(config, tunnel_timeout=tunnel_timeout)
    config_file = workdir / "haproxy.cfg"
    config_file.write_text(config)
    checked = subprocess.run(
        [haproxy, "-c", "-q", "-f", str(config_file)], capture_output=True, text=True, check=False
    )
    if checked.returncode != 0:
        raise RuntimeError(f"haproxy -c refused the configuration:\n{checked.stderr}\n{config}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        backend = spawn(
            [sys.executable, "-m", "realtime"], cwd=REPO / "backend", env=env, log=backend_log
        )
        processes.append(backend)
        wait_tcp("127.0.0.1", http_port, timeout=_START_TIMEOUT, process=backend, log=backend_log)
        wait_tcp("127.0.0.1", ws_port, timeout=_START_TIMEOUT, process=backend, log=backend_log)
        edge = spawn(
            [haproxy, "-db", "-f", str(config_file)], cwd=workdir, env=haproxy_env, log=edge_log
        )
        processes.append(edge)
        wait_tcp("127.0.0.1", https_port, timeout=_START_TIMEOUT, process=edge, log=edge_log)
        wait_tcp("127.0.0.1", wss_port, timeout=_START_TIMEOUT, process=edge, log=edge_log)
        yield Edge(
            https_port=https_port,
            wss_port=wss_port,
            backend_http_port=http_port,
            backend_ws_port=ws_port,
            backend_metrics_port=metrics_port,
            ca=certificates.ca,
            spki=spki_sha256(certificates.edge),
            edge_log=edge_log,
            backend_log=backend_log,
        )
    finally:
        for process in reversed(processes):
            stop_group(process)


def chromium_args(edge: Edge) -> list[str]:
    """Chromium's command line for ``edge``: the house flags, and the edge certificate trusted
    by its key hash (no ``--ignore-certificate-errors``)."""
    return [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={edge.spki}"]


@contextlib.contextmanager
def chromium(edge: Edge) -> Iterator[Browser]:
    """Debian's chromium under Playwright, trusting ``edge``'s certificate; fails (does not
    skip) when chromium is missing: the browser tier needs it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not installed: `apt-get install chromium` (.ci/run does)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=chromium_args(edge))
        try:
            yield browser
        finally:
            browser.close()
