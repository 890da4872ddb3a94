"""Shares of samples from py-spy's collapsed stacks."""

from __future__ import annotations

import pytest

from bench.profile import summarize

COLLAPSED = """\
main (/x/backend/realtime/__main__.py:40);_fanout (/x/backend/realtime/server.py:512) 6
main (/x/backend/realtime/__main__.py:40);_fanout (/x/backend/realtime/server.py:505) 2
main (/x/backend/realtime/__main__.py:40);decode (/x/site-packages/jwt/api_jwt.py:10) 2
not a sample line
"""


def test_self_total_and_line_shares() -> None:
    """Leaf frames give self shares (per function and per line); every frame gives totals."""
    shares = summarize(COLLAPSED)
    assert [name for name, _ in shares["self"]] == [
        "_fanout (realtime/server.py)",
        "decode (jwt/api_jwt.py)",
    ]
    assert [share for _, share in shares["self"]] == pytest.approx([0.8, 0.2])
    line, share = shares["self_lines"][0]
    assert line == "_fanout (realtime/server.py:512)"
    assert share == pytest.approx(0.6)
    assert dict(shares["total"])["main (realtime/__main__.py)"] == pytest.approx(1.0)


def test_no_samples_give_empty_lists() -> None:
    """An empty recording yields no shares rather than a division by zero."""
    assert summarize("") == {"self": [], "self_lines": [], "total": []}
