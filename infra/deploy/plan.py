"""A deploy target's plan: the ordered commands that make a stack real, as plain data.

Each deploy target (``infra.deploy.targets.fly``, ``infra.deploy.targets.local``) is a pure
function from the stack's settings to a list of :class:`Step`. The Pulumi component
(``infra.deploy.components``) is the only place that turns steps into
``pulumi_command.local.Command`` resources, so every target gets the same treatment of secrets,
logging, triggers and dependencies, and the plans themselves are unit tested without the
Pulumi engine.

No secret value ever enters a plan: a step names the secrets it needs (by their Fly secret /
environment variable name) and the component feeds them in through ``environment`` or ``stdin``
as Pulumi secrets.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Logging",
    "Plan",
    "PlanContext",
    "Step",
    "check_plan",
    "materialise_step",
    "shell_line",
    "text_digest",
    "tree_digest",
]

Logging = Literal["stdout_and_stderr", "stderr", "stdout", "none"]

# Files and folders that never belong to a shipped source tree (and must not change its digest).
IGNORED_NAMES = frozenset(
    {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".venv", ".DS_Store"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One command of a plan, the data behind one ``pulumi_command.local.Command``."""

    name: str
    """Resource name suffix, unique within the plan (``"deploy"``, ``"ips-v6"``)."""

    create: tuple[str, ...]
    """argv run on create, and on update when an input changes."""

    update: tuple[str, ...] | None = None
    """argv run when an input changes; ``None`` runs ``create`` again."""

    delete: tuple[str, ...] | None = None
    """argv run on destroy; ``None`` runs nothing (the real thing is left in place)."""

    depends_on: tuple[str, ...] = ()
    """Names of steps that must have succeeded first."""

    triggers: tuple[str, ...] = ()
    """Values (digests) whose change REPLACES the step: delete, then create again."""

    stdin: str | None = None
    """Non-secret text fed to the command (shown in ``pulumi preview --diff`` as a line diff)."""

    stdin_secrets: tuple[str, ...] = ()
    """Secret names rendered as ``NAME=VALUE`` lines on stdin (``fly secrets import``), each
    written so flyctl reads it back byte-identical (``infra.deploy.targets.fly_secrets``)."""

    environment: Mapping[str, str] = field(default_factory=dict)
    """Non-secret environment variables."""

    secret_environment: tuple[str, ...] = ()
    """Secret names passed as environment variables of the same name, as Pulumi secrets."""

    logging: Logging = "stdout_and_stderr"
    """What the engine logs of the command's output; ``"none"`` where output may hold secrets."""

    retain_on_delete: bool = False
    """Keep the real thing when the resource leaves the program (the Fly app itself)."""

    dir: str | None = None
    """Working directory, relative to the project root; ``None`` is the project root."""

    def create_line(self) -> str:
        """The shell line pulumi-command runs for ``create``."""
        return shell_line(self.create)

    def update_line(self) -> str | None:
        """The shell line pulumi-command runs for ``update``, if any."""
        return None if self.update is None else shell_line(self.update)

    def delete_line(self) -> str | None:
        """The shell line pulumi-command runs for ``delete``, if any."""
        return None if self.delete is None else shell_line(self.delete)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a deploy target does for one stack, and where the result answers."""

    steps: tuple[Step, ...]
    https_url: str
    wss_url: str

    def __post_init__(self) -> None:
        check_plan(self.steps)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanContext:
    """Where things are, as the commands see them (paths relative to the project root)."""

    python: str
    """Interpreter that runs this project's helper modules (``python -m infra.deploy.materialize``
    and the others)."""

    backend_dir: str
    """The shipped backend's source tree (``backend``)."""

    build_dir: str
    """This stack's build directory (``build/<stack>``)."""

    backend_digest: str
    """:func:`tree_digest` of the backend tree: a change redeploys."""


def materialise_step(context: PlanContext, fly_toml: str, *, ship_backend: bool) -> Step:
    """The step every target starts with: write the rendered fly.toml to the build directory.

    The TOML text is the step's stdin, so ``pulumi preview --diff`` shows the file's line diff.
    With ``ship_backend`` the backend tree is copied next to it as the deploy context.
    """
    argv = [context.python, "-m", "infra.deploy.materialize", "--out", context.build_dir]
    if ship_backend:
        argv += ["--ship", context.backend_dir]
    return Step(
        name="fly-toml",
        create=tuple(argv),
        stdin=fly_toml,
        triggers=(context.backend_digest,) if ship_backend else (),
    )


def shell_line(argv: Sequence[str]) -> str:
    """Quote an argv list into the single shell line pulumi-command expects."""
    return shlex.join(argv)


def check_plan(steps: Sequence[Step]) -> None:
    """Raise ``ValueError`` if step names repeat or a dependency names no earlier step."""
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise ValueError(f"plan step {step.name!r} appears twice")
        for dep in step.depends_on:
            if dep not in seen:
                raise ValueError(f"plan step {step.name!r} depends on unknown step {dep!r}")
        seen.add(step.name)


def text_digest(*parts: str) -> str:
    """A stable sha256 of some text, used as a trigger value."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _tree_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        for filename in sorted(filenames):
            if filename not in IGNORED_NAMES and not filename.endswith(".pyc"):
                yield Path(dirpath, filename)


def tree_digest(root: Path) -> str:
    """A stable sha256 over a source tree's relative paths and contents.

    Independent of where the tree lives and of file timestamps, so the same commit gives the same
    digest on a laptop and in CI, and a deploy is triggered by a real change only.
    """
    digest = hashlib.sha256()
    for path in _tree_files(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()
