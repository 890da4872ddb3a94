"""Write the local edge's haproxy configuration from a rendered fly.toml, and validate it.

    python -m infra.local.haproxy --fly-toml build/dev/fly.toml --out build/local/haproxy.cfg \\
        --certificate build/local/tls/edge.pem --port-base 10000 \\
        --instance app-1:8080=21080,8081=21081 --instance app-2:8080=22080,8081=22081

The file is parsed back (``infra.flytoml.parse``) so the edge serves exactly the services the
rendered fly.toml declares, rendered by :func:`infra.local.edge.render_haproxy`, then checked with
``haproxy -c`` before it replaces the previous configuration (unless ``--no-check``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.errors import ConfigError
from infra.flytoml.parse import parse_fly_toml
from infra.local.edge import EdgeError, Instance, render_haproxy

__all__ = ["instance_spec", "main", "parse_instance", "write_config"]


def parse_instance(text: str) -> Instance:
    """``NAME:INTERNAL=LOCAL[,INTERNAL=LOCAL...]`` -> :class:`Instance`."""
    name, sep, mapping = text.partition(":")
    ports: dict[int, int] = {}
    for pair in mapping.split(",") if sep else ():
        internal, eq, local = pair.partition("=")
        if not (eq and internal.isdigit() and local.isdigit()):
            break
        ports[int(internal)] = int(local)
    else:
        if name and ports:
            return Instance(name=name, ports=ports)
    raise argparse.ArgumentTypeError(
        f"expected NAME:INTERNAL=LOCAL[,INTERNAL=LOCAL...], got {text!r}"
    )


def instance_spec(instance: Instance) -> str:
    """The ``--instance`` text of an :class:`Instance` (inverse of :func:`parse_instance`)."""
    pairs = ",".join(f"{internal}={local}" for internal, local in sorted(instance.ports.items()))
    return f"{instance.name}:{pairs}"


def write_config(
    fly_toml: Path,
    out: Path,
    *,
    certificate: str,
    instances: Sequence[Instance],
    port_base: int,
    haproxy: str | None,
) -> None:
    """Render ``out`` from ``fly_toml``; with ``haproxy`` set, refuse a config it rejects."""
    config = parse_fly_toml(fly_toml.read_text()).config
    text = render_haproxy(config, instances=instances, certificate=certificate, port_base=port_base)
    out.parent.mkdir(parents=True, exist_ok=True)
    candidate = out.with_suffix(out.suffix + ".new")
    candidate.write_text(text)
    if haproxy is not None:
        result = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise EdgeError(
                f"haproxy rejected {candidate}: {(result.stderr or result.stdout).strip()}"
            )
    candidate.replace(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.haproxy", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--fly-toml", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--certificate", required=True)
    parser.add_argument("--instance", type=parse_instance, action="append", required=True)
    parser.add_argument("--port-base", type=int, required=True, help="localPortBase")
    parser.add_argument("--haproxy", default="haproxy")
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args(argv)
    haproxy = None if args.no_check else (shutil.which(args.haproxy) or args.haproxy)
    try:
        write_config(
            args.fly_toml,
            args.out,
            certificate=args.certificate,
            instances=args.instance,
            port_base=args.port_base,
            haproxy=haproxy,
        )
    except (ConfigError, EdgeError, OSError) as exc:
        print(f"haproxy config: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
