"""Point estimate with an L2 loss: the baseline that averages the modes of the demonstrations."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genpol.policies.base import Policy
from genpol.policies.config import PolicyConfig, require_positive
from genpol.policies.nets.mlp import mlp
from genpol.policies.nets.observation import ObservationEncoder
from genpol.policies.padding import regression_loss


@dataclass
class MSEConfig(PolicyConfig):
    family_name = "mse"
    layers: int = 3

    def validate(self) -> None:
        super().validate()
        require_positive(self, "layers")


class MSEPolicy(Policy):
    config_class = MSEConfig
    config: MSEConfig
    stochastic = False

    def __init__(self, config: MSEConfig):
        super().__init__(config)
        self.encoder = ObservationEncoder(config, "vector")
        self.head = mlp(config.hidden_dim, config.hidden_dim,
                        config.horizon * config.action_dim, config.layers)

    def _predict(self, obs: dict) -> torch.Tensor:
        out = self.head(self.encoder(obs))
        return out.view(-1, self.config.horizon, self.config.action_dim)

    def _loss(self, obs, action, is_pad):
        loss = regression_loss(self._predict(obs), action, is_pad)
        return loss, {"mse": loss.item()}

    def _sample(self, obs, num_samples, generator):
        mean = self._predict(obs)
        return mean.unsqueeze(1).expand(-1, num_samples, -1, -1).contiguous()
