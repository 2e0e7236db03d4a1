"""Conditional flow matching on the straight noise-to-data path (Lipman et al. 2023; pi0).

x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I) and x1 the chunk; the net regresses the constant velocity
x1 - x0, and sampling integrates it with Euler steps from t = 0 (noise) to t = 1 (data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genpol.policies.config import ConfigError, require_positive
from genpol.policies.denoising import DenoiserConfig, DenoisingPolicy
from genpol.policies.padding import regression_loss

TIME_SAMPLINGS = ("uniform", "beta")
# The sinusoidal embedding is built for integer-like timesteps; t in [0, 1] is spread over this.
TIME_SCALE = 1000.0
# pi0: t = s * (1 - u), u ~ Beta(1.5, 1), which puts more training on the noisy end (small t).
_BETA_A, _BETA_B, _BETA_S = 1.5, 1.0, 0.999


@dataclass
class FlowConfig(DenoiserConfig):
    family_name = "flow"
    num_steps: int = 10  # Euler steps at sampling time
    time_sampling: str = "uniform"  # training-time distribution of t: "uniform" or "beta" (pi0)

    def validate(self) -> None:
        super().validate()
        require_positive(self, "num_steps")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ConfigError(f"FlowConfig.time_sampling must be one of {list(TIME_SAMPLINGS)}, "
                              f"got {self.time_sampling!r}")

    @property
    def sampling_steps(self) -> int:
        return self.num_steps


class EulerScheduler:
    """Euler steps on the straight path, from t = 0 (noise) to t = 1 (data). Timesteps are in the
    net's units (t * TIME_SCALE); the last step lands on data and is clipped to [-1, 1] when
    `clip_sample` asks for it."""

    def __init__(self, clip_sample: bool):
        self.clip_sample = clip_sample
        self.timesteps: list[float] = []
        self._dt = 0.0

    def set_timesteps(self, num_steps: int) -> None:
        self._dt = 1.0 / num_steps
        self.timesteps = [i * self._dt * TIME_SCALE for i in range(num_steps)]

    def step(self, model_output: torch.Tensor, t: float, x: torch.Tensor) -> torch.Tensor:
        x = x + self._dt * model_output
        if self.clip_sample and t == self.timesteps[-1]:
            x = x.clamp(-1.0, 1.0)
        return x


class FlowPolicy(DenoisingPolicy):
    config_class = FlowConfig
    config: FlowConfig

    def _sample_time(self, n: int, device: torch.device) -> torch.Tensor:
        if self.config.time_sampling == "uniform":
            return torch.rand(n, device=device)
        beta = torch.distributions.Beta(torch.tensor(_BETA_A, device=device),
                                        torch.tensor(_BETA_B, device=device))
        return _BETA_S * (1 - beta.sample((n,)))

    def _loss(self, obs, action, is_pad):
        cond = self.encoder(obs)
        x0 = torch.randn_like(action)
        t = self._sample_time(action.shape[0], action.device)
        tt = t.view(-1, 1, 1)
        x_t = (1 - tt) * x0 + tt * action
        loss = regression_loss(self.net(x_t, t * TIME_SCALE, cond), action - x0, is_pad)
        return loss, {"mse_velocity": loss.item()}

    def _scheduler(self, generator):
        return EulerScheduler(self.config.clip_sample)

    # The straight path is the guidance's own frame: tau = t, no scale.
    def _flow_time(self, scheduler, t):
        return float(t) / TIME_SCALE, 1.0

    def _denoised(self, scheduler, x, t, out):
        return x + (1.0 - float(t) / TIME_SCALE) * out

    def _output_for(self, scheduler, x, t, x1):
        return (x1 - x) / (1.0 - float(t) / TIME_SCALE)
