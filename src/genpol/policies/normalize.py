"""Normalisation that travels with the model, so a checkpoint is usable on its own.

State: zero mean, unit variance. Actions: per-dimension min/max to [-1, 1], the range diffusion's
sample clipping and the binned family's bins assume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

STAT_KEYS = ("state_mean", "state_std", "action_min", "action_max")
_EPS = 1e-6
#: The smallest state spread a joint is scaled by (data units: rad for the SO-101). A joint that
#: never moves in the data (the wrist roll and the gripper of reach_around: std 5e-6 and 2e-4
#: rad) would otherwise turn a reading 0.001 rad off into 6 standard deviations, and the policy
#: saw every evaluation start pose as far out of its data (its first step 0.25 rad off the arm).
STATE_STD_MIN = 1e-2


def compute_stats(states: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
    """states (N, S), actions (N, H, A) or (N, A) -> the four statistics, float32."""
    states = np.asarray(states, dtype=np.float64)
    actions = np.asarray(actions, dtype=np.float64).reshape(-1, np.shape(actions)[-1])
    return {
        "state_mean": states.mean(0).astype(np.float32),
        "state_std": np.maximum(states.std(0), STATE_STD_MIN).astype(np.float32),
        "action_min": actions.min(0).astype(np.float32),
        "action_max": actions.max(0).astype(np.float32),
    }


class Normalizer(nn.Module):
    state_mean: torch.Tensor
    state_std: torch.Tensor
    action_min: torch.Tensor
    action_max: torch.Tensor

    def __init__(self, state_dim: int, action_dim: int):
        super().__init__()
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("action_min", -torch.ones(action_dim))
        self.register_buffer("action_max", torch.ones(action_dim))

    def set_stats(self, stats: Mapping[str, Any]) -> None:
        missing = [k for k in STAT_KEYS if k not in stats]
        if missing:
            raise ValueError(f"normalisation statistics lack {missing}; need {list(STAT_KEYS)}")
        for key in STAT_KEYS:
            buf = getattr(self, key)
            value = torch.as_tensor(np.asarray(stats[key]), dtype=torch.float32)
            if value.shape != buf.shape:
                raise ValueError(f"statistic {key!r} has shape {tuple(value.shape)}, expected "
                                 f"{tuple(buf.shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"statistic {key!r} holds NaN or inf: {value.tolist()}")
            buf.copy_(value)

    def stats(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).detach().clone() for k in STAT_KEYS}

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return (state - self.state_mean) / self.state_std.clamp_min(_EPS)

    def _action_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        center = (self.action_max + self.action_min) / 2
        half = ((self.action_max - self.action_min) / 2).clamp_min(_EPS)
        return center, half

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        center, half = self._action_scale()
        return (action - center) / half

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        center, half = self._action_scale()
        return action * half + center
