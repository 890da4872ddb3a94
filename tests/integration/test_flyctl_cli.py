"""Every flyctl command line the fly target builds is accepted by the real flyctl's own parser

flyctl v0.4.87 is built by scripts/toolchain.sh (or taken from PATH). No network is needed:

- with ``--help`` appended, cobra parses every flag and stops before running the command, so an
  unknown or misspelt flag fails with "unknown flag" and exit status 1;
- without ``--help`` (a dummy FLY_API_TOKEN, no reachable API, a short timeout) the argument
  count is checked too: the command may fail, but never with cobra's usage errors.

Where the module proxy refused flyctl (recorded under the toolchain's ``unavailable/``), the
tests are skipped with that recorded error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.deploy.targets.fly import (
    apps_create_argv,
    apps_list_argv,
    deploy_argv,
    ips_list_argv,
    ips_v4_shared_argv,
    ips_v6_argv,
    scale_count_argv,
    secrets_import_argv,
)
from infra.engine.runner import toolchain_bin
from infra.flytoml.lint import exit_status, lint_fly_toml

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
USAGE_ERRORS = (
    "unknown flag",
    "unknown shorthand flag",
    "unknown command",
    "accepts ",
    "requires at least",
    "requires at most",
    "invalid argument",
    "flag needs an argument",
)


@pytest.fixture(scope="module")
def flyctl() -> str:
    """The flyctl binary: the toolchain's, else one on PATH; skip when the proxy refused it."""
    bin_dir = toolchain_bin(build=False)
    if (bin_dir / "flyctl").exists():
        return str(bin_dir / "flyctl")
    found = shutil.which("flyctl")
    if found:
        return found
    refusal = bin_dir.parent / "unavailable" / "flyctl"
    if refusal.exists():
        pytest.skip(f"flyctl could not be built here: {refusal.read_text().strip()[:300]}")
    pytest.fail(f"flyctl missing from {bin_dir}: run `scripts/toolchain.sh ensure`")


def _argvs(flyctl: str) -> dict[str, list[str]]:
    app = "realtime-cli-check"
    return {
        "apps create": apps_create_argv(flyctl, app=app, org="personal"),
        "ips allocate-v6": ips_v6_argv(flyctl, app=app),
        "ips allocate-v4": ips_v4_shared_argv(flyctl, app=app),
        "secrets import --stage": secrets_import_argv(flyctl, app=app, stage=True),
        "secrets import": secrets_import_argv(flyctl, app=app, stage=False),
        "deploy": deploy_argv(
            flyctl,
            app=app,
            config="fly.toml",
            strategy="rolling",
            wait_timeout="10m0s",
            high_availability=True,
        ),
        "scale count": scale_count_argv(flyctl, app=app, count=2),
        "scale count --region": scale_count_argv(flyctl, app=app, count=1, region="ams"),
        "apps list --json": apps_list_argv(flyctl),
        "ips list --json": ips_list_argv(flyctl, app=app),
    }


def _offline_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "FLY_API_TOKEN": "dummy-token-for-flag-parsing",
        "FLY_NO_UPDATE_CHECK": "1",
        "FLY_NO_METRICS": "1",
    }


def _run(argv: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            env=_offline_env(home),
            cwd=cwd,
            input="",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        # Still waiting on the API after parsing: the command line itself was accepted.
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return subprocess.CompletedProcess(argv, -1, out, err)


@pytest.mark.parametrize("name", list(_argvs("flyctl")))
def test_flags_are_known_to_flyctl(flyctl: str, name: str, tmp_path: Path) -> None:
    """With --help appended, flyctl parses the line's flags without error."""
    argv = _argvs(flyctl)[name]
    result = _run([*argv, "--help"], tmp_path, tmp_path)
    assert result.returncode == 0, f"{name}: {result.stderr.strip()}"
    assert not any(error in result.stderr for error in USAGE_ERRORS), result.stderr


@pytest.mark.parametrize("name", list(_argvs("flyctl")))
def test_arguments_pass_cobra_validation(flyctl: str, name: str, tmp_path: Path) -> None:
    """Run for real against no reachable API: any failure is not a usage error."""
    (tmp_path / "fly.toml").write_text('app = "realtime-cli-check"\n')
    result = _run(_argvs(flyctl)[name], tmp_path, tmp_path)
    assert not any(error in result.stderr for error in USAGE_ERRORS), result.stderr


def _validate(flyctl: str, text: str, tmp_path: Path) -> tuple[int, str]:
    """`fly config validate --strict` on ``text``: exit status and output. With a dummy token
    it runs offline (about 0.1 s, ../shared/FLY.md)."""
    path = tmp_path / "fly.toml"
    path.write_text(text, encoding="utf-8")
    argv = [flyctl, "config", "validate", "--strict", "-c", str(path), "-a", "realtime-cli-check"]
    result = _run(argv, tmp_path, tmp_path)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_config_validate_on_rendered_files(flyctl: str, stack: str, tmp_path: Path) -> None:
    """`fly config validate --strict` accepts a rendered stack: exit 0, "Configuration is
    valid", and no unrecognised key (flyctl spells it the British way)."""
    rendered = subprocess.run(
        [sys.executable, "-m", "infra", "render", "--stack", stack],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    returncode, output = _validate(flyctl, rendered.stdout, tmp_path)
    assert not any(error in output for error in USAGE_ERRORS), output
    assert "unrecognised" not in output, output
    assert "Configuration is valid" in output, output
    assert returncode == 0, output


def test_config_validate_refuses_an_unknown_key(flyctl: str, tmp_path: Path) -> None:
    """The check above can fail: flyctl --strict names an unknown key "unrecognised" and exits
    1, and lint --strict reports the same key."""
    text = 'app = "realtime-cli-check"\n[experimental]\nprivate_network = true\n'
    returncode, output = _validate(flyctl, text, tmp_path)
    assert returncode == 1, output
    assert "unrecognised" in output
    assert "experimental.private_network" in output
    findings = lint_fly_toml(text)
    assert [f.key for f in findings if f.rule == "unknown-key"] == ["experimental.private_network"]
    assert exit_status(findings, strict=True) == 1
