"""``lint --fix``: safe fixes with tomlkit, comments kept, flyctl's reading of every value kept.

flyctl cannot be built here, so ``flyctl config validate --strict`` is not run: the fixed files
are judged by the linter (which agrees with flyctl v0.4.87 on the corpus, tests/infra/
test_corpus.py) and by parsing them back the way flyctl loads them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli import main
from infra.errors import ConfigError
from infra.flytoml.fix import fix_fly_toml
from infra.flytoml.lint import exit_status, lint_fly_toml
from infra.flytoml.model import Duration, FlyConfig, WebSocketService
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.toml_edit import go_duration

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
ADOPT = DATA / "adopt"
CORPUS = Path(os.environ.get("FLYTOML_CORPUS") or REPO.parent / "shared" / "flytoml-corpus")


def _flyctl_view(value: object) -> object:
    """A model as flyctl compares it: durations by length, not by spelling."""
    if isinstance(value, Duration):
        return round(value.seconds, 9)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            tuple(
                (f.name, _flyctl_view(getattr(value, f.name))) for f in dataclasses.fields(value)
            ),
        )
    if isinstance(value, tuple | list):
        return tuple(_flyctl_view(item) for item in value)
    if isinstance(value, dict):
        return tuple((key, _flyctl_view(item)) for key, item in value.items())
    return value


def _model(text: str) -> FlyConfig:
    return parse_fly_toml(text).config


def test_seed_before_is_fixed_to_a_clean_file_with_its_comments() -> None:
    """The incident's file: lint fails; after --fix it lints clean (--strict too), every
    comment line is still there, and the WebSocket service is the shape the model renders."""
    before = (DATA / "seed_before.toml").read_text(encoding="utf-8")
    assert exit_status(lint_fly_toml(before), strict=False) == 1
    result = fix_fly_toml(before)
    assert result.remaining == ()
    assert exit_status(lint_fly_toml(result.text), strict=True) == 0
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments
    assert all(line in result.text.splitlines() for line in comments)
    websocket = _model(result.text).websocket
    fixed_port = websocket.ports[0]
    shape = WebSocketService()
    assert websocket.protocol == "tcp"
    assert fixed_port.handlers == ("tls",)
    assert fixed_port.tls_options is not None
    assert fixed_port.tls_options.alpn == ("http/1.1",)
    assert websocket.concurrency == shape.concurrency
    assert websocket.tcp_checks == shape.tcp_checks
    # the rest of the file is untouched: same http_service, env, app
    assert _model(result.text).http_service == _model(before).http_service
    assert fix_fly_toml(result.text).changed is False


def test_seed_after_gets_the_alpn_pin_and_limits_only() -> None:
    """The "after" file (correct, ALPN missing) keeps its protocol and handlers."""
    after = (DATA / "seed_after.toml").read_text(encoding="utf-8")
    result = fix_fly_toml(after)
    keys = {change.key for change in result.changes}
    assert keys == {
        "services[0].ports[0].tls_options",
        "services[0].concurrency",
        "services[0].tcp_checks",
    }
    assert exit_status(lint_fly_toml(result.text), strict=True) == 0


def test_check_exits_1_then_fix_writes_then_check_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lint --check` changes nothing and exits 1; `--fix` writes and prints the diff;
    `--check` then exits 0."""
    path = tmp_path / "fly.toml"
    shutil.copy(DATA / "seed_before.toml", path)
    original = path.read_text(encoding="utf-8")
    assert main(["lint", "--check", str(path)]) == 1
    assert path.read_text(encoding="utf-8") == original
    out = capsys.readouterr().out
    assert '-    handlers = ["tls", "http"]' in out
    assert '+    handlers = ["tls"]' in out
    assert main(["lint", "--fix", str(path)]) == 0
    assert path.read_text(encoding="utf-8") != original
    assert f"{path}: fixed 5 key(s); 0 finding(s) without a safe fix" in capsys.readouterr().out
    assert main(["lint", "--fix", "--check", "--strict", str(path)]) == 0


