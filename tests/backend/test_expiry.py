"""realtime.expiry: one timer for every session's token expiry (the 4001 close itself is
checked through the real server in tests/backend/test_edges.py, "token expiry")."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from realtime.expiry import Expiry
from realtime.hub import Session
from realtime.ids import ConnId, User, UserId
from realtime.rooms import TokenBucket


def _session(name: str) -> Session:
    user = User(UserId(name), name)
    return Session(cast(Any, None), ConnId(name), user, TokenBucket(1.0, 1.0, 0.0))


async def test_each_session_expires_once_in_deadline_order() -> None:
    loop = asyncio.get_running_loop()
    expired: list[str] = []
    expiry = Expiry(lambda s: expired.append(s.conn))
    now = loop.time()
    # deadlines far apart, so a busy test machine cannot blur their order
    for name, delay in (("c", 0.8), ("a", 0.05), ("b", 0.4)):
        expiry.schedule(_session(name), now + delay)
    assert len(expiry) == 3
    await asyncio.sleep(0.2)
    assert expired == ["a"]
    await asyncio.sleep(0.9)
    assert expired == ["a", "b", "c"]
    assert len(expiry) == 0


async def test_a_refresh_moves_the_deadline_and_an_ended_session_never_expires() -> None:
    loop = asyncio.get_running_loop()
    expired: list[str] = []
    expiry = Expiry(lambda s: expired.append(s.conn))
    now = loop.time()
    moved, ended, earlier = _session("moved"), _session("ended"), _session("earlier")
    expiry.schedule(moved, now + 0.1)
    expiry.schedule(ended, now + 0.1)
    expiry.schedule(earlier, now + 1.0)
    expiry.schedule(moved, now + 0.7)  # refresh: later
    expiry.schedule(earlier, now + 0.2)  # refresh: earlier than armed
    expiry.cancel(ended)
    await asyncio.sleep(0.45)
    assert expired == ["earlier"]
    await asyncio.sleep(0.55)
    assert expired == ["earlier", "moved"]
    assert ended.expires is None
    assert len(expiry) == 0


async def test_sessions_that_end_leave_no_entries_behind() -> None:
    """A reconnect storm (sessions scheduled an hour out, then ended) does not grow the
    heap: stale entries are dropped once they outnumber the live ones."""
    loop = asyncio.get_running_loop()
    expiry = Expiry(lambda s: None)
    keep = [_session(f"keep{i}") for i in range(10)]
    for s in keep:
        expiry.schedule(s, loop.time() + 3600)
    for i in range(10_000):
        s = _session(f"gone{i}")
        expiry.schedule(s, loop.time() + 3600)
        expiry.schedule(s, loop.time() + 3700)  # a refresh leaves a stale entry too
        expiry.cancel(s)
    assert len(expiry) == 10
    assert len(expiry._heap) <= 2 * 10 + 64 + 2
    expiry.close()
