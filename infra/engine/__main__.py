"""``python -m infra.engine``: see :mod:`infra.engine.runner`."""

from __future__ import annotations

from infra.engine.runner import main

raise SystemExit(main())
