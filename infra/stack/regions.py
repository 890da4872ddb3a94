"""Where a stack's machines run: the primary region and ``realtime-fly:regions``.

``machines`` is the primary region's count; ``regions`` (``{iad: 2, ams: 1}``) adds further
regions and may restate the primary's count. Codes are checked for their shape and against
flyctl's own list of retired codes; the live region list comes from Fly's API and changes, so an
unknown code fails at that region's ``fly scale count`` step (docs/DEPLOYMENT_GUIDE.md).
"""

from __future__ import annotations

import re
from typing import Final

from infra.errors import ConfigError
from infra.stack.schema import PROJECT
from infra.stack.values import Values

__all__ = ["placements", "region_code"]

_REGION_CODE: Final = re.compile(r"[a-z]{3}")
"""A Fly region code: three lowercase letters (``iad``, ``ams``, ``syd``)."""
_RETIRED_REGIONS: Final = {
    "atl": "dfw", "den": "dfw", "mia": "dfw", "gdl": "dfw", "qro": "dfw", "bos": "ewr",
    "phx": "lax", "sea": "sjc", "yul": "yyz", "waw": "ams", "mad": "cdg", "otp": "fra",
    "bog": "gru", "gig": "gru", "scl": "gru", "eze": "gru", "hkg": "sin",
}  # fmt: skip
"""flyctl's own map of retired region codes to the regions that replaced them
(internal/command/launch/plan_builder.go:748-767, ``deprecatedRegionReplacements``)."""


def region_code(key: str, code: object) -> str:
    """A checked Fly region code, or a ConfigError naming ``key``.

    Checked here: the form (three lowercase letters) and flyctl's own list of retired codes,
    with the region that replaced each. Not checked: that Fly runs the region today. The list
    comes from Fly's API (``fly platform regions``), changes over time, and flyctl itself
    checks nothing locally (``fly scale count --region`` passes the code on,
    internal/command/scale/count_machines.go:52-55): a copy here would go stale and refuse new
    regions, and the Machines API refuses an unknown one at the scale step anyway.
    """
    if not isinstance(code, str) or not _REGION_CODE.fullmatch(code):
        raise ConfigError(
            key=key,
            value=code,
            reason="must be a Fly region code: three lowercase letters (`fly platform regions`)",
        )
    if code in _RETIRED_REGIONS:
        raise ConfigError(
            key=key,
            value=code,
            reason=f"is a retired Fly region, consolidated into {_RETIRED_REGIONS[code]!r} "
            "(flyctl internal/command/launch/plan_builder.go:748)",
        )
    return code


def placements(
    values: Values, *, primary: str, machines_set: bool
) -> tuple[int, tuple[tuple[str, int], ...]]:
    """(the primary region's machines, the further regions' counts) from ``machines`` and
    ``regions``; a primary region listed in ``regions`` takes its count from there."""
    machines = values.integer("machines")
    counts = values.counts("regions")
    if counts is None:
        return machines, ()
    machines_key = f"{PROJECT}:machines"
    for code, count in counts.items():
        key = f"{PROJECT}:regions.{code}"
        region_code(key, code)
        if count < 0:
            raise ConfigError(
                key=key, value=count, reason="must be 0 or more (0 removes the region's machines)"
            )
    if primary in counts:
        if machines_set and machines != counts[primary]:
            raise ConfigError(
                key=f"{PROJECT}:regions.{primary}",
                value=counts[primary],
                reason=f"is the primary region's count, and {machines_key} says {machines}: "
                "set only one of them",
            )
        machines = counts[primary]
        machines_key = f"{PROJECT}:regions.{primary}"
    if machines < 1:
        raise ConfigError(
            key=machines_key,
            value=machines,
            reason=f"the primary region ({primary}) must run at least one machine: `fly deploy` "
            "creates and updates machines there first",
        )
    further = tuple(sorted((code, count) for code, count in counts.items() if code != primary))
    return machines, further
