"""The CrossGuard policy pack (policy/): its checks, the pack process, and the real engine.

Three tiers:

- the checks in ``policy/fly_guards.py`` as pure functions: every rule, and every committed
  stack's rendered fly.toml and command lines pass;
- the pack process itself (``python policy/__main__.py``, as the engine starts it): it serves
  Pulumi's Analyzer gRPC protocol on 127.0.0.1 and is asked to analyse resources the way the
  engine asks, so the wiring (resource type, names, props, enforcement level) is tested for real;
- ``pulumi preview`` with the real engine and the pack in a copy of the project with its own
  file backend: the committed staging stack passes, and a hand-edited program whose fly.toml puts
  the WebSocket port behind Fly's http handler (and a secret on a command line) is stopped,
  naming the policies. The pack is given as ``policy/run-pack`` (the engine starts a pack given
  as a file directly), because the Python language host built by scripts/toolchain.sh cannot
  start a pack directory; the GitHub workflows use the directory (``policyPacks: policy``).
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from infra.deploy.plan import PlanContext
from infra.deploy.targets import plan_for
from infra.flytoml.render import render_fly_toml
from infra.stack.settings import load_stack_file
from tests.integration.engine_project import (
    EngineProject,
    copy_project,
)

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policy"
STACKS = sorted(REPO.glob("Pulumi.*.yaml"))
STACK_IDS = [path.name for path in STACKS]


def _load_guards() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fly_guards", POLICY / "fly_guards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guards = _load_guards()

GOOD_TOML = textwrap.dedent(
    """
    kill_timeout = "30s"
    [env]
    WS_PORT = "8081"
    [http_service]
    internal_port = 8080
    [[http_service.checks]]
    interval = "15s"
    [[services]]
    protocol = "tcp"
    internal_port = 8081
    [services.concurrency]
    type = "connections"
    [[services.ports]]
    port = 8081
    handlers = ["tls"]
    tls_options = {alpn = ["http/1.1"]}
    [[services.tcp_checks]]
    interval = "15s"
    """
)


def _toml(old: str = "", new: str = "") -> dict[str, Any]:
    """GOOD_TOML with one edit, parsed."""
    assert old in GOOD_TOML
    document, problems = guards.parse_fly_toml(GOOD_TOML.replace(old, new, 1))
    assert problems == []
    assert document is not None
    return dict(document)


def _settings_and_toml(path: Path) -> tuple[Any, str]:
    settings = load_stack_file(path, require_secrets=False)
    return settings, render_fly_toml(settings.fly, stack=settings.stack)


# --- the checks as pure functions ---------------------------------------------------------------


@pytest.mark.parametrize("path", STACKS, ids=STACK_IDS)
def test_committed_stacks_pass_the_fly_toml_checks(path: Path) -> None:
    """Every committed stack's rendered fly.toml passes the WebSocket and duration checks."""
    _, text = _settings_and_toml(path)
    document, problems = guards.parse_fly_toml(text)
    assert problems == []
    assert guards.websocket_service_problems(document) == []
    assert guards.duration_problems(document) == []


@pytest.mark.parametrize("path", STACKS, ids=STACK_IDS)
def test_committed_stacks_command_lines_pass(path: Path) -> None:
    """No step the stack's deploy target plans puts a credential on its command lines."""
    settings, text = _settings_and_toml(path)
    context = PlanContext(
        python=".venv/bin/python",
        backend_dir="backend",
        build_dir=f"build/{settings.stack}",
        backend_digest="0" * 64,
    )
    plan = plan_for(settings, text, context)
    for step in plan.steps:
        lines = {"create": step.create_line(), "update": step.update_line()}
        lines["delete"] = step.delete_line()
        for field, line in lines.items():
            assert guards.command_line_problems(field, line) == [], (step.name, field)
        if step.name == "secrets":
            assert guards.secrets_step_problems(step.logging) == []


def test_the_incident_config_is_refused() -> None:
    """The seed "before" fly.toml (WebSocket port behind the http handler) fails, naming keys."""
    text = (REPO / "tests" / "infra" / "data" / "seed_before.toml").read_text()
    document, _ = guards.parse_fly_toml(text)
    problems = guards.websocket_service_problems(document)
    assert [p.split(":")[0] for p in problems] == [
        "services[0].protocol = null",
        "services[0].concurrency.type = null",
        'services[0].ports[0].handlers = ["tls", "http"]',
        "services[0].ports[0].tls_options.alpn = null",
    ]
    assert "[PU02]" in problems[2]


