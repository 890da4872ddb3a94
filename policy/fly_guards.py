"""The checks behind the policy pack, as pure functions of resource inputs (no Pulumi import).

Defence in depth: the typed model (``infra.flytoml.model``) already refuses a broken fly.toml and
the targets never put a secret on a command line. These checks look at what actually reaches the
engine, so a hand edit of the program that bypasses the model is still stopped at preview time.

Each function returns problem messages (empty when the input is fine). A message names the key
or field and its value, except for command lines: those may hold a secret, so only the
offending flag is named, never the line.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from typing import Final

__all__ = [
    "ALLOWED_HANDLERS",
    "DURATION_KEYS",
    "command_line_problems",
    "duration_problems",
    "parse_fly_toml",
    "secrets_step_problems",
    "websocket_service_problems",
]

DEFAULT_WEBSOCKET_PORT: Final = 8081
"""The WebSocket service's internal port unless ``[env] WS_PORT`` names another."""

ALLOWED_HANDLERS: Final = (["tls"], ["tls", "proxy_proto"])
"""Raw TCP with TLS terminated at Fly's edge, optionally with the PROXY protocol for client IPs."""

DURATION_KEYS: Final = frozenset(
    {"kill_timeout", "wait_timeout", "interval", "timeout", "grace_period"}
)
"""fly.toml keys holding durations, at any depth (checks, deploy, top level)."""

_FLY_LINE = re.compile(r"\bfly(?:ctl)?\b")
_FORBIDDEN_FLAGS: Final[tuple[tuple[re.Pattern[str], str, bool], ...]] = (
    # (pattern, what it is, only on flyctl lines)
    (re.compile(r"\bFLY_(?:API|ACCESS)_TOKEN="), "FLY_API_TOKEN=", False),
    (re.compile(r"--access-token\b"), "--access-token", False),
    (re.compile(r"(?:^|\s)-t(?:=|\s|[^\s-])"), "-t <token>", True),
    (
        re.compile(r"\bsecrets\s+set\b.*?\s['\"]?[A-Za-z_][A-Za-z0-9_]*="),
        "secrets set NAME=value",
        False,
    ),
)


def _shown(value: object) -> str:
    return json.dumps(value)


def parse_fly_toml(text: object) -> tuple[dict[str, object] | None, list[str]]:
    """The parsed document, or ``None`` and the problem when ``text`` is not TOML text."""
    if not isinstance(text, str):
        return None, [f"stdin must be the fly.toml text, found {type(text).__name__}"]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return None, [f"stdin is not valid TOML: {exc}"]


def _websocket_port(document: Mapping[str, object]) -> int:
    env = document.get("env")
    value = env.get("WS_PORT") if isinstance(env, Mapping) else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if isinstance(value, int) else DEFAULT_WEBSOCKET_PORT


def _tables(value: object) -> list[Mapping[str, object]]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    return []


def websocket_service_problems(document: Mapping[str, object]) -> list[str]:
    """The WebSocket service (the ``[[services]]`` entry on the WebSocket port) must be raw TCP
    with TLS at the edge: protocol tcp, handlers ["tls"] (or with proxy_proto), ALPN pinned to
    http/1.1, concurrency counted in connections."""
    port = _websocket_port(document)
    problems: list[str] = []
    http_service = document.get("http_service")
    if isinstance(http_service, Mapping) and http_service.get("internal_port") == port:
        problems.append(
            f"http_service.internal_port = {port}: the WebSocket port must be a [[services]] "
            "entry with raw TCP and TLS at the edge, not behind Fly's http handler [PU02]"
        )
    services = _tables(document.get("services"))
    found = [(i, s) for i, s in enumerate(services) if s.get("internal_port") == port]
    if not found:
        problems.append(f"services: no [[services]] entry on internal port {port} (WebSocket)")
    for index, service in found:
        key = f"services[{index}]"
        if service.get("protocol") != "tcp":
            problems.append(f'{key}.protocol = {_shown(service.get("protocol"))}: must be "tcp"')
        concurrency = service.get("concurrency")
        kind = concurrency.get("type") if isinstance(concurrency, Mapping) else None
        if kind != "connections":
            problems.append(
                f'{key}.concurrency.type = {_shown(kind)}: must be "connections" for WebSockets'
            )
        ports = _tables(service.get("ports"))
        if not ports:
            problems.append(f"{key}.ports: the WebSocket service needs a public port")
        for number, entry in enumerate(ports):
            problems.extend(_port_problems(f"{key}.ports[{number}]", entry))
    return problems


def _port_problems(key: str, entry: Mapping[str, object]) -> list[str]:
    problems: list[str] = []
    handlers = entry.get("handlers")
    if handlers not in ALLOWED_HANDLERS:
        problems.append(
            f'{key}.handlers = {_shown(handlers)}: must be ["tls"] or ["tls", "proxy_proto"] '
            "(Fly's http handler in front of the WebSocket upgrade fails with [PU02])"
        )
    tls_options = entry.get("tls_options")
    alpn = tls_options.get("alpn") if isinstance(tls_options, Mapping) else None
    if alpn != ["http/1.1"]:
        problems.append(
            f'{key}.tls_options.alpn = {_shown(alpn)}: must be ["http/1.1"] so the edge never '
            "negotiates h2 with a WebSocket client"
        )
    return problems


def _leaves(value: object, path: str) -> Iterator[tuple[str, str, object]]:
    """``(dotted key, last key name, value)`` for every key of a parsed TOML document."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            child = f"{path}.{name}" if path else str(name)
            yield child, str(name), item
            yield from _leaves(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")


def duration_problems(document: Mapping[str, object]) -> list[str]:
    """Every duration is a string such as "15s": flyctl reads a bare number as nanoseconds,
    milliseconds or seconds depending on the key."""
    return [
        f'{key} = {_shown(value)}: durations must be strings like "15s" (a bare number is read '
        "as ns, ms or s depending on the key)"
        for key, name, value in _leaves(document, "")
        if name in DURATION_KEYS and not isinstance(value, str)
    ]


def command_line_problems(field: str, line: object) -> list[str]:
    """A ``create``/``update``/``delete`` line must carry no credential or secret value: tokens
    come from the environment ``pulumi up`` runs in, secrets through ``fly secrets import``'s
    stdin. The message names the flag, never the line (it could hold the secret)."""
    if not isinstance(line, str):
        return []
    flyctl = bool(_FLY_LINE.search(line))
    return [
        f"{field} contains {what}: pass tokens through the environment and secrets through stdin, "
        "never on the command line"
        for pattern, what, fly_only in _FORBIDDEN_FLAGS
        if (flyctl or not fly_only) and pattern.search(line)
    ]


def secrets_step_problems(logging: object) -> list[str]:
    """The ``-secrets`` step handles secret values: it must log nothing."""
    if logging == "none":
        return []
    return [f'logging = {_shown(logging)}: the secrets step must set logging "none"']
