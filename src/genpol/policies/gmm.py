"""Mixture of K diagonal Gaussians over the whole chunk: each component can own one mode."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genpol.policies.base import Policy
from genpol.policies.config import ConfigError, PolicyConfig, require_positive
from genpol.policies.gaussian import gaussian_nll
from genpol.policies.nets.mlp import mlp
from genpol.policies.nets.observation import ObservationEncoder


@dataclass
class GMMConfig(PolicyConfig):
    family_name = "gmm"
    num_components: int = 5
    layers: int = 3
    min_log_std: float = -7.0
    max_log_std: float = 2.0
    #: Scales the sampled noise; 1.0 samples the model, 0.0 returns component means.
    noise_scale: float = 1.0

    def validate(self) -> None:
        super().validate()
        require_positive(self, "num_components", "layers")
        if not self.min_log_std < self.max_log_std:
            raise ConfigError(
                f"min_log_std ({self.min_log_std}) must be below max_log_std ({self.max_log_std})")
        if self.noise_scale < 0:
            raise ConfigError(f"noise_scale must be >= 0, got {self.noise_scale}")


class GMMPolicy(Policy):
    config_class = GMMConfig
    config: GMMConfig

    def __init__(self, config: GMMConfig):
        super().__init__(config)
        self.encoder = ObservationEncoder(config, "vector")
        k, d = config.num_components, config.horizon * config.action_dim
        self.head = mlp(config.hidden_dim, config.hidden_dim, k * (1 + 2 * d), config.layers)

    def _params(self, obs: dict):
        cfg = self.config
        k, d = cfg.num_components, cfg.horizon * cfg.action_dim
        out = self.head(self.encoder(obs))
        logits = out[:, :k]
        mean, log_std = out[:, k:].view(-1, k, 2, d).unbind(2)
        return logits, mean, log_std.clamp(cfg.min_log_std, cfg.max_log_std)

    def _loss(self, obs, action, is_pad):
        logits, mean, log_std = self._params(obs)
        x = action.flatten(1).unsqueeze(1)  # (B, 1, d) against (B, K, d)
        terms = gaussian_nll(x, mean, log_std)
        if is_pad is not None:  # a diagonal Gaussian's marginal: padded dimensions drop out
            real = (~is_pad).repeat_interleave(self.config.action_dim, dim=1)  # (B, d)
            terms = terms * real.unsqueeze(1)
        comp_ll = -terms.sum(-1)  # (B, K)
        ll = torch.logsumexp(torch.log_softmax(logits, -1) + comp_ll, dim=-1)
        nll = -ll.mean()
        return nll, {"nll": nll.item()}

    def _sample(self, obs, num_samples, generator):
        cfg = self.config
        logits, mean, log_std = self._params(obs)
        b = logits.shape[0]
        idx = torch.multinomial(torch.softmax(logits, -1), num_samples, replacement=True,
                                generator=generator)  # (B, N)
        pick = idx.unsqueeze(-1).expand(-1, -1, mean.shape[-1])
        mu, ls = mean.gather(1, pick), log_std.gather(1, pick)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        x = mu + cfg.noise_scale * noise * ls.exp()
        return x.view(b, num_samples, cfg.horizon, cfg.action_dim)