@pytest.mark.parametrize("handlers", ['["tls"]', '["tls", "proxy_proto"]'])
def test_allowed_handlers(handlers: str) -> None:
    """handlers ["tls"] and ["tls", "proxy_proto"] are both raw TCP with TLS at the edge."""
    document = _toml('handlers = ["tls"]', f"handlers = {handlers}")
    assert guards.websocket_service_problems(document) == []


CHECKS = {
    "websocket": guards.websocket_service_problems,
    "durations": guards.duration_problems,
}
TCP_CHECK = '[[services.tcp_checks]]\ninterval = "15s"'
RULES = [
    (
        "websocket",
        '["tls"]',
        '["tls", "http"]',
        'services[0].ports[0].handlers = ["tls", "http"]: ',
    ),
    (
        "websocket",
        '["tls"]',
        '["http", "tls"]',
        'services[0].ports[0].handlers = ["http", "tls"]: ',
    ),
    ("websocket", '["tls"]', "[]", "services[0].ports[0].handlers = []: "),
    ("websocket", '"tcp"', '"udp"', 'services[0].protocol = "udp": must be "tcp"'),
    ("websocket", '"connections"', '"requests"', 'services[0].concurrency.type = "requests": '),
    ("websocket", '["http/1.1"]', '["h2", "http/1.1"]', "services[0].ports[0].tls_options.alpn = "),
    ("websocket", 'tls_options = {alpn = ["http/1.1"]}', "", "services[0].ports[0].tls_options."),
    ("websocket", "= 8081\n[services", "= 9000\n[services", "services: no [[services]] entry on "),
    ("websocket", '"8081"', '"9000"', "services: no [[services]] entry on internal port 9000 "),
    ("websocket", "internal_port = 8080", "internal_port = 8081", "http_service.internal_port = "),
    ("durations", '"30s"', "30", "kill_timeout = 30: durations must be strings"),
    ("durations", '"15s"', "15000", "http_service.checks[0].interval = 15000: "),
    ("durations", TCP_CHECK, TCP_CHECK.replace('"15s"', "15"), "services[0].tcp_checks[0]."),
]


@pytest.mark.parametrize(("check", "old", "new", "expected"), RULES)
def test_each_rule(check: str, old: str, new: str, expected: str) -> None:
    """One edit of a good fly.toml breaks one rule: exactly one problem, naming the dotted key
    and the value found (the WebSocket port follows [env] WS_PORT)."""
    problems = CHECKS[check](_toml(old, new))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)


def test_stdin_that_is_not_toml() -> None:
    """A fly-toml step whose stdin is not TOML text is a problem, not a crash."""
    assert guards.parse_fly_toml("handlers = [")[0] is None
    assert guards.parse_fly_toml(None)[1] == ["stdin must be the fly.toml text, found NoneType"]


@pytest.mark.parametrize(
    ("line", "flag"),
    [
        ("FLY_API_TOKEN=fo1_abc flyctl deploy --app a", "FLY_API_TOKEN="),
        ("env FLY_ACCESS_TOKEN=fo1_abc flyctl status", "FLY_API_TOKEN="),
        ("flyctl deploy --access-token fo1_abc", "--access-token"),
        ("flyctl deploy --access-token=fo1_abc", "--access-token"),
        ("/opt/bin/flyctl status -t fo1_abc", "-t <token>"),
        ("fly status -tfo1_abc", "-t <token>"),
        ("flyctl secrets set TOKEN_SIGNING_KEY=s3cr3t --app a", "secrets set NAME=value"),
        ("flyctl secrets set --app a 'REDIS_URL=redis://u:p@h'", "secrets set NAME=value"),
    ],
)
def test_secrets_on_command_lines_are_refused(line: str, flag: str) -> None:
    """Each forbidden form is named by its flag; the message never echoes the line."""
    problems = guards.command_line_problems("create", line)
    assert problems == [
        f"create contains {flag}: pass tokens through the environment and secrets through "
        "stdin, never on the command line"
    ]


