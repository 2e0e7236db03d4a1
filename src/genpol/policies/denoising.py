"""What diffusion and flow share: a noise-to-chunk net conditioned on the observation vector."""

from __future__ import annotations

import torch

from genpol.policies.base import Policy, repeat_batch
from genpol.policies.nets.denoiser import DenoiserConfig, build_denoiser, gaussian_noise
from genpol.policies.nets.observation import ObservationEncoder


class DenoisingPolicy(Policy):
    config_class = DenoiserConfig

    def __init__(self, config: DenoiserConfig):
        super().__init__(config)
        self.encoder = ObservationEncoder(config, "vector")
        self.net = build_denoiser(config, self.encoder.out_dim)

    def _start(self, obs: dict, num_samples: int, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, x): the observation encoded once and repeated per sample, and N(0, I) chunks."""
        cond = repeat_batch(self.encoder(obs), num_samples)
        shape = (cond.shape[0], self.config.horizon, self.config.action_dim)
        return cond, gaussian_noise(shape, generator, cond.device)
