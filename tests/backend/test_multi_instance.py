"""Two real backend processes sharing one real redis-server, and their faults.

Each test starts ``python -m realtime`` twice (instances A and B) against a fresh Redis and
talks to them with the ``websockets`` client. Numbers measured by the fault tests are
printed (``pytest -s``) and only checked against the functional requirement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from realtime.auth import TokenVerifier
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.backend.conftest import SIGNING_KEY, Client
from tests.backend.processes import BACKEND, free_port
from tests.backend.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.integration

PRESENCE_TTL = 2.0
PRESENCE_HEARTBEAT = 0.5
VERIFIER = TokenVerifier(SIGNING_KEY)


class Instance:
    """One ``python -m realtime`` process on free loopback ports."""

    def __init__(self, name: str, redis_url: str, log_dir: Path, **env: str) -> None:
        self.name = name
        self.ws_port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.log = log_dir / f"{name}.log"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOST": "127.0.0.1",
            "WS_PORT": str(self.ws_port),
            "HTTP_PORT": str(self.http_port),
            "METRICS_PORT": str(self.metrics_port),
            "REDIS_URL": redis_url,
            "TOKEN_SIGNING_KEY": SIGNING_KEY,
            "LOG_FORMAT": "text",
            "PRESENCE_TTL": str(PRESENCE_TTL),
            "PRESENCE_HEARTBEAT": str(PRESENCE_HEARTBEAT),
            "RATE_LIMIT_PER_SECOND": "1000",
            "RATE_LIMIT_BURST": "1000",
            "DRAIN_SECONDS": "2",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "realtime"],
                cwd=BACKEND,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def readyz(self) -> int:
        """The status of GET /readyz (0 when the port does not answer)."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        except OSError:
            return 0
        try:
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status_line = await asyncio.wait_for(reader.readline(), 2)
            return int(status_line.split()[1]) if status_line else 0
        except (OSError, TimeoutError, ValueError, IndexError):
            return 0
        finally:
            writer.close()

    async def wait_ready(self, status: int = 200, timeout: float = 10.0) -> float:
        """Wait until /readyz answers ``status``; return the seconds it took."""
        started = time.monotonic()
        async with asyncio.timeout(timeout):
            while await self.readyz() != status:
                if self.process is not None and self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.02)
        return time.monotonic() - started

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=5)


class Member:
    """A protocol client of one user that remembers every message it saw, across
    reconnections (live or replayed), and the position to recover from."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.client: Client | None = None
        self.epoch = ""
        self.offset = 0
        self.seen: dict[tuple[str, int], str] = {}
        self.frames: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.joined: dict[str, Any] = {}
        self.received_at: dict[str, float] = {}

    async def connect(self, instance: Instance, room: str = "lobby", **kwargs: Any) -> Client:
        ws = await connect(instance.url, **kwargs)
        client = Client(ws)
        await client.send(type="hello", v=[1], token=VERIFIER.issue(self.user, self.user))
        client.welcome = await client.expect("welcome")
        since = {"epoch": self.epoch, "offset": self.offset} if self.epoch else None
        await client.send(type="join", room=room, **({"since": since} if since else {}))
        joined = await client.expect("joined")
        self.joined = joined
        for _ in range(joined.get("replayed", 0)):
            self._record(await client.expect("message"))
        self.epoch, self.offset = joined["epoch"], joined["offset"]
        self.client = client
        return client

    def _record(self, frame: dict[str, Any]) -> None:
        key = (frame["epoch"], frame["offset"])
        assert key not in self.seen, f"{self.user} got {key} twice"
        self.seen[key] = frame["id"]
        self.received_at.setdefault(frame["id"], time.monotonic())
        self.epoch, self.offset = frame["epoch"], frame["offset"]

    async def pump(self) -> None:
        """Read frames until the connection closes."""
        assert self.client is not None
        with contextlib.suppress(ConnectionClosed):
            async for data in self.client.ws:
                frame = json.loads(data)
                self.frames.append(frame)
                if frame["type"] == "message":
                    self._record(frame)
                elif frame["type"] == "ack":
                    self.acks[frame["id"]] = frame
                elif frame["type"] == "error":
                    self.errors.append(frame)

    async def next_of(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next frame of type ``kind`` (and matching fields) seen by ``pump``."""
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.frames:
                    if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                        self.frames.remove(frame)
                        return frame
                await asyncio.sleep(0.01)

    @property
    def ids(self) -> set[str]:
        return set(self.seen.values())


