"""Start and stop long-running local processes that outlive the command which started them.

The local deploy target runs redis-server, the backends and haproxy from
``pulumi_command.local.Command`` steps; each step's command returns at once, so the processes
must be detached: a new session (own process group), stdin from ``/dev/null``, stdout and stderr
appended to ``<state>/<name>.log``, and ``<state>/<name>.pid`` holding ``PID CREATE_TIME`` (the
process's creation time as psutil reads it from the OS, so a recycled PID is never mistaken for
ours, on Linux, macOS and the BSDs alike).

    python -m infra.local.supervise start NAME [--cwd DIR] [--state DIR] [--env-file FILE]
                                         [--wait-tcp HOST:PORT] -- ARGV...
    python -m infra.local.supervise exec [--env-file FILE] -- ARGV...
    python -m infra.local.supervise stop NAME [--state DIR] [--timeout SECONDS]
    python -m infra.local.supervise status NAME [--state DIR]
    python -m infra.local.supervise wait-tcp HOST:PORT [--timeout SECONDS]
    python -m infra.local.supervise logs [NAME] [--state DIR] [--lines N]

``start`` and ``stop`` are idempotent: starting a running name and stopping a stopped one do
nothing and succeed. ``stop`` sends SIGTERM to the whole process group, waits, then SIGKILL.
The environment is inherited as is, so secrets reach the process through the environment and
never through argv, the pid file or the log. ``--env-file`` adds ``NAME=VALUE`` lines (a
generated development key) for names the environment does not already set; ``exec`` runs a
command in the foreground with that environment (the smoke check). ``--wait-tcp`` makes
``start`` return only once the process accepts connections on that address.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "DEFAULT_STATE_DIR",
    "SuperviseError",
    "Supervised",
    "main",
    "read_env_file",
    "running",
    "start",
    "stop",
    "wait_tcp",
]

DEFAULT_STATE_DIR = Path("build/local")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_STARTUP_GRACE = 0.3
_POLL = 0.05


class SuperviseError(Exception):
    """A process could not be started, stopped or reached; the message names it."""


@dataclass(frozen=True, slots=True)
class Supervised:
    """A process this module started: its pid and that pid's creation time (epoch seconds)."""

    pid: int
    created: float


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise SuperviseError(f"process name must match {_NAME.pattern}, got {name!r}")


def _pid_file(state: Path, name: str) -> Path:
    return state / f"{name}.pid"


def log_file(state: Path, name: str) -> Path:
    """Where a supervised process's stdout and stderr go."""
    return state / f"{name}.log"


_SAME_PROCESS = 0.01
"""Creation times of one process read twice agree to the clock tick; another process started
in the same pid within 10 ms is not a case this guards against."""


