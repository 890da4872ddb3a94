"""The deploy pipeline: plans of steps per target, the ``FlyApp`` component, materialise, smoke.

The only part of ``infra`` that imports Pulumi.
"""
