"""A plain MLP, the head most point-estimate and likelihood families need."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 3) -> nn.Sequential:
    """`layers` linear layers with Mish between them; no activation on the output."""
    dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(nn.Mish())
    return nn.Sequential(*mods)
