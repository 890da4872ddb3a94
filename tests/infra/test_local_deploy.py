"""The local plan deploys for real: redis, two backends and the haproxy TLS edge, then tears down

Each step's command line is run the way pulumi-command runs it (``/bin/sh -c`` with the step's
environment, stdin and directory), in a temporary project directory, so this checks the plan and
every helper it calls without the Pulumi engine. The stack's ``localPortBase`` is set to
2000 (redis 8379, edge 10080/10443/10081, backends 13080-14081), away from a ``make up`` on the
default base and from the engine tests; the test fails early if something holds those ports.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from websockets.asyncio.client import connect

from infra.deploy.plan import Plan, PlanContext, Step, tree_digest
from infra.deploy.smoke import PROTOCOL_VERSION
from infra.deploy.targets.local import STATE_DIR, local_plan, redis_port
from infra.flytoml.render import render_fly_toml
from infra.local import supervise
from infra.stack.settings import load_stack_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROCESSES = ("redis", "app-1", "app-2", "edge")
PORT_BASE = 2000
PORTS = (redis_port(PORT_BASE), 10080, 10443, 10081, 13080, 13081, 14080, 14081)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _run_step(step: Step, line: str, project: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), **step.environment}
    result = subprocess.run(
        ["/bin/sh", "-c", line],
        cwd=project / (step.dir or "."),
        env=env,
        input=step.stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"step {step.name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _up(project: Path) -> tuple[Plan, dict[str, str]]:
    """Run every step's create line in order; return the plan and each step's stdout."""
    for tool in ("redis-server", "haproxy"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} not installed: `apt-get install {tool}` (.ci/run does)")
    busy = [port for port in PORTS if not _port_free(port)]
    if busy:
        pytest.fail(f"local target ports already in use: {busy} (is `make up` running?)")
    dev = load_stack_file(REPO / "Pulumi.dev.yaml", require_secrets=False)
    settings = replace(dev, local_port_base=PORT_BASE)
    context = PlanContext(
        python=sys.executable,
        backend_dir=str(REPO / "backend"),
        build_dir="build/dev",
        backend_digest=tree_digest(REPO / "backend"),
    )
    plan = local_plan(settings, fly_toml=render_fly_toml(settings.fly), context=context)
    outputs: dict[str, str] = {}
    try:
        for step in plan.steps:
            outputs[step.name] = _run_step(step, step.create_line(), project)
    except BaseException:
        _down(plan, project)
        raise
    return plan, outputs


def _down(plan: Plan, project: Path) -> None:
    """Run every step's delete line in reverse order, as `pulumi destroy` does."""
    for step in reversed(plan.steps):
        line = step.delete_line()
        if line is not None:
            _run_step(step, line, project)


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Plan, Path, dict[str, str]]]:
    project = tmp_path_factory.mktemp("local-deploy")
    plan, outputs = _up(project)
    try:
        yield plan, project, outputs
    finally:
        _down(plan, project)


def _token(key: str, user: str) -> str:
    claims = {"sub": user, "name": user, "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, algorithm="HS256")


async def _joined(url: str, key: str, user: str, room: str):  # type: ignore[no-untyped-def]
    ws = await connect(url, open_timeout=10)
    await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": _token(key, user)}))
    await _until(ws, "welcome")
    await ws.send(json.dumps({"type": "join", "room": room}))
    await _until(ws, "joined")
    return ws


async def _until(ws, kind: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert frame.get("type") != "error", frame
        if frame.get("type") == kind:
            return frame  # type: ignore[no-any-return]


def test_local_deploy_answers_through_the_tls_edge_and_tears_down(
    deployed: tuple[Plan, Path, dict[str, str]],
) -> None:
    """`up` serves wss through the edge (ALPN http/1.1, chat round trip); `down` stops all."""
    plan, project, outputs = deployed
    smoke = outputs["smoke"]
    assert "ok alpn: http/1.1" in smoke
    assert "ok handshake: 101 Switching Protocols" in smoke
    assert "ok chat:" in smoke
    state = project / STATE_DIR
    for name in PROCESSES:
        assert supervise.running(name, state=state) is not None, name
    assert plan.wss_url == "wss://localhost:10081/"


async def test_instances_share_rooms_through_redis(
    deployed: tuple[Plan, Path, dict[str, str]],
) -> None:
    """A message sent to app-1 reaches a member of the same room connected to app-2."""
    _plan, project, _outputs = deployed
    secrets = dict(
        line.split("=", 1) for line in (project / STATE_DIR / "secrets.env").read_text().split()
    )
    key = secrets["TOKEN_SIGNING_KEY"]
    room = f"room-{uuid.uuid4().hex[:8]}"
    sender = await _joined("ws://127.0.0.1:13081/", key, "alice", room)
    receiver = await _joined("ws://127.0.0.1:14081/", key, "bob", room)
    try:
        message_id = uuid.uuid4().hex
        await sender.send(
            json.dumps({"type": "message", "room": room, "id": message_id, "body": "hi bob"})
        )
        frame = await _until(receiver, "message")
        assert frame["body"] == "hi bob"
    finally:
        await sender.close()
        await receiver.close()


def test_down_stops_every_process(deployed: tuple[Plan, Path, dict[str, str]]) -> None:
    """After the delete lines (`make down`) no process is left and every port is closed.

    Runs last in this module: it tears down the shared deployment (a second teardown by the
    fixture is a no-op, as stopping a stopped process is)."""
    plan, project, _outputs = deployed
    _down(plan, project)
    for name in PROCESSES:
        assert supervise.running(name, state=project / STATE_DIR) is None, name
    assert all(_port_free(port) for port in PORTS)
