"""The CLI: exit codes, messages, no tracebacks; a few runs as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli import main

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_subprocess_lint_seed_before() -> None:
    """`python -m infra lint` on the before config exits 1 and prints the PU02 error line."""
    result = _run("lint", "tests/infra/data/seed_before.toml")
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith(
        "tests/infra/data/seed_before.toml: error[ws-http-handler] services[0].ports[0].handlers: "
    )
    assert "[PU02]" in first
    assert first.endswith('(found ["tls", "http"])')


def test_subprocess_render_production_matches_golden() -> None:
    """`python -m infra render --stack production` prints the golden file and exits 0."""
    result = _run("render", "--stack", "production")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / "production.fly.toml").read_text(encoding="utf-8")


def test_subprocess_missing_file_exits_2_without_traceback() -> None:
    """A missing file exits 2 with one error line and no traceback."""
    result = _run("lint", "no/such/fly.toml")
    assert result.returncode == 2
    assert result.stderr == "error: cannot read no/such/fly.toml: No such file or directory\n"


def test_lint_after_ok_and_strict(capsys: pytest.CaptureFixture[str]) -> None:
    """The after config exits 0, and 1 with --strict (its ALPN warning)."""
    path = str(DATA / "seed_after.toml")
    assert main(["lint", path]) == 0
    out = capsys.readouterr().out
    assert "warning[ws-alpn-missing] services[0].ports[0].tls_options.alpn" in out
    assert out.splitlines()[-1].endswith("0 error(s), 2 warning(s)")
    assert main(["lint", "--strict", path]) == 1


def test_lint_clean_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rendered stack lints clean with --strict."""
    path = tmp_path / "fly.toml"
    shutil.copy(GOLDEN / "staging.fly.toml", path)
    assert main(["lint", "--strict", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: 0 error(s), 0 warning(s)\n"


def test_lint_toml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A TOML syntax error exits 2 naming fly.toml."""
    path = tmp_path / "fly.toml"
    path.write_text("app = \n", encoding="utf-8")
    assert main(["lint", str(path)]) == 2
    assert capsys.readouterr().err.startswith('error: fly.toml = "<toml>": invalid TOML')


def test_render_project_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--project-dir chooses where Pulumi.<stack>.yaml is read from."""
    (tmp_path / "Pulumi.qa.yaml").write_text(
        "config:\n  realtime-fly:target: local\n  realtime-fly:machines: 1\n", encoding="utf-8"
    )
    assert main(["render", "--stack", "qa", "--project-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Generated from Pulumi.qa.yaml")
    assert 'app = "realtime-qa"' in out


def test_render_invalid_stack_names_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid stack config exits 2 with the ConfigError naming realtime-fly:<key>."""
    (tmp_path / "Pulumi.bad.yaml").write_text(
        "config:\n  realtime-fly:target: local\n  realtime-fly:machines: 1\n"
        "  realtime-fly:websocket:\n    handlers: [tls, http]\n",
        encoding="utf-8",
    )
    assert main(["render", "--stack", "bad", "--project-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: realtime-fly:websocket.handlers = ["tls", "http"]: ')
    assert "Traceback" not in err


def test_render_missing_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stack without a file exits 2 naming the file."""
    assert main(["render", "--stack", "nope", "--project-dir", str(tmp_path)]) == 2
    assert "Pulumi.nope.yaml" in capsys.readouterr().err


def test_diff_staging_production(capsys: pytest.CaptureFixture[str]) -> None:
    """diff prints a unified diff of two stacks' rendered files (the backport view)."""
    assert main(["diff", "staging", "production", "--project-dir", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- staging/fly.toml\n+++ production/fly.toml\n")
    assert '-size = "shared-cpu-1x"\n-memory = "512mb"\n+size = "shared-cpu-2x"\n' in out
    assert "[[services]]" not in out  # the WebSocket service is the same in both


def test_diff_same_stack_is_empty(capsys: pytest.CaptureFixture[str]) -> None:
    """A stack compared with itself has an empty diff."""
    assert main(["diff", "production", "production", "--project-dir", str(REPO)]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("argv", [[], ["render"], ["lint"], ["frobnicate"]])
def test_bad_usage_exits_2(argv: list[str]) -> None:
    """Bad usage exits 2 (argparse's usage error)."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_fix_doc_shows_the_real_lint_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/WEBSOCKET_HANDSHAKE_FIX.md quotes exactly what lint prints on the before config."""
    monkeypatch.chdir(REPO)
    assert main(["lint", "tests/infra/data/seed_before.toml"]) == 1
    printed = capsys.readouterr().out.splitlines()
    doc = (REPO / "docs" / "WEBSOCKET_HANDSHAKE_FIX.md").read_text(encoding="utf-8")
    quoted = [
        line.strip()
        for line in doc.splitlines()
        if line.strip().startswith("tests/infra/data/seed_before.toml: ")
    ]
    assert quoted == printed
