"""Run this project's Pulumi program through the real engine: the ``pulumi`` CLI.

    python -m infra.engine up|preview|destroy|outputs [--stack dev]
    python -m infra.engine pulumi [--stack dev] -- ARGS...   (any pulumi command)

The engine, the Python language host and the dynamic-provider plugin come from
``scripts/toolchain.sh ensure`` (built from the Go module proxy and cached; a ``pulumi`` already
on PATH is used as is). This module only supplies the environment the CLI runs with:

- ``PULUMI_BACKEND_URL``: a file state backend in ``.pulumi-state/`` (git-ignored), unless set;
  ``PULUMI_HOME`` in ``.pulumi-home/``; no update check, no plugin downloads;
- ``PULUMI_PYTHON_CMD``: this interpreter (the project's ``.venv``), which the language host
  built here reads instead of the runtime's ``virtualenv`` option (see scripts/toolchain.sh);
- ``PULUMI_CONFIG_PASSPHRASE`` from the environment; when unset, the ``dev`` stack (whose
  secrets protect nothing but a local development deployment) uses a fixed development
  passphrase, documented as dev-only in the README, and any other stack is refused;
- ``REALTIME_FLY_COMMAND=dynamic`` when no ``pulumi-resource-command`` plugin is on the
  engine's PATH (the case on this machine: the module proxy refuses it), telling the component
  to create :class:`infra.deploy.local_command.LocalCommand` resources instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.deploy import COMMAND_IMPLEMENTATION_VARIABLE

__all__ = [
    "COMMAND_IMPLEMENTATION_VARIABLE",
    "DEV_PASSPHRASE",
    "EngineError",
    "engine_environment",
    "main",
    "toolchain_bin",
]

ROOT = Path(__file__).resolve().parents[2]
DEV_PASSPHRASE = "realtime-fly-local-dev-stack"  # noqa: S105  (protects no secret, see module doc)


class EngineError(Exception):
    """The engine cannot be run; the message says what to do."""


def toolchain_bin(*, build: bool = True) -> Path:
    """The toolchain's bin dir; ``build`` runs ``ensure`` (minutes the first time), otherwise
    ``status`` only names the directory, built or not."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "toolchain.sh"), "ensure" if build else "status"],
        stdout=subprocess.PIPE,
        stderr=None if build else subprocess.DEVNULL,
        text=True,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise EngineError("scripts/toolchain.sh ensure failed: see its output above")
    return Path(lines[-1])


def engine_environment(stack: str, bin_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """The variables the engine and its plugins run with."""
    passphrase = base.get("PULUMI_CONFIG_PASSPHRASE")
    if passphrase is None and base.get("PULUMI_CONFIG_PASSPHRASE_FILE") is None:
        if stack != "dev":
            raise EngineError(
                f"stack {stack!r}: set PULUMI_CONFIG_PASSPHRASE (only dev has a default)"
            )
        passphrase = DEV_PASSPHRASE
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}",
        "PULUMI_HOME": str(ROOT / ".pulumi-home"),
        "PULUMI_BACKEND_URL": base.get("PULUMI_BACKEND_URL", f"file://{ROOT / '.pulumi-state'}"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_PYTHON_CMD": sys.executable,
        "PYTHONPATH": str(ROOT),
    }
    if passphrase is not None:
        env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
    # Tells the component to use infra.deploy.local_command.LocalCommand: the plugin is not there.
    plugin = shutil.which("pulumi-resource-command", path=env["PATH"])
    env[COMMAND_IMPLEMENTATION_VARIABLE] = "plugin" if plugin else "dynamic"
    return env


def _pulumi(bin_dir: Path) -> str:
    own = bin_dir / "pulumi"
    return str(own) if own.exists() else "pulumi"


def pulumi_argv(action: str, stack: str) -> list[list[str]]:
    """The pulumi CLI invocations (without the binary) of one action on one stack."""
    select = ["stack", "select", "--create", stack, "--non-interactive"]
    common = ["--stack", stack, "--non-interactive"]
    if action == "up":
        return [select, ["up", "--yes", "--skip-preview", *common]]
    if action == "preview":
        return [select, ["preview", "--diff", *common]]
    if action == "destroy":
        return [["destroy", "--yes", "--skip-preview", *common]]
    if action == "outputs":
        return [["stack", "output", "--stack", stack]]
    raise ValueError(f"unknown action {action!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m infra.engine", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", choices=("up", "preview", "destroy", "outputs", "pulumi"))
    parser.add_argument("--stack", default="dev")
    parser.add_argument("args", nargs="*", help="with `pulumi`: the pulumi command line")
    args = parser.parse_args(argv)
    try:
        bin_dir = toolchain_bin()
        env = engine_environment(args.stack, bin_dir, dict(os.environ))
    except EngineError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 1
    (ROOT / ".pulumi-state").mkdir(exist_ok=True)
    runs = [list(args.args)] if args.action == "pulumi" else pulumi_argv(args.action, args.stack)
    if args.action == "up":
        runs.append(["stack", "output", "--stack", args.stack])
    for run in runs:
        environment = {**os.environ, **env}
        result = subprocess.run([_pulumi(bin_dir), *run], cwd=ROOT, env=environment, check=False)
        if result.returncode != 0:
            print(f"engine: pulumi {' '.join(run[:2])} failed (status {result.returncode})")
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
