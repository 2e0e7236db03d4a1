"""Discretised autoregressive policy: every action value becomes one of n_bins uniform bins.

A categorical per value can hold any number of modes, and predicting the H*A values one after the
other (step 0 dims 0..A-1, then step 1, ...) lets later values depend on earlier ones, so modes stay
consistent across dimensions and time. The price is a sequential sampler; a GRU keeps each step
a single cheap cell update with the hidden state carried along.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genpol.policies.base import Policy, repeat_batch
from genpol.policies.config import ConfigError, PolicyConfig, require_positive
from genpol.policies.nets.observation import ObservationEncoder
from genpol.policies.padding import masked_mean


@dataclass
class BinnedConfig(PolicyConfig):
    family_name = "binned"
    n_bins: int = 64
    rnn_layers: int = 2
    temperature: float = 1.0  # softmax temperature at sampling; < 1 sharpens

    def validate(self) -> None:
        super().validate()
        require_positive(self, "n_bins", "rnn_layers")
        if self.n_bins < 2:
            raise ConfigError(f"BinnedConfig.n_bins must be >= 2, got {self.n_bins}")
        t = self.temperature
        if (not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t)
                or t <= 0):
            raise ConfigError(f"BinnedConfig.temperature must be a finite number > 0, got {t!r}")


def to_bins(action: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Values in [-1, 1] (clipped) -> bin indices (long) in [0, n_bins)."""
    scaled = (action.clamp(-1.0, 1.0) + 1.0) * (n_bins / 2.0)
    return scaled.floor().long().clamp(0, n_bins - 1)


def from_bins(index: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin indices -> bin centers in [-1, 1]."""
    return (index.float() + 0.5) * (2.0 / n_bins) - 1.0


class BinnedPolicy(Policy):
    config_class = BinnedConfig
    config: BinnedConfig
    prefix_method = "forcing"
    step_of: torch.Tensor
    dim_of: torch.Tensor

    def __init__(self, config: BinnedConfig):
        super().__init__(config)
        d, layers = config.hidden_dim, config.rnn_layers
        self.encoder = ObservationEncoder(config, "vector")
        self.to_h0 = nn.Linear(d, layers * d)
        self.cond_in = nn.Linear(d, d)  # the condition also enters every input, not only h0
        # Index n_bins is the start token that stands before position 0.
        self.bin_emb = nn.Embedding(config.n_bins + 1, d)
        self.step_emb = nn.Embedding(config.horizon, d)
        self.dim_emb = nn.Embedding(config.action_dim, d)
        self.rnn = nn.GRU(d, d, num_layers=layers, batch_first=True)
        self.head = nn.Linear(d, config.n_bins)
        positions = torch.arange(config.horizon * config.action_dim)
        self.register_buffer("step_of", positions // config.action_dim, persistent=False)
        self.register_buffer("dim_of", positions % config.action_dim, persistent=False)

    def _start(self, obs: dict, repeats: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition -> (per-input offset (M, D), initial hidden state (layers, M, D))."""
        cond = repeat_batch(self.encoder(obs), repeats)
        h0 = torch.tanh(self.to_h0(cond)).view(cond.shape[0], self.config.rnn_layers, -1)
        return self.cond_in(cond), h0.transpose(0, 1).contiguous()

    def _inputs(self, prev: torch.Tensor, pos: torch.Tensor | slice, offset: torch.Tensor):
        """prev (M, L) previous tokens at positions `pos` -> GRU inputs (M, L, D)."""
        where = self.step_emb(self.step_of[pos]) + self.dim_emb(self.dim_of[pos])
        return self.bin_emb(prev) + where + offset.unsqueeze(1)

    def _loss(self, obs, action, is_pad):
        target = to_bins(action, self.config.n_bins).flatten(1)  # (B, H*A), step-major
        start = torch.full_like(target[:, :1], self.config.n_bins)
        prev = torch.cat([start, target[:, :-1]], dim=1)  # teacher forcing
        offset, h0 = self._start(obs, 1)
        out, _ = self.rnn(self._inputs(prev, slice(None), offset), h0)
        logits = self.head(out)
        correct = (logits.argmax(-1) == target).float()
        if is_pad is None:
            loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        else:
            ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
            loss = masked_mean(ce.view(action.shape), is_pad)
        accuracy = masked_mean(correct.view(action.shape), is_pad)
        return loss, {"ce": loss.item(), "bin_acc": accuracy.item()}

    def _sample(self, obs, num_samples, generator, prefix=None):
        """prefix: its committed steps' tokens are given, not drawn (prefix forcing), so the
        rest of the chunk is sampled as the continuation of exactly what the robot plays."""
        cfg = self.config
        offset, h = self._start(obs, num_samples)
        m = offset.shape[0]
        prev = torch.full((m, 1), cfg.n_bins, dtype=torch.long, device=offset.device)
        committed = 0 if prefix is None else prefix.committed
        forced = (to_bins(prefix.actions[:committed], cfg.n_bins).flatten()
                  if prefix is not None else None)
        tokens = []
        for i in range(cfg.horizon * cfg.action_dim):
            out, h = self.rnn(self._inputs(prev, slice(i, i + 1), offset), h)
            if forced is not None and i < forced.numel():
                prev = forced[i].expand(m, 1)
            else:
                probs = F.softmax(self.head(out[:, 0]) / cfg.temperature, dim=-1)
                prev = torch.multinomial(probs, 1, generator=generator)
            tokens.append(prev)
        chunks = from_bins(torch.cat(tokens, dim=1), cfg.n_bins).view(m, cfg.horizon,
                                                                      cfg.action_dim)
        if prefix is not None and committed:  # the prefix itself, not its bins' centres
            chunks[:, :committed] = prefix.actions[:committed]
        return chunks.view(-1, num_samples, cfg.horizon, cfg.action_dim)
