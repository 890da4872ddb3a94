"""Deploy targets: pure functions from a stack's settings to a :class:`infra.deploy.plan.Plan`.

``fly`` runs flyctl against Fly.io; ``local`` runs the same topology on this machine (Redis, two
backend instances, a TLS edge rendered from the same ``[[services]]``).
"""

from __future__ import annotations

from infra.deploy.plan import Plan, PlanContext
from infra.deploy.targets.fly import fly_plan
from infra.deploy.targets.local import local_plan
from infra.stack.settings import StackSettings

__all__ = ["plan_for"]


def plan_for(settings: StackSettings, fly_toml: str, context: PlanContext) -> Plan:
    """The plan of the stack's ``realtime-fly:target``."""
    if settings.target == "fly":
        return fly_plan(settings, fly_toml=fly_toml, context=context)
    return local_plan(settings, fly_toml=fly_toml, context=context)
