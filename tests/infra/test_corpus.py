"""The linter, the parser and the renderer against 90 real fly.toml files judged by flyctl.

The corpus lives beside the project, in ``../shared/flytoml-corpus/`` (or where
``FLYTOML_CORPUS`` points; its README says where each file comes from): each case holds flyctl
v0.4.87's ``config validate --strict`` output and its deploy-time check. Lint must fail exactly
where flyctl fails, without and with ``--strict``, except the WebSocket cases listed below, each
with its reason; the unknown keys lint reports under ``--strict`` are exactly the ones flyctl
calls unrecognised; and parse -> render -> parse keeps every key flyctl knows.
"""

from __future__ import annotations

import csv
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from infra.errors import ConfigError
from infra.flytoml.findings import Finding
from infra.flytoml.lint import STRICT_ONLY_RULES, exit_status, lint_fly_toml
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.render import render_fly_toml
from infra.flytoml.rules import WEBSOCKET_RULES

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("FLYTOML_CORPUS") or REPO.parent / "shared" / "flytoml-corpus")
if not (CORPUS / "INDEX.tsv").is_file():
    pytest.skip(
        f"the flyctl corpus is not at {CORPUS} (set FLYTOML_CORPUS to its directory)",
        allow_module_level=True,
    )

WEBSOCKET_CASES: dict[str, str] = {
    "024-superfly-tokenizer": 'the shape without a WebSocket: an HTTP proxy on 8443 behind ["tls", '
    '"http"]; pu02-prone cannot tell, as the file does not say which port carries WebSockets',
    "046-mileszim-fly-playbooks": "the shape without a WebSocket: Dragonfly on 6379 behind "
    '["tls", "http"]; pu02-prone cannot tell, as the file does not say which port carries '
    "WebSockets",
    "028-agrinman-tunnelto": "the incident's shape: the control WebSocket on 10001 behind "
    '["tls", "http"] (pu02-prone); flyctl --strict fails it too, on [experimental]',
    "050-Xivlon-Sohbet": "the incident's shape: the chat WebSocket on 8081 behind "
    '["tls", "http"] (pu02-prone); its later version 051 moved to ["tls"]',
}
"""Cases where ``lint --strict`` fails and flyctl --strict does not (or fails for another
reason), because one of the project's WebSocket rules warns."""


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    text: str
    valid: bool  # flyctl config validate (without --strict) and the deploy-time check pass
    strict_valid: bool  # the same with --strict
    unrecognised: frozenset[str]  # the keys flyctl --strict calls unrecognised


def _unrecognised(output: str) -> frozenset[str]:
    lines = output.split("unrecognised sections or keys:", 1)
    if len(lines) == 1:
        return frozenset()
    keys = []
    for line in lines[1].splitlines():
        if line.startswith("  - "):
            keys.append(line[4:].strip())
    return frozenset(keys)


@cache
def _cases() -> tuple[Case, ...]:
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as index:
        rows = list(csv.DictReader(index, delimiter="\t"))
    cases = []
    for row in rows:
        folder = CORPUS / row["case"]
        output = (folder / "flyctl-validate.out").read_text(encoding="utf-8")
        deploy_ok = row["flyctl_deploy_check_ok"] == "yes"
        valid = deploy_ok and "Configuration is valid" in output
        cases.append(
            Case(
                name=row["case"],
                text=(folder / "fly.toml").read_text(encoding="utf-8"),
                valid=valid,
                strict_valid=deploy_ok and row["flyctl_validate_strict_rc"] == "0",
                unrecognised=_unrecognised(output),
            )
        )
    return tuple(cases)


def _lint(case: Case) -> list[Finding] | None:
    """The findings, or ``None`` when lint refuses the file as a whole (not TOML)."""
    try:
        return lint_fly_toml(case.text)
    except ConfigError as exc:
        if exc.key != "fly.toml":
            raise
        return None


def _fails(findings: list[Finding] | None, *, strict: bool) -> bool:
    return findings is None or exit_status(findings, strict=strict) == 1


def test_the_corpus_is_complete() -> None:
    """90 cases; flyctl accepts 89 without --strict and 63 with it (the corpus README)."""
    cases = _cases()
    assert len(cases) == 90
    assert sum(case.valid for case in cases) == 89
    assert sum(case.strict_valid for case in cases) == 63


