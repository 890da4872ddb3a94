"""The protocol core: parsing, validation, encoding, close code mapping."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from realtime.encode import (
    encode_ack,
    encode_error,
    encode_joined,
    encode_message,
    encode_presence,
    encode_typing,
    encode_welcome,
)
from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User, UserId
from realtime.protocol import (
    CLIENT_TYPES,
    CloseCode,
    CloseConnection,
    ErrorCode,
    FrameError,
    Hello,
    Join,
    Leave,
    Message,
    Ping,
    Refresh,
    Since,
    Typing,
    close_for,
    negotiate,
    parse,
    utf16_units,
)

ALICE = User(UserId("u1"), "Alice")


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ('{"type":"hello","v":1,"token":"t"}', Hello((1,), "t")),
        ('{"type":"hello","v":[1,2],"token":"t"}', Hello((1, 2), "t")),
        ('{"type":"join","room":"lobby"}', Join(RoomName("lobby"), None)),
        (
            '{"type":"join","room":"a.b:c-d_e","since":{"offset":3,"epoch":"e1"}}',
            Join(RoomName("a.b:c-d_e"), Since(3, Epoch("e1"))),
        ),
        ('{"type":"leave","room":"lobby"}', Leave(RoomName("lobby"))),
        (
            '{"type":"message","room":"r","id":"m-1","body":"hé"}',
            Message(RoomName("r"), ClientMessageId("m-1"), "hé"),
        ),
        ('{"type":"typing","room":"r","state":"start"}', Typing(RoomName("r"), True)),
        ('{"type":"typing","room":"r","state":"stop"}', Typing(RoomName("r"), False)),
        ('{"type":"ping"}', Ping(None)),
        ('{"type":"ping","id":"p1","extra":[1]}', Ping("p1")),
        ('{"type":"refresh","token":"t"}', Refresh("t")),
        (
            '{"type":"message","room":"r","id":"m","body":"' + "\\ud83d\\ude00" * 2000 + '"}',
            Message(RoomName("r"), ClientMessageId("m"), "\U0001f600" * 2000),
        ),
        (
            '{"type":"join","room":"r","since":{"offset":0,"epoch":""}}',
            Join(RoomName("r"), Since(0, Epoch(""))),
        ),
    ],
)
def test_valid_frames_parse_to_dataclasses(text: str, frame: object) -> None:
    """Each client frame type parses into its dataclass; unknown fields are ignored."""
    assert parse(text) == frame


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ({"type": "hello", "v": True, "token": "t"}, ErrorCode.INVALID_FIELD, "v"),
        ({"type": "hello", "v": [], "token": "t"}, ErrorCode.INVALID_FIELD, "v"),
        ({"type": "hello", "v": 1}, ErrorCode.MISSING_FIELD, "token"),
        ({"type": "hello", "v": 1, "token": ""}, ErrorCode.INVALID_FIELD, "token"),
        ({"type": "join", "room": "x" * 65}, ErrorCode.INVALID_FIELD, "room"),
        ({"type": "join", "room": "-x"}, ErrorCode.INVALID_FIELD, "room"),
        ({"type": "join", "room": "r", "since": 3}, ErrorCode.INVALID_FIELD, "since"),
        ({"type": "join", "room": "r", "since": {}}, ErrorCode.MISSING_FIELD, "since.offset"),
        (
            {"type": "join", "room": "r", "since": {"offset": 1}},
            ErrorCode.MISSING_FIELD,
            "since.epoch",
        ),
        (
            {"type": "join", "room": "r", "since": {"offset": 1, "epoch": "\ud800"}},
            ErrorCode.INVALID_FIELD,
            "since.epoch",
        ),
        ({"type": "hello", "v": 1, "token": "t\u00e9"}, ErrorCode.INVALID_FIELD, "token"),
        ({"type": "refresh"}, ErrorCode.MISSING_FIELD, "token"),
        ({"type": "refresh", "token": 5}, ErrorCode.INVALID_FIELD, "token"),
        (
            {"type": "message", "room": "r", "id": "m", "body": "\ud800"},
            ErrorCode.INVALID_FIELD,
            "body",
        ),
        (
            {"type": "message", "room": "r", "id": "m", "body": "a\udfffb"},
            ErrorCode.INVALID_FIELD,
            "body",
        ),
        (
            {"type": "message", "room": "r", "id": "\ud800", "body": "x"},
            ErrorCode.INVALID_FIELD,
            "id",
        ),
        ({"type": "typing", "room": "r", "state": "\ud800"}, ErrorCode.INVALID_FIELD, "state"),
        ({"type": "join", "room": "\ud800"}, ErrorCode.INVALID_FIELD, "room"),
        ({"type": "ping", "id": "\ud800"}, ErrorCode.INVALID_FIELD, "id"),
        (
            {"type": "message", "room": "r", "id": "m", "body": "\U0001f600" * 2001},
            ErrorCode.INVALID_FIELD,
            "body",
        ),
        (
            {"type": "join", "room": "r", "since": {"offset": 1.5}},
            ErrorCode.INVALID_FIELD,
            "since.offset",
        ),
        (
            {"type": "join", "room": "r", "since": {"offset": 1, "epoch": 7}},
            ErrorCode.INVALID_FIELD,
            "since.epoch",
        ),
        ({"type": "message", "room": "r", "id": "a b", "body": "x"}, ErrorCode.INVALID_FIELD, "id"),
        ({"type": "message", "room": "r", "id": "m"}, ErrorCode.MISSING_FIELD, "body"),
        (
            {"type": "message", "room": "r", "id": "m", "body": "x" * 4001},
            ErrorCode.INVALID_FIELD,
            "body",
        ),
        ({"type": "typing", "room": "r"}, ErrorCode.MISSING_FIELD, "state"),
        ({"type": 3}, ErrorCode.BAD_FRAME, "type"),
        ({"type": "HELLO"}, ErrorCode.UNKNOWN_TYPE, "type"),
    ],
)
def test_invalid_frames_name_the_field(frame: dict[str, Any], code: ErrorCode, field: str) -> None:
    """Validation errors carry the documented code and the offending field."""
    with pytest.raises(FrameError) as raised:
        parse(json.dumps(frame))
    assert (raised.value.code, raised.value.field) == (code, field)


def test_unencodable_text_is_refused_and_never_echoed() -> None:
    """A lone surrogate (JSON's "\\ud800" escape) in any field is invalid_field; the error
    frame itself encodes to UTF-8, and an unencodable id is not echoed as ref."""
    with pytest.raises(FrameError) as raised:
        parse('{"type":"message","room":"r","id":"\\ud800","body":"\\udc00"}')
    assert (raised.value.code, raised.value.field, raised.value.ref) == (
        ErrorCode.INVALID_FIELD,
        "id",
        None,
    )
    encode_error(raised.value).encode()
    with pytest.raises(FrameError) as raised:
        parse('{"type":"\\ud800"}')
    encode_error(raised.value).encode()


def test_body_length_counts_utf16_code_units() -> None:
    """4,000 UTF-16 units pass, as a browser's String.length counts them: 2,000 emoji do,
    2,001 do not; 4,000 BMP characters do."""
    assert utf16_units("\U0001f600" * 2000) == 4000
    assert utf16_units("é" * 4000) == 4000
    assert utf16_units("abc") == 3


def test_invalid_token_is_never_echoed() -> None:
    """An over-long token is refused without repeating it."""
    token = "secret" * 1000
    with pytest.raises(FrameError) as raised:
        parse(json.dumps({"type": "hello", "v": 1, "token": token}))
    assert "secret" not in raised.value.detail


def test_deeply_nested_json_is_a_frame_error() -> None:
    """Nesting deep enough to exhaust the parser is bad_json, not a RecursionError."""
    with pytest.raises(FrameError) as raised:
        parse("[" * 100_000 + "]" * 100_000)
    assert raised.value.code == ErrorCode.BAD_JSON


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_frame_error(text: str) -> None:
    """Any text either parses or raises FrameError."""
    with contextlib.suppress(FrameError):
        parse(text)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_field_names = st.sampled_from(["room", "id", "body", "state", "v", "token", "since", "x"])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(CLIENT_TYPES),
    st.dictionaries(_field_names, _json | st.fixed_dictionaries({"offset": _json}), max_size=6),
)
def test_arbitrary_fields_raise_only_frame_error(kind: str, fields: dict[str, Any]) -> None:
    """Every client type with arbitrary field values parses or raises FrameError."""
    with contextlib.suppress(FrameError):
        parse(json.dumps({"type": kind, **fields}))


def test_negotiate_picks_the_highest_common_version() -> None:
    """hello's versions are intersected with the server's; none in common closes 4004."""
    assert negotiate((0, 1)) == 1
    with pytest.raises(CloseConnection) as raised:
        negotiate((2, 3))
    assert raised.value.code == CloseCode.UNSUPPORTED_VERSION


def test_close_for_maps_every_exception_to_one_code() -> None:
    """CloseConnection keeps its code and reason; anything else is 1011 with no detail."""
    assert close_for(CloseConnection(CloseCode.RATE_LIMITED, "slow down")) == (4008, "slow down")
    assert close_for(ValueError("internal detail")) == (CloseCode.INTERNAL_ERROR, "")


def test_application_close_codes_are_in_the_private_range() -> None:
    """Codes this application defines are 4000-4999; the rest are RFC 6455 codes."""
    own = [c for c in CloseCode if c >= 4000]
    assert own
    assert all(4000 <= c <= 4999 for c in own)
    assert {c for c in CloseCode if c < 4000} <= {1000, 1001, 1002, 1003, 1007, 1009, 1011, 1012}


def test_server_frames_are_compact_json() -> None:
    """Encoders produce the documented shapes."""
    room, epoch = RoomName("r"), Epoch("e")
    assert json.loads(encode_welcome(1, ConnId("c"), ALICE, 20.0)) == {
        "type": "welcome",
        "v": 1,
        "conn": "c",
        "user": {"id": "u1", "name": "Alice"},
        "heartbeat": 20.0,
    }
    message = encode_message(
        room, offset=2, epoch=epoch, user=ALICE, client_id=ClientMessageId("m"), body="é", ts=5
    )
    assert " " not in message
    assert "é" in message
    assert json.loads(message)["offset"] == 2
    assert json.loads(encode_ack(room, ClientMessageId("m"), 2, epoch, duplicate=True))["duplicate"]
    joined = json.loads(
        encode_joined(room, epoch=epoch, offset=0, presence=[ALICE], recovered=None, replayed=0)
    )
    assert "recovered" not in joined
    assert json.loads(encode_typing(room, ALICE, active=False))["state"] == "stop"
    assert json.loads(encode_presence(room, ALICE, online=True))["event"] == "join"
    error = FrameError(ErrorCode.NOT_JOINED, "not joined", field="room", ref="m1")
    assert json.loads(encode_error(error)) == {
        "type": "error",
        "code": "not_joined",
        "detail": "not joined",
        "field": "room",
        "ref": "m1",
    }
