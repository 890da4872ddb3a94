"""Post-deploy smoke check: a real WSS handshake (and a chat round trip) against a deployment.

Run by the last step of every plan (``python -m infra.deploy.smoke --wss-url ... --https-url ...``):

1. ``GET /readyz`` on the HTTPS URL answers 200 (retried until ``--wait`` runs out);
2. a TLS connection to the WebSocket URL negotiates ALPN ``http/1.1`` (or none), never ``h2``;
3. the WebSocket upgrade returns ``101 Switching Protocols`` - the check the PU02 incident failed;
4. when ``TOKEN_SIGNING_KEY`` is in the environment: a token is minted, the client says hello,
   joins a room, sends a message and must receive its acknowledgement and the message itself.

Exit 0 on success, 1 with one line naming the failed check otherwise. The signing key is read
from the environment only (a Pulumi secret), never from argv, and is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

__all__ = ["SmokeError", "main", "run_smoke"]

PROTOCOL_VERSION = 1
SMOKE_ROOM = "smoke-check"


class SmokeError(Exception):
    """One smoke check failed; the message says which and why."""


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _wait_ready(https_url: str, context: ssl.SSLContext, deadline: float) -> None:
    url = https_url.rstrip("/") + "/readyz"
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SmokeError(f"readiness: {url} did not answer 200 ({last})")


async def _check_alpn(wss_url: str, ca_file: str | None) -> str | None:
    parts = urlsplit(wss_url)
    host = parts.hostname or ""
    port = parts.port or 443
    # Offer h2 first, as a browser's page load does: the edge must still pick http/1.1 (the pin).
    probe = ssl.create_default_context(cafile=ca_file)
    probe.set_alpn_protocols(["h2", "http/1.1"])
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=probe, server_hostname=host), timeout=10
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        chosen: str | None = ssl_object.selected_alpn_protocol() if ssl_object else None
    finally:
        writer.close()
    if chosen == "h2":
        raise SmokeError(
            f'alpn: {wss_url} negotiated h2; pin tls_options.alpn = ["http/1.1"] on the '
            "WebSocket port"
        )
    return chosen


async def _chat_round_trip(wss_url: str, context: ssl.SSLContext, signing_key: str) -> None:
    user = f"smoke-{uuid.uuid4().hex[:8]}"
    token = jwt.encode(
        {"sub": user, "name": "smoke check", "exp": int(time.time()) + 300},
        signing_key,
        algorithm="HS256",
    )
    client_id = uuid.uuid4().hex
    async with connect(wss_url, ssl=context, open_timeout=10, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
        await _expect(ws, "welcome")
        await ws.send(json.dumps({"type": "join", "room": SMOKE_ROOM}))
        await _expect(ws, "joined")
        await ws.send(
            json.dumps({"type": "message", "room": SMOKE_ROOM, "id": client_id, "body": "ping"})
        )
        got_ack = got_message = False
        while not (got_ack and got_message):
            frame = await _expect(ws, "ack", "message")
            if frame["type"] == "ack" and frame.get("id") == client_id:
                got_ack = True
            if frame["type"] == "message" and frame.get("id") == client_id:
                got_message = True


async def _expect(ws: ClientConnection, *types: str) -> dict[str, object]:
    while True:
        raw = await asyncio.wait_for(ws.recv(), timeout=10)
        frame = json.loads(raw)
        if not isinstance(frame, dict):
            raise SmokeError(f"chat: unexpected frame {raw!r:.200}")
        if frame.get("type") == "error":
            raise SmokeError(f"chat: server error {frame.get('code')}: {frame.get('detail')}")
        if frame.get("type") in types:
            return frame


async def run_smoke(
    *, wss_url: str, https_url: str, ca_file: str | None, signing_key: str | None, wait: float
) -> list[str]:
    """Run every check; return one line per passed check, raise SmokeError on the first failure."""
    context = _ssl_context(ca_file)
    passed: list[str] = []
    await asyncio.to_thread(_wait_ready, https_url, context, time.monotonic() + wait)
    passed.append(f"ready: {https_url}")
    chosen = await _check_alpn(wss_url, ca_file)
    passed.append(f"alpn: {chosen or 'none'}")
    try:
        async with connect(wss_url, ssl=context, open_timeout=10, compression=None) as ws:
            status = ws.response.status_code if ws.response is not None else None
    except InvalidStatus as exc:
        raise SmokeError(
            f"handshake: {wss_url} answered {exc.response.status_code} instead of 101"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise SmokeError(f"handshake: {wss_url}: {exc}") from None
    if status != 101:
        raise SmokeError(f"handshake: {wss_url} answered {status} instead of 101")
    passed.append("handshake: 101 Switching Protocols")
    if signing_key:
        await _chat_round_trip(wss_url, context, signing_key)
        passed.append("chat: hello, join, message acknowledged and delivered")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy.smoke", description=__doc__)
    parser.add_argument("--wss-url", required=True)
    parser.add_argument("--https-url", required=True)
    parser.add_argument("--ca-file", help="CA bundle for a development edge certificate")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    try:
        lines = asyncio.run(
            run_smoke(
                wss_url=args.wss_url,
                https_url=args.https_url,
                ca_file=args.ca_file,
                signing_key=os.environ.get("TOKEN_SIGNING_KEY"),
                wait=args.wait,
            )
        )
    except SmokeError as exc:
        print(f"smoke check failed: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"ok {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