Cluster = Callable[..., Awaitable[list[Instance]]]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def cluster(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    """``await cluster(2, SEND_BUFFER_BYTES="65536")``: started, ready instances A, B, ..."""
    if not redis_server.running:
        redis_server.start()
    async with Redis.from_url(redis_server.url) as admin:
        await admin.flushall()
    async with instances_on(redis_server.url, tmp_path) as factory:
        yield factory


@contextlib.asynccontextmanager
async def instances_on(redis_url: str, log_dir: Path, **base_env: str) -> AsyncIterator[Cluster]:
    """A factory of started, ready instances A, B, ... on ``redis_url`` (with ``base_env``
    under each call's own env); every instance is stopped on exit."""
    started: list[Instance] = []

    async def factory(count: int = 2, **env: str) -> list[Instance]:
        instances = [
            Instance("AB"[i] if i < 2 else f"i{i}", redis_url, log_dir, **{**base_env, **env})
            for i in range(count)
        ]
        for instance in instances:
            instance.start()
            started.append(instance)
        for instance in instances:
            await instance.wait_ready()
        return instances

    try:
        yield factory
    finally:
        for instance in started:
            instance.stop()


async def _pumping(*members: Member) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(member.pump()) for member in members]


async def _alice_on_a_bob_on_b(
    a: Instance, b: Instance
) -> tuple[Member, Member, list[asyncio.Task[None]]]:
    """Alice joined on A, Bob on B, both read by pump tasks."""
    alice, bob = Member("alice"), Member("bob")
    await alice.connect(a)
    await bob.connect(b)
    return alice, bob, await _pumping(alice, bob)


def _seen_by(ident: str, *members: Member) -> Callable[[], bool]:
    return lambda: all(ident in member.ids for member in members)


async def _metric(instance: Instance, name: str) -> float:
    """One sample of an instance's /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", instance.metrics_port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_messages_typing_and_presence_cross_instances(cluster: Cluster) -> None:
    """Members on A and B see each other's messages, typing and presence, and concurrent
    senders on both instances get unique offsets delivered in the same increasing order."""
    a, b = await cluster(2, TYPING_TTL="1", TYPING_THROTTLE="1")
    alice, bob = Member("alice"), Member("bob")
    await alice.connect(a)
    pumps = await _pumping(alice)
    await alice.next_of("presence", user={"id": "alice", "name": "alice"})
    await bob.connect(b)
    assert [u["id"] for u in bob.joined["presence"]] == ["alice", "bob"]
    pumps += await _pumping(bob)
    await alice.next_of("presence", event="join", user={"id": "bob", "name": "bob"})
    assert alice.client is not None
    assert bob.client is not None

    # typing: throttled to one start per second, expired into a stop after TYPING_TTL
    for _ in range(3):
        await alice.client.send(type="typing", room="lobby", state="start")
    await bob.next_of("typing", state="start")
    stop = await bob.next_of("typing", state="stop", timeout=3.0)
    assert stop["user"]["id"] == "alice"
    assert not [f for f in bob.frames if f["type"] == "typing"]

    # concurrent senders on both instances
    async def send(member: Member, count: int) -> None:
        assert member.client is not None
        for i in range(count):
            await member.client.send(
                type="message", room="lobby", id=f"{member.user}-{i}", body="x"
            )

    await asyncio.gather(send(alice, 60), send(bob, 60))
    await _until(lambda: len(alice.seen) == 120 and len(bob.seen) == 120)
    await _until(lambda: len(alice.acks) == 60 and len(bob.acks) == 60)
    ack_offsets = [ack["offset"] for ack in (*alice.acks.values(), *bob.acks.values())]
    assert sorted(ack_offsets) == list(range(1, 121))
    assert list(alice.seen) == list(bob.seen)  # same order everywhere
    assert [offset for _, offset in alice.seen] == list(range(1, 121))

    # presence leave crosses over
    await bob.client.ws.close()
    await alice.next_of("presence", event="leave", user={"id": "bob", "name": "bob"})
    for pump in pumps:
        pump.cancel()


async def test_client_recovers_missed_messages_on_the_other_instance(cluster: Cluster) -> None:
    """A client of A that missed messages sent via B reconnects to B and gets exactly them."""
    a, b = await cluster(2)
    alice, bob, pumps = await _alice_on_a_bob_on_b(a, b)
    assert bob.client is not None
    assert alice.client is not None
    for i in range(3):
        await bob.client.send(type="message", room="lobby", id=f"before-{i}", body="x")
    await _until(lambda: len(alice.seen) == 3)
    await alice.client.ws.close()
    for i in range(4):
        await bob.client.send(type="message", room="lobby", id=f"missed-{i}", body="x")
    await _until(lambda: len(bob.acks) == 7)
    await alice.connect(b)
    assert alice.joined["recovered"] is True
    assert alice.joined["replayed"] == 4
    assert list(alice.seen.values())[3:] == [f"missed-{i}" for i in range(4)]
    assert [offset for _, offset in alice.seen] == list(range(1, 8))
    for pump in pumps:
        pump.cancel()


async def test_sigkill_instance_users_leave_presence_within_30s(cluster: Cluster) -> None:
    """SIGKILL on A: B's members get A's users' leave once the entries expired (< 30 s)."""
    a, b = await cluster(2)
    _, bob, pumps = await _alice_on_a_bob_on_b(a, b)
    a.signal(signal.SIGKILL)
    killed = time.monotonic()
    await bob.next_of("presence", event="leave", user={"id": "alice", "name": "alice"}, timeout=30)
    elapsed = time.monotonic() - killed
    print(
        f"\nSIGKILL: leave seen on B after {elapsed:.2f} s "
        f"(PRESENCE_TTL={PRESENCE_TTL:g} s, PRESENCE_HEARTBEAT={PRESENCE_HEARTBEAT:g} s)"
    )
    assert elapsed < 30
    assert bob.client is not None
    await bob.client.send(type="join", room="lobby")
    rejoined = await bob.next_of("joined")
    assert [u["id"] for u in rejoined["presence"]] == ["bob"]
    for pump in pumps:
        pump.cancel()


