"""No module of infra/ or backend/ grows past 400 lines (issue 11): split it by responsibility."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 400


def test_no_module_over_the_limit() -> None:
    """Every .py file under infra/ and backend/ has at most 400 lines."""
    sizes = {
        path.relative_to(REPO).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for root in ("infra", "backend")
        for path in (REPO / root).rglob("*.py")
    }
    assert {path: lines for path, lines in sizes.items() if lines > LIMIT} == {}
