"""Observation encoder: state vector and camera images -> one vector, or a token sequence.

Vector mode feeds the MLP heads and the U-Net's FiLM conditioning; token mode feeds the transformer
families (ACT keeps image feature maps as tokens). Only the mode asked for is built, so DDP never
sees parameters that receive no gradient.

With an observation history (n_obs_steps > 1, vector mode only) each step is encoded by the same
layers and the steps' features are concatenated before the fusing MLP, as Diffusion Policy
flattens them into its global condition; with one step the layers and outputs are those of a
policy without history, so older checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from genpol.policies.config import ConfigError, PolicyConfig
from genpol.policies.nets.image import ImageBackbone, SpatialSoftmax
from genpol.policies.nets.mlp import mlp


class ObservationEncoder(nn.Module):
    def __init__(self, config: PolicyConfig, mode: str = "vector"):
        super().__init__()
        if mode not in ("vector", "tokens"):
            raise ValueError(f"mode must be 'vector' or 'tokens', got {mode!r}")
        if mode == "tokens" and config.n_obs_steps != 1:
            raise ConfigError(f"the token encoder sees one observation; n_obs_steps is "
                              f"{config.n_obs_steps}, set it to 1")
        self.mode = mode
        self.n_obs_steps = config.n_obs_steps
        self.cameras = list(config.cameras)
        d = config.hidden_dim
        self.state_proj = nn.Linear(config.state_dim, d)
        backbones = {name: ImageBackbone(config.image_encoder, config.cnn_width)
                     for name in self.cameras}
        self.backbones = nn.ModuleDict(backbones)
        self.out_dim = d
        pools: dict[str, SpatialSoftmax] = {}
        if mode == "vector" and config.image_pool == "spatial_softmax":
            pools = {name: SpatialSoftmax(bb.out_channels) for name, bb in backbones.items()}
        self.pools = nn.ModuleDict(pools)
        self.image_proj = nn.ModuleDict(
            {name: nn.Linear(pools[name].out_dim if name in pools else bb.out_channels, d)
             for name, bb in backbones.items()})
        if mode == "vector":
            self.fuse = mlp(d * (1 + len(self.cameras)) * self.n_obs_steps, d, d, layers=2)
        else:
            n_tokens = 1
            with torch.no_grad():
                for bb in self.backbones.values():
                    fmap = bb(torch.zeros(1, *config.image_shape))
                    n_tokens += fmap.shape[2] * fmap.shape[3]
            self.pos = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)

    def forward(self, obs: dict) -> torch.Tensor:
        """(B, D) in vector mode, (B, T, D) in token mode. obs: state (B, S) and images
        (B, 3, H, W), or with a history state (B, n_obs_steps, S) and images (B, n_obs_steps, 3,
        H, W), the oldest step first."""
        state = obs["state"]
        if self.mode == "vector":
            batch = state.shape[0]
            steps = state.shape[1] if state.ndim == 3 else 1
            # every step through the same layers at once: (B, T, ...) -> (B * T, ...)
            parts = [self.state_proj(state.reshape(batch * steps, -1))]
            for name in self.cameras:
                images = obs["images"][name]
                fmap = self.backbones[name](images.reshape(batch * steps, *images.shape[-3:]))
                pooled = self.pools[name](fmap) if name in self.pools else fmap.mean(dim=(2, 3))
                parts.append(self.image_proj[name](pooled))
            return self.fuse(torch.cat(parts, dim=-1).reshape(batch, -1))
        state_feat = self.state_proj(state)
        tokens = [state_feat.unsqueeze(1)]
        for name in self.cameras:
            fmap = self.backbones[name](obs["images"][name])  # (B, C, h, w)
            tokens.append(self.image_proj[name](fmap.flatten(2).transpose(1, 2)))
        return torch.cat(tokens, dim=1) + self.pos