def test_agreement_with_flyctl(capsys: pytest.CaptureFixture[str]) -> None:
    """Lint fails a file exactly when flyctl does, without and with --strict, except the
    listed WebSocket cases, where only the project's WebSocket rules make the difference."""
    plain: list[str] = []
    strict: list[str] = []
    differences: list[str] = []
    for case in _cases():
        findings = _lint(case)
        if _fails(findings, strict=False) != (not case.valid):
            differences.append(f"{case.name}: flyctl valid={case.valid}; lint: {findings}")
        else:
            plain.append(case.name)
        if _fails(findings, strict=True) == (not case.strict_valid):
            strict.append(case.name)
        elif case.name not in WEBSOCKET_CASES:
            differences.append(
                f"{case.name} --strict: flyctl valid={case.strict_valid}; lint: {findings}"
            )
    with capsys.disabled():
        print(
            f"\ncorpus agreement with flyctl v0.4.87: {len(plain)}/{len(_cases())} files "
            f"without --strict, {len(strict)}/{len(_cases())} with --strict (the other "
            f"{len(_cases()) - len(strict)} are listed WebSocket cases)"
        )
    assert differences == []


@pytest.mark.parametrize("name", sorted(WEBSOCKET_CASES))
def test_websocket_cases_differ_only_by_websocket_rules(name: str) -> None:
    """Each listed case is flagged pu02-prone, and without the WebSocket rules lint --strict
    would agree with flyctl."""
    case = next(case for case in _cases() if case.name == name)
    findings = _lint(case)
    assert findings is not None
    assert "pu02-prone" in {finding.rule for finding in findings}
    others = [finding for finding in findings if finding.rule not in WEBSOCKET_RULES]
    assert _fails(others, strict=True) == (not case.strict_valid)


def test_unknown_keys_are_exactly_flyctls_unrecognised_keys() -> None:
    """--strict's unknown keys are the keys flyctl calls unrecognised, file by file."""
    differences = {}
    for case in _cases():
        findings = _lint(case)
        if findings is None:
            continue
        ours = {f.key for f in findings if f.rule in STRICT_ONLY_RULES}
        if ours != case.unrecognised:
            differences[case.name] = (sorted(ours), sorted(case.unrecognised))
    assert differences == {}


def _paths(value: object, prefix: str = "") -> set[str]:
    """Every dotted key path of a TOML value (array entries share their array's path); an empty
    table or array counts as absent, as it does for flyctl (``omitempty``)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if item in ({}, []):
                continue
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= _paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= _paths(item, prefix)
    return paths


_ALIASES = {"build.build_target": "build.build-target"}
_SECTION_ALIASES = {"mount": "mounts", "metric": "metrics", "compute": "vm", "computes": "vm"}
"""flyctl's aliases (patches.go:172, 230-289): render writes the key flyctl uses."""


def _alias(path: str) -> str:
    head, dot, rest = path.partition(".")
    return _ALIASES.get(path, _SECTION_ALIASES.get(head, head) + dot + rest)


def _known_paths(text: str, unknown: set[str]) -> set[str]:
    paths = {_alias(path) for path in _paths(tomllib.loads(text))}
    return {path for path in paths if not any(path.startswith(key) for key in unknown)}


@pytest.mark.parametrize("case", [c for c in _cases() if c.valid], ids=lambda c: c.name)
def test_round_trip_keeps_every_key_flyctl_knows(case: Case) -> None:
    """parse -> render -> parse: the same model, and every key flyctl knows is still there."""
    first = parse_fly_toml(case.text)
    unknown = {_index_free(f.key) for f in first.findings if f.rule in STRICT_ONLY_RULES}
    rendered = render_fly_toml(first.config)
    second = parse_fly_toml(rendered)
    assert second.config == first.config
    missing = _known_paths(case.text, unknown) - _known_paths(rendered, set())
    assert missing == set()


def _index_free(key: str) -> str:
    """``services[0].ports[1].x`` -> ``services.ports.x``."""
    parts = [part.split("[", 1)[0] for part in key.split(".")]
    return ".".join(parts)
