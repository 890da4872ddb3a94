"""Backport drift: the settings stacks must share, compared key by key.

A fix lands in one stack's config first (staging) and must be backported to the others
(production). ``python -m infra diff`` shows the whole rendered fly.toml side by side; this module
answers the narrower question a reviewer or CI asks: do the stacks still agree on everything
that is not meant to differ between environments?

Each stack is loaded from ``Pulumi.<stack>.yaml`` (without its secrets), rendered to fly.toml by
the same code the Pulumi program uses, parsed back with ``tomllib`` and flattened into dotted keys
(``services[0].ports[0].handlers``). Two kinds of keys are left out of the comparison:

- per-environment keys (:data:`PER_ENVIRONMENT`): the app name, primary region and VM size and
  memory, and the browser origins allowed to open WebSockets (`[env] ALLOWED_ORIGINS`, derived
  from the app name), which every stack sets on its own. The stack settings that never reach
  fly.toml (target, org, flyctl path, machine count, broker, which secrets are set) are
  per-environment too and are not compared at all;
- when one of the two stacks deploys to the ``local`` target (``dev``), the fly.toml keys the
  local target does not act on (:data:`LOCAL_TARGET_UNUSED`): it runs the backend as plain
  processes behind haproxy, so builds, deploy strategy, machine auto stop/start, swap and metrics
  scraping may differ there without consequence. Everything the local edge and the backend read
  (services, handlers, ALPN, concurrency, checks, kill signal, env) is still compared.

Every other difference is drift, reported with the key and both values.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from infra.flytoml.render import render_fly_toml
from infra.stack.settings import StackSettings, load_stack_file

__all__ = [
    "DEFAULT_STACKS",
    "LOCAL_TARGET_UNUSED",
    "PER_ENVIRONMENT",
    "Drift",
    "find_drift",
    "format_drift",
    "load_shared_settings",
    "parse_stack_list",
    "report_drift",
    "shared_settings",
]

DEFAULT_STACKS: Final = ("staging", "production")
"""The Fly.io stacks compared when ``--stacks`` is not given (``dev`` deploys locally)."""

PER_ENVIRONMENT: Final = ("app", "primary_region", "vm", "env.ALLOWED_ORIGINS")
"""fly.toml keys (and everything under them) each environment sets on its own."""

LOCAL_TARGET_UNUSED: Final = (
    "build",
    "deploy",
    "swap_size_mb",
    "metrics",
    "http_service.auto_stop_machines",
    "http_service.auto_start_machines",
    "http_service.min_machines_running",
)
"""fly.toml keys the local target ignores: not compared when a ``local`` stack takes part."""

_UNSET: Final = "(unset)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    """One shared setting whose value differs between two stacks."""

    key: str
    """The flattened fly.toml key, e.g. ``services[0].ports[0].handlers``."""
    stack_a: str
    value_a: object
    """The value in ``stack_a``, ``None`` when the key is unset there."""
    stack_b: str
    value_b: object
    """The value in ``stack_b``, ``None`` when the key is unset there."""


def _flatten(value: object, path: str) -> Iterator[tuple[str, object]]:
    """Leaves of a parsed TOML document as ``(dotted key, value)``; lists of scalars are leaves."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            yield from _flatten(item, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, value


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith((f"{p}.", f"{p}[")) for p in prefixes)


def shared_settings(settings: StackSettings) -> dict[str, object]:
    """A stack's rendered fly.toml as flattened keys, per-environment keys removed."""
    document = tomllib.loads(render_fly_toml(settings.fly, stack=settings.stack))
    return {key: value for key, value in _flatten(document, "") if not _under(key, PER_ENVIRONMENT)}


def load_shared_settings(project_dir: Path, stack: str) -> tuple[StackSettings, dict[str, object]]:
    """Load ``Pulumi.<stack>.yaml`` (secrets not required) and its shared settings.

    Raises ConfigError for invalid config and OSError for a missing file.
    """
    settings = load_stack_file(project_dir / f"Pulumi.{stack}.yaml", require_secrets=False)
    return settings, shared_settings(settings)


def find_drift(project_dir: Path, stacks: Sequence[str]) -> list[Drift]:
    """Every shared setting where a stack differs from the first one, in stack then key order."""
    loaded = [load_shared_settings(project_dir, stack) for stack in stacks]
    reference_settings, reference = loaded[0]
    drifts: list[Drift] = []
    for settings, values in loaded[1:]:
        local = "local" in (reference_settings.target, settings.target)
        for key in sorted(reference.keys() | values.keys()):
            if local and _under(key, LOCAL_TARGET_UNUSED):
                continue
            value_a, value_b = reference.get(key), values.get(key)
            if value_a != value_b:
                drifts.append(
                    Drift(
                        key=key,
                        stack_a=reference_settings.stack,
                        value_a=value_a,
                        stack_b=settings.stack,
                        value_b=value_b,
                    )
                )
    return drifts


def _shown(value: object) -> str:
    return _UNSET if value is None else json.dumps(value)


def format_drift(drift: Drift) -> str:
    """One report line: ``key: stack_a = value, stack_b = value``."""
    return (
        f"{drift.key}: {drift.stack_a} = {_shown(drift.value_a)}, "
        f"{drift.stack_b} = {_shown(drift.value_b)}"
    )


def report_drift(project_dir: Path, stacks: Sequence[str], out: TextIO) -> int:
    """Write one line per drift and a summary; 1 when shared settings diverge, 0 otherwise."""
    drifts = find_drift(project_dir, stacks)
    names = ", ".join(stacks)
    for drift in drifts:
        out.write(format_drift(drift) + "\n")
    if drifts:
        out.write(f"drift: {len(drifts)} shared setting(s) differ between {names}\n")
        return 1
    out.write(f"no drift: {names} agree on every shared setting\n")
    return 0


def parse_stack_list(text: str) -> tuple[str, ...]:
    """``--stacks a,b,...``: two or more distinct, non-empty names (argparse exits 2 otherwise)."""
    names = tuple(name.strip() for name in text.split(","))
    if len(names) < 2 or "" in names:
        raise argparse.ArgumentTypeError(f"needs two or more comma-separated stack names: {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"names a stack twice: {text!r}")
    return names
