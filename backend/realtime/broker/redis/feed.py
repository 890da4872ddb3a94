"""The reader's position in one subscribed room."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True)
class Feed:
    """The reader's position in one subscribed room: the last delivered (epoch, offset)."""

    epoch: str | None = None
    offset: int = 0
    waiters: list[tuple[str, int, asyncio.Future[None]]] = field(default_factory=list)

    def seen(self, epoch: str, offset: int) -> bool:
        return epoch == self.epoch and offset <= self.offset

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
