"""The WebSocket service end to end: real websockets clients on loopback."""

from __future__ import annotations

import asyncio
import logging

import jwt
import pytest
from realtime.app import App
from realtime.broker import Appended, BrokerError, Kind, MemoryBroker
from realtime.ids import ClientMessageId, RoomName, User
from websockets.exceptions import InvalidStatus

from tests.backend.conftest import SIGNING_KEY, ClientFactory, raw_connect, with_settings


async def test_chat_message_reaches_members_and_sender_gets_ack(client: ClientFactory) -> None:
    """A message is delivered to every member with offset and epoch; the sender gets an ack."""
    alice, bob = await client("alice"), await client("bob")
    joined = await alice.join()
    await bob.join()
    await alice.expect("presence")
    await alice.send(type="message", room="lobby", id="m1", body="hello bob")
    for member in (alice, bob):
        message = await member.expect("message")
        assert message["body"] == "hello bob"
        assert message["user"] == {"id": "alice", "name": "alice"}
        assert (message["offset"], message["epoch"]) == (1, joined["epoch"])
    ack = await alice.expect("ack")
    assert ack == {
        "type": "ack",
        "room": "lobby",
        "id": "m1",
        "offset": 1,
        "epoch": joined["epoch"],
        "duplicate": False,
    }


async def test_welcome_names_version_connection_user_heartbeat(client: ClientFactory) -> None:
    """welcome carries the negotiated version, a connection id, the user and the heartbeat."""
    alice = await client("alice-1", name="Alice")
    assert alice.welcome["v"] == 1
    assert alice.welcome["user"] == {"id": "alice-1", "name": "Alice"}
    assert alice.welcome["heartbeat"] == 20
    assert len(alice.welcome["conn"]) == 16


async def test_retried_message_id_is_acked_again_never_delivered_twice(
    client: ClientFactory,
) -> None:
    """A retried id gets the same offset with duplicate=true; members see it once."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    await alice.expect("presence")
    await alice.send(type="message", room="lobby", id="m1", body="once")
    await alice.expect("message")
    first = await alice.expect("ack")
    await alice.send(type="message", room="lobby", id="m1", body="once")
    again = await alice.expect("ack")
    assert (again["offset"], again["duplicate"]) == (first["offset"], True)
    await alice.send(type="message", room="lobby", id="m2", body="twice")
    assert (await bob.expect("message"))["offset"] == 1
    assert (await bob.expect("message"))["offset"] == 2


async def test_the_same_id_from_another_user_is_a_new_message(client: ClientFactory) -> None:
    """Idempotency keys are per user: bob's m1 is not alice's m1."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    await alice.send(type="message", room="lobby", id="m1", body="a")
    await bob.send(type="message", room="lobby", id="m1", body="b")
    await bob.expect("message")
    await bob.expect("message")
    assert (await bob.expect("ack"))["offset"] == 2


@with_settings(typing_throttle=0.5, typing_ttl=30.0)
async def test_typing_is_throttled_per_user_and_room(client: ClientFactory) -> None:
    """Repeated starts within the throttle window forward one typing start."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    for _ in range(3):
        await alice.send(type="typing", room="lobby", state="start")
    typing = await bob.expect("typing")
    assert (typing["user"]["id"], typing["state"]) == ("alice", "start")
    await alice.send(type="message", room="lobby", id="m1", body="done")
    # the next frame is the message: the two throttled starts were not forwarded
    assert (await bob.expect("message"))["body"] == "done"
    assert (await bob.expect("typing"))["state"] == "stop"


@with_settings(typing_throttle=0.05, typing_ttl=0.3)
async def test_typing_expires_without_refresh(client: ClientFactory) -> None:
    """A start without refresh turns into a stop for the others after the ttl."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    await alice.send(type="typing", room="lobby", state="start")
    assert (await bob.expect("typing"))["state"] == "start"
    stop = await bob.expect("typing", timeout=3)
    assert (stop["user"]["id"], stop["state"]) == ("alice", "stop")


