"""``python -m infra import``: fly.toml -> Pulumi.<stack>.yaml, and back with ``render``.

The round trip render -> import -> render is the identity for every stack of the project and for
hypothesis-generated stacks; hand-written files import to an equivalent render or a report that
names every lost path; secrets never leave [env] for the stack file, and the target settings
fly.toml cannot carry are asked for by name.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.cli import main
from infra.deploy.plan import PlanContext
from infra.deploy.targets.fly import fly_plan
from infra.errors import ConfigError
from infra.flytoml.fix import fix_fly_toml
from infra.flytoml.model import KILL_SIGNALS, FlyConfig
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.render import render_fly_toml
from infra.stack.importing import flyctl_view, import_fly_toml
from infra.stack.settings import load_stack_file, settings_from_config
from infra.stack.stackfile import write_stack_file
from tests.infra.fake_flyctl import install
from tests.infra.test_fly_ensure import FakeFly, _up
from tests.infra.test_parse import _configs

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
ADOPT = DATA / "adopt"
STACKS = ("dev", "staging", "production")


def _render(project: Path, stack: str) -> str:
    return render_fly_toml(
        load_stack_file(project / f"Pulumi.{stack}.yaml", require_secrets=False).fly, stack=stack
    )


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_round_trips_through_a_fresh_stack_file(
    stack: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """render -> import (into an empty project, org given) -> render gives the same text."""
    rendered = _render(REPO, stack)
    source = tmp_path / "fly.toml"
    source.write_text(rendered, encoding="utf-8")
    project = tmp_path / "project"
    project.mkdir()
    argv = ["import", str(source), "--stack", stack, "--project-dir", str(project)]
    assert main([*argv, "--org", "acme"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "lost:" not in out
    assert "added:" not in out
    assert _render(project, stack) == rendered


@pytest.mark.parametrize("stack", STACKS)
def test_importing_a_stack_into_its_own_file_keeps_comments_and_values(
    stack: str, tmp_path: Path
) -> None:
    """Importing a stack's own render into a copy of its file keeps every comment and every
    key (secrets, target, org...) and renders the same fly.toml."""
    original = (REPO / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")
    shutil.copy(REPO / f"Pulumi.{stack}.yaml", tmp_path)
    source = tmp_path / "fly.toml"
    rendered = _render(REPO, stack)
    source.write_text(rendered, encoding="utf-8")
    assert main(["import", str(source), "--stack", stack, "--project-dir", str(tmp_path)]) == 0
    text = (tmp_path / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")
    comments = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert all(line in text.splitlines() for line in comments)
    assert yaml.safe_load(text) == yaml.safe_load(original)
    assert _render(tmp_path, stack) == rendered


_SIZES = (("shared-cpu-1x", "512mb"), ("shared-cpu-2x", "1gb"), ("performance-1x", "2048mb"))
_ENV_NAMES = st.from_regex(r"APP_[A-Z]{1,6}", fullmatch=True)
_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/ .", min_size=1, max_size=12)


@st.composite
def _stack_values(draw: st.DrawFn) -> dict[str, object]:
    values: dict[str, object] = {"org": "acme"}
    machines = draw(st.integers(1, 4))
    values["machines"] = machines
    values["broker"] = "redis" if machines > 1 else draw(st.sampled_from(["memory", "redis"]))
    optional: dict[str, st.SearchStrategy[object]] = {
        "app": st.from_regex(r"[a-z][a-z0-9-]{2,20}", fullmatch=True),
        "primaryRegion": st.sampled_from(["iad", "ams", "fra", "syd"]),
        "killSignal": st.sampled_from(KILL_SIGNALS),
        "killTimeout": st.integers(1, 300).map(lambda n: f"{n}s"),
        "swapSizeMb": st.integers(0, 1024),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            values[name] = draw(strategy)
    if draw(st.booleans()):
        size, memory = draw(st.sampled_from(_SIZES))
        values["vm"] = {"size": size, "memory": memory}
    if draw(st.booleans()):
        values["deploy"] = {
            "strategy": draw(st.sampled_from(["rolling", "immediate", "canary", "bluegreen"])),
            "waitTimeout": draw(st.sampled_from(["5m0s", "90s", "15m0s"])),
            "releaseCommand": draw(st.sampled_from(["bin/migrate", "python -m app.migrate"])),
            "maxUnavailable": draw(st.sampled_from([0.25, 0.5, 1.0, 2.0])),
        }
    if draw(st.booleans()):
        values["build"] = draw(
            st.sampled_from(
                [
                    {"dockerfile": "backend/Dockerfile", "buildTarget": "runtime"},
                    {"dockerfile": "Dockerfile.prod", "ignorefile": ".dockerignore"},
                ]
            )
        )
    values["env"] = draw(st.dictionaries(_ENV_NAMES, _TEXT, max_size=4))
    values["http"] = {
        "internalPort": draw(st.sampled_from([8080, 3000, 4000])),
        "forceHttps": draw(st.booleans()),
        "autoStopMachines": draw(st.sampled_from(["off", "stop", "suspend"])),
        "minMachinesRunning": draw(st.integers(0, 3)),
        "softLimit": draw(st.integers(10, 100)),
        "hardLimit": draw(st.integers(100, 500)),
        "checkPath": draw(st.sampled_from(["/healthz", "/up", "/status"])),
    }
    websocket: dict[str, object] = {
        "port": draw(st.sampled_from([8081, 8443, 9000])),
        "internalPort": draw(st.sampled_from([8081, 5001])),
        "softLimit": draw(st.integers(100, 1000)),
        "hardLimit": draw(st.integers(1000, 2000)),
    }
    if draw(st.booleans()):
        websocket["proxyProto"] = draw(st.sampled_from(["v1", "v2"]))
    values["websocket"] = websocket
    values["metrics"] = {"port": draw(st.sampled_from([9091, 9100])), "path": "/metrics"}
    return values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=_stack_values())
def test_generated_stacks_round_trip(values: dict[str, object]) -> None:
    """For generated stacks: render -> import -> render is the same text, nothing lost or added,
    and the imported values give the same settings."""
    first = settings_from_config(values, stack="gen", require_secrets=False)
    rendered = render_fly_toml(first.fly, stack="gen")
    result = import_fly_toml(rendered, stack="gen", given={"org": "acme"})
    assert result.differences == ()
    assert result.rendered == rendered
    second = settings_from_config(result.values, stack="gen", require_secrets=False)
    assert second.fly == first.fly
    assert (second.machines, second.fly.broker) == (first.machines, first.fly.broker)


def test_seed_before_is_refused_until_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The incident's file fails the model's rules: import names the key and says to run
    lint --fix; after the fix it imports and renders with nothing lost."""
    source = tmp_path / "fly.toml"
    shutil.copy(DATA / "seed_before.toml", source)
    argv = ["import", str(source), "--stack", "chat", "--project-dir", str(tmp_path)]
    assert main([*argv, "--org", "acme", "--machines", "1", "--broker", "memory"]) == 2
    err = capsys.readouterr().err
    assert "realtime-fly:websocket.handlers" in err
    assert f"run `python -m infra lint --fix {source}` first" in err
    assert not (tmp_path / "Pulumi.chat.yaml").exists()
    assert main(["lint", "--fix", str(source)]) == 0
    assert main([*argv, "--org", "acme", "--machines", "1", "--broker", "memory"]) == 0
    out = capsys.readouterr().out
    assert "lost:" not in out
    before = flyctl_view(parse_fly_toml(source.read_text(encoding="utf-8")).config)
    after = flyctl_view(parse_fly_toml(_render(tmp_path, "chat")).config)
    assert {path: after.get(path) for path in before} == before


