"""The process: WebSocket service, HTTP service, signals and graceful drain."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import logging
import re
import secrets
import signal

from realtime.auth import TokenVerifier
from realtime.http import HttpServer, Request, Response
from realtime.metrics import CONTENT_TYPE, Metrics
from realtime.server import RealtimeServer
from realtime.settings import Settings

logger = logging.getLogger(__name__)

DEV_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,32}")
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


def _load_static() -> dict[str, tuple[bytes, str]]:
    root = importlib.resources.files("realtime") / "static"
    return {
        path: ((root / name).read_bytes(), content_type)
        for path, (name, content_type) in STATIC_FILES.items()
    }


class App:
    """One instance: build it from settings, ``await run()`` until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        # DEV_TOKENS=1 without a key: a random per-process key (tokens die with the process)
        key = settings.token_signing_key or secrets.token_urlsafe(32)
        self.verifier = TokenVerifier(key)
        self.ws = RealtimeServer(settings, metrics=self.metrics, verifier=self.verifier)
        self.http = HttpServer(self.route, settings.host, settings.http_port)
        self._static = _load_static()
        self._config = json.dumps(
            {
                "wsUrl": settings.public_ws_url or None,
                "wsPort": settings.ws_port,
                "devTokens": settings.dev_tokens,
            }
        ).encode()

    async def start(self) -> None:
        await self.ws.start()
        await self.http.start()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and return."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
            logger.info("signal received, draining")
            await self.shutdown()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        logger.info("stopped")

    async def shutdown(self) -> None:
        """Drain the WebSocket service (``/readyz`` says 503 meanwhile), then stop HTTP."""
        await self.ws.drain(self.settings.drain_seconds)
        await self.http.stop()

    async def route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/dev/token" and self.settings.dev_tokens:
            if method != "POST":
                return Response(405, b"use POST\n", headers={"Allow": "POST"})
            return self._dev_token(request)
        if method not in ("GET", "HEAD"):
            return Response(405, b"use GET\n", headers={"Allow": "GET, HEAD"})
        if path == "/healthz":
            return Response.text(200, "ok\n")
        if path == "/readyz":
            if self.ws.draining:
                return Response.text(503, "draining\n")
            if not self.ws.ready:
                return Response.text(503, "broker not ready\n")
            return Response.text(200, "ready\n")
        if path == "/metrics":
            return Response(200, self.metrics.render(), CONTENT_TYPE)
        if path == "/config.json":
            return Response(200, self._config, "application/json")
        static = self._static.get(path)
        if static is not None:
            return Response(200, static[0], static[1], dict(PAGE_HEADERS))
        return Response.text(404, f"no route for {path[:100]}\n")

    def _dev_token(self, request: Request) -> Response:
        try:
            payload = json.loads(request.body)
        except ValueError:
            return Response.text(400, 'body must be JSON like {"user": "alice"}\n')
        name = payload.get("user") if isinstance(payload, dict) else None
        if not isinstance(name, str) or not DEV_NAME_PATTERN.fullmatch(name):
            shown = repr(name)[:40]
            return Response.text(400, f"invalid user {shown}: 1-32 of A-Z a-z 0-9 _ . -\n")
        token = self.verifier.issue(f"dev:{name.lower()}", name)
        return Response(200, json.dumps({"token": token}).encode(), "application/json")
