"""Measure the server's RSS per idle authenticated connection (not a test; prints numbers).

    .venv/bin/python -m tests.backend.measure_memory [N] [--distinct]

Starts ``python -m realtime`` on free loopback ports, opens N connections that each say
hello and join one room (as one user, or N distinct users with --distinct: then every join
also fans a presence diff out to the room), waits, and prints (RSS after - RSS before) / N
from /proc, and the server's CPU time for the handshakes.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import urllib.request

import jwt
from websockets.asyncio.client import ClientConnection, connect

from tests.backend.processes import BACKEND, cpu_seconds, free_port, rss_kib


async def _open(url: str, token: str, room: str) -> ClientConnection:
    ws = await connect(url, compression=None)
    await ws.send(json.dumps({"type": "hello", "v": [1], "token": token}))
    await ws.recv()
    await ws.send(json.dumps({"type": "join", "room": room}))
    await ws.recv()
    return ws


async def main(n: int, *, distinct: bool) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 100)), hard))
    http_port, ws_port = free_port(), free_port()
    key = secrets.token_urlsafe(32)

    def token(user: str) -> str:
        claims = {"sub": user, "exp": int(time.time()) + 3600}
        return jwt.encode(claims, key, algorithm="HS256")

    env = dict(
        os.environ,
        TOKEN_SIGNING_KEY=key,
        HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        WS_PORT=str(ws_port),
        METRICS_PORT=str(free_port()),
        MAX_CONNECTIONS=str(n + 100),
        LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen([sys.executable, "-m", "realtime"], cwd=BACKEND, env=env)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        url = f"ws://127.0.0.1:{ws_port}/"
        # warm up code paths and allocator with a few connections, then measure
        warm = [await _open(url, token(f"warm{i}"), "warmup") for i in range(20)]
        await asyncio.sleep(0.5)
        before = rss_kib(process.pid)
        cpu_before = cpu_seconds(process.pid)
        started = time.perf_counter()
        conns: list[ClientConnection] = []
        for i in range(0, n, 100):
            conns += await asyncio.gather(
                *(
                    _open(url, token(f"user{i + j}" if distinct else "user"), "lobby")
                    for j in range(min(100, n - i))
                )
            )
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(process.pid) - cpu_before
        await asyncio.sleep(2)
        after = rss_kib(process.pid)
        print(f"connections: {n} ({'distinct users' if distinct else 'one user'} in one room)")
        print(f"handshake+hello+join: {n / elapsed:.0f}/s ({elapsed:.2f}s, 100 concurrent)")
        print(
            f"server cpu for them: {server_cpu:.2f}s = {n / max(server_cpu, 0.01):.0f}/s per core"
            " (the client shares the 2 cores)"
        )
        print(f"rss before: {before} KiB, after: {after} KiB")
        print(f"rss per idle authenticated connection: {(after - before) / n:.1f} KiB")
        for ws in conns + warm:
            await ws.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 1000, distinct="--distinct" in sys.argv))
