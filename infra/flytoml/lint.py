"""Lint a fly.toml: every parse finding and every rule finding, errors and warnings.

The rules are the same ones :meth:`FlyConfig.check` raises from (``infra.flytoml.rules``); lint adds
what only the text shows (unknown keys, bare-integer durations) and reports everything.
"""

from __future__ import annotations

from collections.abc import Iterable

from infra.errors import format_value
from infra.flytoml.findings import Finding
from infra.flytoml.parse import parse_fly_toml

__all__ = ["Finding", "exit_status", "format_finding", "lint_fly_toml"]


def lint_fly_toml(text: str) -> list[Finding]:
    """All findings for fly.toml text; ConfigError when the text is not TOML."""
    result = parse_fly_toml(text)
    return [*result.findings, *result.config.findings()]


def format_finding(path: str, finding: Finding) -> str:
    """``PATH: error[rule-id] key: message (found VALUE)``."""
    found = "" if finding.value is None else f" (found {format_value(finding.value)})"
    return f"{path}: {finding.severity}[{finding.rule}] {finding.key}: {finding.message}{found}"


def exit_status(findings: Iterable[Finding], *, strict: bool) -> int:
    """1 when any error (or, with ``strict``, any warning) was found, else 0."""
    failing = {"error", "warning"} if strict else {"error"}
    return 1 if any(finding.severity in failing for finding in findings) else 0
