"""Transformer denoiser / velocity net, a drop-in alternative to the U-Net (same call signature).

Each chunk step is a token; the timestep and the observation are one token each, so attention rather
than FiLM mixes the conditioning in. No convolution means no smoothness bias and no horizon padding.
"""

from __future__ import annotations

import torch
from torch import nn

from genpol.policies.nets.unet1d import TimestepMLP


class ChunkTransformer(nn.Module):
    """(x (B, H, A), timestep (B,), cond (B, C)) -> (B, H, A)."""

    def __init__(self, action_dim: int, cond_dim: int, horizon: int, d_model: int = 256,
                 layers: int = 4, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.action_in = nn.Linear(action_dim, d_model)
        self.time_in = TimestepMLP(d_model)
        self.cond_in = nn.Linear(cond_dim, d_model)
        self.pos = nn.Parameter(torch.randn(1, horizon + 2, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # Nested tensors only speed up padded batches and do not support norm_first.
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.out = nn.Linear(d_model, action_dim)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        batch, horizon = x.shape[:2]
        tokens = torch.cat([self.time_in(timestep.expand(batch)).unsqueeze(1),
                            self.cond_in(cond).unsqueeze(1), self.action_in(x)], dim=1)
        h = self.encoder(tokens + self.pos[:, :horizon + 2])
        return self.out(h[:, 2:])
