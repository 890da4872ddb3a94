"""Every client input answered as documented (docs/PROTOCOL.md), through the real server:
unencodable text, token expiry and refresh, the 4001 reasons, ``ref`` on ``unavailable``,
the keepalive close, body length in UTF-16 units, and the close metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest
from realtime.app import App
from realtime.auth import TokenVerifier
from realtime.broker import BrokerError, Kind, MemoryBroker
from realtime.ids import RoomName
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Close
from websockets.uri import parse_uri

from tests.backend.conftest import (
    SIGNING_KEY,
    TEST_SETTINGS,
    Client,
    ClientFactory,
    raw_connect,
    with_settings,
)
from tests.backend.redis_server import RedisServer, running_redis


def _token(sub: object, name: object = None, *, ttl: float = 600) -> str:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time() + ttl)}
    if name is not None:
        claims["name"] = name
    return jwt.encode(claims, SIGNING_KEY, algorithm="HS256")


async def _error(client: Client, frame: str) -> dict[str, Any]:
    await client.ws.send(frame)
    return await client.expect("error")


# 1. text that cannot be encoded never gets in


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ('{"type":"message","room":"lobby","id":"m1","body":"\\ud800"}', "body"),
        ('{"type":"message","room":"lobby","id":"m1","body":"ok \\udfff ok"}', "body"),
        ('{"type":"message","room":"lobby","id":"\\ud800","body":"x"}', "id"),
        ('{"type":"join","room":"\\ud800"}', "room"),
        ('{"type":"join","room":"lobby","since":{"offset":0,"epoch":"\\ud800"}}', "since.epoch"),
        ('{"type":"typing","room":"lobby","state":"\\ud800"}', "state"),
        ('{"type":"ping","id":"\\ud800"}', "id"),
        ('{"type":"refresh","token":"\\ud800"}', "token"),
    ],
)
async def test_a_lone_surrogate_in_any_field_is_invalid_field(
    client: ClientFactory, frame: str, field: str
) -> None:
    """Each client string with a lone surrogate is answered invalid_field naming the field;
    the error frame is valid UTF-8, the connection stays, and the room got nothing."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    await alice.expect("presence")
    error = await _error(alice, frame)
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert "ref" not in error or error["ref"] == "m1"
    await alice.assert_alive()
    await bob.assert_alive()  # no message, typing or presence frame reached bob


@pytest.mark.parametrize(
    "token",
    [_token("\ud800"), _token("alice", "al\udcffice"), "t\u00e9.x.y"],
    ids=["sub", "name", "non-ascii-token"],
)
async def test_a_lone_surrogate_in_a_token_closes_4001(
    app: App, client: ClientFactory, token: str
) -> None:
    """A token whose sub or name cannot be encoded (or a non-ASCII token) closes with 4001
    invalid token, never 1011; other connections are unaffected."""
    bob = await client("bob")
    anon = await raw_connect(app)
    await anon.send(type="hello", v=[1], token=token)
    assert await anon.closed_with() == (4001, "invalid token")
    await bob.assert_alive()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def either_app(request: pytest.FixtureRequest) -> AsyncIterator[App]:
    """An in-process instance on the memory broker, then on a real redis-server."""
    settings = TEST_SETTINGS
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        settings = dataclasses.replace(settings, redis_url=redis.url)
    app = App(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.ws.stop()
        await app.http.stop()


async def _hello(app: App, user: str) -> Client:
    c = await raw_connect(app, close_timeout=1)
    await c.send(type="hello", v=[1], token=app.verifier.issue(user, user))
    c.welcome = await c.expect("welcome")
    return c


async def test_a_bad_message_cannot_poison_history(either_app: App) -> None:
    """On either broker, a body with a lone surrogate is refused before it is stored: a later
    join with since replays only the good messages and the joiner is not closed."""
    app = either_app
    room = f"poison-{time.monotonic_ns()}"
    alice = await _hello(app, "alice")
    await alice.join(room)
    error = await _error(alice, f'{{"type":"message","room":"{room}","id":"bad","body":"\\ud800"}}')
    assert (error["code"], error["field"], error["ref"]) == ("invalid_field", "body", "bad")
    await alice.send(type="message", room=room, id="good", body="fine")
    answers = {f["type"]: f for f in [await alice.recv(), await alice.recv()]}
    assert (answers["message"]["body"], answers["ack"]["offset"]) == ("fine", 1)
    bob = await _hello(app, "bob")
    joined = await bob.join(room, since={"offset": 0, "epoch": ""})
    assert (joined["replayed"], [m["body"] for m in bob.replayed]) == (1, ["fine"])
    await bob.assert_alive()
    for c in (alice, bob):
        await c.ws.close()


# 7. docs and behaviour agree


@pytest.mark.parametrize(
    "hello",
    [
        '{"type":"hello","v":[1]}',
        '{"type":"hello","v":[1],"token":""}',
        '{"type":"hello","v":[1],"token":7}',
        '{"type":"hello","v":[1],"token":"' + "x" * 5000 + '"}',
        '{"type":"hello","v":[1],"token":"not-a-jwt"}',
    ],
    ids=["missing", "empty", "not-a-string", "too-long", "malformed"],
)
async def test_missing_or_malformed_token_closes_4001_invalid_token(app: App, hello: str) -> None:
    """The close-code table: token missing, empty or malformed is 4001 invalid token."""
    anon = await raw_connect(app)
    await anon.ws.send(hello)
    assert await anon.closed_with() == (4001, "invalid token")


@pytest.mark.parametrize(
    ("sub", "ttl", "reason"),
    [("", 600, "invalid token"), ("x" * 129, 600, "invalid token"), ("a", -60, "token expired")],
    ids=["empty-sub", "long-sub", "expired"],
)
async def test_4001_reasons_are_the_two_documented(
    app: App, sub: str, ttl: float, reason: str
) -> None:
    """4001's reason is exactly invalid token or token expired, whatever the cause."""
    anon = await raw_connect(app)
    await anon.send(type="hello", v=[1], token=_token(sub, ttl=ttl))
    assert await anon.closed_with() == (4001, reason)


class _Unready(MemoryBroker):
    """A broker that went away after the joins (Redis restarting)."""

    down = False

    @property
    def ready(self) -> bool:
        return not self.down

    async def publish_ephemeral(self, room: RoomName, kind: Kind, frame: str) -> None:
        if self.down:
            raise BrokerError("redis unreachable")
        await super().publish_ephemeral(room, kind, frame)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message", "room": "lobby", "id": "m-9", "body": "x"},
        {"type": "join", "room": "other", "id": "m-9"},
        {"type": "typing", "room": "lobby", "state": "start", "id": "m-9"},
    ],
    ids=["message", "join", "typing"],
)
async def test_unavailable_carries_ref(
    app: App, client: ClientFactory, frame: dict[str, Any]
) -> None:
    """During a broker outage, unavailable repeats the frame's id as ref (PROTOCOL.md)."""
    broker = _Unready(app.ws.hub.deliver, history_size=10)
    await broker.start()
    app.ws.broker = broker
    alice = await client("alice")
    await alice.join()
    broker.down = True
    await alice.send(**frame)
    error = await alice.expect("error")
    assert (error["code"], error["ref"]) == ("unavailable", "m-9")
    broker.down = False
    await alice.assert_alive()


