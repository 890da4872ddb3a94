"""docs/PROTOCOL.md documents every frame type, error code and close code in the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from realtime.auth import INVALID_TOKEN, TOKEN_EXPIRED
from realtime.protocol import CLIENT_TYPES, MAX_BODY_UNITS, SERVER_TYPES, CloseCode, ErrorCode

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _headings() -> set[str]:
    text = (DOCS / "PROTOCOL.md").read_text()
    return set(re.findall(r"^### `([a-z_]+)`$", text, flags=re.MULTILINE))


def _table_cells() -> set[str]:
    text = (DOCS / "PROTOCOL.md").read_text()
    return {
        cell.strip()
        for line in text.splitlines()
        if line.startswith("|")
        for cell in line.split("|")
    }


def test_every_frame_type_has_a_section() -> None:
    """Each client and server frame type has its own ### heading."""
    missing = (set(CLIENT_TYPES) | set(SERVER_TYPES)) - _headings()
    assert not missing


def test_every_error_code_is_in_the_table() -> None:
    """Each ErrorCode value is a row of the error code table."""
    missing = {f"`{code.value}`" for code in ErrorCode} - _table_cells()
    assert not missing


def test_every_close_code_is_in_the_table() -> None:
    """Each CloseCode has a row with its number and name."""
    cells = _table_cells()
    missing = [c for c in CloseCode if str(int(c)) not in cells or f"`{c.name}`" not in cells]
    assert not missing


def test_examples_are_valid_json_of_a_documented_type() -> None:
    """Every JSON example parses and has a documented type."""
    text = (DOCS / "PROTOCOL.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    types = set(CLIENT_TYPES) | set(SERVER_TYPES)
    for block in blocks:
        for example in re.split(r"\n(?=\{)", block.strip()):
            frame = json.loads(example)
            assert frame["type"] in types


def test_4001_reasons_are_the_documented_ones() -> None:
    """The 4001 row names exactly the reasons the verifier sends."""
    row = next(
        line
        for line in (DOCS / "PROTOCOL.md").read_text().splitlines()
        if line.startswith("| 4001")
    )
    assert f"`{INVALID_TOKEN}`" in row
    assert f"`{TOKEN_EXPIRED}`" in row


def test_body_limit_is_documented_in_utf16_units() -> None:
    """PROTOCOL.md states the body limit in the unit the server counts."""
    assert f"1-{MAX_BODY_UNITS} UTF-16 code units" in (DOCS / "PROTOCOL.md").read_text()
