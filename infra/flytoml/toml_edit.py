"""Editing a fly.toml in place with tomlkit, recording every change (used by ``lint --fix``).

tomlkit keeps comments, key order, indentation and unknown keys; :class:`Editor` adds the record
of each edit (:class:`Change`: the key as the rules name it, before, after, why).
:func:`go_duration` writes a duration the way Go's ``time.Duration.String()`` does, which is
what flyctl itself makes of a bare number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from tomlkit.items import AoT, InlineTable, Item, Table
from tomlkit.toml_document import TOMLDocument

__all__ = [
    "Change",
    "Editor",
    "Tab",
    "go_duration",
    "header_indent",
    "indent_of",
    "is_number",
    "plain",
]

Tab = Table | InlineTable
_NS: Final = {"ns": 1, "ms": 1_000_000, "s": 1_000_000_000}
_UNIT_NAMES: Final = {"ns": "nanoseconds", "ms": "milliseconds", "s": "seconds"}


def is_number(value: object) -> bool:
    """An int or a float (not a bool), as TOML or tomlkit hands it over."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One edit: the dotted key (named as the rules name keys), what it was and what it is."""

    key: str
    before: object
    after: object
    reason: str
    suspicious: bool = False
    """A fix that keeps flyctl's reading but whose value was almost certainly a mistake."""


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String()``: ``15ns``, ``1.5ms``, ``10s``, ``1m30s``, ``1h0m0s``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 1_000)}µs"
    if value < 1_000_000_000:
        return f"{sign}{_fraction(value, 1_000_000)}ms"
    hours, rest = divmod(value, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = f"{_fraction(rest, 1_000_000_000)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def _fraction(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    digits = str(part).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def indent_of(table: Tab) -> str:
    for key, item in table.value.body:
        if key is not None and not isinstance(item, Table | AoT):
            return str(item.trivia.indent)
    return ""


def header_indent(table: Tab) -> str:
    return str(table.trivia.indent) if isinstance(table, Table) else ""


def plain(value: object) -> object:
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


class Editor:
    """A tomlkit document and the :class:`Change` list of every edit made to it."""

    def __init__(self, document: TOMLDocument) -> None:
        self.document = document
        self.changes: list[Change] = []

    # -- editing helpers ---------------------------------------------------------------------

    def put(
        self, table: Tab | TOMLDocument, name: str, value: object, *, key: str, reason: str
    ) -> None:
        plain_before = plain(table.get(name))
        new = name not in table
        table[name] = value
        if new and isinstance(table, Table):
            item = table.value.item(name)
            if isinstance(item, Item):
                item.trivia.indent = indent_of(table)
        self.changes.append(Change(key=key, before=plain_before, after=plain(value), reason=reason))

    def drop(self, table: Tab, name: str, *, key: str, reason: str) -> None:
        before = table[name]
        del table[name]
        self.changes.append(Change(key=key, before=plain(before), after=None, reason=reason))

    # -- walking ---------------------------------------------------------------------------------

    def tables(self, parent: Tab | TOMLDocument, name: str) -> Iterator[tuple[int, Tab]]:
        value = parent.get(name)
        if isinstance(value, Table | InlineTable):
            yield 0, value
        elif isinstance(value, AoT | list):
            for index, item in enumerate(value):
                if isinstance(item, Table | InlineTable):
                    yield index, item

    def duration(self, table: Tab | TOMLDocument, name: str, key: str, *, unit: str) -> None:
        """A bare number at ``table[name]`` becomes the Go duration flyctl reads from it in
        ``unit`` (``ns``, ``ms``, ``s``); under one second it is flagged as suspicious."""
        value = table.get(name)
        if not is_number(value):
            return
        number = plain(value)
        assert isinstance(number, int | float)
        nanoseconds = int(number) * _NS[unit]  # Go's time.Duration(float) truncates first
        text = go_duration(nanoseconds)
        suspicious = 0 < nanoseconds < 1_000_000_000
        reason = f"flyctl reads a bare number here as {_UNIT_NAMES[unit]}: {number} is {text}"
        if suspicious:
            reason += f'; almost certainly a mistake (was "{number}s" meant?): check it'
        self.put(table, name, text, key=key, reason=reason)
        if suspicious:
            self.changes[-1] = dataclasses.replace(self.changes[-1], suspicious=True)
