"""Family name -> policy class. Family modules are imported on first use, so asking for the
`mse` baseline never pays for importing diffusers."""

from __future__ import annotations

import importlib

from genpol.policies.base import Policy
from genpol.policies.config import PolicyConfig, config_class

FAMILY_MODULES = {
    "mse": "genpol.policies.mse:MSEPolicy",
    "gaussian": "genpol.policies.gaussian:GaussianPolicy",
    "gmm": "genpol.policies.gmm:GMMPolicy",
    "binned": "genpol.policies.binned:BinnedPolicy",
    "cvae": "genpol.policies.cvae:CVAEPolicy",
    "diffusion": "genpol.policies.diffusion:DiffusionPolicy",
    "flow": "genpol.policies.flow:FlowPolicy",
}


def policy_class(family: str) -> type[Policy]:
    if family not in FAMILY_MODULES:
        config_class(family)  # raises ConfigError listing the known families
    module, name = FAMILY_MODULES[family].split(":")
    return getattr(importlib.import_module(module), name)


def make_policy(config: PolicyConfig) -> Policy:
    return policy_class(config.family)(config)
