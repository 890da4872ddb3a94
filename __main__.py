"""Pulumi program: read the stack's config, deploy one FlyApp, export where it answers.

Everything else lives in ``infra/``: the typed fly.toml model, the deploy targets, the component.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pulumi

from infra.deploy.components import FlyApp, FlyAppArgs
from infra.deploy.config import read_stack
from infra.deploy.plan import PlanContext, tree_digest
from infra.deploy.targets import plan_for

ROOT = Path(__file__).resolve().parent


def _relative(path: Path) -> str:
    """A path relative to the project root when it is inside it, so state is portable."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


stack = read_stack()
context = PlanContext(
    python=_relative(Path(os.path.abspath(sys.executable))),
    backend_dir="backend",
    build_dir=f"build/{stack.settings.stack}",
    backend_digest=tree_digest(ROOT / "backend"),
)
app = FlyApp(
    stack.settings.fly.app,
    FlyAppArgs(
        settings=stack.settings, secrets=stack.secrets, context=context, plan_builder=plan_for
    ),
)

pulumi.export("app_name", app.app_name)
pulumi.export("https_url", app.https_url)
pulumi.export("wss_url", app.wss_url)
pulumi.export("fly_toml", app.fly_toml)
