"""Conditional VAE over action chunks in the style of ACT (Zhao et al. 2023).

A transformer encoder sees the ground-truth chunk during training and summarises it into a latent
"style" z; the policy decodes the chunk from z plus the observation tokens. At test time the chunk
is unknown, so z comes from the prior: z = 0 (ACT's choice, one deterministic chunk per
observation) unless `sample_prior` asks for z ~ N(0, I) to get varied chunks. The large default
beta squeezes z towards the prior so that decoding from it stays on the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genpol.policies.base import Policy, repeat_batch
from genpol.policies.config import ConfigError, PolicyConfig, require_positive
from genpol.policies.nets.observation import ObservationEncoder
from genpol.policies.nets.transformer import transformer_decoder, transformer_encoder
from genpol.policies.padding import regression_loss


@dataclass
class CVAEConfig(PolicyConfig):
    family_name = "cvae"
    observation_history = False
    latent_dim: int = 32
    beta: float = 10.0  # KL weight
    n_heads: int = 8
    enc_layers: int = 4
    dec_layers: int = 1
    vae_enc_layers: int = 4
    dim_feedforward: int = 1024
    dropout: float = 0.1
    recon_loss: str = "l1"  # "l1" or "mse"
    sample_prior: bool = False  # False: z = 0 at inference; True: z ~ N(0, I)

    def validate(self) -> None:
        super().validate()
        require_positive(self, "latent_dim", "n_heads", "enc_layers", "dec_layers",
                         "vae_enc_layers", "dim_feedforward")
        if self.hidden_dim % self.n_heads:
            raise ConfigError(f"CVAEConfig.hidden_dim ({self.hidden_dim}) must be divisible by "
                              f"n_heads ({self.n_heads})")
        if not _is_real(self.beta) or not math.isfinite(self.beta) or self.beta < 0:
            raise ConfigError(f"CVAEConfig.beta must be a finite number >= 0, got {self.beta!r}")
        if not _is_real(self.dropout) or not 0 <= self.dropout < 1:
            raise ConfigError(f"CVAEConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.recon_loss not in ("l1", "mse"):
            raise ConfigError(
                f"CVAEConfig.recon_loss must be 'l1' or 'mse', got {self.recon_loss!r}")
        if not isinstance(self.sample_prior, bool):
            raise ConfigError(
                f"CVAEConfig.sample_prior must be true or false, got {self.sample_prior!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class CVAEPolicy(Policy):
    config_class = CVAEConfig
    config: CVAEConfig

    def __init__(self, config: CVAEConfig):
        super().__init__(config)
        # With z fixed at 0 the policy returns one chunk per observation.
        self.stochastic = config.sample_prior  # type: ignore[misc]
        d, h, a = config.hidden_dim, config.horizon, config.action_dim
        block: dict[str, Any] = dict(d_model=d, n_heads=config.n_heads,
                                     dim_feedforward=config.dim_feedforward,
                                     dropout=config.dropout)
        # Posterior q(z | chunk, state): only used for training.
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.vae_state = nn.Linear(config.state_dim, d)
        self.vae_action = nn.Linear(a, d)
        self.vae_pos = nn.Parameter(torch.randn(1, h + 2, d) * 0.02)
        self.vae_encoder = transformer_encoder(layers=config.vae_enc_layers, **block)
        self.to_posterior = nn.Linear(d, 2 * config.latent_dim)
        # Policy: [latent token, observation tokens] -> memory; H queries read it.
        self.obs_encoder = ObservationEncoder(config, "tokens")
        self.latent_token = nn.Linear(config.latent_dim, d)
        self.encoder = transformer_encoder(layers=config.enc_layers, **block)
        self.queries = nn.Parameter(torch.randn(1, h, d) * 0.02)
        self.decoder = transformer_decoder(layers=config.dec_layers, **block)
        self.action_head = nn.Linear(d, a)

    def _posterior(self, state: torch.Tensor, action: torch.Tensor):
        tokens = torch.cat([self.cls.expand(state.shape[0], -1, -1),
                            self.vae_state(state).unsqueeze(1),
                            self.vae_action(action)], dim=1)
        out = self.vae_encoder(tokens + self.vae_pos)
        mu, logvar = self.to_posterior(out[:, 0]).chunk(2, dim=-1)
        return mu, logvar

    def _decode(self, obs_tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """obs_tokens (M, T, D), z (M, latent) -> chunk (M, H, A)."""
        memory = self.encoder(torch.cat([self.latent_token(z).unsqueeze(1), obs_tokens], dim=1))
        queries = self.queries.expand(z.shape[0], -1, -1)
        return self.action_head(self.decoder(queries, memory))

    def _loss(self, obs, action, is_pad):
        mu, logvar = self._posterior(obs["state"], action)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        pred = self._decode(self.obs_encoder(obs), z)
        recon = regression_loss(pred, action, is_pad, self.config.recon_loss)
        # KL(N(mu, sigma^2) || N(0, I)), summed over latent dims, averaged over the batch.
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1).mean()
        loss = recon + self.config.beta * kl
        return loss, {"recon": recon.item(), "kl": kl.item()}

    def _sample(self, obs, num_samples, generator):
        obs_tokens = self.obs_encoder(obs)  # images encoded once per observation, not per sample
        batch = obs_tokens.shape[0]
        # With z = 0 every sample is the same chunk: decode it once and repeat the result.
        draws = num_samples if self.config.sample_prior else 1
        obs_tokens = repeat_batch(obs_tokens, draws)
        z = torch.zeros(batch * draws, self.config.latent_dim, device=obs_tokens.device)
        if self.config.sample_prior:
            z = torch.randn(z.shape, generator=generator, device=z.device)
        chunks = self._decode(obs_tokens, z).view(batch, draws, self.config.horizon,
                                                  self.config.action_dim)
        return chunks.expand(-1, num_samples, -1, -1).contiguous()
