"""Diffusion Policy (Chi et al. 2023): DDPM training with epsilon prediction, DDIM or DDPM sampling.

The schedulers come from diffusers and hold no learned weights, so they are rebuilt from the config
on every call: nothing about them is saved, and no timestep state leaks from one call to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.schedulers import DDIMScheduler, DDPMScheduler

from genpol.policies.config import ConfigError, register_config, require_positive
from genpol.policies.denoising import DenoisingPolicy
from genpol.policies.nets.denoiser import DenoiserConfig

SAMPLERS = ("ddim", "ddpm")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear", "sigmoid")
SPACINGS = ("trailing", "leading", "linspace")


@register_config
@dataclass
class DiffusionConfig(DenoiserConfig):
    family_name = "diffusion"
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    sampler: str = "ddim"  # "ddim": deterministic given the initial noise; "ddpm": noise each step
    beta_schedule: str = "squaredcos_cap_v2"
    # "trailing" starts sampling at the last training timestep, i.e. from pure noise.
    timestep_spacing: str = "trailing"

    def validate(self) -> None:
        super().validate()
        require_positive(self, "num_train_timesteps", "num_inference_steps")
        if self.num_inference_steps > self.num_train_timesteps:
            raise ConfigError(
                f"DiffusionConfig.num_inference_steps ({self.num_inference_steps}) exceeds "
                f"num_train_timesteps ({self.num_train_timesteps}); lower num_inference_steps or "
                f"raise num_train_timesteps")
        for key, allowed in (("sampler", SAMPLERS), ("beta_schedule", BETA_SCHEDULES),
                             ("timestep_spacing", SPACINGS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"DiffusionConfig.{key} must be one of {list(allowed)}, "
                                  f"got {getattr(self, key)!r}")


class DiffusionPolicy(DenoisingPolicy):
    config_class = DiffusionConfig

    def _scheduler(self, kind: str) -> DDPMScheduler | DDIMScheduler:
        cfg = self.config
        cls = DDIMScheduler if kind == "ddim" else DDPMScheduler
        return cls(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                   clip_sample=cfg.clip_sample, prediction_type="epsilon",
                   timestep_spacing=cfg.timestep_spacing)

    def _loss(self, obs, action):
        cond = self.encoder(obs)
        noise = torch.randn_like(action)
        t = torch.randint(0, self.config.num_train_timesteps, (action.shape[0],),
                          device=action.device)
        noisy = self._scheduler("ddpm").add_noise(action, noise, t)
        loss = F.mse_loss(self.net(noisy, t.float(), cond), noise)
        return loss, {"mse_eps": loss.item()}

    def _sample(self, obs, num_samples, generator):
        cfg = self.config
        cond, x = self._start(obs, num_samples, generator)
        batch = cond.shape[0]
        scheduler = self._scheduler(cfg.sampler)
        # Timesteps stay on the CPU: the scheduler indexes its own CPU tables with them.
        scheduler.set_timesteps(cfg.num_inference_steps)
        step_kwargs = {"generator": generator} if cfg.sampler == "ddpm" else {"eta": 0.0}
        for t in scheduler.timesteps.tolist():
            eps = self.net(x, torch.full((batch,), float(t), device=x.device), cond)
            x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
        return x.view(-1, num_samples, cfg.horizon, cfg.action_dim)
