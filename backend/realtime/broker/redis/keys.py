"""Redis key and channel names; a room's keys share the hash tag ``{room}`` (one slot)."""

from __future__ import annotations

from typing import Any

from realtime.ids import ClientMessageId, RoomName, UserId

PRESENCE_KEYS = ("presence", "conns", "counts", "names", "leaves")
"""The per-room keys of the presence scripts, in their KEYS order."""


class Keys:
    """Key and channel names under ``prefix`` (REDIS_KEY_PREFIX) for one instance.

    Each room has two channels: its **message channel** (chat messages only, in the format
    every release since the first uses, so chat crosses releases during a rolling deploy) and
    its **events channel** (presence and typing; releases before the events channel published
    those as bare frames on the message channel). On a single Redis the message channel keeps
    the first release's name ``<prefix>:room:<room>``; on a cluster both channels carry the
    room's hash tag, so the room's scripts SPUBLISH to their own slot.
    """

    def __init__(self, prefix: str, instance: str, *, cluster: bool = False) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self.publish_command = "SPUBLISH" if cluster else "PUBLISH"
        self.channel_prefix = f"{prefix}:room:"
        # on a single Redis each instance also subscribes its own channel, so its subscription
        # connection is never idle in normal mode (the heartbeat PINGs it)
        self.control = f"{prefix}:instance:{instance}"

    async def publish(self, redis: Any, channel: str, payload: str) -> None:
        """PUBLISH on a single Redis, SPUBLISH (sharded, to the channel's slot) on a cluster."""
        if self.cluster:
            await redis.spublish(channel, payload)
        else:
            await redis.publish(channel, payload)

    def channel(self, room: RoomName) -> str:
        """The room's message channel."""
        if self.cluster:
            return self.room(room, "room")
        return self.channel_prefix + room

    def events(self, room: RoomName) -> str:
        """The room's events channel (presence and typing)."""
        return self.room(room, "events")

    def channels(self, room: RoomName) -> list[str]:
        return [self.channel(room), self.events(room)]

    def room_of(self, channel: str) -> tuple[RoomName, bool] | None:
        """(room, is the events channel) of one of :meth:`channels`; None for another."""
        if not self.cluster and channel.startswith(self.channel_prefix):
            return RoomName(channel[len(self.channel_prefix) :]), False
        head = f"{self.prefix}:{{"
        room, sep, name = channel[len(head) :].rpartition("}:")
        if not channel.startswith(head) or not sep:
            return None
        if name == "events":
            return RoomName(room), True
        if name == "room" and self.cluster:
            return RoomName(room), False
        return None

    def room(self, room: RoomName, name: str) -> str:
        return f"{self.prefix}:{{{room}}}:{name}"

    def history(self, room: RoomName) -> list[str]:
        """KEYS of the history scripts: meta (hash epoch/offset), log (stream)."""
        return [self.room(room, "meta"), self.room(room, "log")]

    def idempotency(self, room: RoomName, user: UserId, client_id: ClientMessageId) -> str:
        return self.room(room, f"id:{len(user)}:{user}:{client_id}")

    def presence(self, room: RoomName) -> list[str]:
        return [self.room(room, name) for name in PRESENCE_KEYS]
