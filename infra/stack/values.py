"""The typed reader of stack config values, driven by :mod:`infra.stack.schema`.

Every read names its key; the kind and the default come from the schema's row, and a value of the
wrong kind raises a ``ConfigError`` naming ``realtime-fly:<key>`` and the value (a Pulumi secure
value is never echoed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import cast

from infra.errors import ConfigError
from infra.flytoml.model import Duration
from infra.stack.schema import CONFIG_KEYS, OBJECT_KEYS, PROJECT, Key, Kind, key_named

__all__ = ["Values", "shown"]


def shown(value: object) -> object:
    """A value fit for an error message: a Pulumi secure value is never echoed."""
    if isinstance(value, Mapping) and "secure" in value:
        return "[secret]"
    return value


_INTEGER = re.compile(r"[+-]?\d+")


class Values:
    """Typed access to one level of config values (the top level or one object-valued key).

    Every read names its key; the kind and the default come from :data:`KEYS`, and a value of
    the wrong kind raises a ``ConfigError`` naming ``realtime-fly:<key>`` and the value.
    """

    def __init__(self, values: Mapping[str, object], *, section: str = "") -> None:
        self._values = values
        self._section = section
        allowed = OBJECT_KEYS[section] if section else CONFIG_KEYS
        for name, value in values.items():
            if name not in allowed:
                raise ConfigError(
                    key=self._key(name),
                    value=shown(value),
                    reason=f"unknown config key; known keys: {', '.join(allowed)}",
                )

    def _name(self, name: str) -> str:
        return f"{self._section}.{name}" if self._section else name

    def _key(self, name: str) -> str:
        return f"{PROJECT}:{self._name(name)}"

    def _schema(self, name: str, *kinds: Kind) -> Key:
        key = key_named(self._name(name))
        if key.kind not in kinds:  # a programming error, caught by the tests
            raise TypeError(f"{key.name} is a {key.kind} key, read as {' or '.join(kinds)}")
        return key

    def _get(self, name: str) -> object:
        value = self._values.get(name)
        return None if value == "" else value

    def _fail(self, name: str, value: object, reason: str) -> ConfigError:
        return ConfigError(key=self._key(name), value=value, reason=reason)

    def optional_text(self, name: str) -> str | None:
        """A string, or the key's default (which may be ``None``)."""
        key = self._schema(name, "text", "choice")
        value = self._get(name)
        if value is None:
            return cast(str | None, key.default)
        if not isinstance(value, str):
            raise self._fail(name, value, "must be a string")
        if key.choices and value not in key.choices:
            raise self._fail(name, value, f"must be one of {', '.join(key.choices)}")
        return value

    def text(self, name: str, default: str | None = None) -> str:
        """A string; ``default`` only for keys whose default depends on the stack (``app``)."""
        value = self.optional_text(name)
        if value is None:
            if default is None:
                raise TypeError(f"{self._name(name)} has no default")
            return default
        return value

    def optional_integer(self, name: str) -> int | None:
        key = self._schema(name, "integer")
        value = self._get(name)
        if value is None:
            return cast(int | None, key.default)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
        raise self._fail(name, value, "must be an integer")

    def integer(self, name: str) -> int:
        value = self.optional_integer(name)
        if value is None:
            raise TypeError(f"{self._name(name)} has no default")
        return value

    def optional_number(self, name: str) -> float | None:
        key = self._schema(name, "number")
        value = self._get(name)
        if value is None:
            return cast(float | None, key.default)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise self._fail(name, value, "must be a number")

    def optional_boolean(self, name: str) -> bool | None:
        key = self._schema(name, "boolean")
        value = self._get(name)
        if value is None:
            return cast(bool | None, key.default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self._fail(name, value, "must be true or false")

    def duration(self, name: str) -> Duration:
        value = self.optional_duration(name)
        if value is None:
            raise TypeError(f"{self._name(name)} has no default")
        return value

    def optional_duration(self, name: str) -> Duration | None:
        key = self._schema(name, "duration")
        value = self._get(name)
        if value is None:
            return cast(Duration | None, key.default)
        if isinstance(value, str):
            try:
                return Duration(value)
            except ValueError:
                pass
        raise self._fail(name, value, 'must be a duration string like "30s" or "10m0s"')

    def texts(self, name: str) -> tuple[str, ...]:
        key = self._schema(name, "texts")
        value = self._get(name)
        if value is None:
            return cast(tuple[str, ...], key.default)
        if isinstance(value, str):
            value = self._json(name, value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(cast(list[str], value))
        raise self._fail(name, value, "must be a list of strings")

    def mapping(self, name: str) -> dict[str, object]:
        self._schema(name, "object")
        value = self._get(name)
        if value is None:
            return {}
        if isinstance(value, str):
            value = self._json(name, value)
        if isinstance(value, dict) and all(isinstance(field, str) for field in value):
            return cast(dict[str, object], value)
        raise self._fail(name, value, "must be an object")

    def counts(self, name: str) -> dict[str, int] | None:
        """An object of names to integers (``None`` when unset); each value is checked, and an
        error names ``realtime-fly:<key>.<name>``."""
        self._schema(name, "counts")
        value = self._get(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = self._json(name, value)
        if not isinstance(value, dict) or not all(isinstance(item, str) for item in value):
            raise self._fail(name, value, "must be an object of names to integers")
        counts: dict[str, int] = {}
        for item, raw in cast(dict[str, object], value).items():
            if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
                counts[item] = int(raw)
            elif isinstance(raw, int) and not isinstance(raw, bool):
                counts[item] = raw
            else:
                raise self._fail(f"{name}.{item}", raw, "must be an integer")
        return counts

    def section(self, name: str) -> Values:
        """The reader of one object-valued key's fields."""
        return Values(self.mapping(name), section=self._name(name))

    def _json(self, name: str, text: str) -> object:
        try:
            return cast(object, json.loads(text))
        except json.JSONDecodeError as exc:
            raise self._fail(name, text, f"is not valid JSON: {exc.msg}") from None
