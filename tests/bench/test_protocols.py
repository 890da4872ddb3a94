"""The load generator's view of each peer's handshake and of a delivered message."""

from __future__ import annotations

import json

import jwt
import pytest

from bench.protocols import (
    BODY_BYTES,
    MARKER,
    CentrifugoProtocol,
    HandshakeError,
    RealtimeProtocol,
    sender_tag,
)

SECRET = "bench-test-secret-0123456789abcdef0123"


def test_realtime_handshake_joins_every_room_then_is_ready() -> None:
    """hello carries a valid token; welcome asks for each room; ready after the last joined."""
    protocol = RealtimeProtocol(user="u1", secret=SECRET, rooms=("a", "b"))
    hello = json.loads(protocol.opening()[0])
    claims = jwt.decode(hello["token"], SECRET, algorithms=["HS256"])
    assert (hello["type"], claims["sub"]) == ("hello", "u1")
    joins = protocol.on_handshake_frame(b'{"type": "welcome", "v": 1}')
    assert [json.loads(j)["room"] for j in joins or []] == ["a", "b"]
    assert protocol.on_handshake_frame(b'{"type": "joined", "room": "a"}') == []
    assert protocol.on_handshake_frame(b'{"type": "presence", "room": "a"}') == []
    assert protocol.on_handshake_frame(b'{"type": "joined", "room": "b"}') is None


def test_realtime_error_frame_fails_the_handshake() -> None:
    """An error frame during the handshake is a refusal naming the code."""
    protocol = RealtimeProtocol(user="u1", secret=SECRET, rooms=("a",))
    with pytest.raises(HandshakeError, match="too_many_rooms"):
        protocol.on_handshake_frame(b'{"type": "error", "code": "too_many_rooms"}')


def test_centrifugo_handshake_reads_batched_replies() -> None:
    """Replies joined by newlines in one frame are each read; pings are skipped."""
    protocol = CentrifugoProtocol(user="u1", secret=SECRET, rooms=("r1", "r2"))
    connect = json.loads(protocol.opening()[0])
    assert connect["id"] == 1
    assert "token" in connect["connect"]
    subscribes = protocol.on_handshake_frame(b'{"id":1,"connect":{"client":"c"}}')
    channels = [json.loads(s)["subscribe"]["channel"] for s in subscribes or []]
    assert channels == ["bench:r1", "bench:r2"]
    assert (
        protocol.on_handshake_frame(b'{"id":2,"subscribe":{}}\n{}\n{"id":3,"subscribe":{}}') is None
    )


def test_centrifugo_error_reply_fails_the_handshake() -> None:
    """An error reply (e.g. a refused token) is a refusal naming the error."""
    protocol = CentrifugoProtocol(user="u1", secret=SECRET, rooms=("r1",))
    with pytest.raises(HandshakeError, match="invalid token"):
        protocol.on_handshake_frame(b'{"id":1,"error":{"code":109,"message":"invalid token"}}')


@pytest.mark.parametrize("protocol_class", [RealtimeProtocol, CentrifugoProtocol])
def test_published_body_carries_marker_time_and_sender(protocol_class: type) -> None:
    """Each published frame has one marker, a send time and its sender's tag, padded."""
    protocol = protocol_class(user="u1", secret=SECRET, rooms=("r1",))
    frame = protocol.publish("r1", 7, 0)
    assert frame.count(MARKER) == 1
    assert frame.count(sender_tag(7)) == 1
    assert frame.count(sender_tag(1)) == 0
    start = frame.index(MARKER) + len(MARKER)
    assert int(frame[start : frame.index(b";", start)]) > 0
    assert "x" * (BODY_BYTES // 2) in frame.decode()
