"""Lint on the incident's before/after files and on our own output."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.flytoml.lint import exit_status, format_finding, lint_fly_toml
from infra.flytoml.parse import parse_fly_toml
from infra.flytoml.rules import PU02_REASON, Finding

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"


def _lint(name: str) -> list[Finding]:
    return lint_fly_toml((DATA / name).read_text(encoding="utf-8"))


def test_seed_before_is_an_error_naming_handlers() -> None:
    """The incident's before config fails first on handlers, with the PU02 explanation."""
    findings = _lint("seed_before.toml")
    errors = [f for f in findings if f.severity == "error"]
    assert errors[0].rule == "ws-http-handler"
    assert errors[0].key == "services[0].ports[0].handlers"
    assert errors[0].message == PU02_REASON
    assert exit_status(findings, strict=False) == 1


def test_seed_after_passes_with_alpn_warning() -> None:
    """The incident's after config has no error, but a warning for the missing ALPN pin."""
    findings = _lint("seed_after.toml")
    assert [f for f in findings if f.severity == "error"] == []
    assert ("ws-alpn-missing", "services[0].ports[0].tls_options.alpn") in {
        (f.rule, f.key) for f in findings
    }
    assert exit_status(findings, strict=False) == 0
    assert exit_status(findings, strict=True) == 1  # a WebSocket rule's warning


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.fly.toml")), ids=lambda p: p.name)
def test_our_output_is_clean(path: Path) -> None:
    """The golden files have no finding at all, even with --strict (metrics on their own port,
    9091, which no service exposes)."""
    findings = lint_fly_toml(path.read_text(encoding="utf-8"))
    assert [(f.rule, f.key) for f in findings] == []
    assert exit_status(findings, strict=True) == 0


def test_unknown_keys_are_warnings_that_fail_strict() -> None:
    """A key flyctl does not know is a warning, never dropped silently; --strict fails on it
    as flyctl's --strict does. A key flyctl knows ([mounts]) is no finding."""
    text = (DATA / "seed_after.toml").read_text(encoding="utf-8")
    text = text.replace(
        "[http_service]", "[experimental]\nprivate_network = true\n\n[http_service]"
    )
    text += "\n[mounts]\nsource = 'd'\ndestination = '/d'\n"
    findings = lint_fly_toml(text)
    assert [(f.rule, f.key, f.severity) for f in findings if "key" in f.rule] == [
        ("unknown-key", "experimental.private_network", "warning")
    ]
    without_ws = [f for f in findings if not f.rule.startswith("ws-")]
    assert exit_status(without_ws, strict=False) == 0
    assert exit_status(without_ws, strict=True) == 1


def test_flyctl_warnings_never_fail_strict() -> None:
    """flyctl prints its warnings and goes on: so does lint, with or without --strict."""
    findings = lint_fly_toml(
        'app = "x"\n[env]\nDB_PASSWORD = "x"\n[[services]]\ninternal_port = 9\nprotocol = "tcp"\n'
    )
    assert {f.rule for f in findings} == {"env-secret-name", "service-without-ports"}
    assert exit_status(findings, strict=True) == 0


_BASE = 'app = "x"\n[http_service]\ninternal_port = 8080\n'

