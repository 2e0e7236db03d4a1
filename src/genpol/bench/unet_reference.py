"""The standard 1D conditional U-Net of Diffusion Policy, written out plainly as a yardstick.

This is our own straightforward rendering of the layout the Diffusion Policy paper (Chi et al.
2023) and LeRobot describe, kept apart from genpol's UNet1D so that a change there cannot move the
reference with it: Conv1d-GroupNorm-Mish blocks; residual blocks whose first block output is scaled
and shifted by the conditioning (FiLM); down levels of two residual blocks and a stride-2 conv
(none on the last); two mid blocks; up levels that concatenate the skip of their own resolution,
run two residual blocks and upsample with a transposed conv; a final conv block and 1x1 conv. The
step encoder is sinusoid -> Linear(d, 4d) -> Mish -> Linear(4d, d), concatenated with the global
conditioning. It is used only to time and count genpol's net against (`compare_layouts`).

    OMP_NUM_THREADS=1 PYTHONPATH=src python -m genpol.bench.unet_reference
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
from torch import nn


class SinusoidStep(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        scale = math.log(10000.0) / half
        freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -scale)
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConvNormMish(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = nn.GroupNorm(groups, c_out)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class FiLMResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int):
        super().__init__()
        self.first = ConvNormMish(c_in, c_out, kernel, groups)
        self.second = ConvNormMish(c_out, c_out, kernel, groups)
        self.cond = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.out_channels = c_out
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        film = self.cond(cond).view(-1, 2, self.out_channels, 1)
        out = self.first(x) * film[:, 0] + film[:, 1]
        return self.second(out) + self.residual(x)


class ReferenceUNet1D(nn.Module):
    """(x (B, T, A), step (B,), global_cond (B, C)) -> (B, T, A); T a multiple of
    2 ** (len(down_dims) - 1), as in the reference (no padding here)."""

    def __init__(self, input_dim: int, global_cond_dim: int, down_dims: Sequence[int],
                 kernel_size: int = 5, n_groups: int = 8, step_embed_dim: int = 128):
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidStep(step_embed_dim), nn.Linear(step_embed_dim, 4 * step_embed_dim), nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim))
        cond_dim = step_embed_dim + global_cond_dim
        widths = [input_dim, *down_dims]
        levels = list(zip(widths[:-1], widths[1:], strict=True))

        def block(c_in: int, c_out: int) -> FiLMResidual:
            return FiLMResidual(c_in, c_out, cond_dim, kernel_size, n_groups)

        self.downs = nn.ModuleList()
        for index, (c_in, c_out) in enumerate(levels):
            deepest = index == len(levels) - 1
            self.downs.append(nn.ModuleList([
                block(c_in, c_out), block(c_out, c_out),
                nn.Identity() if deepest else nn.Conv1d(c_out, c_out, 3, 2, 1)]))
        self.mids = nn.ModuleList([block(widths[-1], widths[-1]), block(widths[-1], widths[-1])])
        self.ups = nn.ModuleList()
        for c_in, c_out in reversed(levels[1:]):
            self.ups.append(nn.ModuleList([block(2 * c_out, c_in), block(c_in, c_in),
                                           nn.ConvTranspose1d(c_in, c_in, 4, 2, 1)]))
        self.head = nn.Sequential(ConvNormMish(down_dims[0], down_dims[0], kernel_size, n_groups),
                                  nn.Conv1d(down_dims[0], input_dim, 1))

    def forward(self, x: torch.Tensor, step: torch.Tensor, global_cond: torch.Tensor
                ) -> torch.Tensor:
        cond = torch.cat([self.step_encoder(step.expand(x.shape[0])), global_cond], dim=-1)
        h = x.transpose(1, 2)
        skips = []
        for first, second, down in cast(Iterable[nn.ModuleList], self.downs):
            h = second(first(h, cond), cond)
            skips.append(h)
            h = down(h)
        for mid in self.mids:
            h = mid(h, cond)
        for first, second, up in cast(Iterable[nn.ModuleList], self.ups):
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(second(first(h, cond), cond))
        return self.head(h).transpose(1, 2)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def compare_layouts(down_dims: Sequence[int] = (512, 1024, 2048), horizon: int = 16,
                    action_dim: int = 6, cond_dim: int = 256, threads: int = 1,
                    repeats: int = 20, warmup: int = 3, genpol_layout: str = "standard",
                    seed: int = 0) -> dict[str, Any]:
    """genpol's UNet1D against the reference at equal widths (kernel 5, 8 groups, step embedding
    128): parameters and one denoiser forward at batch 1 under inference mode. The two nets' calls
    alternate so that whatever else loads the host slows both alike; times are medians of wall ms
    and of the process's CPU ms. `ratio` < 1 means genpol's net is faster."""
    from genpol.policies.nets.unet1d import UNet1D

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        nets = {"genpol": UNet1D(action_dim, cond_dim, list(down_dims), 5, 8, 128,
                                 genpol_layout).eval(),
                "reference": ReferenceUNet1D(action_dim, cond_dim, down_dims, 5, 8, 128).eval()}
        x = torch.randn(1, horizon, action_dim)
        step = torch.tensor([50.0])
        cond = torch.randn(1, cond_dim)
        # The reference takes lengths its levels halve evenly; genpol pads to the same inside.
        inputs = {"genpol": x, "reference": torch.nn.functional.pad(
            x, (0, 0, 0, -horizon % 2 ** (len(down_dims) - 1)))}
        wall: dict[str, list[float]] = {name: [] for name in nets}
        cpu: dict[str, list[float]] = {name: [] for name in nets}
        with torch.inference_mode():
            for _ in range(warmup):
                for name, net in nets.items():
                    net(inputs[name], step, cond)
            for i in range(repeats):
                order = list(nets) if i % 2 == 0 else list(reversed(nets))
                for name in order:
                    w0, c0 = time.perf_counter(), time.process_time()
                    nets[name](inputs[name], step, cond)
                    cpu[name].append((time.process_time() - c0) * 1e3)
                    wall[name].append((time.perf_counter() - w0) * 1e3)
    finally:
        torch.set_num_threads(before)
    out: dict[str, Any] = {"down_dims": list(down_dims), "horizon": horizon,
                           "action_dim": action_dim, "cond_dim": cond_dim, "threads": threads,
                           "repeats": repeats, "genpol_layout": genpol_layout}
    for name, net in nets.items():
        out[f"{name}_ms"] = statistics.median(wall[name])
        out[f"{name}_cpu_ms"] = statistics.median(cpu[name])
        out[f"{name}_params"] = parameter_count(net)
    out["ratio"] = out["genpol_ms"] / out["reference_ms"]
    out["cpu_ratio"] = out["genpol_cpu_ms"] / out["reference_cpu_ms"]
    out["params_ratio"] = out["genpol_params"] / out["reference_params"]
    return out


def main() -> None:
    print(json.dumps(compare_layouts(), indent=2))


if __name__ == "__main__":
    main()
