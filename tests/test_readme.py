"""README's layout map names files that exist, and every infra package is on it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
LAYOUT = README[README.index("## Layout") : README.index("## Documentation")]


def test_every_path_on_the_map_exists() -> None:
    """Each `path` in the layout table (and each module it names in a package row) exists."""
    missing = []
    for row in re.findall(r"^\| `([^|]+)` \| (.*) \|$", LAYOUT, flags=re.MULTILINE):
        paths, what = row
        for path in re.findall(r"[\w./<>-]+", paths.replace("`", " ")):
            if "<" in path or path in (",",):
                continue
            if not (REPO / path).exists():
                missing.append(path)
        if paths.endswith("/"):
            for module in re.findall(r"`([\w/]+\.py)`", what):
                if not (REPO / paths / module).exists():
                    missing.append(paths + module)
    assert missing == []


def test_every_infra_package_is_on_the_map() -> None:
    """A new package under infra/ gets a row (or the newcomer cannot find it in one step)."""
    packages = {
        p.parent.relative_to(REPO).as_posix() + "/" for p in REPO.glob("infra/*/__init__.py")
    }
    packages -= {"infra/deploy/targets/"}
    on_map = set(re.findall(r"^\| `(infra/[\w/]+/)`", LAYOUT, flags=re.MULTILINE))
    assert packages - on_map == set()


def test_architecture_names_only_modules_that_exist() -> None:
    """Every path or module docs/ARCHITECTURE.md names (``infra/...py``, ``hub.py``) exists."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    files = {p.name for root in ("infra", "backend", "tests") for p in (REPO / root).rglob("*.py")}
    missing = []
    for name in set(re.findall(r"[\w/]+\.py\b", text)):
        bases = (REPO, REPO / "infra" / "deploy", REPO / "backend" / "realtime")
        exists = any((base / name).exists() for base in bases) or name in files
        if not exists:
            missing.append(name)
    assert sorted(missing) == []
