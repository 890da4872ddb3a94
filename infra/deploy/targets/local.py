"""The local deploy target: the stack's topology on this machine, behind a real TLS edge.

``make up`` deploys the ``dev`` stack here through the same component and the same kind of
steps as the Fly target. The plan, in order:

1. ``fly-toml``: write the rendered fly.toml to ``build/<stack>/fly.toml`` (shared step);
2. ``tls``: a development CA and the edge certificate (``infra.local.certs``; kept across runs);
3. ``dev-secrets``: a generated ``TOKEN_SIGNING_KEY`` in ``build/local/secrets.env`` (0600),
   used only when the stack sets no ``tokenSigningKey`` secret of its own;
4. ``redis``: ``redis-server`` on 127.0.0.1:16379 with persistence off, when the stack's
   ``broker`` is ``redis`` (the shared broker several instances need, as on Fly with ``--ha``);
   with ``realtime-fly:redis: cluster``, a Redis Cluster of 3 masters and 3 replicas instead
   (``infra.local.redis_cluster``, ports 17000-17005);
5. ``app-1`` ... ``app-N``: one ``python -m realtime`` process per machine, each with its
   own ports (21080/21081, 22080/22081...): ``machines`` for the primary region, then each
   further region's count from ``regions`` (there are no regions on one machine: each process
   gets ``FLY_REGION`` set to the region it stands for, as Fly sets it on a machine, and all of
   them share the one redis-server, as every region shares one Redis on Fly);
6. ``edge-config``: the haproxy configuration rendered FROM the materialised fly.toml's services
   (``infra.local.haproxy``) and checked with ``haproxy -c``;
7. ``edge``: haproxy on the unprivileged stand-ins of the public ports (80 -> 18080,
   443 -> 18443, 8081 -> 18081, see ``infra.local.edge``);
8. ``smoke``: ``infra.deploy.smoke`` against ``wss://localhost:18081/`` trusting the development CA.

Every port above is the default one: all derive from the stack's ``localPortBase`` (default
10000; :func:`redis_port`, :func:`instance_ports`, :func:`infra.local.edge.edge_port`), so a
second deployment (a test next to ``make up``) runs on another base without a clash.

Long-running processes are detached by ``infra.local.supervise`` (pid and log files in
``build/local/``); each such step's ``delete`` stops its process, so ``pulumi destroy`` (``make
down``) takes everything down. Process steps are triggered by the digests of what they run, so
a change of the backend tree or of fly.toml restarts exactly the processes concerned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from infra.deploy.plan import Plan, PlanContext, Step, materialise_step, text_digest
from infra.errors import ConfigError
from infra.local.edge import Instance, edge_port
from infra.local.haproxy import instance_spec
from infra.local.loopback import redis_server_argv
from infra.local.redis_cluster import node_ports
from infra.stack.settings import StackSettings

__all__ = [
    "STATE_DIR",
    "instance_ports",
    "instance_regions",
    "local_instances",
    "local_plan",
    "local_urls",
    "metrics_port",
    "redis_port",
    "redis_url",
]

STATE_DIR: Final = "build/local"
"""Pid files, logs, certificates, the haproxy config and the dev secrets file."""
EDGE_HOST: Final = "localhost"
_TLS_DIR: Final = f"{STATE_DIR}/tls"
_SECRETS_FILE: Final = f"{STATE_DIR}/secrets.env"
_HAPROXY_CFG: Final = f"{STATE_DIR}/haproxy.cfg"


def redis_port(base: int) -> int:
    """Where redis-server listens: ``base + 6379`` (16379 with the default base)."""
    return base + 6379


def redis_url(settings: StackSettings) -> str:
    """The backends' ``REDIS_URL``: the one redis-server, or the first node of the local Redis
    Cluster (the client reads the slot map from it; ``REDIS_CLUSTER=1`` comes from ``[env]``)."""
    if settings.redis == "cluster":
        return f"redis://127.0.0.1:{node_ports(settings.local_port_base)[0]}/0"
    return f"redis://127.0.0.1:{redis_port(settings.local_port_base)}/0"


def instance_ports(index: int, internal_port: int, *, base: int) -> int:
    """Where instance ``index`` (1-based) listens for a service's internal port:
    ``base + 10000 + 1000 * index + internal_port % 1000`` (base 10000: app-1 on 21080 and
    21081, app-2 on 22080...)."""
    return base + 10000 + 1000 * index + internal_port % 1000


_HIGHEST_PORT: Final = 65535
_METRICS_PORT: Final = 9091
"""The backend's own default ``METRICS_PORT``, for a stack without ``[[metrics]]``."""


