"""The inter-instance pub/sub format, from both sides: what the Lua scripts publish parses
with realtime.broker.redis.wire, and what Python encodes parses in Lua, on a real
redis-server (EVAL of the generated helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from realtime.broker import Kind
from realtime.broker.redis import wire
from realtime.broker.redis.keys import Keys
from realtime.broker.redis.lua import APPEND, PRESENCE_JOIN, PRESENCE_REAP
from realtime.ids import ClientMessageId, RoomName, UserId
from redis.asyncio import Redis

from tests.backend.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.integration

FRAME = '{"type":"message","body":"a|b:c é"}'


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_server.url, decode_responses=True) as client:
        await client.flushall()
        yield client


@pytest.mark.parametrize("kind", list(Kind))
def test_python_round_trip(kind: Kind) -> None:
    """encode then parse gives back kind, frame and (for messages) epoch and offset."""
    epoch, offset = ("0123abcd0123abcd", 42) if kind is Kind.MESSAGE else ("", 0)
    data = wire.encode(kind, FRAME, epoch=epoch, offset=offset)
    assert wire.parse(data) == wire.Payload(kind, FRAME, epoch, offset)


@pytest.mark.parametrize(
    "data",
    ['{"type":"typing"}', "x|{}", "mabc|{}", "mabc:x|{}", "p", "pp|{}", "tfoo|{}"],
)
def test_malformed_payloads_are_refused(data: str) -> None:
    """Bare frames (an older release's), unknown tags and broken heads raise WireError."""
    with pytest.raises(wire.WireError):
        wire.parse(data)


@pytest.mark.parametrize(("function", "kind"), [("wire_presence", Kind.PRESENCE)])
async def test_lua_payloads_parse_in_python(redis: Redis, function: str, kind: Kind) -> None:
    """The Lua helpers build exactly what Python's encode builds."""
    lua = wire.LUA + f"return {function}(ARGV[1])"
    data = await redis.eval(lua, 0, FRAME)
    assert data == wire.encode(kind, FRAME)
    assert wire.parse(data) == wire.Payload(kind, FRAME)
    message = await redis.eval(
        wire.LUA + "return wire_message(ARGV[1], tonumber(ARGV[2]), ARGV[3])", 0, "e1", 7, FRAME
    )
    assert wire.parse(message) == wire.Payload(Kind.MESSAGE, FRAME, "e1", 7)


async def test_python_head_parses_in_lua(redis: Redis) -> None:
    """An idempotency record written with Python's head() splits in Lua's wire_parse_head."""
    lua = wire.LUA + "local e, o, f = wire_parse_head(ARGV[1]); return {e, o, f}"
    record = wire.head("0123abcd0123abcd", 9) + FRAME
    assert await redis.eval(lua, 0, record) == ["0123abcd0123abcd", 9, FRAME]


async def test_scripts_publish_what_the_reader_parses(redis: Redis) -> None:
    """The append script's message and the reaper's leave, read off a real subscription."""
    keys = Keys("t", "i1")
    room = RoomName("lobby")
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(*keys.channels(room))
        for _ in keys.channels(room):
            await pubsub.get_message(timeout=1.0)
        append = redis.register_script(APPEND)
        idem = keys.idempotency(room, UserId("u1"), ClientMessageId("m1"))
        args: list[str | int] = ["e1", '{"offset":', ',"rest":1}', 10, 60, 60, keys.channel(room)]
        args.append("PUBLISH")
        await append(keys=[*keys.history(room), idem], args=args)
        join = redis.register_script(PRESENCE_JOIN)
        await join(keys=keys.presence(room), args=[1, 3, room, "c1", "u1", "n", '{"leave":1}'])
        reap = redis.register_script(PRESENCE_REAP)
        await redis.zadd(keys.presence(room)[0], {"c1": 0})  # expired long ago
        await reap(keys=keys.presence(room), args=[room, keys.events(room), "PUBLISH"])
        payloads: list[tuple[str, wire.Payload]] = []
        while len(payloads) < 2:
            message = await pubsub.get_message(timeout=2.0)
            assert message is not None, payloads
            if message["type"] == "message":
                payloads.append((message["channel"], wire.parse(message["data"])))
    # the message on the message channel (the name and format of every release), the leave
    # on the events channel (which releases before it do not subscribe)
    assert payloads == [
        ("t:room:lobby", wire.Payload(Kind.MESSAGE, '{"offset":1,"epoch":"e1","rest":1}', "e1", 1)),
        ("t:{lobby}:events", wire.Payload(Kind.PRESENCE, '{"leave":1}')),
    ]


@pytest.mark.parametrize("cluster", [False, True])
def test_keys_name_both_channels_of_a_room(cluster: bool) -> None:
    """The message channel keeps the first release's name on a single Redis; on a cluster
    both channels carry the room's hash tag; room_of reads every one back."""
    keys = Keys("rt", "i1", cluster=cluster)
    room = RoomName("a.b:c-1")
    message, events = keys.channels(room)
    assert message == ("rt:{a.b:c-1}:room" if cluster else "rt:room:a.b:c-1")
    assert events == "rt:{a.b:c-1}:events"
    assert keys.room_of(message) == (room, False)
    assert keys.room_of(events) == (room, True)
    assert keys.room_of(keys.control) is None
    assert keys.room_of("rt:{a.b:c-1}:meta") is None
    assert keys.publish_command == ("SPUBLISH" if cluster else "PUBLISH")
