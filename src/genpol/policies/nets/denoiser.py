"""What diffusion and flow share: the denoiser net's settings, its construction, seeded noise.

Both families regress a (B, H, A) field from (noisy chunk, timestep, observation vector); only the
meaning of the target (noise vs velocity) and the integrator differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from genpol.policies.config import ConfigError, PolicyConfig, require_positive
from genpol.policies.nets.chunk_transformer import ChunkTransformer
from genpol.policies.nets.unet1d import UNet1D

NETS = ("unet", "transformer")


@dataclass
class DenoiserConfig(PolicyConfig):
    """Base for the diffusion and flow configs; not a family itself (never registered)."""

    net: str = "unet"  # "unet" (1D temporal U-Net, FiLM) or "transformer"
    down_dims: list[int] = field(default_factory=lambda: [64, 128, 256])
    kernel_size: int = 5
    n_groups: int = 8
    transformer_layers: int = 4
    transformer_heads: int = 4
    # Clip to [-1, 1], the normalised action range.
    clip_sample: bool = True

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.net not in NETS:
            raise ConfigError(f"{name}.net must be one of {list(NETS)}, got {self.net!r}")
        require_positive(self, "kernel_size", "n_groups", "transformer_layers",
                         "transformer_heads")
        dims = self.down_dims
        if (not isinstance(dims, (list, tuple)) or not dims
                or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in dims)):
            raise ConfigError(f"{name}.down_dims must be a non-empty list of positive integers, "
                              f"got {dims!r}; use e.g. [64, 128, 256]")
        # Shape constraints only bind the net actually built.
        if self.net == "unet" and self.kernel_size % 2 == 0:
            raise ConfigError(f"{name}.kernel_size must be odd so that convolutions keep the "
                              f"horizon, got {self.kernel_size}; use e.g. 5")
        if self.net == "unet" and any(d % self.n_groups for d in dims):
            raise ConfigError(f"every entry of {name}.down_dims {list(dims)} must be divisible by "
                              f"n_groups ({self.n_groups}) for GroupNorm; change one of them")
        if self.net == "transformer" and self.hidden_dim % self.transformer_heads:
            raise ConfigError(f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by "
                              f"transformer_heads ({self.transformer_heads}) when net is "
                              f"'transformer'")
        if not isinstance(self.clip_sample, bool):
            raise ConfigError(f"{name}.clip_sample must be true or false, got "
                              f"{self.clip_sample!r}")


def build_denoiser(config: DenoiserConfig, cond_dim: int) -> nn.Module:
    """The net named by `config.net`: net(x (B, H, A), timestep (B,), cond (B, cond_dim))."""
    if config.net == "unet":
        return UNet1D(config.action_dim, cond_dim, config.down_dims, config.kernel_size,
                      config.n_groups)
    return ChunkTransformer(config.action_dim, cond_dim, config.horizon, config.hidden_dim,
                            config.transformer_layers, config.transformer_heads)


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator | None,
                   device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn from `generator` on its own device, then moved to `device`, so a
    CPU generator also works for a policy on the GPU."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)
