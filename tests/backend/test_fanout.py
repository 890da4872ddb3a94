"""realtime.fanout against the installed websockets: one test per internal it relies on.

The fan-out writes serialized frames straight to each connection's transport and closes
slow consumers without awaiting; a websockets release that changes any of these internals
must fail here, loudly, not in production.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from realtime import fanout
from realtime.fanout import FLUSH_MAX_TURNS, Fanout, wire
from realtime.metrics import Metrics
from realtime.protocol import CloseCode
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.protocol import State

Handler = Callable[[ServerConnection], Awaitable[None]]
REQUIREMENTS = Path(__file__).parents[2] / "backend" / "requirements.txt"


def test_websockets_is_the_pinned_version() -> None:
    """The internals below were checked against this version; an upgrade re-runs them."""
    pinned = re.search(r"^websockets==(\S+)$", REQUIREMENTS.read_text(), re.MULTILINE)
    assert pinned is not None
    assert version("websockets") == pinned.group(1)


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (5, bytes([0x81, 5])),
        (126, bytes([0x81, 126]) + struct.pack("!H", 126)),
        (70_000, bytes([0x81, 127]) + struct.pack("!Q", 70_000)),
    ],
)
def test_wire_is_an_unmasked_rfc6455_text_frame(length: int, header: bytes) -> None:
    """Frame.serialize(mask=False, extensions=[]): FIN + text opcode, no mask, the payload."""
    payload = "x" * length
    assert wire(payload) == header + payload.encode()


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Handler], Awaitable[ClientConnection]]]:
    """Start a websockets server running ``handler`` and connect one client to it."""
    stack: list[tuple[Server, ClientConnection]] = []

    async def start(handler: Handler) -> ClientConnection:
        srv = await serve(handler, "127.0.0.1", 0, compression=None)
        port = srv.sockets[0].getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}/", compression=None)
        stack.append((srv, client))
        return client

    yield start
    for srv, client in stack:
        await client.close()
        srv.close()
        await srv.wait_closed()


def _fanout(limit: int = 1 << 20) -> tuple[Fanout, Metrics, list[asyncio.Task[None]]]:
    metrics = Metrics()
    tasks: list[asyncio.Task[None]] = []
    out = Fanout(metrics, limit, lambda coro: tasks.append(asyncio.create_task(coro)))
    return out, metrics, tasks


async def test_connection_internals_exist(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """transport (write, buffer size, is_closing, close, abort, socket), protocol.state,
    protocol.send_close, send_data and response are what fanout uses."""
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        transport = ws.transport
        for name in ("write", "get_write_buffer_size", "is_closing", "close", "abort"):
            seen[name] = callable(getattr(transport, name, None))
        sock = transport.get_extra_info("socket")
        seen["socket"] = callable(getattr(sock, "fileno", None)) and callable(
            getattr(sock, "setsockopt", None)
        )
        seen["state"] = ws.protocol.state is State.OPEN and fanout.is_open(ws)
        seen["send_close"] = callable(getattr(ws.protocol, "send_close", None))
        seen["send_data"] = callable(getattr(ws, "send_data", None))
        seen["response"] = isinstance(ws.response, Response)
        fanout.forget_handshake(ws)
        seen["forgotten"] = ws.response is None
        await ws.send("still works")
        seen["still receives"] = await ws.recv() == "and reads"
        done.set()
        await ws.wait_closed()

    client = await server(handler)
    assert await client.recv() == "still works"
    await client.send("and reads")
    await asyncio.wait_for(done.wait(), 5)
    assert all(seen.values()), seen
    assert len(seen) == 12


async def test_writes_reach_the_client_in_order(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """write and broadcast put frames on the transport, in order, counted in messages_out."""
    out, metrics, _ = _fanout()

    async def handler(ws: ServerConnection) -> None:
        out.write(ws, "one")
        out.broadcast([ws], wire("two") + wire("three"), frames=2)
        await ws.wait_closed()

    client = await server(handler)
    assert [await client.recv() for _ in range(3)] == ["one", "two", "three"]
    assert metrics.messages_out._value.get() == 3


async def test_send_close_leaves_open_and_reaches_the_client(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """protocol.send_close + send_data queue the close frame at once; nothing is written
    after it (a later write counts as dropped)."""
    out, metrics, _ = _fanout()
    states: list[State] = []

    async def handler(ws: ServerConnection) -> None:
        out.send_close(ws, CloseCode.SLOW_CONSUMER, "send buffer full")
        states.append(ws.protocol.state)
        out.write(ws, "after close")
        await ws.wait_closed()

    client = await server(handler)
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert (client.close_code, client.close_reason) == (4009, "send buffer full")
    assert states == [State.CLOSING]
    assert metrics.dropped._value.get() == 1


async def test_end_promptly_closes_once_the_close_frame_is_out(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """close_promptly: the close frame, then a FIN without waiting for the client's answer."""
    out, _, _ = _fanout()
    ended: list[bool] = []

    async def handler(ws: ServerConnection) -> None:
        assert fanout.unsent_bytes(ws) >= 0
        await out.close_promptly(ws, CloseCode.RATE_LIMITED, "rate limit exceeded")
        ended.append(ws.transport.is_closing())

    client = await server(handler)
    client.transport.pause_reading()  # the client never answers the close
    async with asyncio.timeout(fanout.ABORT_AFTER_SECONDS + 1):
        while not ended:
            await asyncio.sleep(0.01)
    assert ended == [True]


