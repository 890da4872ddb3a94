"""The Fly.io deploy target: flyctl command lines, and the plan that orders them.

Every flyctl invocation is built by one pure function returning an argv list, so the lines are
unit tested here and checked against the real flyctl binary's flag parser in the integration
tests. The plan follows the pipeline in ../shared/FLY.md:

1. ``fly-toml``: write the rendered fly.toml and the backend tree into ``build/<stack>/app``;
2. ``app``: adopt the app if ``fly apps list --json`` shows it in the org, else
   ``fly apps create`` (``--org`` is required when not interactive); retained on delete;
3. ``ips-v6`` / ``ips-v4``: adopt the addresses ``fly ips list --json`` shows, else allocate them,
   BEFORE the first deploy, because a deploy without a terminal allocates none for a raw TLS
   service. Steps 2 and 3 run ``infra.deploy.targets.fly_ensure`` so that a second ``pulumi up``
   after a lost state (or ``destroy``, which retains the app) creates no second app or address;
4. ``secrets``: ``fly secrets import --stage`` from stdin on create (no machine exists yet), and
   without ``--stage`` on update so a changed secret rolls the machines;
5. ``deploy``: ``fly deploy --remote-only`` triggered by the digests of fly.toml and the backend
   (:func:`release_digest`: the machine count in fly.toml's ``# deployment:`` comment is left
   out, so scaling, in any region, never redeploys and drops every WebSocket);
6. ``scale-<region>``: the primary region's machine count (``machines``), after the deploy;
   then the same for each further region of ``regions``, one after the other (each
   ``fly scale count`` leases every machine of the app, so two at once would collide);
7. ``smoke``: a real WSS handshake and chat round trip against the public WebSocket URL.

FLY_API_TOKEN is never an input: flyctl reads it from the environment ``pulumi up`` runs in.
"""

from __future__ import annotations

import re

from infra.deploy.plan import Plan, PlanContext, Step, materialise_step, text_digest
from infra.deploy.targets.fly_secrets import secrets_stdin
from infra.flytoml.render import DEPLOYMENT_COMMENT
from infra.stack.settings import SECRETS, StackSettings

__all__ = [
    "apps_create_argv",
    "apps_list_argv",
    "deploy_argv",
    "ensure_app_argv",
    "ensure_ip_argv",
    "fly_plan",
    "ips_list_argv",
    "ips_v4_shared_argv",
    "ips_v6_argv",
    "release_digest",
    "scale_count_argv",
    "scale_step_name",
    "scale_steps",
    "secrets_import_argv",
    "secrets_stdin",
    "smoke_argv",
]


def apps_create_argv(flyctl: str, *, app: str, org: str) -> list[str]:
    """``fly apps create``: the org is mandatory without a terminal."""
    return [flyctl, "apps", "create", app, "--org", org]


def apps_list_argv(flyctl: str) -> list[str]:
    """Every app the token can see, in all its orgs, as JSON (``Name``, ``Organization.Slug``)."""
    return [flyctl, "apps", "list", "--json"]


def ips_list_argv(flyctl: str, *, app: str) -> list[str]:
    """The app's IP addresses as JSON (``Type``: ``v6``, ``shared_v4``, ``v4``, ...)."""
    return [flyctl, "ips", "list", "--app", app, "--json"]


def ensure_app_argv(python: str, flyctl: str, *, app: str, org: str) -> list[str]:
    """Adopt the app when it exists in ``org``, else create it (``fly_ensure``)."""
    return [
        python, "-m", "infra.deploy.targets.fly_ensure", "app",
        "--flyctl", flyctl, "--app", app, "--org", org,
    ]  # fmt: skip


def ensure_ip_argv(python: str, flyctl: str, *, app: str, kind: str) -> list[str]:
    """Adopt the app's public ``v6`` / ``shared-v4`` address when it has one, else allocate it."""
    return [
        python, "-m", "infra.deploy.targets.fly_ensure", "ip",
        "--flyctl", flyctl, "--app", app, "--kind", kind,
    ]  # fmt: skip