async def test_sigterm_loses_no_acknowledged_message(cluster: Cluster) -> None:
    """SIGTERM on A while messages flow: A's clients are drained, reconnect to B, and every
    member ends up with every acknowledged message."""
    a, b = await cluster(2)
    members = {name: Member(name) for name in ("a1", "a2", "b1")}
    await members["a1"].connect(a)
    await members["a2"].connect(a)
    await members["b1"].connect(b)
    tasks: dict[str, asyncio.Task[None]] = {
        name: asyncio.create_task(member.pump()) for name, member in members.items()
    }
    stop = asyncio.Event()
    drained: list[tuple[str, int | None]] = []

    async def send(member: Member) -> None:
        i = 0
        while not stop.is_set():
            client = member.client
            if client is not None:
                with contextlib.suppress(ConnectionClosed):
                    await client.send(
                        type="message", room="lobby", id=f"{member.user}-{i}", body="x"
                    )
                    i += 1
            await asyncio.sleep(0.01)

    async def follow(name: str) -> None:
        """Reconnect a drained member to B with its last position."""
        member = members[name]
        await tasks[name]
        assert member.client is not None
        drained.append((name, member.client.ws.close_code))
        member.client = None
        await member.connect(b)
        tasks[name] = asyncio.create_task(member.pump())

    senders = [asyncio.create_task(send(members[n])) for n in ("a1", "b1")]
    await _until(lambda: len(members["b1"].seen) >= 20)
    followers = [asyncio.create_task(follow(n)) for n in ("a1", "a2")]
    a.signal(signal.SIGTERM)
    terminated = time.monotonic()
    await asyncio.gather(*followers)
    reconnected = time.monotonic() - terminated
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*senders)
    acked = {ack_id for m in members.values() for ack_id in m.acks}
    await _until(lambda: all(acked <= m.ids for m in members.values()), timeout=5)
    assert a.process is not None
    assert a.process.wait(timeout=10) == 0
    print(
        f"\nSIGTERM: {len(acked)} acknowledged messages, 0 lost; drained with "
        f"{sorted(drained)}; both reconnected to B {reconnected:.2f} s after the signal"
    )
    assert sorted(drained) == [("a1", 1012), ("a2", 1012)]
    for task in tasks.values():
        task.cancel()


