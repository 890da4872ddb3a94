"""Compare fan-out cost with the minimal ``websockets.broadcast`` server (prints numbers).

    .venv/bin/python -m tests.backend.bench_fanout [MEMBERS] [MESSAGES]

Starts each server as a subprocess on loopback, connects MEMBERS receivers (our server:
distinct users, hello + join one room), sends MESSAGES chat messages in windows of 10 and
waits until every receiver has each window, then prints the server's CPU time per message
delivered to all members (lower is better) and the wall time. Not a test: timings vary.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
import urllib.request

import jwt
from websockets.asyncio.client import ClientConnection, connect

from tests.backend.processes import BACKEND, cpu_seconds, free_port

BASELINE = textwrap.dedent(
    """
    import asyncio, sys
    from websockets.asyncio.server import broadcast, serve

    CONNECTIONS = set()

    async def handler(websocket):
        CONNECTIONS.add(websocket)
        try:
            async for message in websocket:
                broadcast(CONNECTIONS, message)
        finally:
            CONNECTIONS.remove(websocket)

    async def main():
        async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None) as server:
            await server.serve_forever()

    asyncio.run(main())
    """
)


async def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def _run(
    name: str, pid: int, url: str, *, members: int, messages: int, hello: bool, key: str
) -> None:
    async def member(i: int) -> ClientConnection:
        ws = await connect(url, compression=None, max_queue=None)
        if hello:
            token = jwt.encode(
                {"sub": f"u{i}", "exp": int(time.time()) + 3600}, key, algorithm="HS256"
            )
            await ws.send(json.dumps({"type": "hello", "v": [1], "token": token}))
            await ws.recv()
            await ws.send(json.dumps({"type": "join", "room": "lobby"}))
            await ws.recv()
        return ws

    conns: list[ClientConnection] = []
    for i in range(0, members, 100):
        conns += await asyncio.gather(*(member(j) for j in range(i, min(i + 100, members))))
    await asyncio.sleep(1.5)  # let presence diffs settle
    counts = [0] * members

    async def drain(k: int, ws: ClientConnection) -> None:
        async for frame in ws:
            if '"body"' in str(frame) or not hello:
                counts[k] += 1

    readers = [asyncio.create_task(drain(k, ws)) for k, ws in enumerate(conns)]
    await asyncio.sleep(0.5)
    sender = conns[0]
    body = "x" * 100
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for start in range(0, messages, 10):
        for seq in range(start, start + 10):
            if hello:
                frame = {"type": "message", "room": "lobby", "id": f"m{seq}", "body": body}
                await sender.send(json.dumps(frame))
            else:
                await sender.send(json.dumps({"type": "message", "body": body}))
        while min(counts) < start + 10:
            await asyncio.sleep(0.005)
    cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    print(
        f"{name}: {members} members x {messages} messages: server cpu {cpu:.2f}s "
        f"({cpu / messages * 1000:.2f} ms per message to all), wall {wall:.2f}s"
    )
    for task in readers:
        task.cancel()
    for ws in conns:
        ws.transport.abort()


async def main(members: int, messages: int) -> None:
    key = secrets.token_urlsafe(32)
    port = free_port()
    baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(port)])
    try:
        await _wait_port(port)
        await _run(
            "websockets.broadcast baseline",
            baseline.pid,
            f"ws://127.0.0.1:{port}/",
            members=members,
            messages=messages,
            hello=False,
            key=key,
        )
    finally:
        baseline.terminate()
        baseline.wait()
    http_port, ws_port = free_port(), free_port()
    env = dict(
        os.environ,
        TOKEN_SIGNING_KEY=key,
        HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        WS_PORT=str(ws_port),
        METRICS_PORT=str(free_port()),
        LOG_LEVEL="WARNING",
        RATE_LIMIT_PER_SECOND="100000",
        RATE_LIMIT_BURST="100000",
    )
    ours = subprocess.Popen([sys.executable, "-m", "realtime"], cwd=BACKEND, env=env)
    try:
        await _wait_port(ws_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5):
            pass
        await _run(
            "realtime",
            ours.pid,
            f"ws://127.0.0.1:{ws_port}/",
            members=members,
            messages=messages,
            hello=True,
            key=key,
        )
    finally:
        ours.terminate()
        ours.wait()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [1000, 200][len(args) :])))