@pytest.mark.parametrize(
    "line",
    [
        "flyctl secrets import --app a --stage",
        "flyctl deploy . --config fly.toml --app a --remote-only --strategy rolling",
        "sort -t , -k 2 file",  # -t is only flyctl's token flag on flyctl lines
        "flyctl secrets list --app a",
        None,
    ],
)
def test_clean_command_lines(line: str | None) -> None:
    """Lines without a credential pass, including -t on a line that is not flyctl's."""
    assert guards.command_line_problems("create", line) == []


@pytest.mark.parametrize("logging", ["stdoutAndStderr", "stderr", None])
def test_secrets_step_must_log_nothing(logging: str | None) -> None:
    """The secrets step's logging must be "none"; anything else is named."""
    problems = guards.secrets_step_problems(logging)
    assert len(problems) == 1
    assert problems[0].startswith("logging = ")
    assert guards.secrets_step_problems("none") == []


# --- the pack process, over Pulumi's Analyzer protocol -------------------------------------------


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The policy pack as the engine runs it: a process serving the Analyzer on 127.0.0.1."""
    grpc = pytest.importorskip("grpc")
    from pulumi.runtime.proto import analyzer_pb2_grpc

    log = tmp_path_factory.mktemp("policy") / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(POLICY / "__main__.py")],
            cwd=POLICY,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.isdigit(), f"the pack printed no port: {line!r}\n{log.read_text()}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def _analyze(
    analyzer: Any, name: str, props: dict[str, Any], kind: str = "command:local:Command"
) -> list[Any]:
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeRequest(
        type=kind,
        name=name,
        urn=f"urn:pulumi:test::realtime-fly::{kind}::{name}",
        properties=props,
    )
    return list(analyzer.Analyze(request).diagnostics)


@pytest.mark.integration
def test_pack_reports_info(analyzer: Any) -> None:
    """The pack announces its name and its four policies, all mandatory."""
    from pulumi.runtime.proto import analyzer_pb2

    empty = importlib.import_module("google.protobuf.empty_pb2")
    info = analyzer.GetAnalyzerInfo(empty.Empty())
    assert info.name == "realtime-fly"
    assert sorted(policy.name for policy in info.policies) == [
        "fly-toml-durations",
        "fly-toml-websocket-service",
        "no-secrets-on-command-lines",
        "secrets-step-logs-nothing",
    ]
    assert {policy.enforcementLevel for policy in info.policies} == {analyzer_pb2.MANDATORY}


@pytest.mark.integration
def test_pack_passes_the_real_fly_toml_step(analyzer: Any) -> None:
    """The staging stack's fly-toml step, as the program registers it, has no violation."""
    _, text = _settings_and_toml(REPO / "Pulumi.staging.yaml")
    props = {
        "create": ".venv/bin/python -m infra.deploy.materialize --out build/staging",
        "stdin": text,
    }
    assert _analyze(analyzer, "realtime-staging-fly-toml", props) == []


@pytest.mark.integration
def test_pack_stops_the_http_handler_on_the_websocket_port(analyzer: Any) -> None:
    """A fly-toml step with handlers ["tls", "http"] is a mandatory violation naming the key."""
    props = {"create": "true", "stdin": GOOD_TOML.replace('["tls"]', '["tls", "http"]')}
    (diagnostic,) = _analyze(analyzer, "x-fly-toml", props)
    from pulumi.runtime.proto import analyzer_pb2

    assert diagnostic.policyName == "fly-toml-websocket-service"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert 'x-fly-toml: services[0].ports[0].handlers = ["tls", "http"]: ' in diagnostic.message


@pytest.mark.integration
def test_pack_stops_secrets_on_the_command_line(analyzer: Any) -> None:
    """A secrets step with the value on its line and logging on gets two violations, and no
    message repeats the secret."""
    props = {"create": "flyctl secrets set TOKEN_SIGNING_KEY=s3cr3t-value", "logging": "stderr"}
    diagnostics = _analyze(analyzer, "x-secrets", props)
    assert sorted(d.policyName for d in diagnostics) == [
        "no-secrets-on-command-lines",
        "secrets-step-logs-nothing",
    ]
    assert all("s3cr3t-value" not in d.message for d in diagnostics)


@pytest.mark.integration
def test_pack_ignores_other_resource_names(analyzer: Any) -> None:
    """Only *-fly-toml steps are parsed as fly.toml; other commands' stdin is not."""
    assert _analyze(analyzer, "x-deploy", {"create": "flyctl deploy", "stdin": "not toml ["}) == []