async def test_message_clears_typing(client: ClientFactory) -> None:
    """The typer's message arrives, then a typing stop; no stop without a prior start."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    await alice.send(type="typing", room="lobby", state="start")
    await bob.expect("typing")
    await alice.send(type="message", room="lobby", id="m1", body="hi")
    await bob.expect("message")
    assert (await bob.expect("typing"))["state"] == "stop"
    await alice.send(type="message", room="lobby", id="m2", body="again")
    await bob.expect("message")
    await bob.assert_alive()  # no second stop before the pong


async def test_explicit_stop_is_forwarded(client: ClientFactory) -> None:
    """typing stop after a forwarded start reaches the others."""
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    await bob.join()
    await alice.send(type="typing", room="lobby", state="start")
    await bob.expect("typing")
    await alice.send(type="typing", room="lobby", state="stop")
    assert (await bob.expect("typing"))["state"] == "stop"


async def test_presence_is_per_user_across_tabs(client: ClientFactory) -> None:
    """Two tabs are one online user; offline only when the last tab leaves."""
    bob = await client("bob")
    await bob.join()
    tab1, tab2 = await client("alice"), await client("alice")
    snapshot = await tab1.join()
    assert [u["id"] for u in snapshot["presence"]] == ["alice", "bob"]
    joined = await bob.expect("presence")
    assert (joined["event"], joined["user"]["id"]) == ("join", "alice")
    await tab2.join(online=False)
    await tab1.ws.close()
    await tab2.send(type="message", room="lobby", id="m1", body="still here")
    # no presence frame came before the message: tab2 and tab1 were one user
    assert (await bob.expect("message"))["body"] == "still here"
    await tab2.expect("message")
    await tab2.expect("ack")
    await tab2.send(type="leave", room="lobby")
    assert await tab2.expect("left") == {"type": "left", "room": "lobby"}
    left = await bob.expect("presence")
    assert (left["event"], left["user"]["id"]) == ("leave", "alice")
    assert (await bob.join(online=False))["presence"] == [{"id": "bob", "name": "bob"}]


async def test_join_snapshot_lists_online_users_once(client: ClientFactory) -> None:
    """The joined frame's presence snapshot has one entry per user."""
    a1, a2, carol = await client("alice"), await client("alice"), await client("carol")
    await a1.join()
    await a2.join(online=False)
    snapshot = await carol.join()
    assert snapshot["presence"] == [
        {"id": "alice", "name": "alice"},
        {"id": "carol", "name": "carol"},
    ]


async def test_recovery_replays_exactly_the_missed_messages(client: ClientFactory) -> None:
    """join with since gets recovered=true and exactly the messages after the offset."""
    alice = await client("alice")
    joined = await alice.join()
    for i in range(1, 4):
        await alice.send(type="message", room="lobby", id=f"m{i}", body=f"body {i}")
        await alice.expect("message")
        await alice.expect("ack")
    bob = await client("bob")
    recovery = await bob.join(since={"offset": 1, "epoch": joined["epoch"]})
    assert (recovery["recovered"], recovery["replayed"], recovery["offset"]) == (True, 2, 3)
    assert [m["body"] for m in bob.replayed] == ["body 2", "body 3"]
    await bob.assert_alive()


async def test_recovery_with_another_epoch_is_not_recovered(client: ClientFactory) -> None:
    """A foreign epoch gets recovered=false and the retained history to reset from."""
    alice = await client("alice")
    await alice.join()
    await alice.send(type="message", room="lobby", id="m1", body="kept")
    await alice.expect("message")
    bob = await client("bob")
    recovery = await bob.join(since={"offset": 1, "epoch": "0123456789abcdef"})
    assert (recovery["recovered"], recovery["replayed"]) == (False, 1)
    assert [m["body"] for m in bob.replayed] == ["kept"]


@with_settings(history_size=3)
async def test_recovery_beyond_the_history_is_not_recovered(client: ClientFactory) -> None:
    """A gap older than the retained history gets recovered=false."""
    alice = await client("alice")
    joined = await alice.join()
    for i in range(6):
        await alice.send(type="message", room="lobby", id=f"m{i}", body=str(i))
        await alice.expect("message")
        await alice.expect("ack")
    bob = await client("bob")
    recovery = await bob.join(since={"offset": 1, "epoch": joined["epoch"]})
    assert (recovery["recovered"], recovery["replayed"], recovery["offset"]) == (False, 3, 6)


