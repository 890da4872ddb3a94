"""Write an import's values into ``Pulumi.<stack>.yaml``, keeping what a person wrote there.

ruamel.yaml's round trip keeps comments, key order, other namespaces and the keys fly.toml does
not carry (``target``, ``org``, ``regions``, secrets, ``flyctl``...); the fly.toml-derived
``realtime-fly:*`` keys are replaced, and those the import does not set are removed (else the
stack would render something the file does not say), unless they only restate a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from infra.errors import ConfigError
from infra.flytoml.model import Duration
from infra.stack.schema import KEYS, PROJECT

__all__ = ["ASKED", "existing_values", "plain_default", "write_stack_file"]

ASKED: Final = ("org", "machines", "broker")
"""The target's settings fly.toml has no key for."""
_NOT_FROM_TOML: Final = frozenset(
    {"target", "org", "flyctl", "localPortBase", "machines", "broker", "regions"}
)
_OWNED: Final = tuple(
    key.name for key in KEYS if "." not in key.name and key.name not in _NOT_FROM_TOML
)
"""The top-level keys an import writes or removes (everything fly.toml can say)."""
_DEFAULTS: Final = {key.name: key.default for key in KEYS}


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


def existing_values(path: Path) -> dict[str, object]:
    """The values fly.toml cannot carry (``org``, ``machines``, ``broker``, and ``target``,
    which decides whether ``org`` is needed) already in the stack file at ``path``."""
    if not path.exists():
        return {}
    try:
        loaded = _yaml().load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # ruamel's errors share no public base worth naming
        raise ConfigError(key=str(path), value="<yaml>", reason=f"invalid YAML: {exc}") from None
    config = loaded.get("config") if isinstance(loaded, Mapping) else None
    if not isinstance(config, Mapping):
        return {}
    return {name: config[f"{PROJECT}:{name}"] for name in ASKED if f"{PROJECT}:{name}" in config}


def write_stack_file(path: Path, values: Mapping[str, object]) -> None:
    """Write or update ``path`` (a ``Pulumi.<stack>.yaml``) with ``values`` (see the module
    docstring for what is kept); OSError when it cannot be written, ConfigError when the
    existing file is not YAML of the expected shape."""
    yaml = _yaml()
    document: CommentedMap
    if path.exists():
        try:
            loaded = yaml.load(path.read_text(encoding="utf-8"))
        except Exception as exc:  # ruamel's errors share no public base worth naming
            raise ConfigError(
                key=str(path), value="<yaml>", reason=f"invalid YAML: {exc}"
            ) from None
        document = loaded if isinstance(loaded, CommentedMap) else CommentedMap()
    else:
        document = CommentedMap()
    config = document.get("config")
    if not isinstance(config, CommentedMap):
        config = CommentedMap()
        document["config"] = config
    for name in _OWNED:
        full = f"{PROJECT}:{name}"
        if name in values:
            _set(config, full, name, values[name])
        elif full in config and not _is_default(name, config[full]):
            del config[full]
    for name in ("org", "machines", "broker"):
        if name in values:
            _set(config, f"{PROJECT}:{name}", name, values[name])
    with path.open("w", encoding="utf-8") as stream:
        yaml.dump(document, stream)


def plain_default(name: str) -> object:
    """The schema default of ``name`` as YAML would hold it (a Duration as text, a tuple as a
    list)."""
    default = _DEFAULTS.get(name)
    if isinstance(default, Duration):
        return default.text
    if isinstance(default, tuple):
        return list(default)
    return default


def _is_default(name: str, value: object) -> bool:
    """Whether an existing value says no more than the key's default (kept as written)."""
    if isinstance(value, Mapping):
        if name == "env":
            return not value
        return all(_is_default(f"{name}.{field}", item) for field, item in value.items())
    return f"{name}" in _DEFAULTS and value == plain_default(name)


def _set(config: CommentedMap, key: str, name: str, value: object) -> None:
    current = config.get(key)
    if isinstance(value, dict) and isinstance(current, CommentedMap):
        for field in [f for f in current if f not in value]:
            if name == "env" or not _is_default(f"{name}.{field}", current[field]):
                del current[field]
        for field, item in value.items():
            current[field] = item
        return
    if isinstance(value, dict):
        config[key] = CommentedMap(value)
    else:
        config[key] = value
