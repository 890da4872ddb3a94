"""Fly's own rules: what flyctl v0.4.87 refuses (error) or warns about (warning), for any file.

Each rule gives flyctl's severity and, as closely as the model allows, flyctl's message; its
docstring cites the flyctl (or fly-go v0.9.5) source line. ``config validate`` runs
``Config.Validate`` (internal/appconfig/validation.go:25-66); the deploy-time conversion to a
machine config (internal/appconfig/machines.go) fails on what validate misses
(``validateMachineConversion`` never reports, validation.go:250-259); some warnings are printed
by ``fly deploy`` itself (internal/command/deploy/).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from infra.flytoml.findings import Finding
from infra.flytoml.model import VM_SIZES, Duration, FlyConfig, HttpCheck, TcpCheck, Vm
from infra.flytoml.vocabulary import parse_human_gb, parse_ram_mb, shell_split_error

__all__ = ["FLY_RULES", "fly_findings"]

_STRATEGIES: Final = ("canary", "rolling", "immediate", "bluegreen")
_SECRET_SUBSTRINGS: Final = ("KEY", "PRIVATE", "DATABASE_URL", "PASSWORD", "SECRET")
_SECRET_ALLOWED: Final = frozenset({"AWS_ACCESS_KEY_ID", "TIGRIS_ACCESS_KEY_ID"})
_RESTART_POLICIES: Final = ("always", "never", "on-failure")
_MEMORY_PER_CPU: Final = {"shared": (256, 2048, 256), "performance": (2048, 8192, 1024)}
"""MB per CPU: min, max, step (fly-go machine_types.go MIN/MAX_MEMORY_MB_PER_*; the steps are
the Machines API's, docs: machines/guides-examples/machine-sizing)."""


def _error(rule: str, key: str, value: object, message: str) -> Finding:
    return Finding(rule=rule, severity="error", key=key, value=value, message=message)


def _warning(rule: str, key: str, value: object, message: str) -> Finding:
    return Finding(rule=rule, severity="warning", key=key, value=value, message=message)


def build_strategies(config: FlyConfig) -> Iterator[Finding]:
    """warning ``build-strategies``: more than one of image, buildpack, dockerfile, builtin
    (validation.go:87-97, the list from config.go:349-374; the image wins)."""
    build = config.build
    if build is None:
        return
    strategies = []
    if build.image:
        strategies.append(f'the "{build.image}" docker image')
    if any(name in ("builder", "buildpacks") for name, _ in build.extra):
        strategies.append("a buildpack")
    if build.dockerfile or build.build_target:
        strategies.append(
            f'the "{build.dockerfile}" dockerfile' if build.dockerfile else "a dockerfile"
        )
    builtin = dict(build.extra).get("builtin")
    if builtin:
        strategies.append(f'the "{builtin}" builtin image')
    if len(strategies) > 1:
        yield _warning(
            "build-strategies",
            "build",
            strategies,
            f"more than one build configuration found: [{', '.join(strategies)}]",
        )


def build_compression(config: FlyConfig) -> Iterator[Finding]:
    """error ``build-compression``: only gzip or zstd (validation.go:371-378,
    internal/flag/validation/compression.go:11-20)."""
    if config.build is not None and config.build.compression not in (None, "", "gzip", "zstd"):
        yield _error(
            "build-compression",
            "build.compression",
            config.build.compression,
            f"Invalid value '{config.build.compression}' for compression. Valid options are "
            "'gzip', 'zstd', or leave unset.",
        )


def deploy_section(config: FlyConfig) -> Iterator[Finding]:
    """error ``release-command-shlex`` (validation.go:104-107), ``deploy-strategy``
    (:109-116), ``canary-with-mounts`` (:118-121); warning ``max-unavailable-strategy``
    (internal/command/deploy/deploy.go:771-775)."""
    deploy = config.deploy
    if deploy.release_command and shell_split_error(deploy.release_command):
        yield _error(
            "release-command-shlex",
            "deploy.release_command",
            deploy.release_command,
            f"Can't shell split release command: '{deploy.release_command}'",
        )
    if deploy.strategy and deploy.strategy not in _STRATEGIES:
        yield _error(
            "deploy-strategy",
            "deploy.strategy",
            deploy.strategy,
            f"unsupported deployment strategy '{deploy.strategy}'; Apps v2 supports the "
            f"following strategies: {', '.join(_STRATEGIES)}",
        )
    if deploy.strategy == "canary" and config.mounts:
        yield _error(
            "canary-with-mounts",
            "deploy.strategy",
            deploy.strategy,
            "error canary deployment strategy is not supported when using mounted volumes",
        )
    if deploy.max_unavailable is not None and deploy.strategy not in ("rolling", "canary"):
        yield _warning(
            "max-unavailable-strategy",
            "deploy.max_unavailable",
            deploy.max_unavailable,
            f"Warning: max-unavailable set for non-rolling strategy '{deploy.strategy}', ignoring",
        )


def top_level_checks(config: FlyConfig) -> Iterator[Finding]:
    """error ``check-type`` (validation.go:128-131, toplevelcheck.go:56-58),
    ``check-interval`` (:133-137), ``check-timeout`` (:139-143), ``check-without-port``
    (machines.go:319-326, at deploy)."""
    for check in config.checks:
        key = f"checks.{check.name}"
        if check.type not in ("http", "tcp"):
            yield _error(
                "check-type",
                f"{key}.type",
                check.type,
                f"Can't process top level check '{check.name}': Missing or invalid check "
                "type, must be 'http' or 'tcp'",
            )
        if check.interval is not None and check.interval.seconds < 2:
            yield _error(
                "check-interval",
                f"{key}.interval",
                check.interval,
                f"Check '{check.name}' interval is too short: {check.interval}, minimum is 2 "
                "seconds",
            )
        if check.timeout is not None and check.timeout.seconds > 60:
            yield _error(
                "check-timeout",
                f"{key}.timeout",
                check.timeout,
                f"Check '{check.name}' timeout is too long: {check.timeout}, maximum is 60 seconds",
            )
        if check.port is None and config.http_service is None:
            yield _error(
                "check-without-port",
                f"{key}.port",
                None,
                f"Check '{check.name}' for process group 'app' has no port set and the group "
                "has no http_service to take it from",
            )


def _process_names(config: FlyConfig) -> tuple[str, ...]:
    """processgroups.go:16-33: the [processes] keys, or "app" without them."""
    return tuple(sorted(name for name, _ in config.processes)) or ("app",)


def services(config: FlyConfig) -> Iterator[Finding]:
    """error ``service-processes`` (validation.go:157-172, every service and [http_service]);
    warning ``service-without-ports`` (:176-185); warning ``check-duration`` (:187-229)."""
    valid = _process_names(config)
    entries: list[tuple[str, tuple[str, ...]]] = []
    if config.http_service is not None:
        entries.append(("http_service", config.http_service.processes))
    entries += [(f"services[{i}]", s.processes) for i, s in enumerate(config.services)]
    for key, processes in entries:
        if not processes and config.processes:
            yield _error(
                "service-processes",
                f"{key}.processes",
                [],
                f"Service has no processes set but app has {len(config.processes)} processes "  # noqa: S608  (not SQL)
                "defined; update fly.toml to set processes for each service",
            )
        for name in processes:
            if name not in valid:
                yield _error(
                    "service-processes",
                    f"{key}.processes",
                    list(processes),
                    f"Service specifies '{name}' as one of its processes, but no processes are "
                    f"defined with that name; update fly.toml [processes] to add '{name}' "
                    "process or remove it from service's processes list",
                )
    if config.http_service is not None:  # AllServices() includes it (service.go:96-103)
        for position, check in enumerate(config.http_service.checks):
            yield from check_durations(f"http_service.checks[{position}]", check, "HTTP")
    for index, service in enumerate(config.services):
        if not service.ports:
            yield _warning(
                "service-without-ports",
                f"services[{index}].ports",
                [],
                "WARNING: Service must expose at least one port. Add a [[services.ports]] "
                "section to fly.toml",
            )
        for position, tcp in enumerate(service.tcp_checks):
            yield from check_durations(f"services[{index}].tcp_checks[{position}]", tcp, "TCP")
        for position, http in enumerate(service.http_checks):
            yield from check_durations(f"services[{index}].http_checks[{position}]", http, "HTTP")


def check_durations(key: str, check: TcpCheck | HttpCheck, proto: str) -> Iterator[Finding]:
    """warning ``check-duration``: a service check's interval or timeout under 1s, a non-zero
    grace period under 1s, or any above 1 minute, is clamped (validation.go:199-229)."""
    fields: tuple[tuple[str, str, Duration | None, bool], ...] = (
        ("interval", "an interval", check.interval, False),
        ("timeout", "a timeout", check.timeout, False),
        ("grace_period", "a grace period", check.grace_period, True),
    )
    for name, description, value, zero_ok in fields:
        if value is None:
            continue
        seconds = value.seconds
        if seconds < 1 and not (zero_ok and seconds == 0):
            nonzero = "that is non-zero and " if zero_ok else ""
            yield _warning(
                "check-duration",
                f"{key}.{name}",
                value,
                f"Service {proto} check has {description} {nonzero}less than 1 second "
                f"({value}); this will be raised to 1 second",
            )
        elif seconds > 60:
            yield _warning(
                "check-duration",
                f"{key}.{name}",
                value,
                f"Service {proto} check has {description} greater than 1 minute ({value}); "
                "this will be lowered to 1 minute",
            )


def commands(config: FlyConfig) -> Iterator[Finding]:
    """error ``processes-shlex`` (validation.go:231-248), ``console-command-shlex``
    (:261-268)."""
    for name, command in config.processes:
        reason = shell_split_error(command) if command else None
        if reason:
            yield _error(
                "processes-shlex",
                f"processes.{name}",
                command,
                f"Could not parse command for '{name}' process group; check [processes] "
                f"section: {reason}",
            )
    if config.console_command and shell_split_error(config.console_command):
        yield _error(
            "console-command-shlex",
            "console_command",
            config.console_command,
            f"Can't shell split console command: '{config.console_command}'",
        )


def mounts(config: FlyConfig) -> Iterator[Finding]:
    """error ``mount-initial-size``: unreadable or under 1GB (validation.go:276-287)."""
    for index, mount in enumerate(config.mounts):
        if not mount.initial_size:
            continue
        size = mount.initial_size
        gigabytes = parse_human_gb(size)
        if gigabytes is None:
            yield _error(
                "mount-initial-size",
                f"mounts[{index}].initial_size",
                size,
                f"mount '{mount.source}' with initial_size '{size}' will fail because of: "
                "invalid size",
            )
        elif gigabytes < 1:
            yield _error(
                "mount-initial-size",
                f"mounts[{index}].initial_size",
                size,
                f"mount '{mount.source}' has an initial_size '{size}' value which is smaller "
                "than 1GB",
            )


def restarts(config: FlyConfig) -> Iterator[Finding]:
    """error ``restart-processes`` (validation.go:350-359) and ``restart-policy``
    (:361-365, machines.go:405-416)."""
    valid = _process_names(config)
    for index, restart in enumerate(config.restarts):
        for name in restart.processes:
            if name not in valid:
                yield _error(
                    "restart-processes",
                    f"restart[{index}].processes",
                    list(restart.processes),
                    f"Restart policy specifies '{name}' as one of its processes, but no "
                    f"processes are defined with that name; update fly.toml [processes] to add "
                    f"'{name}' process or remove it from restart policy's processes list",
                )
        if restart.policy not in _RESTART_POLICIES:
            yield _error(
                "restart-policy",
                f"restart[{index}].policy",
                restart.policy,
                f"invalid restart policy: {restart.policy}",
            )


def vms(config: FlyConfig) -> Iterator[Finding]:
    """error ``vm-size`` (fly-go machine_types.go:477-507 via machines.go:455-458),
    ``vm-memory`` (unreadable or zero, machines.go:464-473) and ``vm-memory-range`` (memory per
    CPU, refused by the Machines API at deploy; fly-go machine_types.go:549-555)."""
    for index, vm in enumerate(config.vms):
        key = f"vm[{index}]"
        if vm.size is not None and vm.size not in VM_SIZES:
            yield _error(
                "vm-size",
                f"{key}.size",
                vm.size,
                f"'{vm.size}' is an invalid machine size, choose one of: {sorted(VM_SIZES)}",
            )
        if vm.memory is None:
            continue
        mb = parse_ram_mb(vm.memory)
        if mb is None:
            yield _error("vm-memory", f"{key}.memory", vm.memory, f"invalid size: {vm.memory!r}")
        elif mb == 0:
            yield _error("vm-memory", f"{key}.memory", vm.memory, "memory cannot be zero")
        else:
            yield from _memory_range(key, vm, mb)


def _memory_range(key: str, vm: Vm, mb: int) -> Iterator[Finding]:
    preset = vm.size or "shared-cpu-1x"
    if preset not in VM_SIZES:
        return
    kind = vm.cpu_kind or ("shared" if preset.startswith("shared") else "performance")
    count = vm.cpus or (int(preset.split("-")[-1][:-1]) if preset[-1] == "x" else 8)
    if kind not in _MEMORY_PER_CPU:
        return
    low, high, step = _MEMORY_PER_CPU[kind]
    if not low * count <= mb <= high * count or mb % step:
        yield _error(
            "vm-memory-range",
            f"{key}.memory",
            vm.memory,
            f"{count} {kind} CPU(s) take {low * count}-{high * count} MB in steps of {step} MB "
            f"(the Machines API refuses {mb} MB at deploy)",
        )


def env_names(config: FlyConfig) -> Iterator[Finding]:
    """warning ``env-secret-name``: a name containing KEY, PRIVATE, DATABASE_URL, PASSWORD or
    SECRET, case-sensitive, except AWS_/TIGRIS_ACCESS_KEY_ID (internal/command/deploy/
    common_secrets.go:5-21, printed by deploy.go:357-362)."""
    for name, _value in config.env:
        if name not in _SECRET_ALLOWED and any(part in name for part in _SECRET_SUBSTRINGS):
            yield _warning(
                "env-secret-name",
                f"env.{name}",
                name,
                f"WARN {name} may be a potentially sensitive environment variable. Consider "
                "setting it as a secret, and removing it from the [env] section",
            )


FLY_RULES: Final = (
    build_strategies,
    deploy_section,
    top_level_checks,
    services,
    commands,
    mounts,
    restarts,
    build_compression,
    vms,
    env_names,
)
"""In ``Config.Validate``'s order (validation.go:30-41), then the deploy-time rules."""


def fly_findings(config: FlyConfig) -> list[Finding]:
    """Every finding of Fly's own rules."""
    return [finding for rule in FLY_RULES for finding in rule(config)]