# bad input: error frames, connection kept


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("not json", "bad_json", None),
        ("[1, 2]", "bad_frame", None),
        ('{"room": "lobby"}', "bad_frame", "type"),
        ('{"type": "shout"}', "unknown_type", "type"),
        ('{"type": "join"}', "missing_field", "room"),
        ('{"type": "join", "room": 5}', "invalid_field", "room"),
        ('{"type": "join", "room": "no spaces"}', "invalid_field", "room"),
        ('{"type": "join", "room": "x", "since": {"offset": -1}}', "invalid_field", "since.offset"),
        ('{"type": "message", "room": "lobby", "id": "m", "body": ""}', "invalid_field", "body"),
        ('{"type": "typing", "room": "lobby", "state": "maybe"}', "invalid_field", "state"),
        ('{"type": "message", "room": "elsewhere", "id": "m", "body": "x"}', "not_joined", "room"),
        ('{"type": "leave", "room": "elsewhere"}', "not_joined", "room"),
        ('{"type": "hello", "v": 1, "token": "again"}', "already_authenticated", None),
    ],
)
async def test_bad_frames_get_an_error_frame_and_keep_the_connection(
    client: ClientFactory, frame: str, code: str, field: str | None
) -> None:
    """Each bad frame is answered with its documented error code; the connection stays."""
    alice = await client("alice")
    await alice.join()
    await alice.ws.send(frame)
    error = await alice.expect("error")
    assert error["code"] == code
    assert error.get("field") == field
    await alice.assert_alive()


async def test_error_frame_echoes_the_client_id_as_ref(client: ClientFactory) -> None:
    """An error about a message names its id as ref so the client can match it."""
    alice = await client("alice")
    await alice.send(type="message", room="lobby", id="m7", body="x")
    error = await alice.expect("error")
    assert (error["code"], error["ref"]) == ("not_joined", "m7")


async def test_binary_frame_closes_1003_and_others_keep_working(client: ClientFactory) -> None:
    """A binary frame closes that connection with 1003; others are unaffected."""
    alice, bob = await client("alice"), await client("bob")
    await alice.ws.send(b"\x00\x01")
    assert (await alice.closed_with())[0] == 1003
    await bob.assert_alive()


async def test_oversized_frame_closes_1009(client: ClientFactory) -> None:
    """A frame above 64 KiB closes with 1009 (websockets enforces max_size)."""
    alice, bob = await client("alice", max_size=None), await client("bob")
    await alice.ws.send("x" * (64 * 1024 + 1))
    assert (await alice.closed_with())[0] == 1009
    await bob.assert_alive()


async def test_invalid_utf8_closes_1007(client: ClientFactory) -> None:
    """A text frame with invalid UTF-8 closes with 1007."""
    alice, bob = await client("alice"), await client("bob")
    await alice.ws.send(b"\xff\xfe", text=True)
    assert (await alice.closed_with())[0] == 1007
    await bob.assert_alive()


@with_settings(rate_limit_per_second=1.0, rate_limit_burst=5)
async def test_rate_limit_closes_4008(client: ClientFactory) -> None:
    """Frames beyond the token bucket close the connection with 4008."""
    alice, bob = await client("alice"), await client("bob")
    for _ in range(10):
        await alice.send(type="ping")
    assert await alice.closed_with() == (4008, "rate limit exceeded")
    await bob.assert_alive()


@with_settings(max_rooms_per_connection=2)
async def test_too_many_rooms_is_an_error_frame(client: ClientFactory) -> None:
    """A join above the per-connection room limit gets too_many_rooms; rejoin is fine."""
    alice = await client("alice")
    await alice.join("r1")
    await alice.join("r2")
    await alice.send(type="join", room="r3")
    assert (await alice.expect("error"))["code"] == "too_many_rooms"
    await alice.join("r2", online=False)
    await alice.assert_alive()


