"""Fixtures: an in-process instance on free loopback ports, and protocol-speaking clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from realtime.app import App
from realtime.settings import Settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

SIGNING_KEY = "test-signing-key-0123456789abcdef0123456789"

TEST_SETTINGS = Settings(
    host="127.0.0.1",
    http_port=0,
    metrics_port=0,
    ws_port=0,
    token_signing_key=SIGNING_KEY,
    allowed_origins=("https://chat.example",),
    log_format="text",
)


class Client:
    """A WebSocket client speaking the protocol, with strict receive helpers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}
        self.replayed: list[dict[str, Any]] = []

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            frame: dict[str, Any] = json.loads(await self.ws.recv())
        return frame

    async def expect(self, kind: str, timeout: float = 3.0) -> dict[str, Any]:
        """Return the next frame, which must be of type ``kind``."""
        frame = await self.recv(timeout)
        assert frame["type"] == kind, frame
        return frame

    async def join(
        self, room: str = "lobby", *, online: bool = True, **extra: Any
    ) -> dict[str, Any]:
        """Join ``room``; with ``online`` (the user came online) also read the user's own
        presence join, which follows the joined frame and any replayed messages."""
        await self.send(type="join", room=room, **extra)
        joined = await self.expect("joined")
        self.replayed = [await self.expect("message") for _ in range(joined.get("replayed", 0))]
        if online:
            presence = await self.expect("presence")
            assert (presence["event"], presence["user"]) == ("join", self.welcome["user"])
        return joined

    async def assert_alive(self) -> None:
        """The connection still answers (another client survived a bad neighbour)."""
        await self.send(type="ping", id="alive")
        assert await self.expect("pong") == {"type": "pong", "id": "alive"}

    async def closed_with(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Read until the server closes; return the close code and reason it sent."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionClosed):
                async for _ in self.ws:
                    pass
        return self.ws.close_code, self.ws.close_reason


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
def settings() -> Settings:
    """Tests override fields with ``dataclasses.replace`` through this fixture."""
    return TEST_SETTINGS


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    app = App(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.ws.stop()
        await app.http.stop()


@pytest.fixture
async def client(app: App) -> AsyncIterator[ClientFactory]:
    """``await client("alice")``: a connected, authenticated client (closed afterwards)."""
    opened: list[ClientConnection] = []

    async def factory(
        user: str, *, name: str | None = None, token: str | None = None, **kwargs: Any
    ) -> Client:
        kwargs.setdefault("close_timeout", 1)
        ws = await connect(f"ws://127.0.0.1:{app.ws.port}/", **kwargs)
        opened.append(ws)
        c = Client(ws)
        if token is None:
            token = app.verifier.issue(user, name or user.split("-", maxsplit=1)[0])
        await c.send(type="hello", v=[1], token=token)
        c.welcome = await c.expect("welcome")
        return c

    yield factory
    for ws in opened:
        await ws.close()


async def raw_connect(app: App, **kwargs: Any) -> Client:
    """A connected client that has not said hello yet."""
    return Client(await connect(f"ws://127.0.0.1:{app.ws.port}/", **kwargs))


def with_settings(**changes: Any) -> Any:
    """Parametrise the ``settings`` fixture for one test: ``@with_settings(history_size=3)``."""
    return pytest.mark.parametrize(
        "settings", [dataclasses.replace(TEST_SETTINGS, **changes)], ids=["settings"]
    )
