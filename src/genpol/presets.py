"""Small per-family settings (config/presets.yaml), so the demo, the benchmarks and the tests
train the same small policies instead of each keeping its own copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FILE = "presets.yaml"
DEFAULT_GROUP = "small"


class PresetError(ValueError):
    """A preset group or family that config/presets.yaml does not hold."""


def preset_file() -> Path:
    """config/presets.yaml of a source checkout, else of the installed package."""
    here = Path(__file__).resolve().parents[2] / "config" / FILE
    if here.is_file():
        return here
    from genpol.graph import config_dir

    return config_dir() / FILE


def group(name: str = DEFAULT_GROUP) -> dict[str, dict[str, dict[str, Any]]]:
    """family -> {"policy": config values, "train": TrainConfig values} of one group."""
    path = preset_file()
    groups = yaml.safe_load(path.read_text())
    if name not in groups:
        raise PresetError(f"no preset group {name!r} in {path}; known groups: {sorted(groups)}")
    return {family: {"policy": dict(v.get("policy") or {}), "train": dict(v.get("train") or {})}
            for family, v in groups[name].items()}


def families(name: str = DEFAULT_GROUP) -> list[str]:
    return list(group(name))


def preset(family: str, name: str = DEFAULT_GROUP) -> dict[str, dict[str, Any]]:
    presets = group(name)
    if family not in presets:
        raise PresetError(f"preset group {name!r} has no family {family!r}; choose one of "
                          f"{sorted(presets)} or add it to {preset_file()}")
    return presets[family]


def policy(family: str, name: str = DEFAULT_GROUP) -> dict[str, Any]:
    """The family's policy config values (keyword arguments of make_config/config_for_data)."""
    return preset(family, name)["policy"]


def train(family: str, name: str = DEFAULT_GROUP) -> dict[str, Any]:
    """The family's TrainConfig values."""
    return preset(family, name)["train"]
