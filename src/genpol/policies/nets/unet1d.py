"""1D temporal U-Net with FiLM conditioning, after Diffusion Policy (Chi et al. 2023).

Convolutions run along the chunk's time axis with the action dimensions as channels, so the net is
biased toward smooth chunks. The timestep and the observation enter every residual block as a
per-channel scale and bias (FiLM) rather than as extra input channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timestep: torch.Tensor, dim: int,
                       max_period: float = 10000.0) -> torch.Tensor:
    """(B,) float timesteps -> (B, dim) sinusoids; callers scale continuous time (e.g. t * 1000)
    so that neighbouring times differ in the fast frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, device=timestep.device, dtype=torch.float32) / half)
    args = timestep.float().reshape(-1, 1) * freqs
    emb = torch.cat([args.sin(), args.cos()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepMLP(nn.Module):
    """Sinusoidal embedding followed by an MLP, shared by the U-Net and the transformer."""

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(dim, dim * 4), nn.Mish(),
                                 nn.Linear(dim * 4, out_dim or dim))

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        return self.net(timestep_embedding(timestep, self.dim))


class Conv1d(nn.Conv1d):
    """nn.Conv1d (same parameters and state-dict keys) that, outside autograd on the CPU, runs as
    one matrix product over the unfolded input. For 1D inputs at a planner's batch sizes PyTorch
    picks its im2col path, which measured about 20 % slower per U-Net forward than a linear layer
    on the same weights; training keeps PyTorch's convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.ndim != 3 or self.groups != 1
                or self.dilation != (1,) or self.padding_mode != "zeros"
                or not isinstance(self.padding, tuple)):
            return super().forward(x)
        (k,), (pad,), (stride,) = self.kernel_size, self.padding, self.stride
        if pad:
            x = F.pad(x, (pad, pad))
        cols = x.unfold(2, k, stride).transpose(1, 2)  # (B, L_out, C_in, k)
        out = F.linear(cols.reshape(cols.shape[0], cols.shape[1], -1),
                       self.weight.view(self.out_channels, -1), self.bias)
        return out.transpose(1, 2)


class ConvTranspose1d(nn.ConvTranspose1d):
    """nn.ConvTranspose1d that, like Conv1d above, runs as one matrix product outside autograd on
    the CPU (then overlap-adds the kernel taps): PyTorch's own path measured about 9x slower for a
    1024-channel upsample at batch 1."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.ndim != 3 or self.groups != 1
                or self.dilation != (1,) or self.output_padding != (0,) or output_size is not None
                or not isinstance(self.padding, tuple)):
            return super().forward(x, output_size)
        (k,), (pad,), (stride,) = self.kernel_size, self.padding, self.stride
        length = x.shape[-1]
        taps = torch.matmul(x.transpose(1, 2), self.weight.view(self.in_channels, -1))
        full = (length - 1) * stride + k
        out = F.fold(taps.transpose(1, 2), (1, full), (1, k), stride=(1, stride))[:, :, 0]
        out = out[..., pad:full - pad]
        return out if self.bias is None else out + self.bias[:, None]


class Conv1dBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int):
        super().__init__(Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, c_out), nn.Mish())


class CondResBlock(nn.Module):
    """Two conv blocks; the conditioning vector scales and shifts the first one's output."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel_size, n_groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = self.block1(x) * scale + bias
        return self.block2(h) + self.skip(x)


#: "standard": Diffusion Policy's up path (concatenate the skip at its own resolution, two residual
#: blocks, then upsample). "legacy": genpol's first up path (upsample, then concatenate), which ran
#: its up levels at twice the length and carried a widest-channel transposed convolution; kept so
#: checkpoints saved before the layout field still load.
UNET_LAYOUTS = ("standard", "legacy")


class UNet1D(nn.Module):
    """(x (B, H, A), timestep (B,), cond (B, C)) -> (B, H, A).

    `down_dims` gives the channels per level; each level but the last halves the time axis, so the
    horizon is zero-padded to a multiple of 2 ** (levels - 1) and the output cropped back: any H
    works, H = 1 included. `time_dim` is the diffusion-step embedding's width; FiLM sees it
    concatenated with `cond`. See UNET_LAYOUTS for `layout`.
    """

    def __init__(self, action_dim: int, cond_dim: int, down_dims: list[int] | tuple[int, ...],
                 kernel_size: int = 5, n_groups: int = 8, time_dim: int = 128,
                 layout: str = "standard"):
        super().__init__()
        if layout not in UNET_LAYOUTS:
            raise ValueError(f"UNet1D layout must be one of {list(UNET_LAYOUTS)}, got {layout!r}")
        dims = list(down_dims)
        self.layout = layout
        self.stride = 2 ** (len(dims) - 1)
        self.time_mlp = TimestepMLP(time_dim)
        c = time_dim + cond_dim

        def res(c_in: int, c_out: int) -> CondResBlock:
            return CondResBlock(c_in, c_out, c, kernel_size, n_groups)

        def upsample(channels: int) -> ConvTranspose1d:
            return ConvTranspose1d(channels, channels, 4, stride=2, padding=1)

        pairs = list(zip([action_dim] + dims[:-1], dims, strict=True))
        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(nn.ModuleList([
                res(c_in, c_out), res(c_out, c_out),
                nn.Identity() if last else Conv1d(c_out, c_out, 3, stride=2, padding=1)]))
        self.mid = nn.ModuleList([res(dims[-1], dims[-1]), res(dims[-1], dims[-1])])
        self.up = nn.ModuleList()
        for c_above, c_level in reversed(pairs[1:]):
            if layout == "standard":
                # h and the skip of this level share its length: join, mix down to the width of
                # the level above, then double the length to reach it.
                self.up.append(nn.ModuleList([res(2 * c_level, c_above), res(c_above, c_above),
                                              upsample(c_above)]))
            else:
                # Upsample the level below, concatenate the skip above, leave with its width.
                self.up.append(nn.ModuleList([upsample(c_level), res(c_level + c_above, c_above),
                                              res(c_above, c_above)]))
        self.final = nn.Sequential(Conv1dBlock(dims[0], dims[0], kernel_size, n_groups),
                                   Conv1d(dims[0], action_dim, 1))

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        horizon = x.shape[1]
        c = torch.cat([self.time_mlp(timestep.expand(x.shape[0])), cond], dim=-1)
        h = F.pad(x.transpose(1, 2), (0, -horizon % self.stride))
        skips = []
        for res1, res2, downsample in cast(Iterable[nn.ModuleList], self.down):
            h = res2(res1(h, c), c)
            skips.append(h)
            h = downsample(h)
        for block in self.mid:
            h = block(h, c)
        if self.layout == "standard":
            # The deepest skip joins the mid blocks' output; the top level's is left unused.
            for res1, res2, upsample in cast(Iterable[nn.ModuleList], self.up):
                h = upsample(res2(res1(torch.cat([h, skips.pop()], dim=1), c), c))
        else:
            skips.pop()  # the deepest level is not downsampled, so it needs no skip
            for upsample, res1, res2 in cast(Iterable[nn.ModuleList], self.up):
                h = res2(res1(torch.cat([upsample(h), skips.pop()], dim=1), c), c)
        return self.final(h)[..., :horizon].transpose(1, 2)