def test_v1_chat_after_fix_reports_exactly_what_it_loses() -> None:
    """A v1-era file, fixed: the report names each lost path, and every other key of the
    file renders back with flyctl's reading."""
    fixed = fix_fly_toml((ADOPT / "chat-v1.toml").read_text(encoding="utf-8")).text
    result = import_fly_toml(fixed, stack="chat", given={"org": "acme", "machines": 1})
    lost = {d.path for d in result.lost}
    # HTTP_PORT is set from http.internalPort; the check's interval is the stack's 15s; the
    # WebSocket port's concurrency keeps its limits; the second check time is the default
    assert lost == {"http_service.checks[0].interval"}
    before = flyctl_view(parse_fly_toml(fixed).config)
    after = flyctl_view(parse_fly_toml(result.rendered).config)
    for path, value in before.items():
        if path not in lost:
            assert after.get(path) == value, path
    assert {d.path for d in result.added} >= {"env.LOG_FORMAT", "metrics[0].port"}


def test_docs_site_loss_report_names_paths_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Statics and a top-level check have no stack key: listed by path, exit 1, no file;
    --allow-loss writes the stack."""
    argv = ["import", str(ADOPT / "docs-site.toml"), "--stack", "docs"]
    argv += ["--project-dir", str(tmp_path), "--org", "acme", "--machines", "1"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    for path in (
        "statics[0].guest_path",
        "statics[0].url_prefix",
        "checks.alive.port",
        "checks.alive.interval",
    ):
        assert f"lost: {path} = " in out
    assert "nothing written" in out
    assert not (tmp_path / "Pulumi.docs.yaml").exists()
    assert main([*argv, "--allow-loss"]) == 0
    written = yaml.safe_load((tmp_path / "Pulumi.docs.yaml").read_text(encoding="utf-8"))
    assert written["config"]["realtime-fly:build"] == {"image": "registry.fly.io/acme-docs:latest"}
    assert written["config"]["realtime-fly:http"]["autoStopMachines"] == "suspend"


def test_game_services_processes_mounts_are_lost_by_path() -> None:
    """UDP and TCP on one port, a port range, processes, mounts, a second VM: none has a
    stack key, each is named."""
    result = import_fly_toml(
        (ADOPT / "game-udp.toml").read_text(encoding="utf-8"),
        stack="game",
        given={"org": "acme", "machines": 1, "broker": "memory"},
    )
    lost = {d.path for d in result.lost}
    assert {
        "processes.app",
        "services[0].protocol",
        "services[2].ports[0].start_port",
        "services[2].ports[0].end_port",
        "mounts[0].source",
        "vm[1].size",
        "vm[0].processes",
    } <= lost
    assert result.values["vm"] == {"size": "performance-2x", "memory": "4gb"}


def test_secret_looking_env_is_never_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DATABASE_URL and TOKEN_SIGNING_KEY stay out of the stack file, named with the
    `pulumi config set --secret` command; their values are printed nowhere."""
    text = (
        (DATA / "seed_after.toml")
        .read_text(encoding="utf-8")
        .replace(
            '  WS_PORT = "8081"\n',
            '  WS_PORT = "8081"\n  DATABASE_URL = "postgres://u:hunter2@db/x"\n'
            '  TOKEN_SIGNING_KEY = "s3cr3t-value"\n  REGION_NAME = "eu"\n',
        )
    )
    source = tmp_path / "fly.toml"
    source.write_text(text, encoding="utf-8")
    argv = ["import", str(source), "--stack", "s", "--project-dir", str(tmp_path)]
    argv += ["--org", "acme", "--machines", "1", "--allow-loss"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "lost: env.TOKEN_SIGNING_KEY looks like a secret: not imported into fly.toml config; "
        "`pulumi config set --secret realtime-fly:tokenSigningKey`"
    ) in out
    assert "lost: env.DATABASE_URL looks like a secret" in out
    assert "`pulumi config set --secret`" in out
    stack_file = (tmp_path / "Pulumi.s.yaml").read_text(encoding="utf-8")
    for secret in ("hunter2", "s3cr3t-value"):
        assert secret not in out
        assert secret not in stack_file
    assert yaml.safe_load(stack_file)["config"]["realtime-fly:env"] == {"REGION_NAME": "eu"}


