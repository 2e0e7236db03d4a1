"""Diffusion Policy (Chi et al. 2023): DDPM training, epsilon or sample prediction, DDIM or DDPM
sampling.

The schedulers come from diffusers and hold no learned weights, so they are rebuilt from the config
on every call: nothing about them is saved, and no timestep state leaks from one call to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.schedulers import DDIMScheduler, DDPMScheduler

from genpol.policies.config import ConfigError, require_positive
from genpol.policies.denoising import DenoiserConfig, DenoisingPolicy
from genpol.policies.padding import regression_loss

SAMPLERS = ("ddim", "ddpm")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear", "sigmoid")
SPACINGS = ("trailing", "leading", "linspace")
#: what the net regresses: the added noise ("epsilon") or the clean chunk ("sample")
PREDICTION_TYPES = ("epsilon", "sample")


@dataclass
class DiffusionConfig(DenoiserConfig):
    family_name = "diffusion"
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    sampler: str = "ddim"  # "ddim": deterministic given the initial noise; "ddpm": noise each step
    beta_schedule: str = "squaredcos_cap_v2"
    # "trailing" starts sampling at the last training timestep, i.e. from pure noise.
    timestep_spacing: str = "trailing"
    prediction_type: str = "epsilon"

    def validate(self) -> None:
        super().validate()
        require_positive(self, "num_train_timesteps", "num_inference_steps")
        if self.num_inference_steps > self.num_train_timesteps:
            raise ConfigError(
                f"DiffusionConfig.num_inference_steps ({self.num_inference_steps}) exceeds "
                f"num_train_timesteps ({self.num_train_timesteps}); lower num_inference_steps or "
                f"raise num_train_timesteps")
        for key, allowed in (("sampler", SAMPLERS), ("beta_schedule", BETA_SCHEDULES),
                             ("timestep_spacing", SPACINGS),
                             ("prediction_type", PREDICTION_TYPES)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"DiffusionConfig.{key} must be one of {list(allowed)}, "
                                  f"got {getattr(self, key)!r}")

    @property
    def sampling_steps(self) -> int:
        return self.num_inference_steps


class DiffusersScheduler:
    """The sampling loop's scheduler interface over a diffusers DDIM or DDPM scheduler (kept for
    its tested noise schedules); `step_kwargs` go to every step (DDPM's generator, DDIM's eta)."""

    def __init__(self, inner: Any, **step_kwargs: Any):
        self.inner = inner
        self.step_kwargs = step_kwargs
        self.timesteps: list[int] = []

    def set_timesteps(self, num_steps: int) -> None:
        # Timesteps stay on the CPU: the scheduler indexes its own CPU tables with them.
        self.inner.set_timesteps(num_steps)
        self.timesteps = self.inner.timesteps.tolist()

    def step(self, model_output: torch.Tensor, t: int, x: torch.Tensor) -> torch.Tensor:
        return self.inner.step(model_output, t, x, **self.step_kwargs).prev_sample


class DiffusionPolicy(DenoisingPolicy):
    config_class = DiffusionConfig
    config: DiffusionConfig

    def _diffusers(self, kind: str) -> DDPMScheduler | DDIMScheduler:
        cfg = self.config
        cls = DDIMScheduler if kind == "ddim" else DDPMScheduler
        return cls(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                   clip_sample=cfg.clip_sample, prediction_type=cfg.prediction_type,
                   timestep_spacing=cfg.timestep_spacing)

    def _loss(self, obs, action, is_pad):
        cond = self.encoder(obs)
        noise = torch.randn_like(action)
        t = torch.randint(0, self.config.num_train_timesteps, (action.shape[0],),
                          device=action.device)
        noisy = self._diffusers("ddpm").add_noise(action, noise, t)
        if self.config.prediction_type == "epsilon":
            loss = regression_loss(self.net(noisy, t.float(), cond), noise, is_pad)
            return loss, {"mse_eps": loss.item()}
        loss = regression_loss(self.net(noisy, t.float(), cond), action, is_pad)
        return loss, {"mse_x0": loss.item()}

    def _scheduler(self, generator):
        kind = self.config.sampler
        kwargs = {"generator": generator} if kind == "ddpm" else {"eta": 0.0}
        return DiffusersScheduler(self._diffusers(kind), **kwargs)

    # x_t = sqrt(a) x0 + sqrt(1 - a) eps is the straight path's point at
    # tau = sqrt(a) / (sqrt(a) + sqrt(1 - a)), scaled by sqrt(a) + sqrt(1 - a). An eps-net's x0
    # estimate amplifies its error by 1 / sqrt(a) at high noise, so (as DDIM itself does) the
    # estimate, and the steered one, are clipped to the action range when clip_sample is on.
    # A sample-net's output is the x0 estimate itself (clipped the same way).
    @staticmethod
    def _alphas(scheduler, t) -> tuple[float, float]:
        a = float(scheduler.inner.alphas_cumprod[int(t)])
        return a ** 0.5, (1.0 - a) ** 0.5

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.clamp(-1.0, 1.0) if self.config.clip_sample else x0

    def _flow_time(self, scheduler, t):
        s, n = self._alphas(scheduler, t)
        return s / (s + n), s + n

    def _denoised(self, scheduler, x, t, out):
        if self.config.prediction_type == "sample":
            return self._clip(out)
        s, n = self._alphas(scheduler, t)
        return self._clip((x - n * out) / s)

    def _output_for(self, scheduler, x, t, x1):
        if self.config.prediction_type == "sample":
            return self._clip(x1)
        s, n = self._alphas(scheduler, t)
        return (x - s * self._clip(x1)) / n
