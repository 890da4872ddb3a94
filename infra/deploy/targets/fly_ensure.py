"""Check first, then create: the Fly app and its public IPs, adopted when they already exist.

Neither ``fly apps create`` nor ``fly ips allocate-*`` is idempotent (../shared/FLY.md). A second
``apps create`` fails with ``Error: Validation failed: Name has already been taken`` and exit 1
(the API's message, fly-go flaps/flaps_error.go:147 and flaps_error_test.go:28, printed by
flyctl internal/cli/cli.go:171 before ``return 1`` at :128), and every ``ips allocate-v6`` asks
the API for another address (fly-go resource_ip_addresses.go:59-94). Both happen whenever the
program runs with a state that does not know the app: after a lost state, or ``pulumi destroy``
(the app is retained) followed by ``pulumi up``.

So the ``app``, ``ips-v6`` and ``ips-v4`` steps run this module, which asks flyctl first:

- ``app``: ``flyctl apps list --json`` prints every app the token can see (all its orgs) as a
  JSON array of fly-go ``App`` objects with Go field names, ``Name`` and ``Organization.Slug``
  among them (internal/command/apps/list.go:62-69 via render.JSON, internal/render/render.go:16;
  fly-go types.go:241 and :374, no json tags). The app is adopted when it exists in the stack's
  org, refused when it exists in another org, created otherwise;
- ``ips-v6`` / ``ips-v4``: ``flyctl ips list --app APP --json`` prints a JSON array of fly-go
  ``IPAddress`` objects (``Type``, ``Address``...; internal/command/ips/list.go:46-70, fly-go
  types.go:484), the app's shared IPv4 appended with ``Type = "shared_v4"``
  (resource_ip_addresses.go:45-54). A public ``v6`` is adopted for ``ips-v6``; a ``shared_v4``
  or a dedicated ``v4`` for ``ips-v4``; otherwise the address is allocated.

Each run prints one line saying what it adopted or created (the step's log in ``pulumi up``).
Exit status: 0 done, 1 flyctl failed or the app belongs to another org, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Final, Literal

from infra.deploy.targets.fly import (
    apps_create_argv,
    apps_list_argv,
    ips_list_argv,
    ips_v4_shared_argv,
    ips_v6_argv,
)

__all__ = ["FlyctlFailedError", "IpKind", "ensure_app", "ensure_ip", "main"]

IpKind = Literal["v6", "shared-v4"]

_ADOPTED_TYPES: Final[dict[IpKind, tuple[str, ...]]] = {
    "v6": ("v6",),
    "shared-v4": ("shared_v4", "v4"),
}
"""``IPAddress.Type`` values that already give the app what a step would allocate
(internal/command/ips/render.go:27-33): a dedicated ``v4`` serves IPv4 as well as a shared one."""


class FlyctlFailedError(Exception):
    """flyctl exited non-zero, or printed what this module cannot read; the message says which."""


def _flyctl_json(argv: Sequence[str]) -> list[dict[str, object]]:
    """Run a ``--json`` listing and return its array of objects."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FlyctlFailedError(
            f"`{' '.join(argv[1:])}` exited with status {result.returncode}: "
            f"{result.stderr.strip()}"
        )
    try:
        listing = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise FlyctlFailedError(f"`{' '.join(argv[1:])}` printed no JSON: {exc}") from exc
    if listing is None:  # a nil Go slice
        return []
    if not isinstance(listing, list) or not all(isinstance(item, dict) for item in listing):
        raise FlyctlFailedError(f"`{' '.join(argv[1:])}` printed JSON that is not an array")
    return listing


def _run(argv: Sequence[str]) -> None:
    """Run a creating command, its output passed through."""
    status = subprocess.run(argv, check=False).returncode
    if status != 0:
        raise FlyctlFailedError(f"`{' '.join(argv[1:])}` exited with status {status}")


def _org_slug(app: dict[str, object]) -> str | None:
    org = app.get("Organization")
    if isinstance(org, dict):
        slug = org.get("Slug")
        return slug if isinstance(slug, str) else None
    return None


def ensure_app(flyctl: str, *, app: str, org: str) -> str:
    """Adopt the app if it exists in ``org``, else create it; return what was done, one line."""
    for listed in _flyctl_json(apps_list_argv(flyctl)):
        if listed.get("Name") != app:
            continue
        slug = _org_slug(listed)
        if slug != org:
            raise FlyctlFailedError(
                f"app {app} already exists in org {slug}, not in {org} "
                "(realtime-fly:org): move it with `fly apps move` or set the org it is in"
            )
        return f"app {app}: adopted, it already exists in org {org}"
    _run(apps_create_argv(flyctl, app=app, org=org))
    return f"app {app}: created in org {org}"


def ensure_ip(flyctl: str, *, app: str, kind: IpKind) -> str:
    """Adopt the app's public address of this kind if it has one, else allocate one."""
    wanted = _ADOPTED_TYPES[kind]
    for listed in _flyctl_json(ips_list_argv(flyctl, app=app)):
        if listed.get("Type") in wanted:
            return f"ips {app}: adopted {listed.get('Type')} {listed.get('Address')}"
    _run(ips_v6_argv(flyctl, app=app) if kind == "v6" else ips_v4_shared_argv(flyctl, app=app))
    return f"ips {app}: allocated {'v6' if kind == 'v6' else 'shared_v4'}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.targets.fly_ensure", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    app = sub.add_parser("app", help="adopt or create the app")
    app.add_argument("--flyctl", required=True)
    app.add_argument("--app", required=True)
    app.add_argument("--org", required=True)
    ip = sub.add_parser("ip", help="adopt or allocate a public address")
    ip.add_argument("--flyctl", required=True)
    ip.add_argument("--app", required=True)
    ip.add_argument("--kind", required=True, choices=list(_ADOPTED_TYPES))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; exit 0 done, 1 flyctl failed or the app is elsewhere, 2 usage."""
    args = _parser().parse_args(argv)
    try:
        if args.what == "app":
            done = ensure_app(args.flyctl, app=args.app, org=args.org)
        else:
            done = ensure_ip(args.flyctl, app=args.app, kind=args.kind)
    except FlyctlFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
