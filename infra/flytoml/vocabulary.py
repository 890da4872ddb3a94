"""What flyctl v0.4.87 knows: every fly.toml key, where ``--strict`` looks, and its value readers.

The key tree is read from flyctl's Go structs (the ``toml`` tags its strict validation reflects
on, internal/appconfig/strict_validate.go:52-104): ``Config`` and its sections in
internal/appconfig/config.go:51-219, services and checks in internal/appconfig/service.go:12-68,
top-level checks in internal/appconfig/toplevelcheck.go:14-26, and fly-go v0.9.5's
``MachinePort``, ``MachineServiceConcurrency``, ``TLSOptions``, ``HTTPOptions``,
``HTTPResponseOptions``, ``ReplayCache``, ``MachineGuest`` (inlined into ``[[vm]]``),
``MachineMetrics`` and ``ProxyProtoOptions`` (machine_types.go).

flyctl's ``--strict`` runs on the map after its patches (internal/appconfig/serde.go:58-80):
the patches turn ``[[services]]``, ``[[vm]]`` (alias ``compute``/``computes``), ``[mounts]``
(alias ``mount``) and ``[[metrics]]`` (alias ``metric``) into typed arrays that its reflection
walk does not enter (strict_validate.go:174), so unknown keys there are silently ignored.
Everything else, unknown top-level sections included, is checked.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FREE",
    "LEAF",
    "ROOT",
    "STRICT_SKIPPED",
    "Node",
    "parse_human_gb",
    "parse_ram_mb",
    "shell_split_error",
]


@dataclass(frozen=True, slots=True)
class Node:
    """A table flyctl knows: its ``keys`` (child nodes), or ``free`` for any key (a map of
    strings such as ``[env]``), or ``each`` for a map whose values are all ``each``."""

    keys: Mapping[str, Node | None] | None = None
    free: bool = False
    each: Node | None = None

    def child(self, name: str) -> Node | None:
        """The node of key ``name``; ``None`` for a scalar; ``UNKNOWN`` when flyctl does not
        know the key."""
        if self.free:
            return FREE
        if self.each is not None:
            return self.each
        assert self.keys is not None
        return self.keys.get(name, UNKNOWN)

    def knows(self, name: str) -> bool:
        """Whether flyctl knows key ``name`` here."""
        return self.free or self.each is not None or (self.keys is not None and name in self.keys)


LEAF: Final = None
"""A scalar or list-of-scalars key."""
FREE: Final = Node(free=True)
"""A map flyctl takes whole (``[env]``, ``[processes]``, ``headers``, ``[build.args]``)."""
UNKNOWN: Final = Node(free=True)
"""The node of a key flyctl does not know (its contents are not judged further)."""


def _node(**keys: Node | None) -> Node:
    return Node(keys=keys)


_DURATION = LEAF
_CHECK_HTTP: Final = {
    "interval": _DURATION,
    "timeout": _DURATION,
    "grace_period": _DURATION,
    "method": LEAF,
    "path": LEAF,
    "protocol": LEAF,
    "tls_skip_verify": LEAF,
    "tls_server_name": LEAF,
    "headers": FREE,
}
_MACHINE_CHECK = _node(
    command=LEAF, image=LEAF, entrypoint=LEAF, kill_signal=LEAF, kill_timeout=LEAF
)
_CONCURRENCY = _node(type=LEAF, hard_limit=LEAF, soft_limit=LEAF)
_TLS_OPTIONS = _node(alpn=LEAF, versions=LEAF, default_self_signed=LEAF)
_HTTP_OPTIONS = _node(
    compress=LEAF,
    response=_node(headers=FREE, pristine=LEAF),
    h2_backend=LEAF,
    idle_timeout=LEAF,
    headers_read_timeout=LEAF,
    replay_cache=_node(path_prefix=LEAF, ttl_seconds=LEAF, type=LEAF, name=LEAF, allow_bypass=LEAF),
)
_PORT = _node(
    port=LEAF,
    start_port=LEAF,
    end_port=LEAF,
    handlers=LEAF,
    force_https=LEAF,
    tls_options=_TLS_OPTIONS,
    http_options=_HTTP_OPTIONS,
    proxy_proto_options=_node(version=LEAF),
)
_SERVICE = _node(
    protocol=LEAF,
    internal_port=LEAF,
    auto_stop_machines=LEAF,
    auto_start_machines=LEAF,
    min_machines_running=LEAF,
    ports=_PORT,
    concurrency=_CONCURRENCY,
    tcp_checks=_node(interval=_DURATION, timeout=_DURATION, grace_period=_DURATION),
    http_checks=Node(keys=_CHECK_HTTP),
    machine_checks=_MACHINE_CHECK,
    processes=LEAF,
)
_HTTP_SERVICE = _node(
    internal_port=LEAF,
    force_https=LEAF,
    auto_stop_machines=LEAF,
    auto_start_machines=LEAF,
    min_machines_running=LEAF,
    processes=LEAF,
    concurrency=_CONCURRENCY,
    tls_options=_TLS_OPTIONS,
    http_options=_HTTP_OPTIONS,
    checks=Node(keys=_CHECK_HTTP),
    machine_checks=_MACHINE_CHECK,
)
_COMPUTE = _node(
    size=LEAF,
    memory=LEAF,
    processes=LEAF,
    cpu_kind=LEAF,
    cpus=LEAF,
    memory_mb=LEAF,
    max_memory_mb=LEAF,
    gpus=LEAF,
    gpu_kind=LEAF,
    host_dedication_id=LEAF,
    persist_rootfs=LEAF,
    kernel_args=LEAF,
)
_MOUNT = _node(
    source=LEAF,
    destination=LEAF,
    initial_size=LEAF,
    snapshot_retention=LEAF,
    scheduled_snapshots=LEAF,
    auto_extend_size_threshold=LEAF,
    auto_extend_size_increment=LEAF,
    auto_extend_size_limit=LEAF,
    processes=LEAF,
)
_METRICS = _node(port=LEAF, path=LEAF, https=LEAF, processes=LEAF)

ROOT: Final = _node(
    app=LEAF,
    primary_region=LEAF,
    kill_signal=LEAF,
    kill_timeout=LEAF,
    swap_size_mb=LEAF,
    console_command=LEAF,
    host_dedication_id=LEAF,
    machine_config=LEAF,
    container=LEAF,
    experimental=_node(
        cmd=LEAF,
        entrypoint=LEAF,
        exec=LEAF,
        auto_rollback=LEAF,
        enable_consul=LEAF,
        enable_etcd=LEAF,
        lazy_load_images=LEAF,
        attached=_node(secrets=_node(export=FREE)),
        machine_config=LEAF,
    ),
    build=_node(
        builder=LEAF,
        args=FREE,
        buildpacks=LEAF,
        image=LEAF,
        settings=FREE,
        builtin=LEAF,
        dockerfile=LEAF,
        ignorefile=LEAF,
        **{"build-target": LEAF, "build_target": LEAF},  # patches.go:172 renames the alias
        compose=_node(file=LEAF),
        compression=LEAF,
        compression_level=LEAF,
    ),
    deploy=_node(
        strategy=LEAF,
        max_unavailable=LEAF,
        wait_timeout=LEAF,
        release_command=LEAF,
        release_command_timeout=LEAF,
        release_command_vm=_COMPUTE,
        seed_command=LEAF,
    ),
    env=FREE,
    processes=FREE,
    mounts=_MOUNT,
    mount=_MOUNT,
    http_service=_HTTP_SERVICE,
    services=_SERVICE,
    checks=Node(each=Node(keys={**_CHECK_HTTP, "port": LEAF, "type": LEAF, "processes": LEAF})),
    files=_node(guest_path=LEAF, local_path=LEAF, secret_name=LEAF, raw_value=LEAF, processes=LEAF),
    machine_checks=_MACHINE_CHECK,
    restart=_node(policy=LEAF, retries=LEAF, processes=LEAF),
    vm=_COMPUTE,
    compute=_COMPUTE,
    computes=_COMPUTE,
    statics=_node(guest_path=LEAF, url_prefix=LEAF, tigris_bucket=LEAF, index_document=LEAF),
    metrics=_METRICS,
    metric=_METRICS,
)
"""The whole fly.toml as flyctl v0.4.87 knows it."""

STRICT_SKIPPED: Final = frozenset(
    {"services", "vm", "compute", "computes", "mounts", "mount", "metrics", "metric"}
)
"""Top-level keys whose contents ``fly config validate --strict`` does not look into."""


# -- value readers flyctl uses -----------------------------------------------------------------

_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_RAM_UNITS: Final = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_human_gb(text: str) -> int | None:
    """A size in whole GB the way flyctl reads ``[mounts] initial_size`` (helpers/units.go
    ParseSize with go-units ``FromHumanSize``: decimal units, ``i`` ignored; a bare integer is
    GB); ``None`` when unreadable."""
    if text.isdigit():
        return int(text)
    match = _RAM.fullmatch(text)
    if match is None:
        return None
    number, unit = match.groups()
    try:
        size = float(number)
    except ValueError:
        return None
    factor = 1000 ** ("kmgtp".index(unit.lower()) + 1) if unit else 1
    return int(size * factor) // 1000**3


def parse_ram_mb(text: str) -> int | None:
    """Memory in MiB the way flyctl reads ``[[vm]] memory`` (helpers/units.go:8-20 with
    go-units ``RAMInBytes``): a bare integer is MB, otherwise a binary size such as
    ``"512mb"``, ``"1.5gb"`` or ``"2GiB"`` (case-insensitive); ``None`` when unreadable."""
    if text.isdigit():
        return int(text)
    match = _RAM.fullmatch(text)
    if match is None:
        return None
    number, unit = match.groups()
    try:
        size = float(number)
    except ValueError:
        return None
    size_bytes = int(size * _RAM_UNITS[unit.lower()]) if unit else int(size)
    return size_bytes // (1 << 20)


def shell_split_error(command: str) -> str | None:
    """Why ``command`` cannot be shell-split (flyctl uses github.com/google/shlex), or
    ``None``. Both refuse an unclosed quote and a trailing escape."""
    try:
        shlex.split(command)
    except ValueError as exc:
        return str(exc)
    return None
