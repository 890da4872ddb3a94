"""Token expiry of every open connection, from one timer.

A connection is closed with 4001 ``token expired`` at its token's ``exp`` plus the clock-skew
leeway, unless a ``refresh`` moves it (docs/PROTOCOL.md). A timer per connection would cost
about 0.9 KiB of RSS each on uvloop (the handle and libuv's timer, measured in
docs/PERFORMANCE.md); here the deadlines are a heap and one timer waits for the earliest.

A session's current deadline is ``Session.expires`` (loop time); a refresh pushes a new entry
and leaves the old one behind, a session that ends sets it to ``None``. Entries whose
deadline is no longer their session's are skipped when they come up, and the heap is rebuilt
without them once they outnumber the live ones (a reconnect storm leaves no garbage behind).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable

from realtime.hub import Session

_COMPACT_SLACK = 64
"""Stale entries tolerated beyond the live count before the heap is rebuilt."""


class Expiry:
    """Calls ``on_expire(session)`` once at each session's deadline (loop time)."""

    def __init__(self, on_expire: Callable[[Session], None]) -> None:
        self._on_expire = on_expire
        self._heap: list[tuple[float, int, Session]] = []
        self._order = itertools.count()
        self._live = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        """Sessions with a deadline."""
        return self._live

    def schedule(self, session: Session, at: float) -> None:
        """Set (or move) the session's deadline to loop time ``at``."""
        if session.expires is None:
            self._live += 1
        session.expires = at
        heapq.heappush(self._heap, (at, next(self._order), session))
        if at < self._timer_at:
            self._arm(at)
        self._compact()

    def cancel(self, session: Session) -> None:
        """The session ended: its deadline is dropped."""
        if session.expires is not None:
            session.expires = None
            self._live -= 1
            self._compact()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at, self._fire)
        self._timer_at = at

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        heap = self._heap
        now = asyncio.get_running_loop().time()
        while heap and heap[0][0] <= now:
            at, _, session = heapq.heappop(heap)
            if session.expires == at:
                session.expires = None
                self._live -= 1
                self._on_expire(session)
        if heap:
            self._arm(heap[0][0])

    def _compact(self) -> None:
        if len(self._heap) > 2 * self._live + _COMPACT_SLACK:
            self._heap = [entry for entry in self._heap if entry[2].expires == entry[0]]
            heapq.heapify(self._heap)
