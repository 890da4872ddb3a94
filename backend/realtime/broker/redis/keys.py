"""Redis key and channel names; a room's keys share the hash tag ``{room}`` (one slot)."""

from __future__ import annotations

from realtime.ids import ClientMessageId, RoomName, UserId

PRESENCE_KEYS = ("presence", "conns", "counts", "names", "leaves")
"""The per-room keys of the presence scripts, in their KEYS order (then the room index)."""


class Keys:
    """Key and channel names under ``prefix`` (REDIS_KEY_PREFIX) for one instance."""

    def __init__(self, prefix: str, instance: str) -> None:
        self.prefix = prefix
        self.presence_rooms = f"{prefix}:presence-rooms"
        self.channel_prefix = f"{prefix}:room:"
        # each instance also subscribes its own control channel: the heartbeat publishes
        # there to check the subscription end to end
        self.control = f"{prefix}:instance:{instance}"

    def channel(self, room: RoomName) -> str:
        return self.channel_prefix + room

    def room_of(self, channel: str) -> RoomName:
        return RoomName(channel[len(self.channel_prefix) :])

    def room(self, room: RoomName, name: str) -> str:
        return f"{self.prefix}:{{{room}}}:{name}"

    def history(self, room: RoomName) -> list[str]:
        """KEYS of the history scripts: meta (hash epoch/offset), log (stream)."""
        return [self.room(room, "meta"), self.room(room, "log")]

    def idempotency(self, room: RoomName, user: UserId, client_id: ClientMessageId) -> str:
        return self.room(room, f"id:{len(user)}:{user}:{client_id}")

    def presence(self, room: RoomName) -> list[str]:
        return [self.room(room, name) for name in PRESENCE_KEYS] + [self.presence_rooms]
