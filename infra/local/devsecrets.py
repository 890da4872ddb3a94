"""Development-only secrets for the local deployment, generated once and kept in a 0600 file.

    python -m infra.local.devsecrets --out build/local/secrets.env

writes ``TOKEN_SIGNING_KEY=<random>`` when the file does not exist yet, and leaves an existing
file alone, so the backends and the smoke check keep agreeing on the key across ``make up``
runs. The value is never printed. Processes read the file through
``python -m infra.local.supervise start|exec --env-file``, which lets a key already in the
environment (a Pulumi secret set on the stack) take precedence.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEV_SECRET_NAMES", "ensure_dev_secrets", "main"]

DEV_SECRET_NAMES = ("TOKEN_SIGNING_KEY",)


def ensure_dev_secrets(path: Path) -> bool:
    """Create the secrets file if missing; ``True`` when it was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{name}={secrets.token_urlsafe(48)}\n" for name in DEV_SECRET_NAMES)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(lines)
    tmp.replace(path)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.devsecrets", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    created = ensure_dev_secrets(args.out)
    print(f"{args.out} {'created' if created else 'kept'} (values not shown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
