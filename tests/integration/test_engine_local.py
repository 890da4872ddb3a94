"""The dev stack through the real Pulumi engine (the ``pulumi`` CLI), as ``make up`` runs it.

One deployment serves the module (``pulumi up`` once, ``pulumi destroy`` at the end), in a copy
of the project with its own file backend (``engine_project.copy_project``), its own
``localPortBase`` (the first candidate whose ports are all free, never the default of a running
``make up``) and a random ``tokenSigningKey`` set as a secret through stdin. Against it:

- real clients through the haproxy TLS edge: ALPN ``http/1.1`` on the WebSocket handshake, and
  chat, typing and presence between two clients the edge put on different instances (told apart
  by each instance's own ``realtime_connections`` gauge);
- the signing key works, and is in no file under the state backend, ``PULUMI_HOME`` or
  ``build/``, nor in anything the engine printed;
- ``pulumi preview --diff`` of a WebSocket config change shows the fly.toml line diff, and a
  ``handlers: [tls, http]`` stack fails the preview naming the key and PU02, running nothing;
- a second ``pulumi up`` changes nothing; ``pulumi destroy`` leaves no process and no port.

The tests run in file order and share the deployment; each prints the engine's wall time of
what it ran (shown with ``pytest -s``), never asserted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import shutil
import socket
import ssl
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from infra.deploy.smoke import PROTOCOL_VERSION
from infra.deploy.targets.local import STATE_DIR, instance_ports, redis_port
from infra.local import supervise
from infra.local.edge import edge_port
from tests.integration.engine_project import EngineProject, EngineRun, copy_project

pytestmark = [pytest.mark.integration, pytest.mark.engine]

STACK = "dev"
APP = "realtime-dev"
PROCESSES = ("redis", "app-1", "app-2", "edge")
PORT_BASES = (16000, 18000, 17000, 19000, 15000)
"""Candidate ``localPortBase`` values: every port below the ephemeral range (32768) and none
shared with the default base (a developer's ``make up``) or tests/infra/test_local_deploy.py."""
STEPS = 11
"""Resources of the dev stack: the stack, the FlyApp component and its nine steps."""


def _ports(base: int) -> tuple[int, ...]:
    """Every port the local target listens on with this base."""
    edge = tuple(edge_port(port, base=base) for port in (80, 443, 8081))
    backends = tuple(instance_ports(i, port, base=base) for i in (1, 2) for port in (8080, 8081))
    return (redis_port(base), *edge, *backends)


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _free_base() -> int:
    for base in PORT_BASES:
        if all(_refused(port) for port in _ports(base)):
            return base
    pytest.fail(f"no free localPortBase among {PORT_BASES}: their ports are all taken")


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """The deployed copy: the project, its port base, signing key and first ``up``."""

    project: EngineProject
    base: int
    key: str
    up: EngineRun
    outputs: dict[str, str]

    @property
    def state_dir(self) -> Path:
        """The supervisor's pid and log files (``build/local`` in the copy)."""
        return self.project.directory / STATE_DIR

    @property
    def ca_file(self) -> Path:
        """The development CA the edge's certificate is signed by."""
        return self.state_dir / "tls" / "ca.pem"


def _stop_leftovers(project: EngineProject) -> None:
    """After a failed destroy: stop whatever the supervisor still runs for this copy."""
    for name in PROCESSES:
        supervise.stop(name, state=project.directory / STATE_DIR)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    for tool in ("redis-server", "haproxy"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} not installed: `apt-get install {tool}` (.ci/run does)")
    project = copy_project(tmp_path_factory.mktemp("engine-local"), stack=STACK)
    base = _free_base()
    key = secrets.token_urlsafe(32)
    project.run("config", "set", "realtime-fly:localPortBase", str(base))
    project.run("config", "set", "--secret", "realtime-fly:tokenSigningKey", stdin=key)
    try:
        up = project.run("up", "--yes", "--skip-preview")
        print(f"\npulumi up (cold): {up.seconds:.1f} s")
        outputs = json.loads(project.run("stack", "output", "--json").output)
        yield Deployment(project=project, base=base, key=key, up=up, outputs=outputs)
    finally:
        destroyed = project.run("destroy", "--yes", "--skip-preview", succeed=None)
        if destroyed.returncode != 0:
            _stop_leftovers(project)


def _resources(output: str) -> str:
    """The ``Resources:`` summary of an up / preview / destroy, one count per line."""
    match = re.search(r"^Resources:\n((?:    .*\n)+)", output, flags=re.MULTILINE)
    assert match is not None, output
    return match.group(1)


def test_up_deploys_every_step_and_exports_the_edge_urls(deployment: Deployment) -> None:
    """The cold ``pulumi up`` creates every step (the smoke check among them) and exports the
    edge URLs on the stack's port base, with all four processes running."""
    assert _resources(deployment.up.output).split() == ["+", str(STEPS), "created"]
    base = deployment.base
    assert deployment.outputs["wss_url"] == f"wss://localhost:{edge_port(8081, base=base)}/"
    assert deployment.outputs["https_url"] == f"https://localhost:{edge_port(443, base=base)}/"
    for name in PROCESSES:
        assert supervise.running(name, state=deployment.state_dir) is not None, name


def _client_context(deployment: Deployment) -> ssl.SSLContext:
    """Trusts the development CA and offers h2 first, as a browser does."""
    context = ssl.create_default_context(cafile=str(deployment.ca_file))
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def _token(key: str, user: str) -> str:
    claims = {"sub": user, "name": user, "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, algorithm="HS256")


async def _until(ws: ClientConnection, kind: str, **fields: object) -> dict[str, object]:
    """The next frame of type ``kind`` whose ``fields`` match; an error frame fails the test."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert frame.get("type") != "error", frame
        if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
            return frame  # type: ignore[no-any-return]


async def _hello(deployment: Deployment, user: str, *, key: str) -> ClientConnection:
    ws = await connect(
        deployment.outputs["wss_url"],
        ssl=_client_context(deployment),
        open_timeout=10,
        compression=None,
    )
    await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": _token(key, user)}))
    return ws


async def test_wss_handshake_through_the_edge_negotiates_http11(deployment: Deployment) -> None:
    """A wss:// client offering h2 and http/1.1 gets 101 from the edge with ALPN http/1.1."""
    ws = await _hello(deployment, "alpn-check", key=deployment.key)
    try:
        ssl_object = ws.transport.get_extra_info("ssl_object")
        assert ssl_object is not None
        assert ssl_object.selected_alpn_protocol() == "http/1.1"
        assert ws.response is not None
        assert ws.response.status_code == 101
        await _until(ws, "welcome")
    finally:
        await ws.close()


def _open_connections(deployment: Deployment) -> tuple[int, ...]:
    """Each instance's ``realtime_connections`` gauge, read from its own metrics port."""
    counts: list[int] = []
    for index in (1, 2):
        port = instance_ports(index, 9091, base=deployment.base)
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        match = re.search(r"^realtime_connections (\S+)$", text, flags=re.MULTILINE)
        assert match is not None, text
        counts.append(int(float(match.group(1))))
    return tuple(counts)


async def _settled_connections(deployment: Deployment, total: int) -> tuple[int, ...]:
    """The gauges once they add up to ``total`` (a closed client is counted down a moment
    after its close handshake, a new one up a moment after its welcome)."""
    deadline = time.monotonic() + 10
    while True:
        counts = await asyncio.to_thread(_open_connections, deployment)
        if sum(counts) == total or time.monotonic() > deadline:
            assert sum(counts) == total, f"expected {total} connections in all, got {counts}"
            return counts
        await asyncio.sleep(0.05)


async def _instance_of_next_client(
    deployment: Deployment, user: str, *, already: int
) -> tuple[ClientConnection, int]:
    """Connect ``user`` through the edge while ``already`` clients are connected; the instance
    (1 or 2) whose gauge counted it."""
    before = await _settled_connections(deployment, already)
    ws = await _hello(deployment, user, key=deployment.key)
    await _until(ws, "welcome")
    after = await _settled_connections(deployment, already + 1)
    (grown,) = (i for i, (old, new) in enumerate(zip(before, after, strict=True)) if new > old)
    return ws, grown + 1


async def test_clients_on_different_instances_chat_type_and_see_presence(
    deployment: Deployment,
) -> None:
    """Alice and Bob both connect through the edge and land on different instances; Alice sees
    Bob join, Bob sees Alice typing and her message, Alice sees Bob leave (all via Redis)."""
    room = f"room-{uuid.uuid4().hex[:8]}"
    opened: list[ClientConnection] = []
    try:
        alice, alice_on = await _instance_of_next_client(deployment, "alice", already=0)
        opened.append(alice)
        bob, bob_on = alice, alice_on
        for attempt in range(4):  # the edge balances leastconn: the next one goes elsewhere
            bob_id = f"bob-{attempt}"
            bob, bob_on = await _instance_of_next_client(deployment, bob_id, already=len(opened))
            opened.append(bob)
            if bob_on != alice_on:
                break
        assert {alice_on, bob_on} == {1, 2}

        await alice.send(json.dumps({"type": "join", "room": room}))
        await _until(alice, "joined", room=room)
        await bob.send(json.dumps({"type": "join", "room": room}))
        await _until(bob, "joined", room=room)
        bob_user = {"id": bob_id, "name": bob_id}
        await _until(alice, "presence", room=room, event="join", user=bob_user)

        await alice.send(json.dumps({"type": "typing", "room": room, "state": "start"}))
        typing = await _until(bob, "typing", room=room)
        assert (typing["user"], typing["state"]) == ({"id": "alice", "name": "alice"}, "start")

        message_id = uuid.uuid4().hex
        body = {"type": "message", "room": room, "id": message_id, "body": "hi bob"}
        await alice.send(json.dumps(body))
        message = await _until(bob, "message", room=room, id=message_id)
        assert message["body"] == "hi bob"

        await bob.close()
        await _until(alice, "presence", room=room, event="leave", user=bob_user)
    finally:
        for ws in opened:
            await ws.close()


async def test_a_token_signed_with_the_generated_dev_key_is_refused(
    deployment: Deployment,
) -> None:
    """The backends verify with the stack's secret, not the generated development key
    (build/local/secrets.env): a token signed with the latter is closed with 4001."""
    dev_env = supervise.read_env_file(deployment.state_dir / "secrets.env", {})
    assert dev_env["TOKEN_SIGNING_KEY"] != deployment.key
    ws = await _hello(deployment, "mallory", key=dev_env["TOKEN_SIGNING_KEY"])
    with pytest.raises(ConnectionClosed) as closed:
        await _until(ws, "welcome")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001


def _files_containing(directory: Path, needles: tuple[bytes, ...]) -> list[Path]:
    return [
        path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    ]


def test_the_signing_key_is_encrypted_everywhere(deployment: Deployment) -> None:
    """No file under the state backend, PULUMI_HOME, build/ or the stack file holds the key
    (plain or base64), nor does anything the engine printed; the state holds it encrypted."""
    project = deployment.project
    plain = deployment.key.encode()
    needles = (plain, base64.b64encode(plain), base64.urlsafe_b64encode(plain))
    home = Path(project.env["PULUMI_HOME"])
    for directory in (project.state, home, project.directory / "build"):
        assert _files_containing(directory, needles) == [], directory
    stack_file = project.directory / f"Pulumi.{STACK}.yaml"
    assert _files_containing(stack_file.parent, needles) == []
    assert "secure:" in stack_file.read_text()
    assert not any(deployment.key in output for output in project.transcript)
    state = _checkpoint(project)
    app = next(r for r in state["resources"] if r["urn"].endswith(f"::{APP}-app-1"))
    secret = app["inputs"]["environment"]["TOKEN_SIGNING_KEY"]
    assert set(secret) == {"4dabf18193072939515e22adb298388d", "ciphertext"}


def _checkpoint(project: EngineProject) -> dict[str, Any]:
    """The stack's latest deployment in the file backend."""
    (path,) = (project.state / ".pulumi" / "stacks").rglob(f"{STACK}.json")
    document = json.loads(path.read_text())
    return document["checkpoint"]["latest"]  # type: ignore[no-any-return]


def _stack_file(project: EngineProject) -> Path:
    return project.directory / f"Pulumi.{STACK}.yaml"


def _resource_blocks(output: str) -> dict[str, tuple[str, str]]:
    """Step name -> (operation, its lines) of a ``preview --diff`` of the FlyApp's steps."""
    blocks: dict[str, tuple[str, str]] = {}
    pattern = re.compile(
        r"^    (?P<op>[+~-]+)?\s*pulumi-python:dynamic:Resource: \((?P<kind>\w+)\)\n"
        r"(?:.*\n)*?.*\[urn=[^\]]*::" + APP + r"-(?P<name>[\w-]+)\]\n"
        r"(?P<body>(?:        .*\n|      [~+-] .*\n|\s*\n)*)",
        flags=re.MULTILINE,
    )
    for match in pattern.finditer(output):
        blocks[match.group("name")] = (match.group("kind"), match.group("body"))
    return blocks


def test_preview_diff_shows_the_fly_toml_lines_a_websocket_change_makes(
    deployment: Deployment,
) -> None:
    """proxyProto v2 on the deployed stack: ``preview --diff`` updates the fly-toml step with
    the handlers line diff and the new proxy_proto_options line, and replaces exactly the edge
    and the backends (and the smoke check), not redis."""
    project = deployment.project
    original = _stack_file(project).read_text()
    try:
        project.run("config", "set", "--path", "realtime-fly:websocket.proxyProto", "v2")
        preview = project.run("preview", "--diff")
    finally:
        _stack_file(project).write_text(original)
    print(f"\npulumi preview --diff: {preview.seconds:.1f} s")
    blocks = _resource_blocks(preview.output)
    operations = {name: kind for name, (kind, _) in blocks.items()}
    assert operations == {
        "fly-toml": "update",
        "edge-config": "replace",
        "app-1": "replace",
        "app-2": "replace",
        "edge": "replace",
        "smoke": "replace",
    }
    fly_toml = blocks["fly-toml"][1]
    assert "      ~ stdin      : \n" in fly_toml
    assert (
        '          - handlers = ["tls"]\n'
        '          + handlers = ["tls", "proxy_proto"]\n'
        '            tls_options = {alpn = ["http/1.1"], versions = ["TLSv1.2", "TLSv1.3"]}\n'
        '          + proxy_proto_options = {version = "v2"}\n'
    ) in fly_toml
    assert _resources(preview.output).split() == [
        "~", "1", "to", "update", "+-5", "to", "replace", "6", "changes.", "5", "unchanged",
    ]  # fmt: skip


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file, except the logs the running processes append to."""
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.suffix != ".log"
    }


def test_preview_refuses_the_http_handler_and_runs_nothing(deployment: Deployment) -> None:
    """handlers [tls, http]: the preview fails naming realtime-fly:websocket.handlers and PU02;
    no file under build/ changes, the processes are the same, the state is untouched and has
    no pending operation."""
    project = deployment.project
    build = project.directory / "build"
    (state_file,) = (project.state / ".pulumi" / "stacks").rglob(f"{STACK}.json")
    files_before, state_before = _snapshot(build), state_file.read_bytes()
    pids_before = {name: supervise.running(name, state=deployment.state_dir) for name in PROCESSES}
    original = _stack_file(project).read_text()
    try:
        for index, handler in enumerate(("tls", "http")):
            key = f"realtime-fly:websocket.handlers[{index}]"
            project.run("config", "set", "--path", key, handler)
        preview = project.run("preview", "--diff", succeed=False)
    finally:
        _stack_file(project).write_text(original)
    assert preview.returncode != 0
    assert 'realtime-fly:websocket.handlers = ["tls", "http"]: ' in preview.output
    assert "[PU02] could not complete HTTP request to instance" in preview.output
    assert _snapshot(build) == files_before
    assert state_file.read_bytes() == state_before
    assert not _checkpoint(project).get("pending_operations")
    pids_after = {name: supervise.running(name, state=deployment.state_dir) for name in PROCESSES}
    assert pids_after == pids_before


def test_second_up_changes_nothing(deployment: Deployment) -> None:
    """Another ``pulumi up`` of the same stack reports every resource unchanged, no step."""
    up = deployment.project.run("up", "--yes", "--skip-preview")
    print(f"\npulumi up (warm, no changes): {up.seconds:.1f} s")
    assert _resources(up.output).split() == [str(STEPS), "unchanged"]
    steps = re.findall(r"^ [+~-]+\s+\S+:\S+ \S+ (?:creat|updat|replac|delet)", up.output, re.M)
    assert steps == []


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_destroy_leaves_no_process_and_no_port(deployment: Deployment) -> None:
    """``pulumi destroy`` deletes every resource; the supervised pids are gone and every port of
    the deployment refuses connections. Runs last: it ends the shared deployment."""
    records = [supervise.running(name, state=deployment.state_dir) for name in PROCESSES]
    pids = [record.pid for record in records if record is not None]
    assert len(pids) == len(PROCESSES)
    destroy = deployment.project.run("destroy", "--yes", "--skip-preview")
    print(f"\npulumi destroy: {destroy.seconds:.1f} s")
    assert _resources(destroy.output).split() == ["-", str(STEPS), "deleted"]
    assert [pid for pid in pids if _alive(pid)] == []
    for name in PROCESSES:
        assert supervise.running(name, state=deployment.state_dir) is None, name
    assert [port for port in _ports(deployment.base) if not _refused(port)] == []