def ips_v6_argv(flyctl: str, *, app: str) -> list[str]:
    """Allocate the app's IPv6 address (free, dedicated)."""
    return [flyctl, "ips", "allocate-v6", "--app", app]


def ips_v4_shared_argv(flyctl: str, *, app: str) -> list[str]:
    """Allocate a shared IPv4 address (a dedicated one costs money and needs ``--yes``)."""
    return [flyctl, "ips", "allocate-v4", "--shared", "--app", app]


def secrets_import_argv(flyctl: str, *, app: str, stage: bool) -> list[str]:
    """``fly secrets import`` reading ``NAME=VALUE`` lines from stdin (never argv).

    The stdin is :func:`infra.deploy.targets.fly_secrets.secrets_stdin`: every value is written
    so flyctl's import parser reads it back byte-identical, or refused naming the secret.
    """
    argv = [flyctl, "secrets", "import", "--app", app]
    if stage:
        argv.append("--stage")
    return argv


def deploy_argv(
    flyctl: str,
    *,
    app: str,
    config: str,
    strategy: str,
    wait_timeout: str,
    high_availability: bool,
) -> list[str]:
    """``fly deploy`` of the current directory (the deploy context) with a remote builder."""
    return [
        flyctl,
        "deploy",
        ".",
        "--config",
        config,
        "--app",
        app,
        "--remote-only",
        "--strategy",
        strategy,
        "--wait-timeout",
        wait_timeout,
        f"--ha={'true' if high_availability else 'false'}",
        "--yes",
    ]


def scale_count_argv(flyctl: str, *, app: str, count: int, region: str | None = None) -> list[str]:
    """Set the number of machines of the app's process group, in ``region`` only when given.

    flyctl v0.4.87: ``count [count]`` takes one absolute count (``strconv.Atoi``, so ``0`` is
    valid and removes the machines; internal/command/scale/count.go:27-31, 95-107), ``--region``
    / ``-r`` is a flag of the command (count.go:38), ``--app`` and ``--yes`` too (count.go:33-35;
    without ``--yes`` and no terminal it fails, count_machines.go:117-128). With ``--region R``
    the count is converged over R alone and machines in other regions are left as they are
    (count_machines.go:52-61, ``convergeGroupCounts`` 373-422, and its test "Ignore non-listed
    regions" in count_machines_test.go); WITHOUT it, flyctl spreads the count over every region
    that has a machine (count.go:38, count_machines.go:56-57), which would undo a multi-region
    layout: the plan always names the region.
    """
    argv = [flyctl, "scale", "count", str(count)]
    if region is not None:
        argv += ["--region", region]
    return [*argv, "--app", app, "--yes"]


def smoke_argv(python: str, *, wss_url: str, https_url: str) -> list[str]:
    """The post-deploy smoke check (``infra.deploy.smoke``): a real WSS upgrade must return 101."""
    return [python, "-m", "infra.deploy.smoke", "--wss-url", wss_url, "--https-url", https_url]


_MACHINE_COUNT = re.compile(rf"^(#\s*{re.escape(DEPLOYMENT_COMMENT)}.*?)machines = \d+, ", re.M)


def release_digest(fly_toml: str) -> str:
    """The digest of what ``fly deploy`` ships: fly.toml without the machine count.

    The count lives only in the ``# deployment:`` comment (flyctl reads no comment); the scale
    steps apply it without a release. A redeploy would restart every machine, so every
    WebSocket client would reconnect, for nothing.
    """
    return text_digest(_MACHINE_COUNT.sub(r"\1", fly_toml))


def public_urls(settings: StackSettings) -> tuple[str, str]:
    """The app's public HTTPS and WSS URLs on its fly.dev hostname."""
    host = f"{settings.fly.app}.fly.dev"
    port = settings.fly.websocket.public_port
    return f"https://{host}/", f"wss://{host}:{port}/"


