"""The fly.toml domain: the typed model, Fly's rules, rendering, parsing and lint.

Knows nothing of Pulumi, stacks or deploy targets (an import-linter contract enforces it).
"""

from infra.flytoml import rules as _rules  # installs the rules that FlyConfig.check() applies

__all__: list[str] = []
del _rules
