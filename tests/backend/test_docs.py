"""docs/PROTOCOL.md documents every frame type, error code and close code in the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from realtime.protocol import CLIENT_TYPES, SERVER_TYPES, CloseCode, ErrorCode

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
