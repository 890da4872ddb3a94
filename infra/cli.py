"""``python -m infra``: render, diff and lint fly.toml files without the Pulumi engine.

``lint --fix PATH`` rewrites what has one safe fix (``infra.flytoml.fix``) and prints the diff;
``--check`` (alone or with ``--fix``) writes nothing and exits 1 when something would change.
``import PATH --stack NAME`` writes ``Pulumi.NAME.yaml`` from a fly.toml (``infra.stack.importing``)
and exits 1, writing nothing, when keys would be lost, unless ``--allow-loss``.

Exit codes: 0 ok, 1 violations found (lint), 2 bad usage or unreadable input (missing file,
TOML/YAML syntax error, invalid stack config: the message names the key). User errors print
one ``error: ...`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.errors import ConfigError, format_value
from infra.flytoml.fix import fix_fly_toml, unified_diff
from infra.flytoml.lint import exit_status, format_finding, lint_fly_toml
from infra.flytoml.render import render_fly_toml
from infra.stack.drift import DEFAULT_STACKS, parse_stack_list, report_drift
from infra.stack.importing import import_fly_toml
from infra.stack.settings import load_stack_file
from infra.stack.stackfile import existing_values, write_stack_file

__all__ = ["main"]

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra", description="render, compare and lint fly.toml files"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="print the fly.toml of a stack")
    render.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    diff = commands.add_parser("diff", help="unified diff of two stacks' fly.toml (backports)")
    diff.add_argument("stack_a")
    diff.add_argument("stack_b")
    drift = commands.add_parser("drift", help="shared settings that differ between stacks")
    drift.add_argument(
        "--stacks", type=parse_stack_list, default=DEFAULT_STACKS, help="a,b,...: stacks to compare"
    )
    for sub in (render, diff, drift):
        sub.add_argument(
            "--project-dir", type=Path, default=Path(), help="where Pulumi.<stack>.yaml live"
        )
    lint = commands.add_parser("lint", help="check a fly.toml against the rules")
    lint.add_argument("path", type=Path)
    lint.add_argument("--strict", action="store_true", help="warnings fail too")
    lint.add_argument(
        "--fix", action="store_true", help="rewrite what has one safe fix, print the diff"
    )
    lint.add_argument(
        "--check",
        action="store_true",
        help="with --fix: change nothing, exit 1 when something would change",
    )
    imp = commands.add_parser(
        "import", help="write Pulumi.<stack>.yaml from an existing fly.toml (docs/ADOPTING.md)"
    )
    imp.add_argument("path", type=Path, help="the fly.toml to import")
    imp.add_argument("--stack", required=True, help="stack name: writes Pulumi.<stack>.yaml")
    imp.add_argument("--project-dir", type=Path, default=Path(), help="where Pulumi.yaml lives")
    imp.add_argument("--org", help="realtime-fly:org (fly.toml has no key for it)")
    imp.add_argument("--machines", type=int, help="realtime-fly:machines")
    imp.add_argument("--broker", choices=("memory", "redis"), help="realtime-fly:broker")
    imp.add_argument(
        "--allow-loss", action="store_true", help="write the stack even if keys are lost"
    )
    return parser


def _import(args: argparse.Namespace) -> int:
    path: Path = args.path
    target = args.project_dir / f"Pulumi.{args.stack}.yaml"
    flags = {"org": args.org, "machines": args.machines, "broker": args.broker}
    given = existing_values(target)
    given.update({key: value for key, value in flags.items() if value is not None})
    try:
        result = import_fly_toml(path.read_text(encoding="utf-8"), stack=args.stack, given=given)
    except ConfigError as exc:
        raise ConfigError(
            key=exc.key,
            value=exc.value,
            reason=f"{exc.reason}; run `python -m infra lint --fix {path}` first",
        ) from None
    out = sys.stdout
    for difference in result.lost:
        if difference.reason:
            out.write(f"lost: {difference.reason}\n")
            continue
        found = "" if difference.value is None else f" = {format_value(difference.value)}"
        out.write(f"lost: {difference.path}{found} (no stack key carries it)\n")
    for difference in result.added:
        found = "" if difference.value is None else f" = {format_value(difference.value)}"
        out.write(f"added: {difference.path}{found} (the stack's app sets it)\n")
    lost = len(result.lost)
    if lost and not args.allow_loss:
        out.write(f"{path}: {lost} key(s) lost; nothing written (review, then --allow-loss)\n")
        return EXIT_VIOLATIONS
    write_stack_file(target, result.values)
    out.write(f"{path}: wrote {target} ({lost} key(s) lost, {len(result.added)} added)\n")
    for key in result.asked:
        out.write(
            f"set: {key} (fly.toml has no key for it): "
            f"`pulumi config set --stack {args.stack} {key} <value>`\n"
        )
    return EXIT_OK


def _render_stack(project_dir: Path, stack: str) -> str:
    settings = load_stack_file(project_dir / f"Pulumi.{stack}.yaml", require_secrets=False)
    return render_fly_toml(settings.fly, stack=stack)


def _fix(path: Path, *, check: bool, strict: bool) -> int:
    result = fix_fly_toml(path.read_text(encoding="utf-8"))
    sys.stdout.writelines(unified_diff(result, str(path)))
    for change in result.changes:
        if change.suspicious:
            sys.stdout.write(f"{path}: check[{change.key}]: {change.reason}\n")
    if not check and result.changed:
        path.write_text(result.text, encoding="utf-8")
    for finding in result.remaining:
        sys.stdout.write(format_finding(str(path), finding) + " [no safe fix]\n")
    verb = "would fix" if check else "fixed"
    sys.stdout.write(
        f"{path}: {verb} {len(result.changes)} key(s); {len(result.remaining)} finding(s) "
        "without a safe fix\n"
    )
    if check and result.changed:
        return EXIT_VIOLATIONS
    return exit_status(result.remaining, strict=strict)


def _run(args: argparse.Namespace) -> int:
    if args.command == "import":
        return _import(args)
    if args.command == "render":
        sys.stdout.write(_render_stack(args.project_dir, args.stack))
        return EXIT_OK
    if args.command == "drift":
        return report_drift(args.project_dir, args.stacks, sys.stdout)
    if args.command == "diff":
        before = _render_stack(args.project_dir, args.stack_a)
        after = _render_stack(args.project_dir, args.stack_b)
        sys.stdout.writelines(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"{args.stack_a}/fly.toml",
                tofile=f"{args.stack_b}/fly.toml",
            )
        )
        return EXIT_OK
    path: Path = args.path
    if args.fix or args.check:
        return _fix(path, check=args.check, strict=args.strict)
    findings = lint_fly_toml(path.read_text(encoding="utf-8"))
    for finding in findings:
        sys.stdout.write(format_finding(str(path), finding) + "\n")
    errors = sum(finding.severity == "error" for finding in findings)
    sys.stdout.write(f"{path}: {errors} error(s), {len(findings) - errors} warning(s)\n")
    return exit_status(findings, strict=args.strict)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
    except OSError as exc:
        sys.stderr.write(f"error: cannot read {exc.filename}: {exc.strerror}\n")
    except UnicodeDecodeError as exc:
        sys.stderr.write(f"error: not utf-8 text: {exc.reason}\n")
    return EXIT_USAGE