async def test_since_without_epoch_is_missing_field(client: ClientFactory) -> None:
    """since needs offset and epoch: without epoch it is missing_field since.epoch."""
    alice = await client("alice")
    error = await _error(alice, '{"type":"join","room":"lobby","since":{"offset":1}}')
    assert (error["code"], error["field"]) == ("missing_field", "since.epoch")
    await alice.assert_alive()


async def test_body_length_is_counted_in_utf16_units(client: ClientFactory) -> None:
    """2,000 emoji (4,000 UTF-16 units, JS .length) pass; 2,001 are invalid_field body."""
    alice = await client("alice")
    await alice.join()
    await alice.send(type="message", room="lobby", id="m1", body="\U0001f600" * 2000)
    assert (await alice.expect("message"))["body"] == "\U0001f600" * 2000
    await alice.expect("ack")
    await alice.send(type="message", room="lobby", id="m2", body="\U0001f600" * 2001)
    error = await alice.expect("error")
    assert (error["code"], error["field"], error["ref"]) == ("invalid_field", "body", "m2")
    assert "4002 UTF-16 code units" in error["detail"]


def _metric(app: App, line: str) -> bool:
    return line in app.metrics.render().decode().splitlines()


async def test_closes_total_counts_1007_1009_and_messages_in_counts_hello(
    app: App, client: ClientFactory
) -> None:
    """realtime_closes_total counts the closes websockets sends (1007, 1009);
    realtime_messages_in_total counts hello too."""
    alice = await client("alice")
    assert _metric(app, "realtime_messages_in_total 1.0")
    await alice.ws.send(b"\xff\xfe", text=True)
    assert (await alice.closed_with())[0] == 1007
    big = await client("bob", max_size=None)
    await big.ws.send("x" * (64 * 1024 + 1))
    assert (await big.closed_with())[0] == 1009
    await asyncio.sleep(0.1)
    assert _metric(app, 'realtime_closes_total{code="1007"} 1.0')
    assert _metric(app, 'realtime_closes_total{code="1009"} 1.0')


@with_settings(ping_interval=0.2, ping_timeout=0.3)
async def test_missed_pong_closes_1011_keepalive_ping_timeout(app: App) -> None:
    """A client that never answers pings is closed with 1011 keepalive ping timeout, as the
    close-code table says (a raw socket client that reads but never writes a pong)."""
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{app.ws.port}/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", app.ws.port)
    try:
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()))
        protocol.receive_data(await reader.read(4096))
        protocol.send_text(
            json.dumps({"type": "hello", "v": [1], "token": app.verifier.issue("a", "a")}).encode()
        )
        # everything written from here on would be a pong: it is dropped
        writer.write(b"".join(protocol.data_to_send()))
        close: Close | None = None
        started = time.monotonic()
        async with asyncio.timeout(5):
            while close is None:
                data = await reader.read(65536)
                assert data, "EOF before a close frame"
                protocol.receive_data(data)
                protocol.events_received()
                close = protocol.close_rcvd
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    assert (close.code, close.reason) == (1011, "keepalive ping timeout")
    assert elapsed < 2
    await asyncio.sleep(0.1)
    assert _metric(app, 'realtime_closes_total{code="1011"} 1.0')


