"""The reader's position in one subscribed room."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

RECENT = 64
"""Delivered messages per room whose digest the reader keeps, to notice a history that
went back under it (a master failed before replicating what it acknowledged)."""


@dataclass(slots=True)
class Feed:
    """The reader's position in one subscribed room: the last delivered (epoch, offset)."""

    epoch: str | None = None
    offset: int = 0
    waiters: list[tuple[str, int, asyncio.Future[None]]] = field(default_factory=list)
    recent: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=RECENT))
    """(offset, hash of the frame) of the last delivered messages."""

    def seen(self, epoch: str, offset: int) -> bool:
        return epoch == self.epoch and offset <= self.offset

    def delivered(self, epoch: str, offset: int, frame: str) -> bool:
        """Record a delivered message and move to it (see :meth:`advance`)."""
        if epoch != self.epoch:
            self.recent.clear()
        self.recent.append((offset, hash(frame)))
        return self.advance(epoch, offset)

    def diverged(self, epoch: str, last: int, entries: list[tuple[int, str]]) -> int | None:
        """The first delivered offset that the room's history (``entries`` of ``epoch``, last
        offset ``last``) no longer holds as delivered; None when it agrees."""
        if epoch != self.epoch:
            return None
        stored = {offset: hash(frame) for offset, frame in entries}
        first = entries[0][0] if entries else last + 1
        for offset, digest in self.recent:
            if offset > last or (offset >= first and stored.get(offset) != digest):
                return offset
        return last + 1 if self.offset > last else None

    def rewind(self, offset: int) -> None:
        """Forget deliveries from ``offset`` on: the history reassigned them."""
        self.offset = offset - 1
        while self.recent and self.recent[-1][0] >= offset:
            self.recent.pop()

    def advance(self, epoch: str, offset: int) -> bool:
        """Move to (epoch, offset); wake the waiters it satisfies; true if any woke."""
        self.epoch, self.offset = epoch, offset
        woke = False
        for waiter in list(self.waiters):
            target_epoch, target_offset, future = waiter
            if target_epoch == epoch and target_offset <= offset:
                self.waiters.remove(waiter)
                if not future.done():
                    future.set_result(None)
                    woke = True
        return woke
