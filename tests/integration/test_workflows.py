"""The GitHub Actions workflows: actionlint accepts them, and they keep the deploy contract.

actionlint is the real binary built by ``scripts/toolchain.sh`` (never built here: CI runs
``scripts/toolchain.sh ensure`` first). The contract tests read the YAML: previews of both Fly
stacks with one edited comment each, staging before production, production behind its
environment, deploys never overlapping, the policy pack everywhere, secrets only from GitHub.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
PULUMI_ACTION = re.compile(r"pulumi/actions@v\d+\.\d+\.\d+")
SECRET_ENV = re.compile(r"TOKEN|PASSPHRASE|SECRET|KEY")


def _actionlint() -> Path:
    """actionlint from the toolchain's bin dir; skip if the proxy refused it, fail if unbuilt."""
    status = subprocess.run(
        ["bash", str(REPO / "scripts" / "toolchain.sh"), "status"],
        capture_output=True,
        text=True,
        check=True,
    )
    bin_dir = Path(status.stdout.strip().splitlines()[-1])
    if (bin_dir / "actionlint").exists():
        return bin_dir / "actionlint"
    refusal = bin_dir.parent / "unavailable" / "actionlint"
    if refusal.exists():
        pytest.skip(f"actionlint could not be built here: {refusal.read_text().strip()[:300]}")
    pytest.fail(f"actionlint missing from {bin_dir}: run `scripts/toolchain.sh ensure`")


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_actionlint()), "-no-color", "-oneline"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _workflow(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the bare key `on` as true
    return document


def _steps(name: str) -> list[dict[str, Any]]:
    return [step for job in _workflow(name)["jobs"].values() for step in job.get("steps", [])]


def _pulumi_steps(name: str) -> list[dict[str, Any]]:
    return [step for step in _steps(name) if step.get("uses", "").startswith("pulumi/actions@")]


@pytest.mark.integration
def test_actionlint_accepts_the_workflows() -> None:
    """actionlint (with .github/actionlint.yaml) finds nothing in the committed workflows."""
    result = _lint(REPO)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


BREAKAGES = [
    pytest.param(
        "pull-request.yml",
        "    needs: test\n",
        "    needs: tests\n",
        'job "preview" needs job "tests" which does not exist',
        id="unknown-needed-job",
    ),
    pytest.param(
        "pull-request.yml",
        "stack-name: ${{ matrix.stack }}",
        "stack-name: ${{ matrix.stak }}",
        'property "stak" is not defined',
        id="undefined-matrix-key",
    ),
    pytest.param(
        "pulumi-up.yml",
        "vars.PULUMI_BACKEND_URL",
        "vars.PULUMI_BACKEND_ULR",
        'undefined configuration variable "pulumi_backend_ulr"',
        id="repository-variable-typo",
    ),
    pytest.param(
        "deploy.yml",
        "      stack: production\n",
        "      stak: production\n",
        'input "stak" is not defined in "./.github/workflows/pulumi-up.yml"',
        id="unknown-reusable-workflow-input",
    ),
]


@pytest.mark.integration
@pytest.mark.parametrize(("name", "old", "new", "message"), BREAKAGES)
def test_actionlint_rejects_a_broken_copy(
    tmp_path: Path, name: str, old: str, new: str, message: str
) -> None:
    """A copy of the workflows in a temporary git repository with one deliberate mistake makes
    actionlint exit 1 naming the file and the mistake."""
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)
    broken = tmp_path / ".github" / "workflows" / name
    text = broken.read_text()
    assert old in text
    broken.write_text(text.replace(old, new, 1))
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stderr
    assert f".github/workflows/{name}:" in result.stdout
    assert message in result.stdout


def test_previews_comment_once_per_fly_stack() -> None:
    """Pull requests preview staging and production with --diff, one edited comment per stack."""
    workflow = _workflow("pull-request.yml")
    assert workflow["on"]["pull_request"]["branches"] == ["main"]
    preview = workflow["jobs"]["preview"]
    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "production"]
    assert preview["permissions"]["pull-requests"] == "write"
    (step,) = _pulumi_steps("pull-request.yml")
    assert step["with"]["command"] == "preview"
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    assert (step["with"]["diff"], step["with"]["comment-on-pr"]) == (True, True)
    assert step["with"]["edit-pr-comment"] is True
    assert "FLY_API_TOKEN" not in step.get("env", {})  # previews run no command


def test_main_deploys_staging_then_production_behind_approval() -> None:
    """On main: make test, pulumi up staging, then production in the `production` environment."""
    workflow = _workflow("deploy.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/test.yml"
    assert (jobs["staging"]["needs"], jobs["production"]["needs"]) == ("test", "staging")
    for stack in ("staging", "production"):
        assert jobs[stack]["uses"] == "./.github/workflows/pulumi-up.yml"
        assert jobs[stack]["with"] == {"stack": stack}
    up = _workflow("pulumi-up.yml")["jobs"]["up"]
    assert up["environment"]["name"] == "${{ inputs.stack }}"
    assert up["concurrency"] == {
        "group": "pulumi-up-${{ inputs.stack }}",
        "cancel-in-progress": False,
    }
    (step,) = _pulumi_steps("pulumi-up.yml")
    assert step["with"]["command"] == "up"
    assert step["with"]["stack-name"] == "${{ inputs.stack }}"
    assert step["env"]["FLY_API_TOKEN"] == "${{ secrets.FLY_API_TOKEN }}"


def test_pull_requests_and_main_run_make_test() -> None:
    """Both pipelines call the same test workflow, whose job runs the CI entry point."""
    for name in ("pull-request.yml", "deploy.yml"):
        assert _workflow(name)["jobs"]["test"]["uses"] == "./.github/workflows/test.yml"
    runs = [step.get("run", "") for step in _steps("test.yml")]
    assert "scripts/toolchain.sh ensure" in runs
    assert runs[-1] == ".ci/run"  # installs the Debian packages, then `make test`


@pytest.mark.parametrize("name", ["pull-request.yml", "pulumi-up.yml"])
def test_pulumi_steps_are_pinned_and_run_the_policy_pack(name: str) -> None:
    """Every pulumi/actions step names an exact version, the engine version and the policy pack."""
    steps = _pulumi_steps(name)
    assert steps
    for step in steps:
        assert PULUMI_ACTION.fullmatch(step["uses"]), step["uses"]
        assert step["with"]["policyPacks"] == "policy"
        assert step["with"]["pulumi-version"] == "3.274.1"


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_credentials_come_only_from_github_secrets(name: str) -> None:
    """Every token, passphrase or key a workflow hands to a step is a `secrets.` reference."""
    for step in _steps(name):
        for key, value in step.get("env", {}).items():
            if SECRET_ENV.search(key):
                assert value == f"${{{{ secrets.{key} }}}}", (name, key)
        for key, value in step.get("with", {}).items():
            if "token" in key:
                assert str(value).startswith("${{ secrets."), (name, key)