def test_target_settings_are_asked_for_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """org, machines and broker are not in a hand-written fly.toml: the output names each
    with the command that sets it; render then says what is missing by key."""
    source = tmp_path / "fly.toml"
    source.write_text(fix_fly_toml((DATA / "seed_after.toml").read_text()).text)
    argv = ["import", str(source), "--stack", "s", "--project-dir", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for key in ("realtime-fly:org", "realtime-fly:machines", "realtime-fly:broker"):
        assert f"set: {key} (fly.toml has no key for it): `pulumi config set --stack s {key}" in out
    with pytest.raises(ConfigError, match="realtime-fly:org"):
        load_stack_file(tmp_path / "Pulumi.s.yaml", require_secrets=False)
    assert main([*argv, "--org", "acme", "--machines", "1", "--broker", "memory"]) == 0
    assert "set:" not in capsys.readouterr().out
    assert main([*argv]) == 0  # now read from the stack file itself
    assert "set:" not in capsys.readouterr().out


def test_update_keeps_other_namespaces_secrets_and_comments(tmp_path: Path) -> None:
    """An existing stack file: comments, other providers' keys and secrets survive; a key the
    import no longer sets is removed."""
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(
        "# Our production stack.\n"
        "config:\n"
        "  aws:region: eu-west-1  # the bucket's region\n"
        "  realtime-fly:org: acme\n"
        "  realtime-fly:tokenSigningKey:\n"
        "    secure: v1:abc==\n"
        "  realtime-fly:swapSizeMb: 512\n"
        "  realtime-fly:vm:\n"
        "    size: shared-cpu-2x  # bigger for launch week\n"
        "    cpus: 2\n",
        encoding="utf-8",
    )
    write_stack_file(path, {"app": "chat", "vm": {"size": "shared-cpu-4x"}})
    text = path.read_text(encoding="utf-8")
    assert "# Our production stack." in text
    assert "aws:region: eu-west-1  # the bucket's region" in text
    assert "# bigger for launch week" in text
    config = yaml.safe_load(text)["config"]
    assert config["realtime-fly:tokenSigningKey"] == {"secure": "v1:abc=="}
    assert config["realtime-fly:org"] == "acme"
    assert "realtime-fly:swapSizeMb" not in config
    assert config["realtime-fly:vm"] == {"size": "shared-cpu-4x"}
    assert config["realtime-fly:app"] == "chat"


@pytest.fixture
def fake_fly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFly:
    """The recording fake flyctl first on PATH (as in test_fly_ensure), commands run from the
    project root as under `pulumi up`."""
    monkeypatch.chdir(REPO)
    state, log = tmp_path / "state.json", tmp_path / "log.jsonl"
    env = install(tmp_path / "bin", state=state, log=log)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return FakeFly(env=env, state_path=state, log_path=log)


def test_up_on_an_imported_stack_adopts_the_running_app(
    fake_fly: FakeFly, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The adopt path of docs/ADOPTING.md: the app already runs on Fly with its addresses;
    lint --fix, import, then every step of `pulumi up` (with the recording fake flyctl):
    the app and both addresses are adopted, nothing is created twice, one deploy rolls out the
    rendered fly.toml."""
    app = "acme-chat"
    for argv in (
        ("apps", "create", app, "--org", "acme"),
        ("ips", "allocate-v6", "--app", app),
        ("ips", "allocate-v4", "--shared", "--app", app, "--yes"),
    ):
        assert fake_fly.flyctl(*argv).returncode == 0
    source = tmp_path / "fly.toml"
    shutil.copy(ADOPT / "chat-v1.toml", source)
    assert main(["lint", "--fix", str(source)]) == 0
    project = tmp_path / "project"
    project.mkdir()
    argv = ["import", str(source), "--stack", "production", "--project-dir", str(project)]
    argv += ["--org", "acme", "--machines", "1", "--broker", "memory"]
    assert main(argv) == 1
    assert 'lost: http_service.checks[0].interval = "15ns"' in capsys.readouterr().out
    assert main([*argv, "--allow-loss"]) == 0
    config = yaml.safe_load((project / "Pulumi.production.yaml").read_text())["config"]
    assert config["realtime-fly:app"] == app
    values = {key.removeprefix("realtime-fly:"): value for key, value in config.items()}
    stack = settings_from_config({**values, "tokenSigningKey": True}, stack="production")
    context = PlanContext(
        python=sys.executable,
        backend_dir="backend",
        build_dir=str(tmp_path / "build"),
        backend_digest="sha256:test",
    )
    plan = fly_plan(stack, fly_toml=render_fly_toml(stack.fly, stack="production"), context=context)
    done = _up(plan)
    assert done["app"] == f"app {app}: adopted, it already exists in org acme"
    assert done["ips-v6"].startswith(f"ips {app}: adopted v6 ")
    assert done["ips-v4"].startswith(f"ips {app}: adopted shared_v4 ")
    assert fake_fly.calls("apps", "create") == 1  # the app's own creation, before adoption
    assert fake_fly.calls("ips", "allocate-v6") == 1
    assert fake_fly.calls("ips", "allocate-v4") == 1
    assert fake_fly.calls("deploy") == 1
    assert list(fake_fly.state()["apps"]) == [app]


def _doc_commands() -> list[tuple[str, int]]:
    """Every `python -m infra` line of docs/ADOPTING.md's sh blocks, with the exit code its
    trailing `# exit N` comment gives (0 without one)."""
    text = (REPO / "docs" / "ADOPTING.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("python -m infra "):
                code = re.search(r"#\s*exit (\d)", line)
                commands.append((line, int(code.group(1)) if code else 0))
    return commands


def test_adopting_doc_commands_run_as_documented(tmp_path: Path) -> None:
    """docs/ADOPTING.md's commands, run in order by a shell in a project holding the v1-era
    chat file as fly.toml, exit as the doc says; the stack they write renders a clean file."""
    commands = _doc_commands()
    assert len(commands) >= 8
    shutil.copy(ADOPT / "chat-v1.toml", tmp_path / "fly.toml")
    shutil.copy(REPO / "Pulumi.yaml", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for line, expected in commands:
        shell_line = shlex.quote(sys.executable) + line.removeprefix("python")
        result = subprocess.run(
            ["/bin/sh", "-c", shell_line],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == expected, (line, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, line
    assert (tmp_path / "Pulumi.production.yaml").is_file()
    assert 'handlers = ["tls"]' in (tmp_path / "fly.toml").read_text(encoding="utf-8")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_configs())
def test_generated_models_import_to_a_fixed_point_with_an_exact_report(config: FlyConfig) -> None:
    """Any model the parser round-trips (services beside the WebSocket, processes, mounts,
    statics, checks, http_options...): import reports as lost exactly the paths whose value
    the stack's render does not reproduce, as added exactly the new ones, and importing that
    render again changes nothing (the stack's own files are a fixed point)."""
    text = render_fly_toml(config)
    result = import_fly_toml(text, stack="gen", given={"org": "acme"})
    before = flyctl_view(parse_fly_toml(text).config)
    after = flyctl_view(parse_fly_toml(result.rendered).config)
    assert {d.path for d in result.lost} == {p for p, v in before.items() if after.get(p) != v}
    assert {d.path for d in result.added} == set(after) - set(before)
    again = import_fly_toml(result.rendered, stack="gen", given={"org": "acme"})
    assert again.differences == ()
    assert again.rendered == result.rendered


def test_a_cluster_stack_round_trips_as_redis_cluster() -> None:
    """A file whose [env] says REDIS_CLUSTER = "1" imports as realtime-fly:redis: cluster, and
    renders back the same."""
    from infra.stack.settings import settings_from_config

    settings = settings_from_config(
        {"org": "acme", "machines": 2, "broker": "redis", "redis": "cluster"},
        stack="s",
        require_secrets=False,
    )
    text = render_fly_toml(settings.fly, stack="s")
    result = import_fly_toml(text, stack="s", given={"org": "acme"})
    assert result.values["redis"] == "cluster"
    assert "env" not in result.values or "REDIS_CLUSTER" not in result.values["env"]  # type: ignore[operator]
    assert result.differences == ()