async def test_unmasked_frame_closes_1002(app: App) -> None:
    """A client frame without a mask breaks RFC 6455: 1002, counted in the close metric."""
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{app.ws.port}/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", app.ws.port)
    try:
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()))
        protocol.receive_data(await reader.read(4096))
        writer.write(b"\x81\x02hi")  # FIN + text, length 2, mask bit not set
        async with asyncio.timeout(5):
            while protocol.close_rcvd is None:
                data = await reader.read(65536)
                assert data, "EOF before a close frame"
                protocol.receive_data(data)
                protocol.events_received()
    finally:
        writer.close()
    assert protocol.close_rcvd.code == 1002
    await asyncio.sleep(0.1)
    assert _metric(app, 'realtime_closes_total{code="1002"} 1.0')


async def test_embedded_stop_closes_1001(app: App, client: ClientFactory) -> None:
    """Stopping the server without a drain (embedded use) closes with 1001."""
    alice = await client("alice")
    stopping = asyncio.create_task(app.ws.stop())
    assert (await alice.closed_with())[0] == 1001
    await stopping


async def test_client_close_is_answered_1000(client: ClientFactory) -> None:
    """A client's normal close is answered with 1000 (the table's first row)."""
    alice = await client("alice")
    await alice.ws.close()
    assert alice.ws.close_code == 1000


async def test_plain_http_on_the_websocket_port_is_426(app: App) -> None:
    """A request that is not a WebSocket upgrade gets HTTP 426 (the status table)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.ws.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            status = await reader.readline()
    finally:
        writer.close()
    assert status.split()[1] == b"426"


async def test_handshake_while_draining_is_503(app: App) -> None:
    """A handshake during a drain is refused with HTTP 503 (the status table)."""
    app.ws.draining = True
    with pytest.raises(InvalidStatus) as refused:
        await raw_connect(app)
    assert refused.value.response.status_code == 503


# 4. token expiry on open connections


@pytest.fixture
def strict_app(app: App) -> App:
    """The instance without the 5 s clock-skew leeway, so expiry tests take ~1 s."""
    app.ws.verifier = TokenVerifier(SIGNING_KEY, leeway=0.0)
    return app


async def _hello_with(app: App, token: str) -> Client:
    c = await raw_connect(app, close_timeout=1)
    await c.send(type="hello", v=[1], token=token)
    c.welcome = await c.expect("welcome")
    return c


async def test_connection_closes_4001_token_expired_at_exp(strict_app: App) -> None:
    """An open connection is closed with 4001 token expired when its token expires."""
    alice = await _hello_with(strict_app, _token("alice", ttl=1))
    started = time.monotonic()
    assert await alice.closed_with(timeout=5) == (4001, "token expired")
    assert time.monotonic() - started < 2.5
    assert _metric(strict_app, 'realtime_closes_total{code="4001"} 1.0')


async def test_refresh_extends_the_connection(strict_app: App) -> None:
    """A refresh with a newer token for the same sub is answered refreshed (new exp) and
    the connection outlives the first token."""
    alice = await _hello_with(strict_app, _token("alice", ttl=1))
    fresh = _token("alice", ttl=600)
    await alice.send(type="refresh", token=fresh)
    refreshed = await alice.expect("refreshed")
    assert refreshed == {
        "type": "refreshed",
        "exp": jwt.decode(fresh, SIGNING_KEY, ["HS256"])["exp"],
    }
    await asyncio.sleep(2.0)
    await alice.assert_alive()
    await alice.ws.close()


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        (_token("bob", ttl=600), "token is for another user"),
        (_token("alice", ttl=-60), "token expired"),
        (jwt.encode({"sub": "alice", "exp": 4102444800}, "x" * 40), "invalid token"),
    ],
    ids=["other-sub", "expired", "forged"],
)
async def test_refused_refresh_is_an_error_and_the_old_exp_stands(
    strict_app: App, token: str, detail: str
) -> None:
    """A refresh for another sub (or an expired or forged one) is invalid_field token with
    the documented detail; the connection still closes at the first token's exp."""
    alice = await _hello_with(strict_app, _token("alice", ttl=2))
    await alice.send(type="refresh", token=token, id="r1")
    error = await alice.expect("error")
    assert (error["code"], error["field"], error["detail"], error["ref"]) == (
        "invalid_field",
        "token",
        detail,
        "r1",
    )
    assert await alice.closed_with(timeout=5) == (4001, "token expired")
