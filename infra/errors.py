"""The one error type of the infra package.

A :class:`ConfigError` always names the offending key (a dotted fly.toml path such as
``services[0].ports[0].handlers``, or a stack config key such as
``realtime-fly:websocket.handlers``), the value found there and the reason it is refused.
"""

from __future__ import annotations

import json

__all__ = ["ConfigError", "format_value"]


def format_value(value: object) -> str:
    """Show a configuration value the way it reads in TOML or YAML (strings quoted, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, tuple | list | frozenset):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{key} = {format_value(item)}" for key, item in value.items())
        return "{" + inner + "}"
    return json.dumps(str(value), ensure_ascii=False)


class ConfigError(Exception):
    """A configuration value is refused: ``key``, ``value`` and ``reason`` say which and why."""

    def __init__(self, *, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{key} = {format_value(value)}: {reason}")