async def test_redis_restart_recovers_within_5s(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    """Redis restarts: instances are unready and refuse messages meanwhile, are ready again
    within 5 s of Redis being back, rebuild presence and lose no message acknowledged after."""
    a, b = await cluster(2)
    alice, bob, pumps = await _alice_on_a_bob_on_b(a, b)
    assert alice.client is not None
    assert bob.client is not None
    await alice.client.send(type="message", room="lobby", id="before", body="x")
    await _until(lambda: "before" in bob.ids)
    old_epoch = bob.epoch

    redis_server.stop(kill=True)
    await a.wait_ready(503)
    await alice.client.send(type="message", room="lobby", id="during", body="x")
    refused = await alice.next_of("error")
    assert refused["code"] == "unavailable"
    await asyncio.sleep(3)  # long enough for the reconnect backoff to reach its cap
    redis_server.start()
    back = time.monotonic()
    await asyncio.gather(a.wait_ready(200), b.wait_ready(200))
    recovery = time.monotonic() - back
    print(f"\nredis restart: both instances ready {recovery:.2f} s after redis was back")
    assert recovery < 5
    assert "during" not in alice.acks

    for i in range(5):
        await alice.client.send(type="message", room="lobby", id=f"after-{i}", body="x")
        await bob.client.send(type="message", room="lobby", id=f"bob-after-{i}", body="x")
    acked_after = {f"after-{i}" for i in range(5)} | {f"bob-after-{i}" for i in range(5)}
    await _until(lambda: acked_after <= alice.ids and acked_after <= bob.ids)
    assert bob.epoch != old_epoch

    # presence was rebuilt by the heartbeats: a newcomer sees both
    carol = Member("carol")
    await carol.connect(b)
    assert sorted(u["id"] for u in carol.joined["presence"]) == ["alice", "bob", "carol"]
    # a client recovering from the old epoch is told it was not recovered
    late = Member("late")
    late.epoch, late.offset = old_epoch, 1
    await late.connect(a)
    assert late.joined["recovered"] is False
    assert set(late.seen.values()) == acked_after
    for pump in pumps:
        pump.cancel()


async def test_slow_consumer_does_not_delay_others(cluster: Cluster) -> None:
    """A client of A that stops reading is closed with 4009; the others on A and B keep
    receiving every message."""
    # the sender sends 2,000 frames back to back: on a fast machine that is well over the
    # cluster's 1,000/s rate limit, and a rate-limited sender is not what this test is about
    a, b = await cluster(
        2, SEND_BUFFER_BYTES="65536", RATE_LIMIT_PER_SECOND="1000000", RATE_LIMIT_BURST="1000000"
    )
    fast_a, fast_b, sender = Member("fast-a"), Member("fast-b"), Member("sender")
    slow = Member("slow")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small receive window
    sock.connect(("127.0.0.1", a.ws_port))
    await slow.connect(a, sock=sock)
    assert slow.client is not None
    slow.client.ws.transport.pause_reading()
    await fast_a.connect(a)
    await fast_b.connect(b)
    await sender.connect(b)
    pumps = await _pumping(fast_a, fast_b, sender)
    assert sender.client is not None
    # paced probes while the slow client already reads nothing: the normal latency
    probe_ms: list[float] = []
    for i in range(20):
        started = time.monotonic()
        await sender.client.send(type="message", room="lobby", id=f"probe-{i}", body="p")
        await _until(_seen_by(f"probe-{i}", fast_a, fast_b))
        probe_ms.append((time.monotonic() - started) * 1000)
    probe_ms.sort()
    print(
        f"\nslow consumer: paced probes to A and B (polled every 10 ms) "
        f"p50 {probe_ms[10]:.1f} ms max {probe_ms[-1]:.1f} ms"
    )
    body = "y" * 4000
    sent_at: dict[str, float] = {}
    closed_after = 0
    # the kernel absorbs up to ~4 MiB (tcp_wmem) before the server's own buffer grows: send
    # until A reports the slow consumer closed, then 100 more
    while len(sent_at) < 3000 and (not closed_after or len(sent_at) < closed_after + 100):
        for _ in range(100):
            ident = f"s-{len(sent_at)}"
            sent_at[ident] = time.monotonic()
            await sender.client.send(type="message", room="lobby", id=ident, body=body)
            # let the fast members' pumps (same event loop) read between sends: the test must
            # not starve its own "fast" readers into slow consumers
            await asyncio.sleep(0)
        if not closed_after and await _metric(a, "realtime_slow_consumers_total") >= 1:
            closed_after = len(sent_at)
    count = len(sent_at) + 20
    assert closed_after, "the slow consumer was never closed"
    try:
        await _until(lambda: len(fast_a.seen) == count and len(fast_b.seen) == count, timeout=20)
    except TimeoutError:
        states = ", ".join(
            f"{m.user} got {len(m.seen)}/{count} (close code "
            f"{m.client.ws.close_code if m.client else None})"
            for m in (fast_a, fast_b, sender)
        )
        pytest.fail(
            f"the other members did not receive every message: {states};"
            f" sender errors {sender.errors[:3]}, acks {len(sender.acks)}"
        )
    slow.client.ws.transport.resume_reading()
    backlog = 0
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(10):
            async for _ in slow.client.ws:
                backlog += 1
    code = slow.client.ws.close_code
    for member in (fast_a, fast_b):
        ms = sorted((member.received_at[i] - sent_at[i]) * 1000 for i in sent_at)
        print(
            f"slow consumer: {member.user} latency p50 {ms[len(ms) // 2]:.1f} ms"
            f" p99 {ms[int(len(ms) * 0.99)]:.1f} ms max {ms[-1]:.1f} ms"
            f" over {len(sent_at)} messages of 4000 chars sent back to back"
        )
    print(
        f"slow consumer closed with {code} after {closed_after} messages sent "
        f"({backlog} frames were in its backlog)"
    )
    # PROTOCOL.md: the 4009 frame when the client reads its backlog within 1 s of the close,
    # else a reset that drops the backlog (1006 on the client's side)
    assert code in (4009, 1006)
    for pump in pumps:
        pump.cancel()
