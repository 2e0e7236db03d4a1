"""Generative action-chunk policies behind one interface (see base.Policy)."""

from genpol.policies.base import Policy
from genpol.policies.checkpoint import CheckpointError, load_policy, save_policy
from genpol.policies.config import ConfigError, PolicyConfig
from genpol.policies.families import config_from_dict, families, make_config, make_policy

__all__ = ["Policy", "PolicyConfig", "ConfigError", "CheckpointError", "config_from_dict",
           "families", "make_config", "make_policy", "load_policy", "save_policy"]
