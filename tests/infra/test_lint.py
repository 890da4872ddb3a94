"""Lint on the incident's before/after files and on our own output."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.flytoml.lint import exit_status, format_finding, lint_fly_toml
from infra.flytoml.rules import PU02_REASON, Finding

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"


def _lint(name: str) -> list[Finding]:
    return lint_fly_toml((DATA / name).read_text(encoding="utf-8"))


def test_seed_before_is_an_error_naming_handlers() -> None:
    """The incident's before config fails first on handlers, with the PU02 explanation."""
    findings = _lint("seed_before.toml")
    errors = [f for f in findings if f.severity == "error"]
    assert errors[0].rule == "ws-http-handler"
    assert errors[0].key == "services[0].ports[0].handlers"
    assert errors[0].message == PU02_REASON
    assert exit_status(findings, strict=False) == 1


def test_seed_after_passes_with_alpn_warning() -> None:
    """The incident's after config has no error, but a warning for the missing ALPN pin."""
    findings = _lint("seed_after.toml")
    assert [f for f in findings if f.severity == "error"] == []
    assert ("ws-alpn-missing", "services[0].ports[0].tls_options.alpn") in {
        (f.rule, f.key) for f in findings
    }
    assert exit_status(findings, strict=False) == 0
    assert exit_status(findings, strict=True) == 1


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.fly.toml")), ids=lambda p: p.name)
def test_our_output_is_clean(path: Path) -> None:
    """The golden files have no finding at all, even with --strict."""
    assert lint_fly_toml(path.read_text(encoding="utf-8")) == []


def test_unknown_keys_are_warnings_in_lint() -> None:
    """An unknown key is reported as a warning, never dropped silently."""
    text = (DATA / "seed_after.toml").read_text(encoding="utf-8") + "\n[mounts]\nsource = 'd'\n"
    findings = lint_fly_toml(text)
    assert ("unknown-key", "mounts", "warning") in {(f.rule, f.key, f.severity) for f in findings}


def test_format_finding() -> None:
    """Lines read PATH: severity[rule] key: message (found VALUE)."""
    finding = Finding(
        rule="kill-signal", severity="error", key="kill_signal", value="SIGHUP", message="bad"
    )
    assert format_finding("fly.toml", finding) == (
        'fly.toml: error[kill-signal] kill_signal: bad (found "SIGHUP")'
    )
