"""Identifier types shared by the protocol core, the broker and the transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

RoomName = NewType("RoomName", str)
"""A validated room name (see :data:`realtime.protocol.ROOM_NAME_PATTERN`)."""

UserId = NewType("UserId", str)
"""The ``sub`` claim of a verified token."""

ConnId = NewType("ConnId", str)
"""A connection id, unique across instances (random, assigned at ``welcome``)."""

Epoch = NewType("Epoch", str)
"""A random id of one room's history instance; a new epoch means offsets restarted."""

ClientMessageId = NewType("ClientMessageId", str)
"""The client-chosen ``id`` of a ``message`` frame: the idempotency key, scoped per user."""


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated user: ``id`` from the token's ``sub``, ``name`` for display."""

    id: UserId
    name: str
