"""What happens when the edge offers h2 on the WebSocket port (docs/EDGE_FINDINGS.md)

The WebSocket port pins ALPN to ``http/1.1``. These tests re-check, against a variant of the
edge whose WebSocket port offers ``h2,http/1.1`` (TLS, then ``mode tcp`` to the HTTP/1.1-only
backend), the behaviour the finding records: the edge picks h2 for any client that offers it,
the backend then receives the HTTP/2 preface and closes without a byte; Chromium's WebSocket
still works because Chromium offers only ``http/1.1`` for a ``wss://`` connection, but Chromium
loading any other URL on that port negotiates h2 and fails. The pinned edge answers the same
clients over HTTP/1.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Error, Page

from tests.integration.edge_fixtures import (
    Edge,
    chromium,
    dev_fly_config,
    running_edge,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# RFC 9113 section 3.4: the client connection preface, then an empty SETTINGS frame
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
WS_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
_OPEN_SOCKET = """async ([url, token]) => await new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onopen = () => ws.send(JSON.stringify({type: "hello", v: [1], token}));
  ws.onmessage = (event) => { resolve(JSON.parse(event.data).type); ws.close(); };
  ws.onclose = (event) => resolve(`closed ${event.code}`);
})"""


@pytest.fixture(scope="module")
def h2_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    fly = dev_fly_config(websocket_alpn=("h2", "http/1.1"))
    with running_edge(tmp_path_factory.mktemp("h2-edge"), fly=fly) as edge:
        yield edge


@pytest.fixture(scope="module")
def pinned_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(tmp_path_factory.mktemp("pinned-edge"), fly=dev_fly_config()) as edge:
        yield edge


def _exchange(
    edge: Edge, alpn: list[str], payload: bytes, *, port: int | None = None
) -> tuple[str | None, bytes]:
    """Connect over TLS offering ``alpn``, send ``payload``; the negotiated protocol and every
    byte the other side sent until it closed (or sent a complete HTTP head, for a 101)."""
    with (
        socket.create_connection(("127.0.0.1", port or edge.wss_port), timeout=10) as raw,
        edge.client_tls(alpn).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(payload)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        return tls.selected_alpn_protocol(), answer


def _direct(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(payload)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
        return answer


def _new_alpn(edge: Edge, before: int) -> list[str]:
    """The ALPN of the WebSocket port's connections the edge logged after the first
    ``before`` (haproxy writes the line when the connection is set up: wait for one)."""
    deadline = time.monotonic() + 5
    while len(logged := edge.alpn_log(8081)) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    return logged[before:]


def _settled_alpn(edge: Edge, before: int) -> list[str]:
    """Like :func:`_new_alpn`, then until no new connection came for a second (Chromium retries
    a failed navigation on a new connection)."""
    _new_alpn(edge, before)
    deadline = time.monotonic() + 10
    count = -1
    while count != (count := len(edge.alpn_log(8081))) and time.monotonic() < deadline:
        time.sleep(1)
    return edge.alpn_log(8081)[before:]


def test_an_h2_offer_gets_h2_and_the_backend_drops_the_http2_preface(h2_edge: Edge) -> None:
    """Offering h2 at all gets h2; the backend closes on the HTTP/2 preface without a byte."""
    assert _exchange(h2_edge, ["h2", "http/1.1"], H2_PREFACE) == ("h2", b"")
    # the edge's order wins: a client preferring http/1.1 still gets h2
    assert _exchange(h2_edge, ["http/1.1", "h2"], H2_PREFACE) == ("h2", b"")
    # the same bytes without the edge: the backend itself closes silently
    assert _direct(h2_edge.backend_ws_port, H2_PREFACE) == b""
    # an HTTP/1.1 upgrade on an h2 connection still reaches the backend as HTTP/1.1 bytes:
    # the edge does not speak HTTP in tcp mode, it only labelled the connection h2
    protocol, answer = _exchange(h2_edge, ["h2"], WS_UPGRADE)
    assert protocol == "h2"
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_the_pinned_edge_keeps_h2_capable_clients_on_http11(pinned_edge: Edge) -> None:
    """With alpn http/1.1 an h2-and-http/1.1 client gets http/1.1 and its upgrade answers 101."""
    protocol, answer = _exchange(pinned_edge, ["h2", "http/1.1"], WS_UPGRADE)
    assert protocol == "http/1.1"
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    # a client that offers only h2 gets no ALPN at all rather than h2
    assert _exchange(pinned_edge, ["h2"], WS_UPGRADE)[0] is None


def _page(browser: Browser, edge: Edge) -> Page:
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.goto(edge.https_url, wait_until="networkidle")
    return page


def test_chromium_websocket_offers_only_http11_so_it_works_even_when_h2_is_offered(
    h2_edge: Edge,
) -> None:
    """Chromium's wss:// negotiates http/1.1 on the h2 edge; loading that port as https fails."""
    with chromium(h2_edge) as browser:
        page = _page(browser, h2_edge)
        before = len(h2_edge.alpn_log(8081))
        token = h2_edge.dev_token("chromium")
        assert page.evaluate(_OPEN_SOCKET, [h2_edge.wss_url, token]) == "welcome"
        assert _new_alpn(h2_edge, before) == ["http/1.1"]

        before = len(h2_edge.alpn_log(8081))
        with pytest.raises(Error, match="net::ERR_CONNECTION_CLOSED"):
            page.goto(f"https://localhost:{h2_edge.wss_port}/")
        tried = _settled_alpn(h2_edge, before)
        print(f"chromium navigation to the h2 websocket port: {len(tried)} connections {tried}")
        assert tried
        assert set(tried) == {"h2"}

        # the failed h2 attempts leave no HTTP/2 session behind for RFC 8441: still http/1.1
        page = _page(browser, h2_edge)
        before = len(h2_edge.alpn_log(8081))
        token = h2_edge.dev_token("chromium-again")
        assert page.evaluate(_OPEN_SOCKET, [h2_edge.wss_url, token]) == "welcome"
        assert _new_alpn(h2_edge, before) == ["http/1.1"]


def test_chromium_loading_the_pinned_websocket_port_speaks_http11(
    pinned_edge: Edge,
) -> None:
    """On the pinned edge Chromium's https load of the WebSocket port gets the backend's 426."""
    with chromium(pinned_edge) as browser:
        page = browser.new_page()
        before = len(pinned_edge.alpn_log(8081))
        response = page.goto(f"https://localhost:{pinned_edge.wss_port}/")
        assert response is not None
        assert response.status == 426
        assert set(_new_alpn(pinned_edge, before)) == {"http/1.1"}
