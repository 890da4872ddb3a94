"""What each server under test expects on the wire, for the load generator's clients.

A protocol object builds the frames one client sends (handshake, join, publish) and reads the
frames that end its handshake. Everything after the handshake is counted the same way for
every peer: a delivered message is one occurrence of :data:`MARKER` in a received frame (a
Centrifugo frame may carry several newline-separated replies), and its latency comes from the
send time written right after the marker.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

import jwt

MARKER = b"ts:"
"""Starts the send timestamp (``time.monotonic_ns()``, one clock for every process on Linux)
inside each published body: ``ts:<ns>;s:<sender>;<padding>``."""
BODY_BYTES = 64
"""Size of each published body, the same for every peer."""
TOKEN_TTL = 3600
MAX_RETRIES = 50
"""Joins retried per connection after an ``unavailable`` error before the handshake fails."""
RETRY_PAUSE = 0.1


class HandshakeError(Exception):
    """A server refused or broke the handshake; the message says which frame and why."""


def body(sender: int) -> str:
    """A published body: marker, send time, sender tag, padding to :data:`BODY_BYTES`."""
    text = f"ts:{time.monotonic_ns()};s:{sender};"
    return text + "x" * max(0, BODY_BYTES - len(text))


def sender_tag(sender: int) -> bytes:
    """The bytes that identify ``sender``'s own messages among the deliveries."""
    return f";s:{sender};".encode()


def token(secret: str, user: str) -> str:
    """An HS256 JWT with ``sub``/``name``/``exp``: both the backend and Centrifugo accept it."""
    claims = {"sub": user, "name": user, "exp": int(time.time()) + TOKEN_TTL}
    return jwt.encode(claims, secret, algorithm="HS256")


class Protocol:
    """A peer's wire protocol, seen from one client. Subclasses fill the frame builders."""

    name: ClassVar[str] = ""
    path: ClassVar[str] = "/"
    app_ping: ClassVar[bytes | None] = None
    """An application-level ping the client must answer with the same bytes (Centrifugo)."""

    def __init__(self, *, user: str, secret: str, rooms: tuple[str, ...]) -> None:
        self.user = user
        self.secret = secret
        self.rooms = rooms
        self._pending = len(rooms)
        self.retries = 0
        """Frames the server asked to retry later (the client resends after a pause)."""
        self.retry_now = False
        """Set by :meth:`on_handshake_frame` when the frames it returns are a retry."""

    def opening(self) -> list[bytes]:
        """Frames sent as soon as the WebSocket is open."""
        raise NotImplementedError

    def on_handshake_frame(self, data: bytes) -> list[bytes] | None:
        """Read one frame before the session is ready: frames to send next, or ``None`` once
        the session is ready (authenticated and in every room). Raises on a refusal."""
        raise NotImplementedError

    def publish(self, room: str, sender: int, seq: int) -> bytes:
        """One published message into ``room``."""
        raise NotImplementedError


class RealtimeProtocol(Protocol):
    """This project's protocol (docs/PROTOCOL.md): hello -> welcome, join -> joined."""

    name = "realtime"

    def opening(self) -> list[bytes]:
        hello = {"type": "hello", "v": [1], "token": token(self.secret, self.user)}
        return [json.dumps(hello).encode()]

    def __init__(self, *, user: str, secret: str, rooms: tuple[str, ...]) -> None:
        super().__init__(user=user, secret=secret, rooms=rooms)
        self._joined: set[str] = set()

    def _joins(self) -> list[bytes]:
        missing = [room for room in self.rooms if room not in self._joined]
        return [json.dumps({"type": "join", "room": room}).encode() for room in missing]

    def on_handshake_frame(self, data: bytes) -> list[bytes] | None:
        frame = json.loads(data)
        kind = frame.get("type")
        self.retry_now = False
        if kind == "welcome":
            return self._joins() if self.rooms else None
        if kind == "joined":
            self._joined.add(frame["room"])
            return None if len(self._joined) == len(self.rooms) else []
        if kind == "error" and frame.get("code") == "unavailable" and self.retries < MAX_RETRIES:
            # "retry later" (docs/PROTOCOL.md): join again what is not joined yet
            self.retries += 1
            self.retry_now = True
            return self._joins()
        if kind == "error":
            raise HandshakeError(f"realtime error frame {frame.get('code')}: {frame.get('detail')}")
        return []  # presence frames of rooms joined already

    def publish(self, room: str, sender: int, seq: int) -> bytes:
        frame = {"type": "message", "room": room, "id": f"{sender}-{seq}", "body": body(sender)}
        return json.dumps(frame).encode()


class BaselineProtocol(Protocol):
    """The websockets broadcast example: no handshake beyond the WebSocket one, one room."""

    name = "baseline"

    def opening(self) -> list[bytes]:
        return []

    def on_handshake_frame(self, data: bytes) -> list[bytes] | None:
        return None

    def publish(self, room: str, sender: int, seq: int) -> bytes:
        # the same frame a client sends the backend, relayed as it is
        frame = {"type": "message", "room": room, "id": f"{sender}-{seq}", "body": body(sender)}
        return json.dumps(frame).encode()


class CentrifugoProtocol(Protocol):
    """Centrifugo's bidirectional JSON protocol: connect with the token, subscribe, publish.

    Replies carry the command ``id``; frames may hold several newline-separated replies.
    """

    name = "centrifugo"
    path = "/connection/websocket"
    app_ping = b"{}"
    namespace: ClassVar[str] = "bench"

    def __init__(self, *, user: str, secret: str, rooms: tuple[str, ...]) -> None:
        super().__init__(user=user, secret=secret, rooms=rooms)
        self._next_id = 0
        self._connected = False

    def _command(self, body: dict[str, object]) -> bytes:
        self._next_id += 1
        return json.dumps({"id": self._next_id, **body}).encode()

    def channel(self, room: str) -> str:
        return f"{self.namespace}:{room}"

    def opening(self) -> list[bytes]:
        connect = {"token": token(self.secret, self.user), "name": "bench"}
        return [self._command({"connect": connect})]

    def on_handshake_frame(self, data: bytes) -> list[bytes] | None:
        out: list[bytes] = []
        for line in data.split(b"\n"):
            if not line.strip() or line == b"{}":
                continue
            reply = json.loads(line)
            if "error" in reply:
                raise HandshakeError(f"centrifugo error reply {reply['error']}")
            if "connect" in reply and not self._connected:
                self._connected = True
                if not self.rooms:
                    return None
                out += [
                    self._command({"subscribe": {"channel": self.channel(room)}})
                    for room in self.rooms
                ]
            elif "subscribe" in reply:
                self._pending -= 1
                if self._pending == 0:
                    return None
        return out

    def publish(self, room: str, sender: int, seq: int) -> bytes:
        data = {"channel": self.channel(room), "data": {"body": body(sender)}}
        return self._command({"publish": data})


PROTOCOLS: dict[str, type[Protocol]] = {
    cls.name: cls for cls in (RealtimeProtocol, BaselineProtocol, CentrifugoProtocol)
}
