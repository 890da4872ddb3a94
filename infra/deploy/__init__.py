"""The deploy pipeline: plans of steps per target, the ``FlyApp`` component, materialise, smoke.

The only part of ``infra`` that imports Pulumi (an import-linter contract enforces it). This
package module itself stays free of Pulumi so that the engine runner can read the one switch it
shares with the program.
"""

__all__ = ["COMMAND_IMPLEMENTATION_VARIABLE"]

COMMAND_IMPLEMENTATION_VARIABLE = "REALTIME_FLY_COMMAND"
"""``plugin`` (pulumi_command.local.Command, the default) or ``dynamic``
(:class:`infra.deploy.local_command.LocalCommand`); set by the engine runner
(:mod:`infra.engine.runner`) according to whether the plugin is on the engine's PATH, read by
:class:`infra.deploy.components.FlyApp`."""