def instance_regions(settings: StackSettings) -> tuple[str, ...]:
    """The region each local instance stands for, by instance (``app-1`` first): the primary
    region's ``machines``, then each further region's count, in :attr:`placements` order."""
    return tuple(region for region, count in settings.placements for _ in range(count))


def local_instances(settings: StackSettings) -> tuple[Instance, ...]:
    """The backend instances, one per machine over all regions, each with a local port for the
    HTTP and WebSocket services.

    Raises ConfigError naming ``realtime-fly:machines`` (``realtime-fly:regions`` when the stack
    has further regions) when the last instance's ports would pass 65535 (with the default
    ``localPortBase`` that is more than 45 machines).
    """
    machines = settings.total_machines
    config = settings.fly
    internal = [config.websocket.internal_port]
    if config.http_service is not None:
        internal.append(config.http_service.internal_port)
    highest = max(
        metrics_port(settings, machines),
        *(instance_ports(machines, port, base=settings.local_port_base) for port in internal),
    )
    if highest > _HIGHEST_PORT:
        raise ConfigError(
            key="realtime-fly:regions" if settings.regions else "realtime-fly:machines",
            value=dict(settings.placements) if settings.regions else machines,
            reason=f"the local target gives each machine its own ports: with localPortBase "
            f"{settings.local_port_base} the last one would listen on {highest} (> 65535); "
            "run fewer machines or lower realtime-fly:localPortBase",
        )
    return tuple(
        Instance(
            name=f"app-{index}",
            ports={
                port: instance_ports(index, port, base=settings.local_port_base)
                for port in sorted(internal)
            },
        )
        for index in range(1, machines + 1)
    )


def local_urls(settings: StackSettings) -> tuple[str, str]:
    """The edge's HTTPS and WSS URLs (the HTTPS one is the WebSocket port's when there is no
    ``[http_service]``)."""
    base = settings.local_port_base
    wss_port = edge_port(settings.fly.websocket.public_port, base=base)
    https_port = edge_port(443, base=base) if settings.fly.http_service is not None else wss_port
    return f"https://{EDGE_HOST}:{https_port}/", f"wss://{EDGE_HOST}:{wss_port}/"


def _supervise(context: PlanContext, *args: str) -> tuple[str, ...]:
    return (context.python, "-m", "infra.local.supervise", *args)


def _stop(context: PlanContext, name: str) -> tuple[str, ...]:
    return _supervise(context, "stop", name, "--state", STATE_DIR)


def _origin(url: str) -> str:
    """``https://host:port/`` -> ``https://host:port`` (an Origin header has no path)."""
    return url.rstrip("/")


def metrics_port(settings: StackSettings, index: int) -> int:
    """Where instance ``index`` serves /metrics: the ``[[metrics]]`` port moved like the others
    (9091 -> 21091 for app-1 with the default base), so instances on one machine do not clash."""
    internal = settings.fly.metrics[0].port if settings.fly.metrics else _METRICS_PORT
    return instance_ports(index, internal, base=settings.local_port_base)


def _backend_environment(
    settings: StackSettings,
    index: int,
    instance: Instance,
    *,
    region: str,
    https_url: str,
    wss_url: str,
) -> Mapping[str, str]:
    config = settings.fly
    env = dict(config.env)
    env.update(
        FLY_REGION=region,
        HOST="127.0.0.1",
        WS_PORT=str(instance.ports[config.websocket.internal_port]),
        METRICS_PORT=str(metrics_port(settings, index)),
        DEV_TOKENS="1",
        PUBLIC_WS_URL=wss_url,
        # The demo page comes through the edge's HTTPS port: that origin may open WebSockets.
        ALLOWED_ORIGINS=_origin(https_url),
        LOG_FORMAT="text",
    )
    if config.broker == "redis":
        env["REDIS_URL"] = redis_url(settings)
    if config.http_service is not None:
        env["HTTP_PORT"] = str(instance.ports[config.http_service.internal_port])
    return env


