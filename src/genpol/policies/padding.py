"""Chunk steps past an episode's end: padding, not demonstration (LeRobot's `action_is_pad`).

`is_pad` is (B, H) bool, True where a step only repeats the episode's last action; None means no
step is padded. Losses leave padded steps out, and the steps are first set to the chunk's last
real step, so what padding holds never reaches a loss, not even through a net that sees the whole
chunk (the U-Net's convolutions, the CVAE's chunk encoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def hold_last_step(action: torch.Tensor, is_pad: torch.Tensor) -> torch.Tensor:
    """(B, H, A) with every padded step replaced by the last real step before it."""
    steps = torch.arange(action.shape[1], device=action.device).expand_as(is_pad)
    source = torch.where(is_pad, 0, steps).cummax(dim=1).values
    return action.gather(1, source.unsqueeze(-1).expand_as(action))


def drop_padded(values: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """values (B, H, ...) with padded steps set to 0 (unchanged when nothing is padded)."""
    if is_pad is None:
        return values
    keep = (~is_pad).view(*is_pad.shape, *([1] * (values.ndim - 2)))
    return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))


def masked_mean(values: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """Mean of values (B, H, ...) over the real steps only."""
    if is_pad is None:
        return values.mean()
    real = (~is_pad).sum() * math.prod(values.shape[2:])
    return drop_padded(values, is_pad).sum() / real.clamp(min=1)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None,
                    kind: str = "mse") -> torch.Tensor:
    """Mean squared ("mse") or absolute ("l1") error over the real steps of (B, H, A) chunks."""
    loss_fn = F.mse_loss if kind == "mse" else F.l1_loss
    if is_pad is None:
        return loss_fn(pred, target)
    return masked_mean(loss_fn(pred, target, reduction="none"), is_pad)
