"""Server frames, built as compact JSON text (docs/PROTOCOL.md lists each one).

Encoders write ``type`` first. A frame is encoded once per instance and the same text goes
to every recipient (:mod:`realtime.fanout` frames it once, too).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User
from realtime.protocol import FrameError

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _user(user: User) -> dict[str, str]:
    return {"id": user.id, "name": user.name}


def encode_welcome(version: int, conn: ConnId, user: User, heartbeat: float) -> str:
    return _dumps(
        {"type": "welcome", "v": version, "conn": conn, "user": _user(user), "heartbeat": heartbeat}
    )


@functools.lru_cache(maxsize=65536)
def _user_json(user: User) -> str:
    return _dumps(_user(user))


def encode_joined(
    room: RoomName,
    *,
    epoch: Epoch,
    offset: int,
    presence: list[User],
    recovered: bool | None,
    replayed: int,
) -> str:
    """The ``joined`` frame. The presence snapshot is spliced from per-user JSON kept in a
    cache: a join into a big room costs a string join, not a fresh encode of every user."""
    frame: dict[str, Any] = {"type": "joined", "room": room, "epoch": epoch, "offset": offset}
    if recovered is not None:
        frame["recovered"] = recovered
        frame["replayed"] = replayed
    users = ",".join([_user_json(user) for user in presence])
    return f'{_dumps(frame)[:-1]},"presence":[{users}]}}'


def encode_left(room: RoomName) -> str:
    return _dumps({"type": "left", "room": room})


def encode_message(
    room: RoomName,
    *,
    offset: int,
    epoch: Epoch,
    user: User,
    client_id: ClientMessageId,
    body: str,
    ts: int,
) -> str:
    """The ``message`` frame stored in history and delivered to every member (``ts`` in ms)."""
    return _dumps(
        {
            "type": "message",
            "room": room,
            "offset": offset,
            "epoch": epoch,
            "id": client_id,
            "user": _user(user),
            "body": body,
            "ts": ts,
        }
    )


def encode_ack(
    room: RoomName, client_id: ClientMessageId, offset: int, epoch: Epoch, *, duplicate: bool
) -> str:
    return _dumps(
        {
            "type": "ack",
            "room": room,
            "id": client_id,
            "offset": offset,
            "epoch": epoch,
            "duplicate": duplicate,
        }
    )


def encode_typing(room: RoomName, user: User, *, active: bool) -> str:
    return _dumps(
        {
            "type": "typing",
            "room": room,
            "user": _user(user),
            "state": "start" if active else "stop",
        }
    )


def encode_presence(room: RoomName, user: User, *, online: bool) -> str:
    return _dumps(
        {
            "type": "presence",
            "room": room,
            "event": "join" if online else "leave",
            "user": _user(user),
        }
    )


def encode_pong(ref: str | None) -> str:
    return _dumps({"type": "pong", "id": ref} if ref is not None else {"type": "pong"})


def encode_refreshed(expires: int) -> str:
    return _dumps({"type": "refreshed", "exp": expires})


def encode_error(exc: FrameError) -> str:
    frame: dict[str, Any] = {"type": "error", "code": exc.code.value, "detail": exc.detail}
    if exc.field is not None:
        frame["field"] = exc.field
    if exc.ref is not None:
        frame["ref"] = exc.ref
    return _dumps(frame)