def test_subprocess_lint_fix_check() -> None:
    """The real CLI process: `--check` on the seed's before file exits 1 and prints the diff."""
    result = subprocess.run(
        [sys.executable, "-m", "infra", "lint", "--check", "tests/infra/data/seed_before.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("--- tests/infra/data/seed_before.toml\n")


def test_legacy_forms_and_durations_keep_flyctls_reading() -> None:
    """A v1-era file: every legacy form gets its current spelling, every bare duration the
    string flyctl would have made of it; parsed back, nothing but the WebSocket service
    changed, and comments stay on their lines."""
    before = (ADOPT / "chat-v1.toml").read_text(encoding="utf-8")
    result = fix_fly_toml(before)
    text = result.text
    assert 'kill_timeout = "5s" # seconds, as flyctl reads it' in text
    assert 'WS_PORT = "8081"   # the WebSocket port, written as an integer' in text
    assert 'MAX_ROOMS = "500"' in text
    assert "internal_port = 8080" in text
    assert 'auto_stop_machines = "off"   # legacy boolean' in text
    assert 'interval = "15s" # milliseconds' in text
    assert 'timeout = "2s"' in text
    assert 'memory = "1024"' in text
    assert "port = 8081\n" in text
    assert "force_https = true\n    tls_options" not in text  # dropped with the http handler
    old, new = _model(before), _model(text)
    assert _flyctl_view(dataclasses.replace(old, services=())) == _flyctl_view(
        dataclasses.replace(new, services=())
    )
    # no legacy or bare-duration finding is left
    rules = {finding.rule for finding in result.remaining}
    assert not rules & {"duration-bare-integer", "auto-stop-machines", "ws-http-handler"}
    assert exit_status(list(result.remaining), strict=False) == 0


def test_a_15_nanosecond_interval_is_kept_and_flagged() -> None:
    """`interval = 15` in [[http_service.checks]] is 15ns to flyctl: written "15ns" (the fix
    does not change what the file means) and flagged as almost certainly a mistake."""
    result = fix_fly_toml((ADOPT / "chat-v1.toml").read_text(encoding="utf-8"))
    flagged = [change for change in result.changes if change.suspicious]
    assert [(change.key, change.after) for change in flagged] == [
        ("http_service.checks[0].interval", "15ns")
    ]
    assert "almost certainly a mistake" in flagged[0].reason
    assert [finding.rule for finding in result.remaining] == ["check-duration"]


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (15, "15ns"),
        (1_500, "1.5µs"),
        (2_000_000, "2ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (5_400_000_000_001, "1h30m0.000000001s"),
    ],
)
def test_go_duration_matches_go(nanoseconds: int, text: str) -> None:
    """Go's time.Duration.String(), which flyctl's _castDuration writes (patches.go:559)."""
    assert go_duration(nanoseconds) == text
    assert round(Duration(text).seconds * 1e9) == nanoseconds


def test_units_per_key() -> None:
    """The same bare 30 means 30s, 30ms or 30ns depending on the key (FLY.md)."""
    text = (
        'app = "a"\nkill_timeout = 30\n[deploy]\nwait_timeout = 30\n'
        '[[services]]\ninternal_port = 9000\nprotocol = "tcp"\n'
        "[[services.ports]]\nport = 9000\n[[services.tcp_checks]]\ninterval = 30000\n"
        '[checks.db]\ntype = "tcp"\nport = 9000\ninterval = 30000\n'
    )
    changes = {c.key: c.after for c in fix_fly_toml(text).changes}
    assert changes == {
        "kill_timeout": "30s",
        "deploy.wait_timeout": "30ns",
        "services[0].tcp_checks[0].interval": "30s",
        "checks.db.interval": "30s",
    }


def test_no_safe_fix_is_listed_untouched() -> None:
    """The incident's shape in a file that does not say which port carries WebSockets is
    only reported (it may be a plain HTTP service): the text is unchanged."""
    text = (
        'app = "proxy"\n[[services]]\ninternal_port = 8443\nprotocol = "tcp"\n'
        '[[services.ports]]\nport = 8443\nhandlers = ["tls", "http"]\n'
    )
    result = fix_fly_toml(text)
    assert not result.changed
    assert [finding.rule for finding in result.remaining] == ["pu02-prone"]


def test_not_toml_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        fix_fly_toml("app = \n")


def test_our_own_files_need_no_fix() -> None:
    """Every stack's rendered fly.toml is already in the fixed shape."""
    for golden in sorted((Path(__file__).parent / "golden").glob("*.fly.toml")):
        assert not fix_fly_toml(golden.read_text(encoding="utf-8")).changed, golden.name


def _corpus() -> list[Path]:
    if not (CORPUS / "INDEX.tsv").is_file():
        pytest.skip(f"the flyctl corpus is not at {CORPUS}")
    return sorted(path for path in CORPUS.glob("*/fly.toml"))


def test_corpus_fix_keeps_meaning_and_adds_no_finding() -> None:
    """On the 90 real files: every file TOML can read is fixed without a crash, idempotently,
    to a file flyctl reads the same way (compared as flyctl would: durations by length) with
    no finding the original did not have and no bare duration or legacy boolean left."""
    fixed = 0
    for path in _corpus():
        text = path.read_text(encoding="utf-8")
        try:
            result = fix_fly_toml(text)
        except ConfigError:
            continue  # not TOML: lint refuses it too
        fixed += result.changed
        assert not fix_fly_toml(result.text).changed, path
        assert _flyctl_view(_model(text)) == _flyctl_view(_model(result.text)), path
        before = {(f.rule, f.key) for f in lint_fly_toml(text)}
        after = {(f.rule, f.key) for f in result.remaining}
        assert after <= before, (path, after - before)
        assert not {rule for rule, _ in after} & {"duration-bare-integer", "auto-stop-machines"}
    assert fixed >= 40


def test_websocket_on_the_http_service_port_is_listed_not_moved() -> None:
    """WS_PORT naming [http_service]'s own port: moving the WebSocket off it would change the
    HTTP API, so nothing is rewritten and websocket-missing is listed."""
    text = (
        'app = "a"\n[env]\nWS_PORT = "8080"\n[http_service]\ninternal_port = 8080\n'
        "force_https = true\n"
    )
    result = fix_fly_toml(text)
    assert not result.changed
    assert [finding.rule for finding in result.remaining] == ["websocket-missing"]


def test_unknown_keys_and_sections_are_kept_as_written() -> None:
    """Keys the model does not know ([experimental], a typo) survive the rewrite unchanged."""
    text = (
        'app = "a"\nkill_timeout = 10\n\n[experimental]\n  auto_rollback = true  # keep\n'
        '\n[[services]]\n  internal_port = 9000\n  protocol = "tcp"\n  colour = "blue"\n'
        "\n  [[services.ports]]\n    port = 9000\n"
    )
    result = fix_fly_toml(text)
    assert result.text == text.replace("kill_timeout = 10", 'kill_timeout = "10s"')
