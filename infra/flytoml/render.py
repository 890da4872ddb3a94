"""Model -> fly.toml text (tomlkit), deterministic and commented.

Keys come out in the model's field order (scalars, then sub-tables, then arrays of tables),
then each table's ``extra`` keys as they were read; ``None`` and empty lists are left out,
durations are always strings, ``build_target`` is written ``build-target`` (flyctl's key). The
config is checked first: an invalid model cannot be rendered.
"""

from __future__ import annotations

import dataclasses
from typing import Final, cast

import tomlkit
from tomlkit.items import AoT, InlineTable, Table
from tomlkit.toml_document import TOMLDocument

from infra.flytoml.model import Duration, FlyConfig, ServicePort, TopLevelCheck, WebSocketService
from infra.flytoml.rules import check_config

__all__ = ["DEPLOYMENT_COMMENT", "render_fly_toml"]

DEPLOYMENT_COMMENT: Final = "deployment:"
"""The header comment carrying ``machines`` and ``broker`` (fly.toml has no key for them)."""

_INLINE: Final = frozenset({"tls_options", "proxy_proto_options"})
_TOML_NAMES: Final = {"vms": "vm", "restarts": "restart", "build_target": "build-target"}
_NOT_IN_TOML: Final = frozenset({"machines", "broker", "name", "extra"})
_PAIR_TABLES: Final = frozenset({"env", "processes"})
"""FlyConfig fields holding (name, value) pairs, written as tables (check ``headers`` are
pairs too, written inline)."""

_WS_SERVICE_COMMENT: Final = (
    "The WebSocket service: raw TCP with TLS terminated at Fly's edge. With Fly's HTTP handler",
    "on this port handshakes failed with [PU02]; see docs/WEBSOCKET_HANDSHAKE_FIX.md.",
)
_WS_PORT_COMMENT: Final = (
    'handlers = ["tls"] only: no "http" handler in front of the 101 upgrade. ALPN pinned to',
    "http/1.1 so the edge never negotiates h2 with a WebSocket client.",
)


def _scalar(value: object) -> object:
    if isinstance(value, Duration):
        return value.text
    if isinstance(value, tuple):
        return [_scalar(item) for item in value]
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update({key: _scalar(item) for key, item in value.items()})
        return inline
    return value


def _is_table(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, Duration)


def _is_table_list(value: object) -> bool:
    return isinstance(value, tuple) and bool(value) and all(_is_table(item) for item in value)


def _fill(table: Table | InlineTable | TOMLDocument, obj: object) -> None:
    """Add ``obj``'s fields to ``table``: scalars first, then tables, then arrays of tables."""
    scalars: list[tuple[str, object]] = []
    tables: list[tuple[str, object]] = []
    lists: list[tuple[str, tuple[object, ...]]] = []
    for field in dataclasses.fields(obj):  # type: ignore[arg-type]
        if field.name in _NOT_IN_TOML:
            continue
        value = getattr(obj, field.name)
        name = _TOML_NAMES.get(field.name, field.name)
        if (
            value is None
            or value == ()
            or (isinstance(obj, ServicePort) and name == "port" and not value)
        ):
            continue
        if field.name == "headers":
            scalars.append((name, dict(value)))
        elif field.name in _PAIR_TABLES and isinstance(obj, FlyConfig):
            tables.append((name, _env_table(value)))
        elif _is_table_list(value):
            lists.append((name, value))
        elif _is_table(value) and name not in _INLINE:
            tables.append((name, value))
        else:
            scalars.append((name, value))
    for name, value in getattr(obj, "extra", ()):
        if isinstance(value, dict) and not isinstance(table, InlineTable):
            tables.append((name, tomlkit.item(value)))
        elif _is_raw_table_list(value) and not isinstance(table, InlineTable):
            lists.append((name, tuple(value)))
        else:
            scalars.append((name, value))
    for name, value in scalars:
        if _is_table(value):
            inline = tomlkit.inline_table()
            _fill(inline, value)
            table.add(name, inline)
        else:
            table.add(name, _scalar(value))
    for name, value in tables:
        if isinstance(value, Table | dict):
            table.add(name, value)
            continue
        sub = tomlkit.table()
        _fill(sub, value)
        table.add(name, sub)
    for name, items in lists:
        if all(isinstance(item, dict) for item in items):
            table.add(name, tomlkit.item(list(items)))
        elif all(isinstance(item, TopLevelCheck) for item in items):
            table.add(name, _named_tables(cast(tuple[TopLevelCheck, ...], items)))
        else:
            websocket = isinstance(obj, WebSocketService)
            table.add(name, _array_of_tables(items, websocket=websocket))


def _is_raw_table_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) for i in value)


def _tls_without_http(port: ServicePort) -> bool:
    return "tls" in port.handlers and "http" not in port.handlers


def _env_table(pairs: tuple[tuple[str, str], ...]) -> Table:
    table = tomlkit.table()
    for name, value in pairs:
        table.add(name, value)
    return table


def _array_of_tables(items: tuple[object, ...], *, websocket: bool) -> AoT:
    array = tomlkit.aot()
    for item in items:
        entry = tomlkit.table()
        comment: tuple[str, ...] = ()
        if isinstance(item, WebSocketService):
            comment = _WS_SERVICE_COMMENT
        elif websocket and isinstance(item, ServicePort) and _tls_without_http(item):
            comment = _WS_PORT_COMMENT
        for line in comment:
            entry.add(tomlkit.comment(line))
        _fill(entry, item)
        array.append(entry)
    return array


def _named_tables(items: tuple[TopLevelCheck, ...]) -> Table:
    """Top-level ``[checks.<name>]``: a table of tables keyed by check name."""
    table = tomlkit.table(is_super_table=True)
    for item in items:
        entry = tomlkit.table()
        _fill(entry, item)
        table.add(item.name, entry)
    return table


def _header(config: FlyConfig, stack: str | None) -> list[str]:
    name = stack if stack is not None else "<stack>"
    lines = [
        f"Generated from Pulumi.{name}.yaml by the Pulumi program or by",
        f"`python -m infra render --stack {name}`: do not edit, change the stack config there.",
    ]
    if config.machines is not None:
        lines.append(
            f'{DEPLOYMENT_COMMENT} machines = {config.machines}, broker = "{config.broker}"'
        )
    return lines


def render_fly_toml(config: FlyConfig, *, stack: str | None = None) -> str:
    """The fly.toml text of a checked config; ``stack`` names the source in the header.

    Raises ConfigError (the first error finding) when the config is invalid.
    """
    check_config(config)
    document = tomlkit.document()
    for line in _header(config, stack):
        document.add(tomlkit.comment(line))
    document.add(tomlkit.nl())
    _fill(document, config)
    return tomlkit.dumps(document)
