"""The wire protocol, without I/O: client frames in, server frames out.

Client frames are parsed and validated into frozen dataclasses by :func:`parse`, which raises
only :class:`FrameError` (answered with an ``error`` frame; the connection stays open).
Server frames are built by the ``encode_*`` functions of :mod:`realtime.encode`. Every close code
the server uses is in :class:`CloseCode`, and :func:`close_for` is the one place that maps an
exception to a close code. docs/PROTOCOL.md documents all of it.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from realtime.ids import ClientMessageId, Epoch, RoomName

PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
"""Versions this server speaks; ``hello`` negotiates the highest one both sides support."""

ROOM_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""Room names: 1-64 characters, ASCII letters, digits and ``_ . : -``, not starting with
punctuation."""

CLIENT_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,64}")
"""Client message ids: 1-64 printable ASCII characters, no space."""

MAX_BODY_UNITS = 4000
"""Longest ``message`` body, in UTF-16 code units (what JavaScript's ``String.length``
counts: an emoji outside the BMP counts 2)."""

MAX_TOKEN_CHARS = 4096
"""Longest token accepted in ``hello``."""


class CloseCode(enum.IntEnum):
    """Every close code this server sends. 4000-4999 are this application's own."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002  # a frame breaking RFC 6455, e.g. unmasked (sent by websockets)
    UNSUPPORTED_DATA = 1003  # a binary frame
    INVALID_DATA = 1007  # invalid UTF-8 in a text frame (sent by websockets)
    MESSAGE_TOO_BIG = 1009  # a frame above 64 KiB (sent by websockets)
    INTERNAL_ERROR = 1011  # an unexpected error; details are only logged
    SERVICE_RESTART = 1012  # the instance is draining; reconnect elsewhere
    UNAUTHORIZED = 4001  # missing, invalid or expired token
    HELLO_TIMEOUT = 4002  # no hello within HELLO_TIMEOUT seconds
    HELLO_REQUIRED = 4003  # the first frame was not a valid hello
    UNSUPPORTED_VERSION = 4004  # no protocol version in common
    RATE_LIMITED = 4008  # the per-connection token bucket ran dry
    SLOW_CONSUMER = 4009  # the send buffer grew above SEND_BUFFER_BYTES


class ErrorCode(enum.StrEnum):
    """Codes of ``error`` frames. The connection stays open after each of them."""

    BAD_JSON = "bad_json"  # not valid JSON
    BAD_FRAME = "bad_frame"  # JSON, but not an object with a string "type"
    UNKNOWN_TYPE = "unknown_type"  # "type" is not a client frame type
    MISSING_FIELD = "missing_field"  # a required field is absent
    INVALID_FIELD = "invalid_field"  # a field has the wrong type or an invalid value
    ALREADY_AUTHENTICATED = "already_authenticated"  # a second hello
    NOT_JOINED = "not_joined"  # message/typing/leave for a room the connection is not in
    TOO_MANY_ROOMS = "too_many_rooms"  # join above MAX_ROOMS_PER_CONNECTION
    UNAVAILABLE = "unavailable"  # the broker cannot serve the request right now


UNENCODABLE = "a lone UTF-16 surrogate cannot be encoded"
"""Detail of the ``invalid_field`` error for text that has no UTF-8 form."""


def encodable(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form: JSON's ``\\ud800`` escape decodes to a lone
    surrogate, which Python keeps in a ``str`` but cannot encode (nor can it be stored,
    published or sent)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units, as JavaScript's ``String.length`` counts it."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class RealtimeError(Exception):
    """Base class of the protocol's own errors."""


