"""The stack config schema: one table whose defaults are the model's, documented as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.errors import ConfigError
from infra.flytoml.model import Build, Deploy, Duration, HttpService, Metrics, Vm, WebSocketService
from infra.stack.schema import CONFIG_KEYS, KEYS, OBJECT_KEYS, Key, stack_key_for
from infra.stack.settings import settings_from_config
from infra.stack.values import Values

REPO = Path(__file__).resolve().parents[2]


# the smallest valid stack: the default two machines need a shared broker
EMPTY = {"target": "local", "machines": 1}


def test_empty_stack_renders_the_model_defaults() -> None:
    """A stack that sets nothing gets exactly the model's WebSocket, HTTP, VM, metrics and build
    defaults: the stack does not keep a second copy of them."""
    fly = settings_from_config(EMPTY, stack="s").fly
    assert fly.services == (WebSocketService(),)
    assert fly.http_service == HttpService()
    assert fly.vms == (Vm(),)
    assert fly.metrics == (Metrics(),)
    assert fly.build == Build()
    assert fly.kill_signal == "SIGTERM"
    assert fly.kill_timeout == Duration("30s")


def test_wait_timeout_is_the_one_deliberate_difference() -> None:
    """The stack's deploy waits 10m0s where the model (and flyctl) default to 5m0s."""
    deploy = settings_from_config(EMPTY, stack="s").fly.deploy
    assert deploy == Deploy(wait_timeout=Duration("10m0s"))
    assert Deploy().wait_timeout == Duration("5m0s")


@pytest.mark.parametrize("key", [key for key in KEYS if key.toml], ids=lambda key: key.name)
def test_every_fly_toml_key_maps_back_to_its_stack_key(key: Key) -> None:
    """An error on a rendered fly.toml key names the stack key that produced it."""
    assert key.toml is not None
    assert stack_key_for(key.toml) == f"realtime-fly:{key.name}"


def test_levels_are_derived_from_the_table() -> None:
    """Top-level keys and object fields are exactly the table's rows."""
    names = {key.name for key in KEYS}
    assert set(CONFIG_KEYS) == {name for name in names if "." not in name}
    fields = {f"{section}.{field}" for section, fields in OBJECT_KEYS.items() for field in fields}
    assert fields == {name for name in names if "." in name}


def _documented_defaults() -> dict[str, str]:
    """key -> the default cell of docs/CONFIG.md's table (``a` / `b`` rows split in two)."""
    text = (REPO / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    defaults: dict[str, str] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        values = [value.strip() for value in cells[2].split(" / ")]
        if len(values) != len(names):
            values = values * len(names)
        defaults.update(zip(names, values, strict=True))
    return defaults


def _as_documented(default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, Duration):
        return f'`"{default}"`'
    if isinstance(default, tuple):
        return f"`{json.dumps(list(default))}`".replace('","', '", "')
    return f"`{json.dumps(default)}`"


@pytest.mark.parametrize(
    "key",
    [key for key in KEYS if key.kind != "object" and key.name not in ("app", "org")],
    ids=lambda key: key.name,
)
def test_config_reference_states_each_default(key: Key) -> None:
    """docs/CONFIG.md gives every key the default the schema applies."""
    documented = _documented_defaults()[key.name]
    if key.default is None and documented == "`null`":  # a key whose type admits null
        return
    assert documented == _as_documented(key.default)


def test_regions_is_a_counts_key() -> None:
    """`regions` takes free names (region codes), so it is no object key with fixed fields."""
    regions = next(key for key in KEYS if key.name == "regions")
    assert (regions.kind, regions.default, regions.toml) == ("counts", None, None)
    assert "regions" in CONFIG_KEYS
    assert "regions" not in OBJECT_KEYS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ({"ams": 1}, {"ams": 1}),
        ({"ams": "2", "syd": 0}, {"ams": 2, "syd": 0}),
        ('{"ams": 1, "lhr": "3"}', {"ams": 1, "lhr": 3}),
    ],
)
def test_counts_reader(raw: object, expected: dict[str, int] | None) -> None:
    values = Values({} if raw is None else {"regions": raw})
    assert values.counts("regions") == expected


def test_counts_reader_names_the_entry() -> None:
    with pytest.raises(ConfigError) as caught:
        Values({"regions": {"ams": 1, "syd": "x"}}).counts("regions")
    assert (caught.value.key, caught.value.value) == ("realtime-fly:regions.syd", "x")
