"""What a rule says about one key: :class:`Finding`, shared by the model, the rules and parse.

Its own module so that ``model`` (which raises findings from ``check()``), ``rules`` (which
makes them) and ``parse`` (which adds its own) all import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from infra.errors import ConfigError, format_value

if TYPE_CHECKING:
    from infra.flytoml.model import FlyConfig, Service

__all__ = ["Finding", "Judge", "ServiceJudge", "Severity", "raise_first"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One rule's verdict on one key: ``rule`` id, ``severity``, dotted ``key``, ``value``."""

    rule: str
    severity: Severity
    key: str
    value: object
    message: str

    def error(self) -> ConfigError:
        """This finding as the exception ``check()`` raises."""
        return ConfigError(key=self.key, value=self.value, reason=self.message)

    def __str__(self) -> str:
        return (
            f"{self.severity}[{self.rule}] {self.key} = {format_value(self.value)}: {self.message}"
        )


Judge = Callable[["FlyConfig"], list[Finding]]
"""Every finding for a whole config (``rules.config_findings``)."""
ServiceJudge = Callable[["Service", int], list[Finding]]
"""The findings of one ``[[services]]`` entry at its index (``rules.service_findings``)."""


def raise_first(findings: list[Finding]) -> None:
    """Raise the first error finding as a ``ConfigError``; warnings do not raise."""
    for finding in findings:
        if finding.severity == "error":
            raise finding.error()
