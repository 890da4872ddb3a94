"""Lint a fly.toml: every parse finding and every rule finding, errors and warnings.

The rules are the same ones :meth:`FlyConfig.check` raises from (``infra.flytoml.rules``); lint adds
what only the text shows (keys flyctl does not know, bare-integer durations) and reports
everything. The exit status follows flyctl v0.4.87: errors fail; with ``--strict`` the keys
``fly config validate --strict`` calls unrecognised fail too (``unknown-key``), and so do the
warnings of the project's WebSocket rules. Fly's own warnings (flyctl prints them and goes on)
and advice such as ``ignored-key`` never fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from infra.errors import format_value
from infra.flytoml.findings import Finding
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.rules import WEBSOCKET_RULES, config_findings

__all__ = ["STRICT_ONLY_RULES", "Finding", "exit_status", "format_finding", "lint_fly_toml"]

STRICT_ONLY_RULES: Final = frozenset({"unknown-key"})
"""Warnings that fail ``--strict`` as flyctl's own ``--strict`` does."""


def lint_fly_toml(text: str) -> list[Finding]:
    """All findings for fly.toml text; ConfigError when the text is not TOML."""
    result = parse_fly_toml(text)
    return [*result.findings, *config_findings(result.config)]


def format_finding(path: str, finding: Finding) -> str:
    """``PATH: error[rule-id] key: message (found VALUE)``."""
    found = "" if finding.value is None else f" (found {format_value(finding.value)})"
    return f"{path}: {finding.severity}[{finding.rule}] {finding.key}: {finding.message}{found}"


def fails(finding: Finding, *, strict: bool) -> bool:
    """Whether ``finding`` makes lint exit 1."""
    if finding.severity == "error":
        return True
    return strict and (finding.rule in STRICT_ONLY_RULES or finding.rule in WEBSOCKET_RULES)


def exit_status(findings: Iterable[Finding], *, strict: bool) -> int:
    """1 when any finding fails (see :func:`fails`), else 0."""
    return 1 if any(fails(finding, strict=strict) for finding in findings) else 0
