"""infra.local.supervise starts detached processes and stops their whole process group"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from infra.local import supervise

REPO = Path(__file__).resolve().parents[2]

# A process that starts a child of its own and sleeps: stopping must take both down.
PARENT_WITH_CHILD = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    "print('child', child.pid, flush=True); time.sleep(120)"
)


def _cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    command, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "infra.local.supervise", command, "--state", str(state), *rest],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _child_pid(log: Path) -> int:
    for _ in range(200):
        for line in log.read_text().splitlines():
            if line.startswith("child "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no child pid in {log}")


def _exists(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_start_survives_the_starting_command_and_stop_kills_the_group(tmp_path: Path) -> None:
    """A started process outlives `start`; `stop` ends it and its child."""
    result = _cli("start", "sleeper", "--", sys.executable, "-c", PARENT_WITH_CHILD, state=tmp_path)
    assert result.returncode == 0, result.stderr
    record = supervise.running("sleeper", state=tmp_path)
    assert record is not None
    assert os.getpgid(record.pid) == record.pid
    child = _child_pid(tmp_path / "sleeper.log")
    assert _exists(child)

    stopped = _cli("stop", "sleeper", state=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "sleeper stopped" in stopped.stdout
    assert not _exists(record.pid)
    assert not _exists(child)
    assert not (tmp_path / "sleeper.pid").exists()


def test_start_twice_keeps_the_first_process(tmp_path: Path) -> None:
    """Starting a name that is running returns the same pid and starts nothing new."""
    argv = ["--", sys.executable, "-c", "import time; time.sleep(120)"]
    assert _cli("start", "once", *argv, state=tmp_path).returncode == 0
    first = supervise.running("once", state=tmp_path)
    assert _cli("start", "once", *argv, state=tmp_path).returncode == 0
    assert supervise.running("once", state=tmp_path) == first
    assert supervise.stop("once", state=tmp_path) is True


def test_stop_of_a_stopped_name_succeeds(tmp_path: Path) -> None:
    """Stopping a name that never ran is not an error."""
    result = _cli("stop", "nothing", state=tmp_path)
    assert result.returncode == 0
    assert "nothing was not running" in result.stdout


def test_status_exit_code_tells_running_from_stopped(tmp_path: Path) -> None:
    """`status` exits 0 for a running name and 3 for a stopped one."""
    assert _cli("status", "idle", state=tmp_path).returncode == 3
    assert _cli("start", "idle", "--", "sleep", "120", state=tmp_path).returncode == 0
    assert _cli("status", "idle", state=tmp_path).returncode == 0
    supervise.stop("idle", state=tmp_path)
    assert _cli("status", "idle", state=tmp_path).returncode == 3


def test_start_reports_a_process_that_dies_at_once_with_its_log(tmp_path: Path) -> None:
    """A command that exits during startup fails `start` with its exit status and output."""
    code = "import sys; print('bad port 0'); sys.exit(7)"
    result = _cli("start", "broken", "--", sys.executable, "-c", code, state=tmp_path)
    assert result.returncode == 1
    assert "exited with status 7" in result.stderr
    assert "bad port 0" in result.stderr
    assert not (tmp_path / "broken.pid").exists()


def test_start_of_a_missing_program_names_it(tmp_path: Path) -> None:
    """A program that does not exist is reported by name."""
    with pytest.raises(supervise.SuperviseError, match="no-such-program-here"):
        supervise.start("ghost", ["no-such-program-here"], state=tmp_path)


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    """A pid file whose start time does not match the live process counts as stopped."""
    (tmp_path / "stale.pid").write_text(f"{os.getpid()} 1\n")
    assert supervise.running("stale", state=tmp_path) is None
    assert supervise.stop("stale", state=tmp_path) is False
    assert not (tmp_path / "stale.pid").exists()


@pytest.mark.parametrize("name", ["", "Upper", "../escape", "a b"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    """Names that could escape the state directory are refused, naming the value."""
    with pytest.raises(supervise.SuperviseError, match="process name must match"):
        supervise.running(name, state=tmp_path)


def test_wait_tcp_times_out_naming_the_address() -> None:
    """Waiting on a closed port fails with the address in the message."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(supervise.SuperviseError, match=f"127.0.0.1:{port}"):
        supervise.wait_tcp("127.0.0.1", port, timeout=0.3)


def test_wait_tcp_returns_once_listening() -> None:
    """Waiting on a listening port returns."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        supervise.wait_tcp("127.0.0.1", sock.getsockname()[1], timeout=5)


def test_env_file_fills_only_names_the_environment_lacks(tmp_path: Path) -> None:
    """--env-file values reach the process, but a variable already set wins."""
    env_file = tmp_path / "secrets.env"
    env_file.write_text("# dev\nFROM_FILE=file-value\nALREADY=file-loses\n")
    merged = supervise.read_env_file(env_file, {"ALREADY": "env-wins"})
    assert merged == {"ALREADY": "env-wins", "FROM_FILE": "file-value"}


def test_env_file_rejects_a_line_without_a_name(tmp_path: Path) -> None:
    """A malformed line is reported by file and line number, without its content."""
    env_file = tmp_path / "bad.env"
    env_file.write_text("GOOD=1\nnot a secret line\n")
    with pytest.raises(supervise.SuperviseError, match=r"bad.env line 2: expected NAME=VALUE"):
        supervise.read_env_file(env_file, {})


def test_exec_runs_in_the_foreground_with_the_env_file(tmp_path: Path) -> None:
    """`exec` returns the command's status and passes the file's variables."""
    env_file = tmp_path / "secrets.env"
    env_file.write_text("SMOKE_VALUE=42\n")
    code = "import os, sys; sys.exit(int(os.environ['SMOKE_VALUE']))"
    result = _cli(
        "exec", "--env-file", str(env_file), "--", sys.executable, "-c", code, state=tmp_path
    )
    assert result.returncode == 42


def test_start_with_wait_tcp_returns_once_listening(tmp_path: Path) -> None:
    """--wait-tcp makes `start` return only when the process accepts connections."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = (
        f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); time.sleep(120)"
    )
    result = _cli(
        "start",
        "listener",
        "--wait-tcp",
        f"127.0.0.1:{port}",
        "--",
        sys.executable,
        "-c",
        server,
        state=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"accepting connections on 127.0.0.1:{port}" in result.stdout
    assert supervise.stop("listener", state=tmp_path) is True


def test_start_with_wait_tcp_stops_a_process_that_never_listens(tmp_path: Path) -> None:
    """A process that does not open its port in time is stopped and the failure reported."""
    result = _cli(
        "start",
        "deaf",
        "--wait-tcp",
        "127.0.0.1:1",
        "--wait-timeout",
        "0.5",
        "--",
        "sleep",
        "120",
        state=tmp_path,
    )
    assert result.returncode == 1
    assert "deaf: 127.0.0.1:1 did not accept a connection" in result.stderr
    assert supervise.running("deaf", state=tmp_path) is None


def test_wait_tcp_fails_at_once_when_the_server_exits(tmp_path: Path) -> None:
    """A server that dies before listening fails the wait with its exit and its log, not a
    timeout."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('bad config: no port'); sys.exit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process.wait()
    with pytest.raises(supervise.SuperviseError, match=r"exited 3 before") as info:
        supervise.wait_tcp("127.0.0.1", port, timeout=30, process=process, log=log)
    assert "bad config: no port" in str(info.value)
