"""The one family table: family name -> the policy class that implements it.

Entries are "module:Class" strings imported on first use, so asking for the `mse` baseline never
pays for importing diffusers. A family's config class is its policy class's `config_class`; no
module below imports this one, which keeps the package free of import circles.
"""

from __future__ import annotations

import importlib
from dataclasses import fields
from typing import Any

from genpol.policies.base import Policy
from genpol.policies.config import ConfigError, PolicyConfig

FAMILIES: dict[str, str] = {
    "mse": "genpol.policies.mse:MSEPolicy",
    "gaussian": "genpol.policies.gaussian:GaussianPolicy",
    "gmm": "genpol.policies.gmm:GMMPolicy",
    "binned": "genpol.policies.binned:BinnedPolicy",
    "cvae": "genpol.policies.cvae:CVAEPolicy",
    "diffusion": "genpol.policies.diffusion:DiffusionPolicy",
    "flow": "genpol.policies.flow:FlowPolicy",
}


def families() -> list[str]:
    return list(FAMILIES)


def policy_class(family: str) -> type[Policy]:
    if family not in FAMILIES:
        raise ConfigError(f"unknown policy family {family!r}; choose one of {families()}")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def config_class(family: str) -> type[PolicyConfig]:
    return policy_class(family).config_class


def make_config(family: str, **values: Any) -> PolicyConfig:
    """Build a family's config, refusing keys it does not know (a typo must not pass silently)."""
    cls = config_class(family)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown {family} config keys {unknown}; known keys are {sorted(known)}")
    return cls(**values)


def config_from_dict(d: dict[str, Any]) -> PolicyConfig:
    d = dict(d)
    family = d.pop("family", None)
    if family is None:
        raise ConfigError("policy config has no 'family' key; add e.g. family: flow")
    if d.get("cameras") and "image_pool" not in d:
        d["image_pool"] = "mean"  # a checkpoint from before image_pool existed averaged its maps
    return make_config(family, **d)


def make_policy(config: PolicyConfig) -> Policy:
    return policy_class(config.family)(config)
