"""What diffusion and flow share: the denoiser's settings, its net, and the one sampling loop.

Both families regress a (B, H, A) field from (noisy chunk, timestep, observation vector); only the
meaning of that field (noise vs velocity) and the scheduler that turns it into the next x differ.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from genpol.policies.base import Policy, PrefixTarget, repeat_batch
from genpol.policies.config import ConfigError, PolicyConfig, require_positive
from genpol.policies.nets.chunk_transformer import ChunkTransformer
from genpol.policies.nets.observation import ObservationEncoder
from genpol.policies.nets.unet1d import UNET_LAYOUTS, UNet1D

NETS = ("unet", "transformer")


@dataclass
class DenoiserConfig(PolicyConfig):
    """Base for the diffusion and flow configs; not a family itself (not in the family table)."""

    net: str = "unet"  # "unet" (1D temporal U-Net, FiLM) or "transformer"
    down_dims: list[int] = field(default_factory=lambda: [64, 128, 256])
    kernel_size: int = 5
    n_groups: int = 8
    # The U-Net's diffusion-step embedding width (sinusoid -> MLP); the transformer embeds the
    # step at hidden_dim.
    diffusion_step_embed_dim: int = 128
    # "standard" (Diffusion Policy's U-Net) or "legacy" (genpol's first up path); a checkpoint
    # saved without this field is read as legacy (checkpoint.read_config).
    unet_layout: str = "standard"
    transformer_layers: int = 4
    transformer_heads: int = 4
    # Clip to [-1, 1], the normalised action range.
    clip_sample: bool = True

    @property
    def sampling_steps(self) -> int:
        """Denoising steps per sample; each family names its own field."""
        raise NotImplementedError

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.net not in NETS:
            raise ConfigError(f"{name}.net must be one of {list(NETS)}, got {self.net!r}")
        require_positive(self, "kernel_size", "n_groups", "transformer_layers",
                         "transformer_heads", "diffusion_step_embed_dim")
        if self.unet_layout not in UNET_LAYOUTS:
            raise ConfigError(f"{name}.unet_layout must be one of {list(UNET_LAYOUTS)}, got "
                              f"{self.unet_layout!r}; new configs use 'standard'")
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


class Scheduler(Protocol):
    """How a sample walks from noise to a chunk: `set_timesteps(n)`, then for each t in
    `timesteps` (the values the net is conditioned on) `step(model_output, t, x)` -> next x."""

    timesteps: Sequence[float]

    def set_timesteps(self, num_steps: int) -> None: ...

    def step(self, model_output: torch.Tensor, t: Any, x: torch.Tensor) -> torch.Tensor: ...


Model = Callable[[torch.Tensor], torch.Tensor]
#: guide(model, x, t) -> the model's output at x, steered; model(x) runs the net at step t.
Guide = Callable[[Model, torch.Tensor, Any], torch.Tensor]


def denoise(net: nn.Module, cond: torch.Tensor, x: torch.Tensor, scheduler: Scheduler,
            num_steps: int, guide: Guide | None = None) -> torch.Tensor:
    """The one sampling loop of flow and diffusion: x (M, H, A) initial noise -> chunks.

    `guide` steers each step (real-time chunking: toward the part of the chunk already
    committed to); None samples the model as trained.
    """
    scheduler.set_timesteps(num_steps)
    batch = x.shape[0]
    for t in scheduler.timesteps:
        steps = torch.full((batch,), float(t), device=x.device)

        def model(z: torch.Tensor, steps: torch.Tensor = steps) -> torch.Tensor:
            return net(z, steps, cond)

        out = model(x) if guide is None else guide(model, x, t)
        x = scheduler.step(out, t, x)
    return x


def prefix_guide(prefix: PrefixTarget, flow_time: Callable[[Any], tuple[float, float]],
                 denoised: Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor],
                 output_for: Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]
                 ) -> Guide:
    """Real-time chunking's guidance (Black, Galliker, Levine 2025; PiGDM, Song et al. 2023).

    Each step pulls the denoised estimate x1^ toward the prefix through the vector-Jacobian
    product (W (Y - x1^))^T d x1^ / d x, scaled as PiGDM scales it on the straight path (weight
    (1 - tau) / (tau r^2), r^2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2)) and clipped at
    max_guidance, which keeps the first, noisiest steps from overshooting. A family states its
    step as the straight path's time: x = scale * (tau x1 + (1 - tau) noise) (`flow_time`),
    how its output denoises x (`denoised`) and which output denoises x to a given x1
    (`output_for`), so flow and DDIM share the rule.

    What the step then writes into the steered estimate (`prefix.inpaint`, inpainting's
    replacement) is what makes the small nets here keep to the playing chunk: guidance's pull
    alone left their samples about 0.2 rad off it over the overlap, and the planner sent few of
    them. "committed" writes the committed steps in, so the last step lands on them exactly and
    the net sees them in place from the first; "overlap" (the default) also blends the rest of
    the overlap in by the soft-mask weights, which is the guidance step with the net's Jacobian
    taken as the identity at unit weight. With only the committed steps in place, chunks planned
    from barely-moved states went back to the net's own (5-step, mean-leaning) choice of mode
    (README, "Execution strategies", has both measured).

    max_guidance 0 leaves that inpainting alone and skips the vector-Jacobian product, the
    backward pass that makes a guided step ~2.6x as long on the CPU.
    """
    target, weights = prefix.actions, prefix.weights[:, None]
    if prefix.inpaint == "overlap":
        written = weights
    else:
        written = (torch.arange(target.shape[0], device=target.device)
                   < prefix.committed)[:, None].to(weights.dtype)

    def guide(model: Model, x: torch.Tensor, t: Any) -> torch.Tensor:
        if prefix.max_guidance <= 0.0:  # inpainting alone: no backward pass, about half the time
            return output_for(x, t, written * target + (1 - written) * denoised(x, t, model(x)))
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            estimate = denoised(x_in, t, model(x_in))
            (grad,) = torch.autograd.grad(estimate, x_in, weights * (target - estimate))
        tau, scale = flow_time(t)
        if tau <= 0.0:
            weight = prefix.max_guidance
        else:
            r2 = (1 - tau) ** 2 / (tau ** 2 + (1 - tau) ** 2)
            weight = min(prefix.max_guidance, (1 - tau) / (tau * r2))
        steered = estimate.detach() + (1 - tau) * weight * scale * grad
        return output_for(x, t, written * target + (1 - written) * steered)

    return guide


class DenoisingPolicy(Policy):
    config_class = DenoiserConfig
    config: DenoiserConfig
    takes_noise = True
    prefix_method = "guidance"

    def __init__(self, config: DenoiserConfig):
        super().__init__(config)
        self.encoder = ObservationEncoder(config, "vector")
        d = self.encoder.out_dim
        if config.net == "unet":
            self.net: nn.Module = UNet1D(config.action_dim, d, config.down_dims,
                                         config.kernel_size, config.n_groups,
                                         config.diffusion_step_embed_dim, config.unet_layout)
        else:
            self.net = ChunkTransformer(config.action_dim, d, config.horizon, config.hidden_dim,
                                        config.transformer_layers, config.transformer_heads)

    def _scheduler(self, generator: torch.Generator | None) -> Scheduler:
        raise NotImplementedError

    # What prefix_guide needs of a family (see there).
    def _flow_time(self, scheduler: Any, t: Any) -> tuple[float, float]:
        raise NotImplementedError

    def _denoised(self, scheduler: Any, x: torch.Tensor, t: Any,
                  out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _output_for(self, scheduler: Any, x: torch.Tensor, t: Any,
                    x1: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _sample(self, obs, num_samples, generator, noise=None, prefix=None, steps=None):
        cfg = self.config
        cond = repeat_batch(self.encoder(obs), num_samples)
        x = self._initial_noise(noise, obs["state"].shape[0], num_samples, generator)
        scheduler = self._scheduler(generator)
        guide = None
        if prefix is not None and prefix.committed > 0:
            guide = prefix_guide(prefix, functools.partial(self._flow_time, scheduler),
                                 functools.partial(self._denoised, scheduler),
                                 functools.partial(self._output_for, scheduler))
        x = denoise(self.net, cond, x, scheduler, steps or cfg.sampling_steps, guide)
        return x.view(-1, num_samples, cfg.horizon, cfg.action_dim)

    def _initial_noise(self, noise: Any, batch: int, num_samples: int,
                       generator: torch.Generator | None) -> torch.Tensor:
        """N(0, I) in the normalised action space, drawn here or injected by the caller: one per
        sample (batch * num_samples, H, A), or (num_samples, H, A) used for every observation."""
        cfg = self.config
        shape = (batch * num_samples, cfg.horizon, cfg.action_dim)
        if noise is None:
            return gaussian_noise(shape, generator, self.device)
        noise = torch.as_tensor(noise, dtype=torch.float32, device=self.device)
        per_obs = (num_samples, cfg.horizon, cfg.action_dim)
        if tuple(noise.shape) == shape:
            return noise
        if tuple(noise.shape) == per_obs:
            return noise.repeat(batch, 1, 1)
        raise ValueError(f"initial noise has shape {tuple(noise.shape)}, expected {shape} "
                         f"(batch x num_samples, horizon, action_dim) or {per_obs} (the same "
                         f"noise for every observation)")


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator | None,
                   device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn from `generator` on its own device, then moved to `device`, so a
    CPU generator also works for a policy on the GPU."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)
