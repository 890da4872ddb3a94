"""The HTTP service: probes, metrics, the demo page, dev tokens, HTTP/1.1 behaviour."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import jwt
import pytest
from realtime.app import App
from realtime.ids import RoomName
from realtime.settings import Settings
from websockets.exceptions import InvalidStatus

from tests.backend.conftest import SIGNING_KEY, TEST_SETTINGS, ClientFactory, raw_connect
from tests.backend.conftest import with_settings as _with_settings


@pytest.fixture
def settings() -> Settings:
    """The shared test settings with the metrics site on a free port too."""
    return dataclasses.replace(TEST_SETTINGS, metrics_port=0)


def with_settings(**changes: Any) -> Any:
    return _with_settings(metrics_port=0, **changes)


async def http(
    app: App, request: bytes, *, responses: int = 1, port: int | None = None
) -> list[tuple[int, dict[str, str], bytes]]:
    """Send raw bytes to the HTTP port (or ``port``); read ``responses`` responses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port or app.http.port)
    writer.write(request)
    results = []
    methods = [part.split(b" ", 1)[0] for part in request.split(b"\r\n\r\n") if part]
    try:
        for i in range(responses):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
            status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            length = int(headers["content-length"])
            is_head = methods[i] == b"HEAD"
            body = await reader.readexactly(length) if length and not is_head else b""
            results.append((int(status_line.split(" ")[1]), headers, body))
    finally:
        writer.close()
    return results


async def get(app: App, path: str, *, port: int | None = None) -> tuple[int, dict[str, str], bytes]:
    return (await http(app, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), port=port))[0]


async def post(app: App, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return (await http(app, head.encode() + body))[0]


async def test_healthz_and_readyz(app: App) -> None:
    """Liveness and readiness answer 200 on a running instance."""
    assert (await get(app, "/healthz"))[::2] == (200, b"ok\n")
    assert (await get(app, "/readyz"))[::2] == (200, b"ready\n")


async def test_readyz_is_503_when_the_broker_is_not_ready(app: App) -> None:
    """A closed broker makes /readyz 503 while /healthz stays 200."""
    await app.ws.broker.close()
    assert (await get(app, "/readyz"))[::2] == (503, b"broker not ready\n")
    assert (await get(app, "/healthz"))[0] == 200


async def test_join_while_broker_not_ready_is_unavailable(app: App, client: ClientFactory) -> None:
    """Joining while the broker is down answers an unavailable error frame."""
    alice = await client("alice")
    await app.ws.broker.close()
    await alice.send(type="join", room="lobby")
    assert (await alice.expect("error"))["code"] == "unavailable"


async def test_metrics_expose_the_documented_series(app: App, client: ClientFactory) -> None:
    """/metrics (on METRICS_PORT) is Prometheus text with connections, rooms, traffic and
    refusals (hello, join and the bad frame count as frames in)."""
    alice = await client("alice")
    await alice.join()
    await alice.ws.send("not json")
    await alice.expect("error")
    status, headers, body = await get(app, "/metrics", port=app.http.metrics_port)
    text = body.decode()
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    for line in (
        "realtime_connections 1.0",
        "realtime_rooms 1.0",
        "realtime_messages_in_total 3.0",
        'realtime_error_frames_total{code="bad_json"} 1.0',
        "realtime_send_queue_bytes 0.0",
    ):
        assert line in text
    for name in ("messages_out", "dropped", "rate_limited", "slow_consumers"):
        assert f"realtime_{name}_total" in text


async def test_metrics_are_only_on_the_metrics_port(app: App) -> None:
    """The public port answers 404 for /metrics; the metrics port serves nothing else."""
    assert app.http.metrics_port not in (0, app.http.port, app.ws.port)
    assert (await get(app, "/metrics"))[::2] == (404, b"no route for /metrics\n")
    assert (await get(app, "/metrics", port=app.http.metrics_port))[0] == 200
    for path in ("/healthz", "/readyz", "/", "/config.json"):
        assert (await get(app, path, port=app.http.metrics_port))[0] == 404, path
    ((status, headers, body),) = await http(
        app, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port=app.http.metrics_port
    )
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) > 0


