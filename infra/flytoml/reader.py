"""The typed reader of one fly.toml table, shared by every section reader in ``parse``.

A :class:`TableReader` hands out typed values (recording a ``type`` error when a value has the
wrong type), remembers which keys were read, and on ``done()`` keeps the rest as the model's
``extra`` and reports those flyctl does not know (``infra.flytoml.vocabulary``): ``unknown-key``
where ``fly config validate --strict`` looks, ``ignored-key`` where it does not (inside
``[[services]]``, ``[[vm]]``, ``[mounts]``, ``[[metrics]]``, which flyctl silently drops).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final, Literal, TypeVar, cast

from infra.flytoml.findings import Finding
from infra.flytoml.model import Duration, Extra
from infra.flytoml.vocabulary import ROOT, STRICT_SKIPPED, UNKNOWN, Node

__all__ = ["TableReader", "Unit", "go_string"]

Unit = Literal["ns", "ms", "s"]
_UNIT_NAMES: Final = {"ns": "nanoseconds", "ms": "milliseconds", "s": "seconds"}

_T = TypeVar("_T")


def _shown(value: object) -> object:
    return value if isinstance(value, str | int | float) else "..."


class TableReader:
    """One TOML table being read: remembers which keys were used; ``done()`` keeps the rest
    as the table's ``extra`` and reports those flyctl does not know."""

    def __init__(
        self,
        data: dict[str, object],
        *,
        path: str,
        findings: list[Finding],
        node: Node = ROOT,
        strict: bool = True,
    ) -> None:
        self._data = data
        self._path = path
        self._findings = findings
        self._node = node
        self._strict = strict
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def raw(self, name: str) -> object:
        self._used.add(name)
        return self._data.get(name)

    def wrong(self, name: str, value: object, expected: str) -> None:
        self._findings.append(
            Finding(
                rule="type",
                severity="error",
                key=self.key(name),
                value=value if isinstance(value, str | int | float | list) else str(value),
                message=f"must be {expected}",
            )
        )

    def has(self, name: str) -> bool:
        return name in self._data

    def peek(self, name: str) -> object:
        """The raw value without marking the key as read."""
        return self._data.get(name)

    def report(self, finding: Finding) -> None:
        self._findings.append(finding)

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        self.wrong(name, value, "a string")
        return None

    def integer(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self.wrong(name, value, "an integer")
        return None

    def port(self, name: str) -> int | None:
        """An integer, or a string of digits (flyctl's castToInt, patches.go:578-608)."""
        value = self.peek(name)
        if isinstance(value, str) and value.strip().isdigit():
            self.raw(name)
            return int(value.strip())
        return self.integer(name)

    def number(self, name: str) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        self.wrong(name, value, "a number")
        return None

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        self.wrong(name, value, "true or false")
        return None

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(cast(list[str], value))
        self.wrong(name, value, "a list of strings")
        return ()

    def pairs(self, name: str) -> tuple[tuple[str, str], ...]:
        """A table of strings; other scalars become strings as Go's ``%v`` writes them
        (flyctl's castToString, patches.go:610-616)."""
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.wrong(name, value, "a table")
            return ()
        pairs = []
        for key, item in cast(dict[str, object], value).items():
            if isinstance(item, dict | list):
                self.wrong(f"{name}.{key}", item, "a string")
                continue
            pairs.append((key, go_string(item)))
        return tuple(pairs)

    def values(self, name: str) -> tuple[tuple[str, object], ...]:
        """A table of any values, as (name, value) pairs in file order."""
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, dict):
            return tuple(cast(dict[str, object], value).items())
        self.wrong(name, value, "a table")
        return ()

    def duration(self, name: str, *, bare: Unit) -> Duration | None:
        """A duration string; a bare number is read the way fly-go reads it, and reported."""
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._findings.append(
                Finding(
                    rule="duration-bare-integer",
                    severity="warning",
                    key=self.key(name),
                    value=value,
                    message=f"fly-go reads a bare number here as {_UNIT_NAMES[bare]}; write a "
                    'duration string like "15s"',
                )
            )
            return Duration(f"{value:g}{bare}")
        if isinstance(value, str):
            try:
                return Duration(value)
            except ValueError:
                pass
        self.wrong(name, value, 'a duration string like "15s" or "10m0s"')
        return None

    def _child(self, name: str, data: dict[str, object], path: str) -> TableReader:
        node = self._node.child(name) or UNKNOWN
        strict = self._strict and not (self._path == "" and name in STRICT_SKIPPED)
        return TableReader(data, path=path, findings=self._findings, node=node, strict=strict)

    def table(self, name: str) -> TableReader | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, dict):
            return self._child(name, cast(dict[str, object], value), self.key(name))
        self.wrong(name, value, "a table")
        return None

    def tables(self, name: str) -> list[TableReader]:
        """An array of tables (a single table is accepted as one entry)."""
        value = self.raw(name)
        if value is None:
            return []
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return [
                self._child(name, item, f"{self.key(name)}[{index}]")
                for index, item in enumerate(cast(list[dict[str, object]], value))
            ]
        self.wrong(name, value, "an array of tables")
        return []

    def named_tables(self, name: str) -> list[tuple[str, TableReader]]:
        table = self.table(name)
        if table is None:
            return []
        return [(key, sub) for key in table.names() if (sub := table.table(key)) is not None]

    def names(self) -> list[str]:
        return list(self._data)

    def done(self) -> Extra:
        """The keys no reader asked for, in the order render writes them (scalars, tables,
        arrays of tables; file order within each); those flyctl does not know are reported."""
        extra = []
        for name, value in self._data.items():
            if name not in self._used:
                extra.append((name, value))
                _judge(
                    self._node,
                    name,
                    value,
                    key=self.key(name),
                    strict=self._strict,
                    findings=self._findings,
                    root=self._path == "",
                )
        return tuple(sorted(extra, key=_render_order))

    def finish(self, result: _T) -> _T:
        """``result`` with this table's unread keys as its ``extra``."""
        return replace(result, extra=self.done())  # type: ignore[type-var]


def _render_order(item: tuple[str, object]) -> int:
    value = item[1]
    if isinstance(value, dict):
        return 1
    if isinstance(value, list) and value and all(isinstance(entry, dict) for entry in value):
        return 2
    return 0


def _judge(
    node: Node,
    name: str,
    value: object,
    *,
    key: str,
    strict: bool,
    findings: list[Finding],
    root: bool = False,
) -> None:
    """Report ``name`` (and, inside it, every key) that flyctl does not know."""
    if not node.knows(name):
        findings.append(
            Finding(
                rule="unknown-key" if strict else "ignored-key",
                severity="warning",
                key=key,
                value=_shown(value),
                message="flyctl v0.4.87 does not know this key"
                + ("" if strict else " (and its --strict does not look here: it is ignored)"),
            )
        )
        return
    child = node.child(name)
    if child is None or child.free:
        return
    strict = strict and not (root and name in STRICT_SKIPPED)
    entries: list[tuple[str, object]] = []
    if isinstance(value, dict):
        entries = [("", value)]
    elif isinstance(value, list):
        entries = [(f"[{index}]", item) for index, item in enumerate(value)]
    for suffix, entry in entries:
        if isinstance(entry, dict):
            for sub, item in cast(dict[str, object], entry).items():
                _judge(
                    child, sub, item, key=f"{key}{suffix}.{sub}", strict=strict, findings=findings
                )


def go_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
