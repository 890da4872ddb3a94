"""Keepalive pings for every authenticated connection, from one task.

websockets' own keepalive runs a task per connection (a coroutine, its sleep and its timer:
about 2.5 KiB of an idle connection's memory, docs/PERFORMANCE.md). Here the connections are
spread over ``SLOTS`` groups by their hash; one task visits a group every
``PING_INTERVAL / SLOTS`` seconds and pings each of its connections (:meth:`Fanout.ping`),
so every connection is pinged every ``PING_INTERVAL`` and the pings are spread evenly
over the interval. One timer per visited group checks the pongs ``PING_TIMEOUT`` later: a
connection whose ping is still unanswered (and which is still open) is closed with 1011
``keepalive ping timeout``, as websockets would (docs/PROTOCOL.md).

A connection is pinged from its authentication on (``register``) until it ends
(``unregister``); before ``hello`` the hello timeout bounds it.
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.server import ServerConnection

from realtime.fanout import Fanout

SLOTS = 20
"""Groups of connections, visited in turn: a twentieth of the connections is pinged at a time."""


class Keepalive:
    """Pings the registered connections every ``interval`` seconds; closes with 1011 those
    that do not answer within ``timeout`` seconds."""

    def __init__(self, fanout: Fanout, interval: float, timeout: float) -> None:
        self._fanout = fanout
        self._interval = interval
        self._timeout = timeout
        self._groups: list[set[ServerConnection]] = [set() for _ in range(SLOTS)]
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups)

    def register(self, ws: ServerConnection) -> None:
        self._groups[hash(ws) % SLOTS].add(ws)

    def unregister(self, ws: ServerConnection) -> None:
        self._groups[hash(ws) % SLOTS].discard(ws)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="keepalive")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self._interval / SLOTS
        due = loop.time()
        slot = 0
        while True:
            due += tick
            await asyncio.sleep(max(due - loop.time(), 0.0))
            self.ping_group(slot)
            slot = (slot + 1) % SLOTS

    def ping_group(self, slot: int) -> None:
        """Ping every connection of one group now and check their pongs ``timeout`` later."""
        ping = self._fanout.ping
        sent: list[tuple[ServerConnection, bytes]] = []
        for ws in self._groups[slot]:
            data = ping(ws)
            if data is not None:
                sent.append((ws, data))
        if sent:
            asyncio.get_running_loop().call_later(self._timeout, self._check, sent)

    def _check(self, sent: list[tuple[ServerConnection, bytes]]) -> None:
        missing = self._fanout.pong_missing
        for ws, data in sent:
            if missing(ws, data):
                self._fanout.fail_keepalive(ws)
