"""Deploy the real-time WebSocket backend to Fly.io with Pulumi.

The fly.toml model (``infra.model``) and its rules (``infra.checks``), rendering and parsing
(``infra.render``, ``infra.parse``), lint and the ``python -m infra`` CLI, stack settings
(``infra.stack``), and the Pulumi program's parts (``infra.config``, ``infra.components``, ...).
"""