def _created(pid: int) -> float | None:
    """The creation time of a live (not zombie) pid, ``None`` when there is no such process."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def _alive(record: Supervised) -> bool:
    created = _created(record.pid)
    return created is not None and abs(created - record.created) < _SAME_PROCESS


def _read(state: Path, name: str) -> Supervised | None:
    try:
        pid_text, created_text = _pid_file(state, name).read_text().split()
        return Supervised(pid=int(pid_text), created=float(created_text))
    except (FileNotFoundError, ValueError):
        return None


def running(name: str, *, state: Path = DEFAULT_STATE_DIR) -> Supervised | None:
    """The live process recorded under ``name``, or ``None``."""
    _check_name(name)
    record = _read(state, name)
    return record if record is not None and _alive(record) else None


def _ending(log: Path | None) -> str:
    """The last lines of ``log`` for an error message, on a line of their own."""
    return "" if log is None else f"; end of {log}:\n{_tail(log, 20)}"


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(
    name: str,
    argv: Sequence[str],
    *,
    state: Path = DEFAULT_STATE_DIR,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Supervised:
    """Start ``argv`` detached under ``name``, or return the live process already there.

    Raises :class:`SuperviseError` when the program cannot be run or exits within the startup
    grace period (the message carries the end of its log).
    """
    _check_name(name)
    if not argv:
        raise SuperviseError(f"process {name}: empty command")
    current = running(name, state=state)
    if current is not None:
        return current
    state.mkdir(parents=True, exist_ok=True)
    log = log_file(state, name)
    program = argv[0]
    if "/" in program and not os.path.isabs(program):
        # A relative program path (".venv/bin/python") means the caller's directory, not --cwd.
        program = os.path.abspath(program)
    with log.open("ab") as out:
        try:
            process = subprocess.Popen(
                [program, *argv[1:]],
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise SuperviseError(f"process {name}: cannot run {argv[0]!r}: {exc}") from exc
    record = Supervised(pid=process.pid, created=_created(process.pid) or 0.0)
    tmp = _pid_file(state, name).with_suffix(".pid.tmp")
    tmp.write_text(f"{record.pid} {record.created!r}\n")
    tmp.replace(_pid_file(state, name))
    try:
        code = process.wait(timeout=_STARTUP_GRACE)
    except subprocess.TimeoutExpired:
        return record
    _pid_file(state, name).unlink(missing_ok=True)
    raise SuperviseError(
        f"process {name} exited with status {code} at startup; end of {log}:\n{_tail(log, 20)}"
    )


def stop(name: str, *, state: Path = DEFAULT_STATE_DIR, timeout: float = 10.0) -> bool:
    """Stop the process group recorded under ``name``; ``True`` if something was running."""
    _check_name(name)
    record = _read(state, name)
    if record is None or not _alive(record):
        _pid_file(state, name).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(record) and time.monotonic() < deadline:
        time.sleep(_POLL)
    if _alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
        while _alive(record):
            time.sleep(_POLL)
    _pid_file(state, name).unlink(missing_ok=True)
    return True


def wait_tcp(
    host: str,
    port: int,
    *,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Return once ``host:port`` accepts a TCP connection; :class:`SuperviseError` after
    ``timeout`` seconds. With ``process`` (the server being waited for), fail at once when it
    exits instead; either error ends with the last lines of ``log``, if given."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SuperviseError(
                f"{process.args!r} exited {process.returncode} before {host}:{port} listened"
                f"{_ending(log)}"
            )
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise SuperviseError(
        f"{host}:{port} did not accept a connection in {timeout:g} s: {last}{_ending(log)}"
    )


def read_env_file(path: Path, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus the file's ``NAME=VALUE`` lines for names ``base`` does not set."""
    env = dict(base)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise SuperviseError(f"env file {path} does not exist") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SuperviseError(f"env file {path} line {number}: expected NAME=VALUE")
        env.setdefault(name, value)
    return env


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.local.supervise", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("start", "stop", "status", "logs"):
        sub = commands.add_parser(command)
        sub.add_argument("name", nargs="?" if command == "logs" else None)
        sub.add_argument("--state", type=Path, default=DEFAULT_STATE_DIR)
        if command == "start":
            sub.add_argument("--cwd", type=Path)
            sub.add_argument("--env-file", type=Path)
            sub.add_argument("--wait-tcp", type=_host_port)
            sub.add_argument("--wait-timeout", type=float, default=30.0)
        if command == "stop":
            sub.add_argument("--timeout", type=float, default=10.0)
        if command == "logs":
            sub.add_argument("--lines", type=int, default=50)
    run = commands.add_parser("exec")
    run.add_argument("--env-file", type=Path)
    run.add_argument("--state", type=Path, default=DEFAULT_STATE_DIR, help="accepted, unused")
    wait = commands.add_parser("wait-tcp")
    wait.add_argument("address", type=_host_port)
    wait.add_argument("--timeout", type=float, default=30.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the command to run, never options of ours.
    command = words[words.index("--") + 1 :] if "--" in words else []
    options = words[: words.index("--")] if "--" in words else words
    args = _parser().parse_args(options)
    try:
        if args.command in ("start", "exec"):
            env = dict(os.environ)
            if args.env_file is not None:
                env = read_env_file(args.env_file, env)
            if args.command == "exec":
                if not command:
                    raise SuperviseError("exec: empty command")
                return subprocess.run(command, env=env, check=False).returncode
            record = start(args.name, command, state=args.state, cwd=args.cwd, env=env)
            print(f"{args.name} running as pid {record.pid}")
            if args.wait_tcp is not None:
                host, port = args.wait_tcp
                try:
                    wait_tcp(host, port, timeout=args.wait_timeout)
                except SuperviseError as exc:
                    stop(args.name, state=args.state)
                    log = log_file(args.state, args.name)
                    raise SuperviseError(
                        f"{args.name}: {exc}; end of {log}:\n{_tail(log, 20)}"
                    ) from exc
                print(f"{args.name} accepting connections on {host}:{port}")
        elif args.command == "stop":
            stopped = stop(args.name, state=args.state, timeout=args.timeout)
            print(f"{args.name} {'stopped' if stopped else 'was not running'}")
        elif args.command == "status":
            live = running(args.name, state=args.state)
            print(f"{args.name} " + (f"running as pid {live.pid}" if live else "stopped"))
            return 0 if live else 3
        elif args.command == "wait-tcp":
            host, port = args.address
            wait_tcp(host, port, timeout=args.timeout)
            print(f"{host}:{port} is accepting connections")
        else:
            names = [args.name] if args.name else sorted(p.stem for p in args.state.glob("*.log"))
            for name in names:
                print(f"==> {log_file(args.state, name)} <==")
                print(_tail(log_file(args.state, name), args.lines))
    except SuperviseError as exc:
        print(f"supervise: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