async def test_slow_consumer_is_closed_with_4009_and_reset(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """A member whose buffer passes the limit gets 4009; the RST follows within the bound."""
    out, metrics, tasks = _fanout(limit=64 * 1024)

    async def handler(ws: ServerConnection) -> None:
        chunk = wire("x" * 60_000)
        while fanout.is_open(ws):
            out.broadcast([ws], chunk)
        await asyncio.gather(*tasks)
        await ws.wait_closed()

    client = await server(handler)
    client.transport.pause_reading()
    async with asyncio.timeout(5):
        while not tasks or not all(t.done() for t in tasks):
            await asyncio.sleep(0.02)
    assert metrics.slow_consumers._value.get() == 1
    assert metrics.closes.labels(code="4009")._value.get() == 1
    assert tasks[0].exception() is None


async def test_reset_all_reaches_connections_that_are_closing() -> None:
    """Server.all_connections holds open and closing connections; reset_all aborts them."""
    entered = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        entered.set()
        await ws.wait_closed()

    srv = await serve(handler, "127.0.0.1", 0, compression=None)
    port = srv.sockets[0].getsockname()[1]
    client = await connect(f"ws://127.0.0.1:{port}/", compression=None)
    await entered.wait()
    client.transport.pause_reading()  # the client never answers a close
    (ws,) = srv.all_connections
    out, _, _ = _fanout()
    out.send_close(ws, CloseCode.SERVICE_RESTART, "server restarting")
    assert ws in srv.all_connections
    assert not fanout.is_open(ws)
    fanout.reset_all(srv)
    assert ws.transport.is_closing()
    client.transport.resume_reading()
    await client.wait_closed()
    srv.close()
    await srv.wait_closed()


INTERNALS = re.compile(
    r"\.transport\b|\.protocol\.(state|send_|receive_|data_to_send|fail)|\bsend_data\("
    r"|\.response = |all_connections|websockets\.frames|pending_pings"
)


async def test_ping_is_acknowledged_by_the_pong_and_a_missing_pong_fails_with_1011(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """pending_pings and protocol.send_ping: the client's pong (websockets answers by
    itself) removes the ping and sets the latency; protocol.fail sends 1011 with the
    keepalive reason and the connection ends without waiting for the peer."""
    out, _, tasks = _fanout()
    states: list[bool] = []
    ended = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        data = out.ping(ws)
        assert data is not None
        assert len(data) == 4
        states.append(out.pong_missing(ws, data))  # sent, no pong yet
        for _ in range(100):
            if not out.pong_missing(ws, data):
                break
            await asyncio.sleep(0.01)
        states.append(out.pong_missing(ws, data))
        states.append(ws.latency > 0)
        out.fail_keepalive(ws)
        states.append(out.ping(ws) is None)  # no longer open
        await ws.wait_closed()
        ended.set()

    client = await server(handler)
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.close_code == 1011
    assert client.close_reason == fanout.KEEPALIVE_TIMEOUT == "keepalive ping timeout"
    await asyncio.wait_for(ended.wait(), 2)
    assert states == [True, False, True, True]
    await asyncio.gather(*tasks)


def test_no_other_module_touches_websockets_internals() -> None:
    """Only realtime/fanout.py reaches into websockets (so this file pins all of it)."""
    backend = REQUIREMENTS.parent / "realtime"
    offenders = [
        f"{path.relative_to(backend)}:{number}"
        for path in sorted(backend.rglob("*.py"))
        if path.name != "fanout.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNALS.search(line)
    ]
    assert offenders == []


def _record_writes(ws: ServerConnection, record: Callable[[bytes], object]) -> None:
    """Hand every ``transport.write`` of ``ws`` to ``record`` (a copy), then write it."""
    transport = ws.transport
    real = transport.write

    def write(data: bytes) -> None:
        record(bytes(data))
        real(data)

    transport.write = write  # type: ignore[method-assign]


async def test_frames_of_one_loop_turn_leave_in_one_write_after_an_idle_iteration(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """Coalescing: replies and room frames queued in one turn reach the transport as one
    write, in call order, once a loop iteration has queued nothing more (no timer);
    metrics count frames."""
    out, metrics, _ = _fanout()
    writes: list[bytes] = []
    after: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        _record_writes(ws, writes.append)
        out.write(ws, "one")
        out.broadcast([ws], wire("two") + wire("three"), frames=2)
        out.write(ws, "four")
        after.append(len(writes))
        await asyncio.sleep(0)  # the flush looks, sees this turn's frames, waits one more
        after.append(len(writes))
        await asyncio.sleep(0)  # nothing new was queued: written
        after.append(len(writes))
        await ws.wait_closed()

    client = await server(handler)
    assert [await client.recv() for _ in range(4)] == ["one", "two", "three", "four"]
    assert after == [0, 0, 1]
    assert writes == [wire("one") + wire("two") + wire("three") + wire("four")]
    assert metrics.messages_out._value.get() == 4


async def test_a_busy_loop_delays_the_flush_by_at_most_flush_max_turns_iterations(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """Frames queued in every loop iteration are written together, but never held longer
    than FLUSH_MAX_TURNS iterations after the first: the write count per iteration shows
    when each write happened."""
    out, _, _ = _fanout()
    writes: list[bytes] = []
    counts: list[int] = []
    iterations = 3 * (FLUSH_MAX_TURNS + 1)

    async def handler(ws: ServerConnection) -> None:
        _record_writes(ws, writes.append)
        for i in range(iterations):
            out.write(ws, str(i))
            counts.append(len(writes))
            await asyncio.sleep(0)
        await ws.wait_closed()

    client = await server(handler)
    assert [await client.recv() for _ in range(iterations)] == [str(i) for i in range(iterations)]
    # the first write comes FLUSH_MAX_TURNS iterations after the first frame, with the
    # frames of FLUSH_MAX_TURNS + 1 iterations in it, and so on
    first = counts.index(1)
    assert first == FLUSH_MAX_TURNS + 1, counts
    assert writes[0] == b"".join(wire(str(i)) for i in range(FLUSH_MAX_TURNS + 1))
    assert len(writes) == 3


async def test_pending_frames_never_pass_the_limit_and_go_before_a_close(
    server: Callable[[Handler], Awaitable[ClientConnection]],
) -> None:
    """A member's pending bytes are written as soon as they would pass the limit (within
    the same turn); send_close writes the pending frames before the close frame."""
    out, _, _ = _fanout(limit=10_000)
    sizes: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        _record_writes(ws, lambda data: sizes.append(len(data)))
        for _ in range(5):
            out.write(ws, "x" * 4_000)
        out.write(ws, "last")
        out.send_close(ws, CloseCode.SERVICE_RESTART, "server restarting")
        await ws.wait_closed()

    client = await server(handler)
    received = [await client.recv() for _ in range(6)]
    assert received[-1] == "last"
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.close_code == 1012
    assert all(size <= 10_000 + 4_004 for size in sizes[:-1]), sizes
    assert len(sizes) >= 3  # flushed within the turn, then before the close, then the close