# Each of issue 10 item 3's rules, with flyctl v0.4.87's own message (file:line in the rule).
FLYCTL_MESSAGES: list[tuple[str, str, str, str]] = [
    (
        "release-command-shlex",
        '[deploy]\nrelease_command = "bin/migrate \'unclosed"\n',
        "error",
        "Can't shell split release command: 'bin/migrate 'unclosed'",
    ),
    (
        "service-processes",
        '[processes]\nweb = "run"\n',
        "error",
        "Service has no processes set but app has 1 processes defined; update fly.toml to set "
        "processes for each service",
    ),
    (
        "service-processes",
        '[[services]]\ninternal_port = 9\nprotocol = "tcp"\nprocesses = ["worker"]\n'
        "[[services.ports]]\nport = 9\n",
        "error",
        "Service specifies 'worker' as one of its processes, but no processes are defined with "
        "that name; update fly.toml [processes] to add 'worker' process or remove it from "
        "service's processes list",
    ),
    (
        "restart-processes",
        '[[restart]]\npolicy = "always"\nprocesses = ["worker"]\n',
        "error",
        "Restart policy specifies 'worker' as one of its processes, but no processes are "
        "defined with that name; update fly.toml [processes] to add 'worker' process or remove "
        "it from restart policy's processes list",
    ),
    (
        "canary-with-mounts",
        '[deploy]\nstrategy = "canary"\n[mounts]\nsource = "d"\ndestination = "/d"\n',
        "error",
        "error canary deployment strategy is not supported when using mounted volumes",
    ),
    (
        "build-compression",
        '[build]\ncompression = "brotli"\n',
        "error",
        "Invalid value 'brotli' for compression. Valid options are 'gzip', 'zstd', or leave unset.",
    ),
    (
        "check-type",
        "[checks.alive]\nport = 8080\n",
        "error",
        "Can't process top level check 'alive': Missing or invalid check type, must be 'http' "
        "or 'tcp'",
    ),
    ("vm-memory", '[[vm]]\nmemory = "0mb"\n', "error", "memory cannot be zero"),
    (
        "vm-memory-range",
        '[[vm]]\nsize = "performance-2x"\nmemory = "2gb"\n',
        "error",
        "2 performance CPU(s) take 4096-16384 MB in steps of 1024 MB (the Machines API refuses "
        "2048 MB at deploy)",
    ),
    (
        "check-without-port",
        '[checks.alive]\ntype = "tcp"\n',
        "error",
        "Check 'alive' for process group 'app' has no port set and the group has no "
        "http_service to take it from",
    ),
    (
        "build-strategies",
        '[build]\nimage = "nginx"\ndockerfile = "Dockerfile"\n',
        "warning",
        'more than one build configuration found: [the "nginx" docker image, the "Dockerfile" '
        "dockerfile]",
    ),
    (
        "service-without-ports",
        '[[services]]\ninternal_port = 9\nprotocol = "tcp"\n',
        "warning",
        "WARNING: Service must expose at least one port. Add a [[services.ports]] section to "
        "fly.toml",
    ),
    (
        "check-duration",
        '[[services]]\ninternal_port = 9\nprotocol = "tcp"\n[[services.ports]]\nport = 9\n'
        '[[services.tcp_checks]]\ngrace_period = "500ms"\n',
        "warning",
        "Service TCP check has a grace period that is non-zero and less than 1 second (500ms); "
        "this will be raised to 1 second",
    ),
    (
        "max-unavailable-strategy",
        '[deploy]\nstrategy = "immediate"\nmax_unavailable = 0.5\n',
        "warning",
        "Warning: max-unavailable set for non-rolling strategy 'immediate', ignoring",
    ),
    (
        "env-secret-name",
        '[env]\nAPI_KEY = "x"\nAWS_ACCESS_KEY_ID = "y"\n',
        "warning",
        "WARN API_KEY may be a potentially sensitive environment variable. Consider setting it "
        "as a secret, and removing it from the [env] section",
    ),
]


@pytest.mark.parametrize(
    ("rule", "toml", "severity", "message"),
    FLYCTL_MESSAGES,
    ids=[f"{case[0]}-{index}" for index, case in enumerate(FLYCTL_MESSAGES)],
)
def test_flyctl_rules_say_what_flyctl_says(
    rule: str, toml: str, severity: str, message: str
) -> None:
    """The rule fires once, with flyctl's severity and message."""
    text = ('app = "x"\n' if "[checks." in toml else _BASE) + toml  # checks: no http_service
    findings = [f for f in lint_fly_toml(text) if f.rule == rule]
    assert [(f.severity, f.message) for f in findings] == [(severity, message)]


def test_format_finding() -> None:
    """Lines read PATH: severity[rule] key: message (found VALUE)."""
    finding = Finding(
        rule="kill-signal", severity="error", key="kill_signal", value="SIGHUP", message="bad"
    )
    assert format_finding("fly.toml", finding) == (
        'fly.toml: error[kill-signal] kill_signal: bad (found "SIGHUP")'
    )


@pytest.mark.parametrize(
    ("size", "refused"),
    [("1000mb", False), ("999mb", True), ("1", False), ("1GiB", False), ("0.5gb", True)],
)
def test_mount_initial_size_is_read_in_decimal_gb(size: str, refused: bool) -> None:
    """initial_size is read with go-units FromHumanSize (decimal) as flyctl does: under 1GB is
    refused with flyctl's message."""
    text = f'app = "x"\n[mounts]\nsource = "d"\ndestination = "/d"\ninitial_size = "{size}"\n'
    messages = [f.message for f in lint_fly_toml(text) if f.rule == "mount-initial-size"]
    expected = [f"mount 'd' has an initial_size '{size}' value which is smaller than 1GB"]
    assert messages == (expected if refused else [])