async def test_demo_page_and_assets(app: App) -> None:
    """/ serves the page with a CSP; its script and stylesheet are served too."""
    status, headers, body = await get(app, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert b'data-testid="message-input"' in body
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, body = await get(app, path)
        assert (status, headers["content-type"].split(";")[0]) == (200, kind)
        assert body


async def test_config_json_tells_the_page_where_to_connect(app: App) -> None:
    """/config.json carries PUBLIC_WS_URL (null when unset) and the WS port."""
    status, _, body = await get(app, "/config.json")
    assert status == 200
    assert json.loads(body) == {"wsUrl": None, "wsPort": 0, "devTokens": False}


async def test_dev_token_is_off_by_default(app: App) -> None:
    """Without DEV_TOKENS=1 there is no /dev/token route: 404 for any method."""
    assert (await post(app, "/dev/token", b'{"user":"alice"}'))[::2] == (
        404,
        b"no route for /dev/token\n",
    )
    assert (await get(app, "/dev/token"))[0] == 404


@with_settings(dev_tokens=True)
async def test_dev_token_wants_post(app: App) -> None:
    """With DEV_TOKENS=1, GET /dev/token is 405 naming POST."""
    status, headers, body = await get(app, "/dev/token")
    assert (status, headers["allow"], body) == (405, "POST", b"use POST\n")


@with_settings(dev_tokens=True)
async def test_dev_token_issues_a_working_token(app: App) -> None:
    """With DEV_TOKENS=1, POST /dev/token signs a token the WebSocket service accepts."""
    status, _, body = await post(app, "/dev/token", b'{"user":"alice"}')
    assert status == 200
    token = json.loads(body)["token"]
    claims = jwt.decode(token, SIGNING_KEY, algorithms=["HS256"])
    assert (claims["sub"], claims["name"]) == ("dev:alice", "alice")
    c = await raw_connect(app)
    await c.send(type="hello", v=[1], token=token)
    assert (await c.expect("welcome"))["user"]["name"] == "alice"
    await c.ws.close()


@with_settings(dev_tokens=True)
@pytest.mark.parametrize("body", [b"nope", b'{"user": ""}', b'{"user": "a b"}', b"[1]"])
async def test_dev_token_rejects_bad_names(app: App, body: bytes) -> None:
    """A bad /dev/token body is a 400 naming the problem."""
    status, _, text = await post(app, "/dev/token", body)
    assert status == 400
    assert text.startswith((b"invalid user", b"body must be JSON"))


async def test_http_errors(app: App) -> None:
    """Unknown paths 404, wrong methods 405 with Allow, malformed requests 400, big 413."""
    assert (await get(app, "/nope"))[0] == 404
    status, headers, _ = await post(app, "/healthz", b"")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert (await http(app, b"NONSENSE\r\n\r\n"))[0][0] == 400
    big = b"POST /dev/token HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n"
    ((status, headers, text),) = await http(app, big)
    assert (status, headers["connection"]) == (413, "close")
    assert text == b"body too large: 999999 bytes, at most 16384\n"
    chunked = b"POST /dev/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert (await http(app, chunked))[0][0] == 501
    # HTTP/1.1 requires Host (RFC 9112 section 3.2): aiohttp refuses a request without one
    assert (await http(app, b"GET /healthz HTTP/1.1\r\n\r\n"))[0][0] == 400


async def test_keep_alive_and_head(app: App) -> None:
    """Two requests on one connection both get answers; HEAD has headers and no body."""
    request = b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    (s1, h1, b1), (s2, _, b2) = await http(app, request, responses=2)
    assert (s1, h1["content-length"], b1) == (200, "3", b"")
    assert (s2, b2) == (200, b"ready\n")


async def test_every_answer_carries_the_common_headers(app: App) -> None:
    """no-store, nosniff and a versionless Server on pages, probes, errors and metrics; the
    CSP on the page only."""
    for path, port in (
        ("/", None),
        ("/healthz", None),
        ("/nope", None),
        ("/metrics", app.http.metrics_port),
    ):
        _, headers, _ = await get(app, path, port=port)
        assert (
            headers["cache-control"],
            headers["x-content-type-options"],
            headers["server"],
        ) == ("no-store", "nosniff", "realtime"), path
        assert ("content-security-policy" in headers) == (path == "/"), path


@with_settings(drain_seconds=1.0)
async def test_drain_closes_1012_refuses_handshakes_and_fails_readiness(
    app: App, client: ClientFactory
) -> None:
    """During a drain /readyz is 503, new handshakes get 503, open sockets get 1012."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    await alice.expect("presence")
    draining = asyncio.create_task(app.ws.drain(1.0))
    await asyncio.sleep(0)
    assert (await get(app, "/readyz"))[::2] == (503, b"draining\n")
    with pytest.raises(InvalidStatus) as refused:
        await raw_connect(app)
    assert refused.value.response.status_code == 503
    assert await alice.closed_with() == (1012, "server restarting")
    assert (await bob.closed_with())[0] == 1012
    await asyncio.wait_for(draining, 5)
    # every connection's presence entry was removed (and its leave published) on the way out
    assert await app.ws.broker.presence_snapshot(RoomName("lobby")) == []