def local_plan(settings: StackSettings, *, fly_toml: str, context: PlanContext) -> Plan:
    """The ordered steps that run one stack on this machine."""
    https_url, wss_url = local_urls(settings)
    instances = local_instances(settings)
    regions = instance_regions(settings)
    stack_key = "tokenSigningKey" in settings.secrets_set
    secret_environment = ("TOKEN_SIGNING_KEY",) if stack_key else ()
    fly_toml_path = f"{context.build_dir}/fly.toml"
    config_digest = text_digest(fly_toml)
    base = settings.local_port_base
    redis = redis_port(base)
    # A process step is replaced (stopped, then started) when its ports move.
    ports_trigger = f"localPortBase={base}"
    # ... and when the backends move between one redis-server and the cluster
    redis_trigger = f"redis={settings.redis}"

    steps: list[Step] = [
        materialise_step(context, fly_toml, ship_backend=False),
        Step(
            name="tls",
            create=(context.python, "-m", "infra.local.certs", "--out", _TLS_DIR),
        ),
        Step(
            name="dev-secrets",
            create=(context.python, "-m", "infra.local.devsecrets", "--out", _SECRETS_FILE),
            logging="stderr",
        ),
    ]
    if settings.fly.broker == "redis" and settings.redis == "cluster":
        cluster = (context.python, "-m", "infra.local.redis_cluster")
        steps.append(
            Step(
                name="redis",
                create=(*cluster, "start", "--state", STATE_DIR, "--base", str(base)),
                delete=(*cluster, "stop", "--state", STATE_DIR),
                triggers=(ports_trigger, redis_trigger),
            )
        )
    elif settings.fly.broker == "redis":
        steps.append(
            Step(
                name="redis",
                create=_supervise(
                    context,
                    "start",
                    "redis",
                    "--state",
                    STATE_DIR,
                    "--wait-tcp",
                    f"127.0.0.1:{redis}",
                    "--",
                    *redis_server_argv(redis),
                ),
                delete=_stop(context, "redis"),
                triggers=(ports_trigger, redis_trigger),
            )
        )
    for index, instance in enumerate(instances, start=1):
        health_port = instance.ports[
            settings.fly.http_service.internal_port
            if settings.fly.http_service is not None
            else settings.fly.websocket.internal_port
        ]
        steps.append(
            Step(
                name=instance.name,
                create=_supervise(
                    context,
                    "start",
                    instance.name,
                    "--state",
                    STATE_DIR,
                    "--cwd",
                    context.backend_dir,
                    "--env-file",
                    _SECRETS_FILE,
                    "--wait-tcp",
                    f"127.0.0.1:{health_port}",
                    "--",
                    context.python,
                    "-m",
                    "realtime",
                ),
                delete=_stop(context, instance.name),
                environment=_backend_environment(
                    settings,
                    index,
                    instance,
                    region=regions[index - 1],
                    https_url=https_url,
                    wss_url=wss_url,
                ),
                secret_environment=secret_environment,
                triggers=(context.backend_digest, config_digest, ports_trigger, redis_trigger),
                depends_on=(
                    "fly-toml",
                    "dev-secrets",
                    *(("redis",) if settings.fly.broker == "redis" else ()),
                ),
            )
        )
    edge_check_port = edge_port(settings.fly.websocket.public_port, base=base)
    steps += [
        Step(
            name="edge-config",
            create=(
                context.python,
                "-m",
                "infra.local.haproxy",
                "--fly-toml",
                fly_toml_path,
                "--out",
                _HAPROXY_CFG,
                "--certificate",
                f"{_TLS_DIR}/edge.pem",
                "--port-base",
                str(base),
                *(arg for i in instances for arg in ("--instance", instance_spec(i))),
            ),
            triggers=(config_digest,),
            depends_on=("fly-toml", "tls"),
        ),
        Step(
            name="edge",
            create=_supervise(
                context,
                "start",
                "edge",
                "--state",
                STATE_DIR,
                "--wait-tcp",
                f"127.0.0.1:{edge_check_port}",
                "--",
                "haproxy",
                "-db",
                "-f",
                _HAPROXY_CFG,
            ),
            delete=_stop(context, "edge"),
            triggers=(config_digest, ports_trigger),
            depends_on=("edge-config", *(i.name for i in instances)),
        ),
        Step(
            name="smoke",
            create=_supervise(
                context,
                "exec",
                "--env-file",
                _SECRETS_FILE,
                "--",
                context.python,
                "-m",
                "infra.deploy.smoke",
                "--wss-url",
                wss_url,
                "--https-url",
                https_url,
                "--ca-file",
                f"{_TLS_DIR}/ca.pem",
            ),
            secret_environment=secret_environment,
            triggers=(context.backend_digest, config_digest),
            depends_on=("edge",),
        ),
    ]
    return Plan(steps=tuple(steps), https_url=https_url, wss_url=wss_url)
