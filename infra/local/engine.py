"""Run this project's Pulumi program through the real engine, hosted in-process.

    python -m infra.local.engine up|preview|destroy|outputs [--stack dev]

The Python language host plugin (``pulumi-language-python``) cannot be built from the module
proxy reachable here, so this runner uses the automation API's inline mode: the SDK serves the
language runtime itself (``pulumi up --client=...``) and runs ``__main__.py`` in this process.
Everything else is the ordinary engine: ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml`` from the
project root, a file state backend in ``.pulumi-state/`` and ``PULUMI_HOME`` in
``.pulumi-home/`` (both git-ignored), the engine binary from ``scripts/toolchain.sh ensure``.

``PULUMI_CONFIG_PASSPHRASE`` is taken from the environment; when unset, the ``dev`` stack (which
stores no secret: the local target generates its own) uses a fixed development passphrase, and
any other stack is refused. ``REALTIME_FLY_COMMAND`` is set to ``dynamic`` when no
``pulumi-resource-command`` plugin is on the engine's PATH (the case on this machine), telling
the component to create :class:`infra.local.command.LocalCommand` resources instead.
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pulumi import automation as auto

__all__ = [
    "COMMAND_IMPLEMENTATION_VARIABLE",
    "DEV_PASSPHRASE",
    "EngineError",
    "engine_environment",
    "main",
    "toolchain_bin",
]

ROOT = Path(__file__).resolve().parents[2]
COMMAND_IMPLEMENTATION_VARIABLE = "REALTIME_FLY_COMMAND"
"""``plugin`` (pulumi_command.local.Command) or ``dynamic`` (LocalCommand), set by this runner."""
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
    # Tells the component to use infra.local.command.LocalCommand: the plugin is not there.
    plugin = shutil.which("pulumi-resource-command", path=env["PATH"])
    env[COMMAND_IMPLEMENTATION_VARIABLE] = "plugin" if plugin else "dynamic"
    return env


def _program() -> None:
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.engine", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", choices=("up", "preview", "destroy", "outputs"))
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    try:
        bin_dir = toolchain_bin()
        env = engine_environment(args.stack, bin_dir, dict(os.environ))
    except EngineError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 1
    (ROOT / ".pulumi-state").mkdir(exist_ok=True)
    os.environ.update(env)  # the in-process program and the engine see the same variables
    workspace = auto.LocalWorkspace(
        work_dir=str(ROOT),
        program=_program,
        env_vars=env,
        pulumi_home=env["PULUMI_HOME"],
        # The toolchain's engine, or the user's own pulumi on PATH when the script deferred to it.
        pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent))
        if (bin_dir / "pulumi").exists()
        else auto.PulumiCommand(),
    )
    stack = auto.Stack.create_or_select(args.stack, workspace)
    try:
        if args.action == "up":
            stack.up(on_output=print)
        elif args.action == "preview":
            stack.preview(on_output=print, diff=True)
        elif args.action == "destroy":
            stack.destroy(on_output=print)
        for key, value in stack.outputs().items():
            if not value.secret and key != "fly_toml":
                print(f"{key}: {value.value}")
    except auto.errors.CommandError as exc:
        print(f"engine: pulumi {args.action} failed (output above): {str(exc)[-2000:]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