# What issue 10 item 2 found lint refusing, though flyctl accepts it.
ACCEPTED_BY_FLYCTL: list[tuple[str, str]] = [
    (
        "string port",
        '[[services]]\ninternal_port = "8080"\nprotocol = "tcp"\n'
        '[[services.ports]]\nport = "443"\nhandlers = ["tls", "http"]\n',
    ),
    ("integer env", "[env]\nWORKERS = 4\nDEBUG = false\n"),
    (
        "legacy concurrency",
        '[[services]]\ninternal_port = 8080\nprotocol = "tcp"\n'
        'concurrency = "20,25"\n[[services.ports]]\nport = 443\nhandlers = ["tls", "http"]\n',
    ),
    ("performance-16x", '[[vm]]\nsize = "performance-16x"\nmemory = "32gb"\n'),
    ("gpu a100-80gb", '[[vm]]\nsize = "a100-80gb"\n'),
    ("gpu l40s", '[[vm]]\nsize = "l40s"\nmemory = "32gb"\n'),
    ("memory bare MB", '[[vm]]\nmemory = "1024"\n'),
    ("memory 512m", '[[vm]]\nmemory = "512m"\n'),
    ("memory 1.5gb", '[[vm]]\nsize = "shared-cpu-1x"\nmemory = "1.5gb"\n'),
    ("memory 2GiB", '[[vm]]\nsize = "shared-cpu-2x"\nmemory = "2GiB"\n'),
    (
        "tcp and udp on one port",
        '[[services]]\ninternal_port = 5000\nprotocol = "tcp"\n'
        "[[services.ports]]\nport = 5000\n[[services]]\ninternal_port = 5000\n"
        'protocol = "udp"\n[[services.ports]]\nport = 5000\n',
    ),
    (
        "port range",
        '[[services]]\ninternal_port = 7000\nprotocol = "tcp"\n'
        "[[services.ports]]\nstart_port = 7000\nend_port = 7099\n",
    ),
    (
        "http on 80/443 to internal 8081",
        '[[services]]\ninternal_port = 8081\nprotocol = "tcp"\n'
        '[[services.ports]]\nport = 80\nhandlers = ["http"]\n[[services.ports]]\nport = 443\n'
        'handlers = ["tls", "http"]\n',
    ),
    ("FLY_RESTORED_FROM", '[env]\nFLY_RESTORED_FROM = "vol_123"\n'),
    (
        "processes everywhere",
        '[processes]\napp = "run"\nworker = "work"\n'
        '[[services]]\ninternal_port = 9\nprotocol = "tcp"\nprocesses = ["app"]\n'
        '[[services.ports]]\nport = 9\n[[vm]]\nprocesses = ["worker"]\n'
        '[checks.alive]\ntype = "tcp"\nport = 9\nprocesses = ["app"]\n',
    ),
]


@pytest.mark.parametrize(
    "toml", [case[1] for case in ACCEPTED_BY_FLYCTL], ids=[case[0] for case in ACCEPTED_BY_FLYCTL]
)
def test_what_flyctl_accepts_passes_strict(toml: str) -> None:
    """Files flyctl v0.4.87 accepts pass lint --strict (issue 10 item 2's cases)."""
    findings = lint_fly_toml('app = "x"\n' + toml)
    assert exit_status(findings, strict=True) == 0, findings
    assert [f for f in findings if f.severity == "error"] == []


def test_section_aliases_are_read_as_flyctl_merges_them() -> None:
    """[mount], [[compute]] and [[metric]] are flyctl's aliases of [mounts], [[vm]] and
    [[metrics]]: the rules see them (a canary deploy with [mount] is refused) and render writes
    flyctl's own names."""
    text = (
        'app = "x"\n[deploy]\nstrategy = "canary"\n[mount]\nsource = "d"\ndestination = "/d"\n'
        '[[compute]]\nsize = "shared-cpu-9x"\n[[metric]]\nport = 9091\npath = "/m"\n'
    )
    findings = lint_fly_toml(text)
    assert {(f.rule, f.key) for f in findings if f.severity == "error"} == {
        ("canary-with-mounts", "deploy.strategy"),
        ("vm-size", "vm[0].size"),
    }
    config = parse_fly_toml(text).config
    assert [m.source for m in config.mounts] == ["d"]
    assert [m.port for m in config.metrics] == [9091]