@with_settings(max_connections=2)
async def test_max_connections_refuses_handshakes_with_503(app: App, client: ClientFactory) -> None:
    """Beyond MAX_CONNECTIONS new handshakes get HTTP 503; existing ones keep working."""
    alice, _ = await client("alice"), await client("bob")
    with pytest.raises(InvalidStatus) as refused:
        await raw_connect(app)
    assert refused.value.response.status_code == 503
    await alice.assert_alive()
    metrics = app.metrics.render().decode()
    assert 'realtime_handshakes_refused_total{reason="capacity"} 1.0' in metrics


@with_settings(send_buffer_bytes=64 * 1024, rate_limit_per_second=1e6, rate_limit_burst=100_000)
async def test_slow_consumer_is_closed_4009_while_others_keep_receiving(
    app: App, client: ClientFactory
) -> None:
    """A member that stops reading is closed with 4009; a reading member gets everything."""
    sender, reader = await client("sender"), await client("reader")
    slow = await client("slow", max_queue=1)
    for member in (sender, reader, slow):
        await member.join()
    await sender.expect("presence")
    await sender.expect("presence")
    await reader.expect("presence")
    slow.ws.transport.pause_reading()  # a client that stops reading its socket
    slow_closes = app.metrics.slow_consumers
    received: list[str] = []

    async def read_until_end() -> None:
        while not received or received[-1] != "end":
            frame = await reader.recv(timeout=10)
            if frame["type"] == "message":
                received.append(frame["body"])

    reading = asyncio.create_task(read_until_end())
    sent = 0
    while slow_closes._value.get() == 0 and sent < 20_000:
        await sender.send(type="message", room="lobby", id=f"m{sent}", body=f"{sent:04d}" * 1000)
        sent += 1
        if sent % 20 == 0:
            await asyncio.sleep(0.001)
    await sender.send(type="message", room="lobby", id="end", body="end")
    await asyncio.wait_for(reading, 30)
    assert slow_closes._value.get() == 1
    assert len(received) == sent + 1
    slow.ws.transport.resume_reading()
    # the 4009 frame when the client reads its backlog within 1 s of the close, else a reset
    # that drops the backlog (1006 on its side): PROTOCOL.md; test_closes.py times it
    assert (await slow.closed_with(timeout=10))[0] in (4009, 1006)
    sender.ws.transport.abort()  # it never read its acks: do not wait for its close


@with_settings(hello_timeout=0.2)
async def test_no_hello_in_time_closes_4002(app: App, client: ClientFactory) -> None:
    """A connection that does not say hello in time is closed with 4002."""
    bob = await client("bob")
    silent = await raw_connect(app)
    assert (await silent.closed_with())[0] == 4002
    await bob.assert_alive()


async def test_first_frame_not_hello_closes_4003(app: App) -> None:
    """A first frame other than hello closes with 4003."""
    anon = await raw_connect(app)
    await anon.send(type="join", room="lobby")
    assert (await anon.closed_with())[0] == 4003


async def test_unsupported_version_closes_4004(app: App) -> None:
    """No common protocol version closes with 4004."""
    anon = await raw_connect(app)
    await anon.send(type="hello", v=[7, 8], token=app.verifier.issue("alice", "alice"))
    code, reason = await anon.closed_with()
    assert code == 4004
    assert "[7, 8]" in (reason or "")


@pytest.mark.parametrize(
    ("claims", "key", "reason"),
    [
        ({"sub": "alice", "exp": 1}, SIGNING_KEY, "token expired"),
        (
            {"sub": "alice", "exp": 4102444800},
            "another-key-0123456789abcdef0123456",
            "invalid token",
        ),
        ({"sub": "alice"}, SIGNING_KEY, "invalid token"),
        ({"exp": 4102444800}, SIGNING_KEY, "invalid token"),
    ],
    ids=["expired", "wrong-key", "no-exp", "no-sub"],
)
async def test_bad_tokens_close_4001(
    app: App, client: ClientFactory, claims: dict[str, object], key: str, reason: str
) -> None:
    """Expired, forged or incomplete tokens close with 4001; the token is never echoed."""
    bob = await client("bob")
    token = jwt.encode(claims, key, algorithm="HS256")
    anon = await raw_connect(app)
    await anon.send(type="hello", v=1, token=token)
    assert await anon.closed_with() == (4001, reason)
    await bob.assert_alive()


