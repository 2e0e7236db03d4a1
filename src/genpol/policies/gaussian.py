"""Diagonal Gaussian over the chunk: captures spread, but its one mean still sits between modes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genpol.policies.base import Policy
from genpol.policies.config import ConfigError, PolicyConfig, require_positive
from genpol.policies.nets.mlp import mlp
from genpol.policies.nets.observation import ObservationEncoder
from genpol.policies.padding import drop_padded


@dataclass
class GaussianConfig(PolicyConfig):
    family_name = "gaussian"
    layers: int = 3
    min_log_std: float = -7.0
    max_log_std: float = 2.0

    def validate(self) -> None:
        super().validate()
        require_positive(self, "layers")
        if not self.min_log_std < self.max_log_std:
            raise ConfigError(
                f"min_log_std ({self.min_log_std}) must be below max_log_std ({self.max_log_std})")


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Elementwise -log N(x; mean, exp(log_std)^2)."""
    return 0.5 * ((x - mean) / log_std.exp()) ** 2 + log_std + 0.5 * math.log(2 * math.pi)


class GaussianPolicy(Policy):
    config_class = GaussianConfig
    config: GaussianConfig

    def __init__(self, config: GaussianConfig):
        super().__init__(config)
        self.encoder = ObservationEncoder(config, "vector")
        self.head = mlp(config.hidden_dim, config.hidden_dim,
                        2 * config.horizon * config.action_dim, config.layers)

    def _params(self, obs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        mean, log_std = self.head(self.encoder(obs)).view(
            -1, 2, cfg.horizon, cfg.action_dim).unbind(1)
        return mean, log_std.clamp(cfg.min_log_std, cfg.max_log_std)

    def _loss(self, obs, action, is_pad):
        mean, log_std = self._params(obs)
        nll = drop_padded(gaussian_nll(action, mean, log_std), is_pad).sum(dim=(1, 2)).mean()
        return nll, {"nll": nll.item(), "std": log_std.exp().mean().item()}

    def _sample(self, obs, num_samples, generator):
        mean, log_std = self._params(obs)
        mean = mean.unsqueeze(1).expand(-1, num_samples, -1, -1)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + noise * log_std.exp().unsqueeze(1)
