"""The process: WebSocket service, HTTP service, metrics service, signals and graceful drain.

Both HTTP listeners are ``aiohttp.web`` applications run by an ``AppRunner`` + ``TCPSite`` in
the same event loop as the WebSocket server: port ``HTTP_PORT`` (8080) serves the probes, the
demo page and dev tokens; port ``METRICS_PORT`` (9091) serves ``/metrics`` only and is never
exposed by a public service.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import re
import secrets
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from realtime.auth import TokenVerifier
from realtime.logs import get_logger
from realtime.metrics import CONTENT_TYPE, Metrics
from realtime.server import RealtimeServer
from realtime.settings import Settings

logger = get_logger(__name__)

# HTTP limits (docs/BACKEND.md "HTTP service"); aiohttp's parser refuses longer lines itself
MAX_BODY = 16 * 1024
MAX_HEADERS = 64
MAX_LINE = 8190
IDLE_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 1.0
_HTTP_STOP_FLOOR = 0.05
"""Stopping HTTP always gets at least this long, even when the drain used all its time."""
# after refusing a request whose body was not read, wait at most this long for the body
# before closing (aiohttp's default is 10 s)
LINGERING_TIME = 1.0

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
# Server: aiohttp would announce its and Python's versions
COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Server": "realtime",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _load_static() -> dict[str, tuple[bytes, str]]:
    root = importlib.resources.files("realtime") / "static"
    return {
        path: ((root / name).read_bytes(), content_type)
        for path, (name, content_type) in STATIC_FILES.items()
    }


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=text.encode(),
        content_type="text/plain",
        charset="utf-8",
        headers=headers,
    )


def _body(status: int, body: bytes, content_type: str, **headers: str) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": content_type, **headers})


@web.middleware
async def _edges(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse bodies we do not take before routing; answer 404/405 in the house words."""
    if "Transfer-Encoding" in request.headers:
        response = _text(501, "transfer-encoding is not supported, send content-length\n")
        response.force_close()
        return response
    length = request.content_length or 0
    if length > MAX_BODY:
        response = _text(413, f"body too large: {length} bytes, at most {MAX_BODY}\n")
        response.force_close()
        return response
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = sorted(exc.allowed_methods)
        verb = "POST" if allowed == ["POST"] else "GET"
        return _text(405, f"use {verb}\n", Allow=", ".join(allowed))
    except web.HTTPNotFound:
        return _text(404, f"no route for {request.path[:100]}\n")


async def _common_headers(_: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(COMMON_HEADERS)


def _application(routes: list[web.RouteDef]) -> web.Application:
    application = web.Application(middlewares=[_edges], client_max_size=MAX_BODY)
    application.on_response_prepare.append(_common_headers)
    application.add_routes(routes)
    return application


class HttpSite:
    """One aiohttp application on ``host:port`` in the running loop; port 0 picks a free port."""

    def __init__(self, application: web.Application, host: str, port: int, name: str) -> None:
        self._application = application
        self._host = host
        self._port = port
        self._name = name
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        runner = web.AppRunner(
            self._application,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=IDLE_TIMEOUT,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            lingering_time=LINGERING_TIME,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        logger.info("http server listening", service=self._name, port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


class HttpService:
    """The public site (``.port``) and the metrics site (``.metrics_port``), started and
    stopped together."""

    def __init__(self, public: HttpSite, metrics: HttpSite) -> None:
        self.public = public
        self.metrics = metrics

    @property
    def port(self) -> int:
        return self.public.port

    @property
    def metrics_port(self) -> int:
        return self.metrics.port

    async def start(self) -> None:
        await self.public.start()
        try:
            await self.metrics.start()
        except BaseException:
            await self.public.stop()
            raise

    async def stop(self) -> None:
        await asyncio.gather(self.public.stop(), self.metrics.stop())


class App:
    """One instance: build it from settings, ``await run()`` until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        # DEV_TOKENS=1 without a key: a random per-process key (tokens die with the process)
        key = settings.token_signing_key or secrets.token_urlsafe(32)
        self.verifier = TokenVerifier(key)
        self.ws = RealtimeServer(settings, metrics=self.metrics, verifier=self.verifier)
        self._static = _load_static()
        self._config = json.dumps(
            {
                "wsUrl": settings.public_ws_url or None,
                "wsPort": settings.ws_port,
                "devTokens": settings.dev_tokens,
            }
        ).encode()
        self.http = HttpService(
            HttpSite(_application(self._routes()), settings.host, settings.http_port, "http"),
            HttpSite(
                _application([web.get("/metrics", self._metrics)]),
                settings.host,
                settings.metrics_port,
                "metrics",
            ),
        )

    def _routes(self) -> list[web.RouteDef]:
        routes = [
            web.get("/healthz", self._healthz),
            web.get("/readyz", self._readyz),
            web.get("/config.json", self._config_json),
            *(web.get(path, self._static_file(path)) for path in STATIC_FILES),
        ]
        if self.settings.dev_tokens:
            routes.append(web.post("/dev/token", self._dev_token))
        return routes

    async def start(self) -> None:
        await self.ws.start()
        try:
            await self.http.start()
        except BaseException:
            await self.ws.stop()
            raise

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
        """Drain the WebSocket service (``/readyz`` says 503 meanwhile), then stop HTTP in what
        is left of ``DRAIN_SECONDS`` (the drain keeps a reserve for it), so the whole shutdown
        stays within ``DRAIN_SECONDS``; HTTP connections still open then are dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        await self.ws.drain(self.settings.drain_seconds)
        try:
            async with asyncio.timeout_at(max(deadline, loop.time() + _HTTP_STOP_FLOOR)):
                await self.http.stop()
        except TimeoutError:
            logger.warning("http connections dropped at the end of the drain")

    async def _healthz(self, _: web.Request) -> web.Response:
        return _text(200, "ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ws.draining:
            return _text(503, "draining\n")
        if not self.ws.ready:
            return _text(503, "broker not ready\n")
        return _text(200, "ready\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        return _body(200, self.metrics.render(), CONTENT_TYPE)

    async def _config_json(self, _: web.Request) -> web.Response:
        return _body(200, self._config, "application/json")

    def _static_file(self, path: str) -> Handler:
        body, content_type = self._static[path]

        async def handler(_: web.Request) -> web.Response:
            return _body(200, body, content_type, **PAGE_HEADERS)

        return handler

    async def _dev_token(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                raw = await request.read()
        except TimeoutError:
            response = _text(408, "body not received in time\n")
            response.force_close()
            return response
        try:
            payload = json.loads(raw)
        except ValueError:
            return _text(400, 'body must be JSON like {"user": "alice"}\n')
        name = payload.get("user") if isinstance(payload, dict) else None
        if not isinstance(name, str) or not DEV_NAME_PATTERN.fullmatch(name):
            shown = repr(name)[:40]
            return _text(400, f"invalid user {shown}: 1-32 of A-Z a-z 0-9 _ . -\n")
        token = self.verifier.issue(f"dev:{name.lower()}", name)
        return _body(200, json.dumps({"token": token}).encode(), "application/json")
