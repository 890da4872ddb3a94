"""Write a rendered fly.toml (read from stdin) into a stack's build directory.

Run by the first step of every plan (``python -m infra.deploy.materialize --out build/<stack>``).
With ``--ship backend`` it also lays out the deploy context ``build/<stack>/app/``: a clean copy of
the backend tree with the fly.toml beside its Dockerfile, so flyctl resolves the Dockerfile and the
build context from one directory whatever its own path rules are.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from infra.deploy.plan import IGNORED_NAMES

FLY_TOML = "fly.toml"
APP_DIR = "app"


def _ignore(_directory: str, names: list[str]) -> set[str]:
    return {name for name in names if name in IGNORED_NAMES or name.endswith(".pyc")}


def materialise(fly_toml: str, *, out: Path, ship: Path | None) -> Path:
    """Write ``out/fly.toml`` (and the deploy context when ``ship`` is set); return its path."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / FLY_TOML
    target.write_text(fly_toml, encoding="utf-8")
    if ship is not None:
        if not (ship / "Dockerfile").is_file():
            raise FileNotFoundError(f"no Dockerfile in backend tree {ship}")
        app = out / APP_DIR
        if app.exists():
            shutil.rmtree(app)
        shutil.copytree(ship, app, ignore=_ignore)
        (app / FLY_TOML).write_text(fly_toml, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy.materialize", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the stack's build directory")
    parser.add_argument("--ship", type=Path, help="backend tree to copy as the deploy context")
    args = parser.parse_args(argv)
    text = sys.stdin.read()
    if not text.strip():
        print("materialize: empty fly.toml on stdin", file=sys.stderr)
        return 2
    try:
        path = materialise(text, out=args.out, ship=args.ship)
    except OSError as exc:
        print(f"materialize: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
