"""The fly.toml domain: the typed model, Fly's rules, rendering, parsing and lint.

Knows nothing of Pulumi, stacks or deploy targets (an import-linter contract enforces it). The
model is plain data; the rules judge it (``rules.check_config``, ``rules.config_findings``).
"""