@pytest.mark.integration
def test_pack_checks_the_dynamic_local_command(analyzer: Any) -> None:
    """LocalCommand (a dynamic resource with a create line) is checked like local.Command; a
    dynamic resource without one is not a command."""
    kind = "pulumi-python:dynamic:Resource"
    bad = GOOD_TOML.replace('["tls"]', '["tls", "http"]')
    (diagnostic,) = _analyze(analyzer, "x-fly-toml", {"create": "true", "stdin": bad}, kind)
    assert diagnostic.policyName == "fly-toml-websocket-service"
    assert _analyze(analyzer, "x-fly-toml", {"stdin": bad}, kind) == []


# --- the real engine ----------------------------------------------------------------------------

BAD_PROGRAM = textwrap.dedent(
    '''
    """A hand edit that bypasses the model: the WebSocket port behind Fly's http handler, and a
    secret on a command line."""
    import os

    from infra.deploy.local_command import COMMAND_IMPLEMENTATION_VARIABLE, LocalCommand

    FLY_TOML = """
    [[services]]
    protocol = "tcp"
    internal_port = 8081
    [services.concurrency]
    type = "connections"
    [[services.ports]]
    port = 8081
    handlers = ["tls", "http"]
    tls_options = {alpn = ["http/1.1"]}
    """
    SECRETS = "flyctl secrets set TOKEN_SIGNING_KEY=s3cr3t-value"

    if os.environ.get(COMMAND_IMPLEMENTATION_VARIABLE) == "dynamic":
        LocalCommand("x-fly-toml", create="cat > /dev/null", stdin=FLY_TOML)
        LocalCommand("x-secrets", create=SECRETS, logging="stderr")
    else:
        from pulumi_command import local

        local.Command("x-fly-toml", create="cat > /dev/null", stdin=FLY_TOML)
        local.Command("x-secrets", create=SECRETS, logging=local.Logging.STDERR)
    '''
)


class _Project:
    """A copy of the project (``engine_project.copy_project``) previewed with the policy pack."""

    def __init__(self, engine: EngineProject) -> None:
        self.engine = engine
        self.directory = engine.directory

    def preview(self, *, succeed: bool) -> str:
        """``pulumi preview --policy-pack policy/run-pack``; assert it succeeds (or fails)."""
        pack = str(POLICY / "run-pack")
        return self.engine.run("preview", "--policy-pack", pack, succeed=succeed).output


@pytest.fixture
def project(tmp_path: Path) -> _Project:
    """The project (Pulumi.yaml, __main__.py, infra/, backend/, the staging stack) copied into
    ``tmp_path`` with its own backend, the stack's secret set."""
    engine = copy_project(tmp_path, stack="staging")
    key = secrets.token_urlsafe(32)  # through stdin, as a platform team sets it
    engine.run("config", "set", "--secret", "realtime-fly:tokenSigningKey", stdin=key)
    return _Project(engine)


@pytest.mark.integration
@pytest.mark.engine
def test_engine_preview_of_the_staging_stack_passes(project: _Project) -> None:
    """`pulumi preview` of the committed staging stack with the pack passes every policy."""
    output = project.preview(succeed=True)
    assert re.search(r"\N{WHITE HEAVY CHECK MARK} realtime-fly@v[\d.]+ ", output), output
    assert "[mandatory]" not in output
    assert "realtime-staging-fly-toml" in output


@pytest.mark.integration
@pytest.mark.engine
def test_engine_preview_stops_a_hand_edited_program(project: _Project) -> None:
    """A program registering x-fly-toml with handlers ["tls", "http"] and a secret on a command
    line fails the preview with the policies' names and messages (preview runs no command), and
    no message repeats the secret."""
    (project.directory / "__main__.py").write_text(BAD_PROGRAM)
    output = project.preview(succeed=False)
    assert "[mandatory]  fly-toml-websocket-service" in output
    assert 'x-fly-toml: services[0].ports[0].handlers = ["tls", "http"]: must be' in output
    assert "[mandatory]  no-secrets-on-command-lines" in output
    assert "[mandatory]  secrets-step-logs-nothing" in output
    assert "s3cr3t-value" not in output