class FrameError(RealtimeError):
    """A client frame was refused: answered with an ``error`` frame, connection kept."""

    def __init__(
        self, code: ErrorCode, detail: str, *, field: str | None = None, ref: str | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.ref = ref


class CloseConnection(RealtimeError):
    """The connection must be closed with ``code``; ``reason`` is sent to the client."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def close_for(exc: BaseException) -> tuple[CloseCode, str]:
    """Map an exception to the close code and reason sent to the client (the one place).

    Anything but :class:`CloseConnection` is unexpected: 1011 with no detail.
    """
    if isinstance(exc, CloseConnection):
        return exc.code, exc.reason
    return CloseCode.INTERNAL_ERROR, ""


# Client frames


@dataclass(frozen=True, slots=True)
class Hello:
    versions: tuple[int, ...]
    token: str


@dataclass(frozen=True, slots=True)
class Refresh:
    token: str


@dataclass(frozen=True, slots=True)
class Since:
    offset: int
    epoch: Epoch


@dataclass(frozen=True, slots=True)
class Join:
    room: RoomName
    since: Since | None


@dataclass(frozen=True, slots=True)
class Leave:
    room: RoomName


@dataclass(frozen=True, slots=True)
class Message:
    room: RoomName
    id: ClientMessageId
    body: str


@dataclass(frozen=True, slots=True)
class Typing:
    room: RoomName
    active: bool


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | None


ClientFrame = Hello | Join | Leave | Message | Typing | Ping | Refresh

CLIENT_TYPES: tuple[str, ...] = (
    "hello",
    "join",
    "leave",
    "message",
    "typing",
    "ping",
    "refresh",
)
SERVER_TYPES: tuple[str, ...] = (
    "welcome",
    "joined",
    "left",
    "message",
    "ack",
    "typing",
    "presence",
    "pong",
    "refreshed",
    "error",
)


def _require(obj: dict[str, Any], field: str, ref: str | None) -> Any:
    if field not in obj:
        raise FrameError(ErrorCode.MISSING_FIELD, f"missing field {field}", field=field, ref=ref)
    return obj[field]


def _invalid(field: str, value: Any, why: str, ref: str | None) -> FrameError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return FrameError(
        ErrorCode.INVALID_FIELD, f"invalid {field} {shown}: {why}", field=field, ref=ref
    )


def _string(obj: dict[str, Any], field: str, ref: str | None) -> str:
    value = _require(obj, field, ref)
    if not isinstance(value, str):
        raise _invalid(field, value, "expected a string", ref)
    if not encodable(value):
        raise FrameError(
            ErrorCode.INVALID_FIELD, f"invalid {field}: {UNENCODABLE}", field=field, ref=ref
        )
    return value


def _int(value: Any, field: str, ref: str | None) -> int:
    # bool is an int in Python but not on the wire
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, value, "expected an integer", ref)
    if value < 0:
        raise _invalid(field, value, "must not be negative", ref)
    return value


def _room(obj: dict[str, Any], ref: str | None) -> RoomName:
    room = _string(obj, "room", ref)
    if not ROOM_NAME_PATTERN.fullmatch(room):
        raise _invalid("room", room, "1-64 of A-Z a-z 0-9 _ . : - starting alphanumeric", ref)
    return RoomName(room)


def _token(obj: dict[str, Any], ref: str | None) -> str:
    """A token field: a compact JWS is 1-4096 ASCII characters. Never echoed."""
    if "token" not in obj:
        raise FrameError(ErrorCode.MISSING_FIELD, "missing field token", field="token", ref=ref)
    token = obj["token"]
    if not isinstance(token, str) or not token.isascii() or not 1 <= len(token) <= MAX_TOKEN_CHARS:
        raise FrameError(
            ErrorCode.INVALID_FIELD,
            f"invalid token: expected 1-{MAX_TOKEN_CHARS} ASCII characters",
            field="token",
            ref=ref,
        )
    return token


def _hello(obj: dict[str, Any], ref: str | None) -> Hello:
    raw = _require(obj, "v", ref)
    items = raw if isinstance(raw, list) else [raw]
    if not items or len(items) > 16:
        raise _invalid("v", raw, "expected a version or a list of 1-16 versions", ref)
    versions = tuple(_int(item, "v", ref) for item in items)
    return Hello(versions, _token(obj, ref))


def _refresh(obj: dict[str, Any], ref: str | None) -> Refresh:
    return Refresh(_token(obj, ref))


def _join(obj: dict[str, Any], ref: str | None) -> Join:
    room = _room(obj, ref)
    raw = obj.get("since")
    if raw is None:
        return Join(room, None)
    if not isinstance(raw, dict):
        raise _invalid("since", raw, "expected an object with offset and epoch", ref)
    if "offset" not in raw:
        raise FrameError(
            ErrorCode.MISSING_FIELD, "missing field since.offset", field="since.offset", ref=ref
        )
    offset = _int(raw["offset"], "since.offset", ref)
    if "epoch" not in raw:
        raise FrameError(
            ErrorCode.MISSING_FIELD, "missing field since.epoch", field="since.epoch", ref=ref
        )
    epoch = raw["epoch"]
    if not isinstance(epoch, str) or len(epoch) > 64 or not encodable(epoch):
        raise _invalid("since.epoch", epoch, "expected a string of at most 64 characters", ref)
    return Join(room, Since(offset, Epoch(epoch)))


def _message(obj: dict[str, Any], ref: str | None) -> Message:
    room = _room(obj, ref)
    client_id = _string(obj, "id", ref)
    if not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise _invalid("id", client_id, "1-64 printable ASCII characters", ref)
    body = _string(obj, "body", ref)
    units = utf16_units(body)
    if not 1 <= units <= MAX_BODY_UNITS:
        raise _invalid(
            "body",
            f"<{units} UTF-16 code units>",
            f"length must be 1-{MAX_BODY_UNITS} UTF-16 code units",
            ref,
        )
    return Message(room, ClientMessageId(client_id), body)


def _typing(obj: dict[str, Any], ref: str | None) -> Typing:
    room = _room(obj, ref)
    state = _string(obj, "state", ref)
    if state not in ("start", "stop"):
        raise _invalid("state", state, "expected start or stop", ref)
    return Typing(room, state == "start")


def _ping(obj: dict[str, Any], ref: str | None) -> Ping:
    raw = obj.get("id")
    if isinstance(raw, str) and not encodable(raw):
        raise FrameError(ErrorCode.INVALID_FIELD, f"invalid id: {UNENCODABLE}", field="id")
    return Ping(ref)


def _leave(obj: dict[str, Any], ref: str | None) -> Leave:
    return Leave(_room(obj, ref))


_PARSERS: dict[str, Callable[[dict[str, Any], str | None], ClientFrame]] = {
    "hello": _hello,
    "join": _join,
    "leave": _leave,
    "message": _message,
    "typing": _typing,
    "ping": _ping,
    "refresh": _refresh,
}


def parse(text: str) -> ClientFrame:
    """Parse and validate one client text frame; raises only :class:`FrameError`.

    Unknown fields are ignored (forward compatibility). A string ``id`` field, when present,
    is echoed as ``ref`` in the error frame so the client can match it.
    """
    return parse_with_ref(text)[0]


def parse_with_ref(text: str) -> tuple[ClientFrame, str | None]:
    """:func:`parse`, also returning the frame's ``ref`` (its string ``id`` of at most 64
    encodable characters, else None) for errors raised later while handling the frame."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    raw_ref = obj.get("id")
    ref = (
        raw_ref if isinstance(raw_ref, str) and len(raw_ref) <= 64 and encodable(raw_ref) else None
    )
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise FrameError(
            ErrorCode.BAD_FRAME, "frame must have a string field type", field="type", ref=ref
        )
    parser = _PARSERS.get(kind)
    if parser is None:
        shown = kind if len(kind) <= 40 else kind[:37] + "..."
        raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown type {shown!r}", field="type", ref=ref)
    return parser(obj, ref), ref


def negotiate(offered: tuple[int, ...]) -> int:
    """Return the highest version both sides speak; :class:`CloseConnection` if none."""
    common = set(offered).intersection(PROTOCOL_VERSIONS)
    if not common:
        raise CloseConnection(
            CloseCode.UNSUPPORTED_VERSION,
            f"unsupported version {list(offered)}, server speaks {list(PROTOCOL_VERSIONS)}",
        )
    return max(common)
