"""Backport drift: shared settings compared across stacks; the ``drift`` CLI's exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.cli import main
from infra.stack.drift import Drift, find_drift, format_drift

REPO = Path(__file__).resolve().parents[2]


def _copy_stack(project: Path, stack: str, **overrides: object) -> None:
    """Copy the committed ``Pulumi.<stack>.yaml`` into ``project`` with ``realtime-fly:`` keys
    overridden (a deliberately diverged copy)."""
    document = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    for key, value in overrides.items():
        document["config"][f"realtime-fly:{key}"] = value
    (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))


def test_committed_fly_stacks_do_not_drift(capsys: pytest.CaptureFixture[str]) -> None:
    """staging and production, the default pair, agree on every shared setting."""
    assert main(["drift", "--project-dir", str(REPO)]) == 0
    assert capsys.readouterr().out == (
        "no drift: staging, production agree on every shared setting\n"
    )


def test_committed_dev_stack_does_not_drift(capsys: pytest.CaptureFixture[str]) -> None:
    """The local dev stack agrees with both Fly stacks on the settings it shares with them."""
    assert main(["drift", "--stacks", "dev,staging,production", "--project-dir", str(REPO)]) == 0
    assert capsys.readouterr().out.startswith("no drift: dev, staging, production")


def test_diverged_websocket_service_is_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A production copy with other handlers and limits exits 1 naming each key and both values."""
    _copy_stack(tmp_path, "staging")
    _copy_stack(
        tmp_path,
        "production",
        websocket={"handlers": ["tls", "proxy_proto"], "proxyProto": "v2", "softLimit": 900},
        killSignal="SIGINT",
    )
    assert main(["drift", "--project-dir", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        'kill_signal: staging = "SIGTERM", production = "SIGINT"',
        "services[0].concurrency.soft_limit: staging = 1000, production = 900",
        'services[0].ports[0].handlers: staging = ["tls"], production = ["tls", "proxy_proto"]',
        'services[0].ports[0].proxy_proto_options.version: staging = (unset), production = "v2"',
        "drift: 4 shared setting(s) differ between staging, production",
    ]


def test_per_environment_keys_are_not_drift(tmp_path: Path) -> None:
    """App name, org, region, machines, broker and VM differ freely between stacks."""
    _copy_stack(tmp_path, "staging")
    _copy_stack(
        tmp_path,
        "production",
        app="other-name",
        org="other-org",
        primaryRegion="ams",
        machines=3,
        vm={"size": "performance-2x", "memory": "4gb", "cpus": 2},
    )
    assert find_drift(tmp_path, ("staging", "production")) == []


def test_deploy_strategy_drifts_between_fly_stacks(tmp_path: Path) -> None:
    """Between two Fly stacks the deploy strategy is a shared setting."""
    _copy_stack(tmp_path, "staging")
    _copy_stack(tmp_path, "production", deploy={"strategy": "bluegreen"})
    assert find_drift(tmp_path, ("staging", "production")) == [
        Drift(
            key="deploy.strategy",
            stack_a="staging",
            value_a="rolling",
            stack_b="production",
            value_b="bluegreen",
        )
    ]


def test_local_stack_ignores_what_the_local_target_does_not_use(tmp_path: Path) -> None:
    """Against the local dev stack, deploy/build/auto-stop differences are skipped but the
    WebSocket service and the kill signal are still compared."""
    _copy_stack(
        tmp_path,
        "dev",
        deploy={"strategy": "immediate"},
        http={"autoStopMachines": "stop"},
        build={"dockerfile": "Dockerfile.dev"},
        websocket={"alpn": ["http/1.1"], "hardLimit": 2000},
    )
    _copy_stack(tmp_path, "staging")
    drifts = find_drift(tmp_path, ("dev", "staging"))
    assert [drift.key for drift in drifts] == ["services[0].concurrency.hard_limit"]


def test_every_stack_is_compared_with_the_first(tmp_path: Path) -> None:
    """With three stacks each later one is compared with the first and named in the report."""
    _copy_stack(tmp_path, "dev")
    _copy_stack(tmp_path, "staging")
    _copy_stack(tmp_path, "production", env={"LOG_LEVEL": "debug"})
    drifts = find_drift(tmp_path, ("dev", "staging", "production"))
    assert [format_drift(drift) for drift in drifts] == [
        'env.LOG_LEVEL: dev = (unset), production = "debug"'
    ]


@pytest.mark.parametrize("stacks", ["staging", "staging,", "staging,staging", ",production"])
def test_bad_stack_list_exits_2(stacks: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--stacks needs two or more distinct names; argparse exits 2 with the reason."""
    with pytest.raises(SystemExit) as caught:
        main(["drift", "--stacks", stacks, "--project-dir", str(REPO)])
    assert caught.value.code == 2
    assert "argument --stacks: " in capsys.readouterr().err


def test_missing_stack_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stack without a file exits 2 naming the file."""
    _copy_stack(tmp_path, "staging")
    assert main(["drift", "--project-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: cannot read " + str(tmp_path / "Pulumi.production.yaml") + ": No such file or "
        "directory\n"
    )


def test_invalid_stack_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stack the model refuses exits 2 naming the config key, not 1 (it is not drift)."""
    _copy_stack(tmp_path, "staging")
    _copy_stack(tmp_path, "production", websocket={"handlers": ["tls", "http"]})
    assert main(["drift", "--project-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith('error: realtime-fly:websocket.handlers = ["tls", ')


def test_subprocess_drift_exit_code(tmp_path: Path) -> None:
    """`python -m infra drift` run as a process exits 1 on drift and prints the key."""
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    _copy_stack(tmp_path, "production", killTimeout="45s")
    result = subprocess.run(
        [sys.executable, "-m", "infra", "drift", "--project-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[0] == ('kill_timeout: staging = "30s", production = "45s"')