def scale_step_name(region: str) -> str:
    """``scale-<region>``: named after the region, never after its role, so that making a
    further region the primary one (or back) updates two steps in place and deletes none."""
    return f"scale-{region}"


def scale_steps(settings: StackSettings) -> list[Step]:
    """One ``fly scale count N --region R`` step per region, the primary region first.

    They run one after the other: ``fly scale count`` lists and leases EVERY machine of the app
    before it acts (count_machines.go:33, 133), so two running at once would fight over the
    leases. A further region's step scales it to 0 on delete, so removing a region from
    ``regions`` removes its machines (``pulumi preview`` shows the step leaving); the primary
    region's step deletes nothing, like the app itself. The engine runs a delete with the inputs
    it last stored, and only after every create and update: had the steps been named by role
    (``scale`` for the primary), swapping the primary with a further region would have deleted
    the old further step AFTER scaling that region up, scaling the new primary to 0.
    """
    flyctl = settings.flyctl
    app = settings.fly.app
    primary = settings.fly.primary_region
    steps: list[Step] = []
    previous = "deploy"
    for region, count in settings.placements:
        name = scale_step_name(region)
        steps.append(
            Step(
                name=name,
                create=tuple(scale_count_argv(flyctl, app=app, count=count, region=region)),
                delete=None
                if region == primary
                else tuple(scale_count_argv(flyctl, app=app, count=0, region=region)),
                depends_on=(previous,),
            )
        )
        previous = name
    return steps


def fly_plan(settings: StackSettings, *, fly_toml: str, context: PlanContext) -> Plan:
    """The ordered flyctl steps that create and deploy one stack's app."""
    if settings.org is None:
        raise ValueError("the fly target needs an org")  # settings_from_config already refuses
    flyctl = settings.flyctl
    python = context.python
    app = settings.fly.app
    https_url, wss_url = public_urls(settings)
    secret_names = tuple(spec.env_name for spec in SECRETS if spec.key in settings.secrets_set)
    deploy = settings.fly.deploy
    release_trigger = (release_digest(fly_toml), context.backend_digest)

    steps = [
        materialise_step(context, fly_toml, ship_backend=True),
        Step(
            name="app",
            create=tuple(ensure_app_argv(python, flyctl, app=app, org=settings.org)),
            retain_on_delete=True,
        ),
        Step(
            name="ips-v6",
            create=tuple(ensure_ip_argv(python, flyctl, app=app, kind="v6")),
            depends_on=("app",),
        ),
        Step(
            name="ips-v4",
            create=tuple(ensure_ip_argv(python, flyctl, app=app, kind="shared-v4")),
            depends_on=("app",),
        ),
        Step(
            name="secrets",
            create=tuple(secrets_import_argv(flyctl, app=app, stage=True)),
            update=tuple(secrets_import_argv(flyctl, app=app, stage=False)),
            stdin_secrets=secret_names,
            logging="none",
            depends_on=("app",),
        ),
        Step(
            name="deploy",
            create=tuple(
                deploy_argv(
                    flyctl,
                    app=app,
                    config="fly.toml",
                    strategy=deploy.strategy,
                    wait_timeout=str(deploy.wait_timeout),
                    high_availability=settings.machines > 1,
                )
            ),
            dir=f"{context.build_dir}/app",
            triggers=release_trigger,
            depends_on=("fly-toml", "ips-v6", "ips-v4", "secrets"),
        ),
        *scale_steps(settings),
        Step(
            name="smoke",
            create=tuple(smoke_argv(context.python, wss_url=wss_url, https_url=https_url)),
            secret_environment=("TOKEN_SIGNING_KEY",)
            if "TOKEN_SIGNING_KEY" in secret_names
            else (),
            triggers=release_trigger,
            depends_on=(scale_step_name(settings.placements[-1][0]),),
        ),
    ]
    return Plan(steps=tuple(steps), https_url=https_url, wss_url=wss_url)
