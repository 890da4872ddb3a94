"""``python -m bench.profile``: where the backend spends its time in one scenario (py-spy).

Starts the backend, loads it with the same generator and workload as ``python -m bench``
(fan-out at saturation, or churn), records it with ``py-spy record --format raw`` and prints
the functions with the largest share of samples: *self* (the function was running) and
*total* (it was on the stack). The collapsed stacks are kept next to the results for a
flame graph (``py-spy`` raw format, readable by speedscope and inferno).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench import scenarios, servers
from bench.loadgen import LoadGenerator
from bench.scenarios import Params

logger = logging.getLogger("bench.profile")


def summarize(collapsed: str, *, top: int = 20) -> dict[str, list[tuple[str, float]]]:
    """Shares of samples per function from py-spy's raw (collapsed) output: ``self`` counts
    the leaf frame of each stack, ``total`` every distinct function on it."""
    own: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame.strip() for frame in stack.split(";") if frame.strip()]
        if not frames:
            continue
        samples += count
        own[_short(frames[-1])] += count
        lines[_short(frames[-1], line=True)] += count
        for name in {_short(frame) for frame in frames}:
            total[name] += count
    if not samples:
        return {"self": [], "self_lines": [], "total": []}
    return {
        "self": [(name, count / samples) for name, count in own.most_common(top)],
        "self_lines": [(name, count / samples) for name, count in lines.most_common(top)],
        "total": [(name, count / samples) for name, count in total.most_common(top)],
    }


def _short(frame: str, *, line: bool = False) -> str:
    """``send_text (/x/site-packages/websockets/protocol.py:123)`` ->
    ``send_text (websockets/protocol.py)``, with ``:123`` when ``line``. Time spent in C code
    (transport writes, encoding) counts as the calling line's own time."""
    name, _, where = frame.partition(" (")
    path, _, number = where.rstrip(")").rpartition(":")
    if not path:
        path, number = number, ""
    for marker in ("site-packages/", "backend/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    suffix = f":{number}" if line and number else ""
    return f"{name} ({path}{suffix})" if path else name


def _record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--scenario", choices=("fanout", "churn", "idle"), default="fanout")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=servers.REPO / "bench" / "results")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="fanout: publishes/s open loop (0: saturate)"
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="fanout through two instances on a redis-server; profile the first instance",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    secret = secrets.token_urlsafe(32)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    raw = args.out / f"profile-{args.scenario}-{stamp}.txt"
    params = Params(
        window_seconds=args.seconds + 1,
        rounds=1,
        warmup_seconds=1.0,
        churn_seconds=args.seconds + 1,
    )
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-prof-")))
        targets: list[tuple[str, str]] = []
        if args.redis:  # unpinned, as in the suite's two-instance scenario
            redis = stack.enter_context(servers.redis_server(workdir))
            instances = [
                stack.enter_context(
                    servers.backend(workdir, secret=secret, name=name, redis_url=redis.url)
                )
                for name in ("realtime-a", "realtime-b")
            ]
            targets += [(instance.url, instance.protocol) for instance in instances]
            server = instances[0]
            loadgen = stack.enter_context(LoadGenerator(workers=2, secret=secret))
        else:
            server = stack.enter_context(servers.backend(workdir, secret=secret, cpus=[0]))
            targets.append((server.url, server.protocol))
            loadgen = stack.enter_context(LoadGenerator(workers=2, secret=secret, cpus=[1]))
        if args.scenario == "fanout":
            specs = scenarios.members(targets, args.members, room="profile", senders=params.senders)
            opened = loadgen.open(specs)
            logger.info("opened %s connections", opened["opened"])
            recorder = _record(server.pid, args.seconds, raw)
            started = time.monotonic()
            loadgen.call("reset")
            answers = loadgen.call(
                "publish",
                rate=args.rate / len(loadgen),
                window=params.inflight,
                seconds=args.seconds + 1,
            )
            stats = loadgen.stats()
            wall = time.monotonic() - started
            latencies = [ns / 1e6 for ns in stats["latency_ns"]]
            logger.info(
                "published %s, delivered %.0f/s, latency p50 %s p99 %s ms",
                sum(a["published"] for a in answers),
                stats["delivered"] / wall,
                scenarios.percentile(latencies, 0.5),
                scenarios.percentile(latencies, 0.99),
            )
            loadgen.close()
        elif args.scenario == "idle":
            opened = loadgen.open(scenarios.idle_members(server, args.members, params))
            logger.info("opened %s connections, settling", opened["opened"])
            time.sleep(params.idle_settle_seconds)
            recorder = _record(server.pid, args.seconds, raw)
            recorder.wait(timeout=args.seconds + 60)
            loadgen.close()
        else:
            recorder = _record(server.pid, args.seconds, raw)
            result = scenarios.churn(loadgen, [server], [(server.url, server.protocol)], params)
            logger.info("churn %.0f sessions/s", result["per_s"]["median"])
        _, errors = recorder.communicate(timeout=60)
        if recorder.returncode != 0 or not raw.exists():
            logger.error("py-spy failed (%s): %s", recorder.returncode, errors.decode()[-800:])
            return 1
    shares = summarize(raw.read_text(), top=args.top)
    for kind in ("self", "self_lines", "total"):
        print(f"\n{kind} share of samples ({args.scenario}, {args.members} members):")
        for name, share in shares[kind]:
            print(f"{100 * share:6.1f}%  {name}")
    print(f"\ncollapsed stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
