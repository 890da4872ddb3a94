"""A recording fake ``flyctl`` that answers like flyctl v0.4.87 for the commands the plan runs.

Put on PATH as ``flyctl`` by :func:`install` (a two-line shell wrapper). Its Fly "platform" is a
JSON file (``FAKE_FLYCTL_STATE``); every invocation is appended to ``FAKE_FLYCTL_LOG`` (argv, and
whether stdin was given: never the secret values themselves).

Behaviour taken from flyctl's and fly-go's source (the report lists it):

- errors print ``Error: <message>`` on stderr and exit 1 (internal/cli/cli.go:171, :128);
- without ``FLY_API_TOKEN``/``FLY_ACCESS_TOKEN`` every command fails with fly-go's
  ``ErrNoAuthToken`` (api.go:11; internal/command/command.go:573-574, 679 when not interactive);
- ``apps list --json``: a JSON array of fly-go ``App`` objects with Go field names, indented by
  4 spaces (internal/command/apps/list.go:68-69, internal/render/render.go:16-21, fly-go
  types.go:241), every app the token sees in all its orgs (``--org`` narrows it);
- ``apps create NAME --org ORG``: ``New app created: NAME`` (create.go:138); when the name exists
  ``Error: Validation failed: Name has already been taken`` (fly-go flaps_error_test.go:28);
- ``ips list --app A --json``: a JSON array of fly-go ``IPAddress`` (types.go:484), the shared
  IPv4 appended with ``ID = ""``, ``Type = "shared_v4"`` and a zero time
  (resource_ip_addresses.go:45-54);
- ``ips allocate-v6``: a NEW address on every call (the API allocates, it does not look);
  ``ips allocate-v4 --shared``: recorded on every call (what a second call does on Fly is not
  known, so the fake counts it as a second allocation: the tests must see none);
- ``secrets import``: parses stdin with :func:`flyctl_parse` (a reading of
  internal/command/secrets/parser.go), refuses an empty set ("requires at least one
  SECRET=VALUE pair", import.go:48-50);
- ``deploy`` and ``scale count`` are recorded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FlyctlParseError", "flyctl_parse", "install", "main"]

STATE_VARIABLE = "FAKE_FLYCTL_STATE"
LOG_VARIABLE = "FAKE_FLYCTL_LOG"
_GO_TOKEN_LIMIT = 64 * 1024  # bufio.MaxScanTokenSize: the scanner's whole buffer, newline included
_ZERO_TIME = "0001-01-01T00:00:00Z"


class FlyctlParseError(Exception):
    """flyctl would refuse the whole stdin (a line without ``=``), or panic (a lone ``"``)."""


def _scan_lines(data: bytes) -> Iterator[bytes]:
    """Go's bufio.Scanner with ScanLines: split at \\n, drop one \\r before it, and stop SILENTLY
    at a line that does not fit the 64 KiB buffer with its newline (parser.go ignores Err())."""
    start = 0
    while start < len(data):
        newline = data.find(b"\n", start)
        end = len(data) if newline < 0 else newline
        if end - start >= _GO_TOKEN_LIMIT:
            return
        yield data[start:end].removesuffix(b"\r")
        if newline < 0:
            return
        start = newline + 1


def flyctl_parse(stdin: bytes) -> dict[bytes, bytes]:
    """What `fly secrets import` stores for ``stdin`` (parser.go:15-78), on bytes like Go.

    Written for the tests from ../shared/FLY.md and parser.go; it shares no code with
    ``infra.deploy.targets.fly_secrets``.
    """
    secrets: dict[bytes, bytes] = {}
    open_key: bytes | None = None
    collected = b""
    for line in _scan_lines(stdin):
        if open_key is not None:  # inside a """ block: lines are taken as they are
            if line.endswith(b'"""'):
                secrets[open_key] = collected + line[:-3]
                open_key, collected = None, b""
            else:
                collected += line + b"\n"
            continue
        if line.startswith(b"#") or not line.strip():
            continue
        if b"=" not in line:
            raise FlyctlParseError("Secrets must be provided as NAME=VALUE pairs")
        key, _, value = line.partition(b"=")
        key = key.strip()
        value = value.lstrip(b" ")
        before_hash, hash_found, _ = value.partition(b"#")
        if hash_found and before_hash.count(b'"') % 2 == 0:
            value = before_hash.rstrip(b" ")
        if value.startswith(b'"""') and value.endswith(b'"""') and len(value) >= 6:
            secrets[key] = value[3:-3]
        elif value.startswith(b'"""'):
            open_key, collected = key, value[3:] + b"\n"
        else:
            for quote in (b'"', b"'"):
                if value.startswith(quote) and value.endswith(quote):
                    if len(value) == 1:
                        raise FlyctlParseError("slice bounds out of range (Go panics)")
                    value = value[1:-1]
                    break
            secrets[key] = value
    return secrets


def install(bin_dir: Path, *, state: Path, log: Path) -> dict[str, str]:
    """Write ``bin_dir/flyctl`` and return the environment that puts it first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "flyctl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    wrapper.chmod(0o755)
    if not state.exists():
        state.write_text(json.dumps({"apps": {}, "ips": {}, "shared_v4": {}, "secrets": {}}))
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        STATE_VARIABLE: str(state),
        LOG_VARIABLE: str(log),
        "FLY_API_TOKEN": "fake-token",
    }


def _flag(argv: Sequence[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _fail(message: str) -> int:
    sys.stderr.write(f"Error: {message}\n")
    return 1


def _json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=4, ensure_ascii=False) + "\n")


def _app_object(name: str, org: str, number: int) -> dict[str, Any]:
    """A fly-go ``App`` as encoding/json writes it: Go field names, zero values included."""
    return {
        "ID": name,
        "InternalNumericID": number,
        "Name": name,
        "State": "",
        "Status": "pending",
        "Deployed": False,
        "Hostname": f"{name}.fly.dev",
        "AppURL": "",
        "Version": 0,
        "NetworkID": 0,
        "Network": "",
        "Release": None,
        "Organization": {
            "ID": f"org-{org}",
            "InternalNumericID": "",
            "Name": org,
            "RemoteBuilderImage": "",
            "RemoteBuilderApp": None,
            "Slug": org,
            "RawSlug": org,
            "Type": "SHARED",
            "PaidPlan": False,
            "Billable": False,
            "Settings": None,
        },
        "Secrets": None,
        "CurrentRelease": None,
        "PlatformVersion": "machines",
    }


def _ip_object(ip_id: str, address: str, ip_type: str) -> dict[str, Any]:
    """A fly-go ``IPAddress`` as encoding/json writes it."""
    return {
        "ID": ip_id,
        "Address": address,
        "Type": ip_type,
        "Region": "global" if ip_id else "",
        "CreatedAt": "2026-12-06T05:00:00Z" if ip_id else _ZERO_TIME,
        "ServiceName": "",
        "Network": None,
    }


def _run(argv: list[str], state: dict[str, Any], stdin: bytes) -> int:
    if not (os.environ.get("FLY_API_TOKEN") or os.environ.get("FLY_ACCESS_TOKEN")):
        return _fail("no access token available. Please login with 'flyctl auth login'")
    words = [arg for arg in argv if not arg.startswith("-")]
    app = _flag(argv, "--app", "-a")
    if words[:2] == ["apps", "list"]:
        org = _flag(argv, "--org", "-o")
        apps = [
            a for a in state["apps"].values() if org is None or a["Organization"]["Slug"] == org
        ]
        if "--json" in argv:
            _json(apps)
        else:
            sys.stdout.write("".join(f"{a['Name']}\n" for a in apps) or "No apps found\n")
        return 0
    if words[:2] == ["apps", "create"]:
        name, org = words[2], _flag(argv, "--org", "-o")
        if org is None:
            return _fail("prompt: non interactive")
        if name in state["apps"]:
            return _fail("Validation failed: Name has already been taken")
        state["apps"][name] = _app_object(name, org, len(state["apps"]) + 1)
        sys.stdout.write(f"New app created: {name}\n")
        return 0
    if app is None:
        return _fail("the config for your app is missing an app name")
    if app not in state["apps"]:
        return _fail(f'Could not find App "{app}"')  # a GraphQL "not found" on the app
    if words[:2] == ["ips", "list"]:
        listed = list(state["ips"].get(app, []))
        for address in state["shared_v4"].get(app, [])[-1:]:
            listed.append(_ip_object("", address, "shared_v4"))
        if "--json" in argv:
            _json(listed)
        else:
            sys.stdout.write("".join(f"{ip['Type']} {ip['Address']}\n" for ip in listed))
        return 0
    if words[:2] == ["ips", "allocate-v6"]:
        ips = state["ips"].setdefault(app, [])
        address = f"2a09:8280:1::{len(ips) + 1:x}"
        ips.append(_ip_object(f"ip_{len(ips) + 1}", address, "v6"))
        sys.stdout.write(f"VERSION\tIP\tTYPE\nv6\t{address}\tpublic ingress (dedicated)\n")
        return 0
    if words[:2] == ["ips", "allocate-v4"]:
        if "--shared" not in argv:
            return _fail("yes flag must be specified when not running interactively")
        shared = state["shared_v4"].setdefault(app, [])
        address = f"66.241.124.{len(shared) + 1}"
        shared.append(address)
        sys.stdout.write(f"VERSION\tIP\tTYPE\tREGION\nv4\t{address}\tshared\tglobal\n")
        return 0
    if words[:2] == ["secrets", "import"]:
        try:
            parsed = flyctl_parse(stdin)
        except FlyctlParseError as exc:
            return _fail(f"Failed to parse secrets from stdin: {exc}")
        if not parsed:
            return _fail("requires at least one SECRET=VALUE pair")
        stored = state["secrets"].setdefault(app, {})
        stored.update({k.decode(): v.decode() for k, v in parsed.items()})
        return 0
    if words[:1] == ["deploy"] or words[:2] == ["scale", "count"]:
        state["apps"][app]["Status"] = "deployed"
        return 0
    return _fail(f"unknown command {' '.join(words)!r} for the fake flyctl")


def main(argv: list[str]) -> int:
    """Run one fake flyctl command against the state file, recording it."""
    state_path = Path(os.environ[STATE_VARIABLE])
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    with Path(os.environ[LOG_VARIABLE]).open("a") as log:
        log.write(json.dumps({"argv": argv, "stdin_bytes": len(stdin)}) + "\n")
    state = json.loads(state_path.read_text())
    status = _run(argv, state, stdin)
    state_path.write_text(json.dumps(state, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
