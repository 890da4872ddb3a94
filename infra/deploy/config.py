"""The only module that reads ``pulumi.Config``.

It hands the stack's plain values to :func:`infra.stack.settings.settings_from_config` (the same
function the CLI uses on ``Pulumi.<stack>.yaml``), so a stack renders the same fly.toml with or
without the engine, and invalid config raises :class:`infra.errors.ConfigError` while the
program is being evaluated: ``pulumi preview`` fails before any command runs. Secret values stay
Pulumi secrets (``Output[str]``); only their presence reaches the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi.runtime import config as runtime_config

from infra.deploy.targets.fly_secrets import carriage_problem
from infra.errors import ConfigError
from infra.stack.settings import CONFIG_KEYS, PROJECT, SECRETS, StackSettings, settings_from_config

__all__ = ["StackInputs", "read_stack"]

_SECRET_KEYS = frozenset(spec.key for spec in SECRETS)
SIGNING_KEY_MIN_CHARS = 32
"""The backend refuses shorter HS256 keys at start (backend/realtime/settings.py)."""


@dataclass(frozen=True, slots=True)
class StackInputs:
    """Everything the program needs from the stack: settings, and the secrets as Outputs."""

    settings: StackSettings
    secrets: dict[str, pulumi.Output[str]]
    """Fly secret / environment variable name -> secret value (``TOKEN_SIGNING_KEY`` -> ...)."""


def _configured_keys() -> set[str]:
    """Every ``realtime-fly:*`` key the engine passed, so a misspelt key is refused, not ignored."""
    names = set(runtime_config.get_config_env()) | set(runtime_config.CONFIG.get())
    prefix = f"{PROJECT}:"
    return {name[len(prefix) :] for name in names if name.startswith(prefix)}


def _check_secret_shape(key: str) -> None:
    """Refuse a secret the backend would refuse, at preview; the message never shows the value."""
    plaintext = runtime_config.get_config(f"{PROJECT}:{key}")
    if key == "tokenSigningKey" and len(str(plaintext or "")) < SIGNING_KEY_MIN_CHARS:
        raise ConfigError(
            key=f"{PROJECT}:{key}",
            value=f"<secret of {len(str(plaintext or ''))} characters>",
            reason=f"must be at least {SIGNING_KEY_MIN_CHARS} characters: the backend refuses "
            "shorter HS256 keys and would not start",
        )


def _check_secret_carriage(spec_key: str, env_name: str) -> None:
    """Refuse, at preview, a secret ``fly secrets import`` would not store byte-identical.

    The rules are flyctl's import parser's (``infra.deploy.targets.fly_secrets``); the message
    names the config key and the reason, never the value.
    """
    plaintext = str(runtime_config.get_config(f"{PROJECT}:{spec_key}") or "")
    problem = carriage_problem(env_name, plaintext)
    if problem is not None:
        raise ConfigError(
            key=f"{PROJECT}:{spec_key}",
            value=f"<secret of {len(plaintext)} characters>",
            reason=f"cannot reach Fly unchanged through `fly secrets import`: {problem}",
        )


def read_stack() -> StackInputs:
    """Read and validate this stack's configuration; raise ConfigError naming the bad key."""
    cfg = pulumi.Config(PROJECT)
    values: dict[str, object] = {}
    for key in sorted(_configured_keys()):
        if key in _SECRET_KEYS:
            continue
        if key not in CONFIG_KEYS:
            # settings_from_config names unknown keys; pass the value through so it can.
            values[key] = cfg.get(key)
            continue
        raw = cfg.get(key)
        if raw is not None:
            values[key] = raw
    secrets: dict[str, pulumi.Output[str]] = {}
    for spec in SECRETS:
        secret = cfg.get_secret(spec.key)
        if secret is None:
            continue
        if not runtime_config.is_config_secret(f"{PROJECT}:{spec.key}"):
            raise ConfigError(
                key=f"{PROJECT}:{spec.key}",
                value="<plaintext>",
                reason="must be set with `pulumi config set --secret` so it is encrypted in the "
                "stack file and the state",
            )
        _check_secret_shape(spec.key)
        values[spec.key] = True  # presence only: the value never leaves the Output
        secrets[spec.env_name] = secret
    settings = settings_from_config(values, stack=pulumi.get_stack())
    if settings.target == "fly":
        for spec in SECRETS:
            if spec.env_name in secrets:
                _check_secret_carriage(spec.key, spec.env_name)
    return StackInputs(settings=settings, secrets=secrets)
