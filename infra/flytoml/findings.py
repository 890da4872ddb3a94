"""What a rule says about one key: :class:`Finding`, shared by the model, the rules and parse.

Its own module so that ``rules`` (which makes findings and raises the first error from
``check_config``) and ``parse`` (which adds its own) share it; the model itself is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from infra.errors import ConfigError, format_value

__all__ = ["Finding", "Severity", "raise_first"]

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
        """This finding as the exception ``rules.check_config`` raises."""
        return ConfigError(key=self.key, value=self.value, reason=self.message)

    def __str__(self) -> str:
        return (
            f"{self.severity}[{self.rule}] {self.key} = {format_value(self.value)}: {self.message}"
        )


def raise_first(findings: list[Finding]) -> None:
    """Raise the first error finding as a ``ConfigError``; warnings do not raise."""
    for finding in findings:
        if finding.severity == "error":
            raise finding.error()
