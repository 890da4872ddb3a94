"""``python -m infra``: see :mod:`infra.cli`."""

from __future__ import annotations

from infra.cli import main

raise SystemExit(main())