async def test_foreign_origin_is_refused_with_403(app: App, client: ClientFactory) -> None:
    """A browser handshake from an origin not in ALLOWED_ORIGINS gets HTTP 403."""
    with pytest.raises(InvalidStatus) as refused:
        await raw_connect(app, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    allowed = await client("alice", origin="https://chat.example")
    await allowed.assert_alive()


class _FailingBroker(MemoryBroker):
    """A broker whose append fails unexpectedly (a bug or a backend surprise)."""

    async def append(
        self, room: RoomName, user: User, client_id: ClientMessageId, body: str
    ) -> Appended:
        raise RuntimeError("secret internal detail")


async def test_unexpected_error_closes_1011_without_detail(
    app: App, client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception closes with 1011, sends no detail, logs the traceback."""
    broker = _FailingBroker(app.ws.hub.deliver, history_size=10)
    await broker.start()
    app.ws.broker = broker
    alice, bob = await client("alice"), await client("bob")
    await alice.join()
    with caplog.at_level(logging.ERROR, logger="realtime.server"):
        await alice.send(type="message", room="lobby", id="m1", body="boom")
        assert await alice.closed_with() == (1011, "")
    assert any(
        r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records
    )
    await bob.assert_alive()


class _DownBroker(MemoryBroker):
    """A broker whose backend went away after the joins (Redis restarting)."""

    down = False

    async def publish_ephemeral(self, room: RoomName, kind: Kind, frame: str) -> None:
        if self.down:
            raise BrokerError("redis unreachable")
        await super().publish_ephemeral(room, kind, frame)


async def test_broker_outage_is_an_unavailable_error_frame(app: App, client: ClientFactory) -> None:
    """A broker failure while handling a frame answers unavailable; the connection stays."""
    broker = _DownBroker(app.ws.hub.deliver, history_size=10)
    await broker.start()
    app.ws.broker = broker
    alice = await client("alice")
    await alice.join()
    broker.down = True
    await alice.send(type="typing", room="lobby", state="start")
    assert (await alice.expect("error"))["code"] == "unavailable"
    broker.down = False
    await alice.assert_alive()


async def test_disconnect_publishes_presence_leave(client: ClientFactory) -> None:
    """Closing the socket without leave still tells the others the user went offline."""
    alice, bob = await client("alice"), await client("bob")
    await bob.join()
    await alice.join()
    await bob.expect("presence")
    await alice.ws.close()
    left = await bob.expect("presence")
    assert (left["event"], left["user"]["id"]) == ("leave", "alice")


async def test_connections_that_come_and_go_leave_nothing_behind(app: App) -> None:
    """Repeated connect, hello, join, close: no connection, room or presence entry leaks."""
    token = app.verifier.issue("alice", "alice")
    for _ in range(20):
        c = await raw_connect(app)
        await c.send(type="hello", v=[1], token=token)
        await c.expect("welcome")
        await c.send(type="join", room="lobby")
        assert (await c.expect("joined"))["presence"] == [{"id": "alice", "name": "alice"}]
        await c.ws.close()
    async with asyncio.timeout(3):
        while app.ws._open or app.ws.hub.rooms:
            await asyncio.sleep(0.01)
    assert await app.ws.broker.presence_snapshot(RoomName("lobby")) == []
    assert "realtime_connections 0.0" in app.metrics.render().decode()


async def test_deliveries_are_routed_by_their_kind(app: App, client: ClientFactory) -> None:
    """The hub batches what the broker says is presence and sends the rest at once: a
    frame's kind comes with the delivery, never from its text."""
    alice = await client("alice")
    await alice.join()
    lobby = RoomName("lobby")
    app.ws.hub.deliver(lobby, Kind.PRESENCE, '{"type":"typing","n":1}')
    app.ws.hub.deliver(lobby, Kind.TYPING, '{"type":"presence","n":2}')
    app.ws.hub.deliver(lobby, Kind.MESSAGE, '{"type":"message","n":3}')
    assert [(await alice.recv())["n"] for _ in range(3)] == [2, 3, 1]
