"""The one interface every policy family implements.

A policy models p(action chunk | observation). Families differ only in two methods working on
normalised tensors: `_loss` (training) and `_sample` (N chunks per observation). Everything a caller
touches (shape checks, normalisation, padding, numpy convenience) lives here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from genpol.control.timeline import Prefix
from genpol.policies.action_frame import from_frame, to_frame
from genpol.policies.config import PolicyConfig
from genpol.policies.normalize import Normalizer
from genpol.policies.padding import hold_last_step

@dataclass(frozen=True)
class PrefixTarget:
    """A Prefix on the policy's side: actions (H, A) normalised, weights (H,)."""

    actions: torch.Tensor
    weights: torch.Tensor
    committed: int
    max_guidance: float
    inpaint: str  # genpol.control.timeline.INPAINTS


Obs = Mapping[str, Any]  # {"state": (B, S), "images": {camera: (B, 3, H, W)}}


class Policy(nn.Module):
    """Base class: subclasses set `config_class` and implement `_loss` and `_sample`."""

    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig
    #: True when `sample` returns different chunks for the same observation.
    stochastic: ClassVar[bool] = True
    #: True when `sample` starts from Gaussian noise that a caller may inject (`noise=`).
    takes_noise: ClassVar[bool] = False
    #: How `sample(prefix=...)` continues a committed prefix: "guidance" (real-time chunking),
    #: "forcing" (the prefix's tokens are given), or None (the family cannot: the planner falls
    #: back to choosing the sample nearest the previous chunk).
    prefix_method: ClassVar[str | None] = None
    #: Sampling runs under autocast to this dtype (None: float32); see acceleration.accelerate.
    autocast_dtype: torch.dtype | None = None

    def __init__(self, config: PolicyConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}")
        self.config = config
        self.normalizer = Normalizer(config.state_dim, config.action_dim)

    # ---- what families implement -------------------------------------------------------------
    def _loss(self, obs: dict, action: torch.Tensor, is_pad: torch.Tensor | None
              ) -> tuple[torch.Tensor, dict[str, float]]:
        """obs normalised, action (B, H, A) in [-1, 1], is_pad (B, H) bool or None (see
        padding.py: padded steps must not count); returns (scalar loss, logging info)."""
        raise NotImplementedError

    def _sample(self, obs: dict, num_samples: int,
                generator: torch.Generator | None, **kwargs: Any) -> torch.Tensor:
        """obs normalised with batch B; returns (B, num_samples, H, A) normalised actions.
        kwargs: `noise` and `steps` for families that take noise, `prefix` (a PrefixTarget) for
        families with a prefix_method."""
        raise NotImplementedError

    # ---- the public interface ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.normalizer.state_mean.device

    def forward(self, batch: Obs) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss; `forward` so that DistributedDataParallel sees it."""
        return self.compute_loss(batch)

    def compute_loss(self, batch: Obs) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: state, images, action (B, H, A) and optionally action_is_pad (B, H) bool and
        frame_state: the state before training's input noise. Relative chunks are offsets from
        it: the noise stands for the sensor's error, which labels taken from the noisy reading
        would copy into every chunk (rougher seams between chunks, wider offsets)."""
        obs = self._prepare_obs(batch)
        b = obs["state"].shape[0]
        action = to_frame(self._check_action(batch["action"], b),
                          torch.as_tensor(batch.get("frame_state", batch["state"]),
                                          dtype=torch.float32, device=self.device),
                          self.config.action_frame)
        action = self.normalizer.normalize_action(action)
        is_pad = self._check_pad(batch.get("action_is_pad"), b)
        if is_pad is not None:
            action = hold_last_step(action, is_pad)
        return self._loss(obs, action, is_pad)

    @torch.no_grad()
    def sample(self, obs: Obs, num_samples: int = 1, generator: torch.Generator | None = None,
               noise: Any = None, prefix: Prefix | None = None,
               steps: int | None = None) -> torch.Tensor:
        """(B, num_samples, H, A) action chunks in the data's units, all drawn in one batch.

        noise: the initial N(0, I) noise in the normalised action space, (B * num_samples, H, A)
        or (num_samples, H, A) for every observation; only for families with `takes_noise`.
        prefix: what the robot still plays of the previous chunk (data units): every sample
        continues it (see `prefix_method`).
        steps: denoising steps instead of the checkpoint's (fewer: faster, coarser); only for
        families with `takes_noise`.
        """
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        kwargs: dict[str, Any] = {}
        if noise is not None:
            if not self.takes_noise:
                raise ValueError(f"a {self.config.family} policy starts from no noise to inject; "
                                 "noise= works for the denoising families (diffusion, flow)")
            kwargs["noise"] = noise
        # the joints relative chunks are offsets from (absolute chunks need nothing)
        state = None if self.config.action_frame == "absolute" else \
            torch.as_tensor(obs["state"], dtype=torch.float32, device=self.device)
        if prefix is not None:
            kwargs["prefix"] = self._prefix_target(prefix, state)
        if steps is not None:
            if not self.takes_noise:
                raise ValueError(f"a {self.config.family} policy has no denoising steps to "
                                 "set; steps= works for diffusion and flow")
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                raise ValueError(f"steps must be a positive integer, got {steps!r}")
            kwargs["steps"] = steps
        # Inference mode drops autograd's bookkeeping; guidance differentiates through the net,
        # which tensors made in inference mode cannot enter, so a guided call stays in no_grad.
        guided = "prefix" in kwargs and self.prefix_method == "guidance"
        cast = self.autocast_dtype
        # Dropout off: sampling randomness comes from the model, never from dropout. A policy
        # already in eval mode (the planner's) is left alone: walking the module tree twice per
        # call costs more than a small net's forward.
        was_training = self.training
        if was_training:
            self.eval()
        try:
            # (inference_mode(False) would not do: it turns grad mode on; a disabled autocast
            # still costs ~20 us to enter, so none at all without a dtype)
            with nullcontext() if guided else torch.inference_mode(), nullcontext() \
                    if cast is None else torch.autocast(self.device.type, dtype=cast):
                chunks = self._sample(self._prepare_obs(obs), num_samples, generator, **kwargs)
        finally:
            if was_training:
                self.train(True)
        # out here a plain tensor again (no inference tensor leaks to the caller), float32
        return from_frame(self.normalizer.unnormalize_action(chunks.float()), state,
                          self.config.action_frame)

    def predict_chunks(self, state: np.ndarray, images: Mapping[str, np.ndarray] | None = None,
                       num_samples: int = 1, seed: int | None = None,
                       noise: Any = None, prefix: Prefix | None = None,
                       steps: int | None = None) -> np.ndarray:
        """One observation from numpy (state (S,), images (H, W, 3) uint8) -> (N, H, A) numpy;
        noise, prefix and steps as for `sample`. A policy with n_obs_steps T > 1 takes its history
        (state (T, S), images (T, H, W, 3), the oldest first) or one observation, which is then
        repeated T times as at an episode's start."""
        n_obs = self.config.n_obs_steps
        state_t = torch.as_tensor(np.asarray(state, dtype=np.float32), device=self.device)
        if n_obs > 1 and state_t.ndim == 1:
            state_t = state_t.expand(n_obs, -1)
        obs: dict[str, Any] = {"state": state_t.unsqueeze(0) if state_t.ndim == 1 or n_obs > 1
                               else state_t}
        if images:
            prepared = {}
            for name, img in images.items():
                img_t = torch.as_tensor(np.ascontiguousarray(img), device=self.device)
                if n_obs == 1:
                    prepared[name] = img_t.permute(2, 0, 1).unsqueeze(0)
                    continue
                if img_t.ndim == 3:
                    img_t = img_t.expand(n_obs, *img_t.shape)
                prepared[name] = img_t.permute(0, 3, 1, 2).unsqueeze(0)
            obs["images"] = prepared
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
        return self.sample(obs, num_samples, gen, noise=noise, prefix=prefix,
                           steps=steps)[0].cpu().numpy()

    def set_stats(self, stats: Mapping[str, Any]) -> None:
        self.normalizer.set_stats(stats)

    # ---- checks at the boundary --------------------------------------------------------------
    def _prefix_target(self, prefix: Prefix, state: torch.Tensor | None) -> PrefixTarget:
        if self.prefix_method is None:
            raise ValueError(f"a {self.config.family} policy cannot continue a prefix; the "
                             "planner keeps its mode by selection instead (chunking: select)")
        cfg = self.config
        actions = np.asarray(prefix.actions, dtype=np.float32)
        if actions.shape != (cfg.horizon, cfg.action_dim):
            raise ValueError(f"prefix actions have shape {actions.shape}, expected "
                             f"({cfg.horizon}, {cfg.action_dim})")
        if not np.isfinite(actions).all():
            raise ValueError("prefix actions hold NaN/inf")
        target = torch.as_tensor(actions, device=self.device)
        if state is not None and state.shape[0] != 1:
            raise ValueError(f"a prefix continues one observation's chunk; got a batch of "
                             f"{state.shape[0]} observations")
        target = to_frame(target[None], state, cfg.action_frame)[0]
        target = self.normalizer.normalize_action(target)
        weights = torch.as_tensor(prefix.weights(), dtype=torch.float32, device=self.device)
        return PrefixTarget(target, weights, prefix.committed, float(prefix.max_guidance),
                            prefix.inpaint)

    def _prepare_obs(self, obs: Obs) -> dict:
        """Checked, normalised observation: state (B, S) and images (B, 3, H, W), or with a
        history (n_obs_steps > 1) state (B, T, S) and images (B, T, 3, H, W), T = n_obs_steps."""
        cfg = self.config
        steps = cfg.n_obs_steps
        if "state" not in obs:
            want = f"(B, {cfg.state_dim})" if steps == 1 else f"(B, {steps}, {cfg.state_dim})"
            raise ValueError(f"observation has no 'state'; pass {{'state': tensor of shape "
                             f"{want}}}")
        state = torch.as_tensor(obs["state"], dtype=torch.float32, device=self.device)
        history = state.ndim == 3  # (B, T, S); T == 1 is the same as no history
        if state.shape[-1:] != (cfg.state_dim,) or state.ndim not in (2, 3) \
                or (history and state.shape[1] != steps) or (not history and steps > 1):
            expected = f"(batch, {cfg.state_dim})" if steps == 1 else \
                f"(batch, {steps}, {cfg.state_dim})"
            why = "" if steps == 1 else (
                f": the policy sees the last n_obs_steps={steps} observations, the oldest first "
                "(at an episode's start repeat the first one)")
            raise ValueError(f"observation 'state' has shape {tuple(state.shape)}, expected "
                             f"{expected}{why}")
        batch = state.shape[0]
        images = dict(obs.get("images") or {})
        expected_cams = set(cfg.cameras)
        if set(images) != expected_cams:
            raise ValueError(
                f"observation cameras {sorted(images)} do not match the policy's cameras "
                f"{sorted(expected_cams)}")
        lead = (batch, steps) if history else (batch,)
        shape = lead + tuple(cfg.image_shape)
        prepared = {}
        for name, img in images.items():
            img = torch.as_tensor(img, device=self.device)
            if tuple(img.shape) != shape:
                raise ValueError(f"image {name!r} has shape {tuple(img.shape)}, expected {shape}")
            img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
            prepared[name] = img.squeeze(1) if history and steps == 1 else img
        if history and steps == 1:
            state = state.squeeze(1)
        return {"state": self.normalizer.normalize_state(state), "images": prepared}

    def _check_action(self, action: Any, batch: int) -> torch.Tensor:
        action = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        expected = (batch, self.config.horizon, self.config.action_dim)
        if tuple(action.shape) != expected:
            raise ValueError(f"action chunk has shape {tuple(action.shape)}, expected {expected}")
        return action

    def _check_pad(self, is_pad: Any, batch: int) -> torch.Tensor | None:
        """(B, H) bool, or None when nothing is padded (the loss then runs unmasked)."""
        if is_pad is None:
            return None
        is_pad = torch.as_tensor(is_pad, device=self.device)
        expected = (batch, self.config.horizon)
        if is_pad.dtype != torch.bool or tuple(is_pad.shape) != expected:
            raise ValueError(f"action_is_pad must be bool of shape {expected}, got "
                             f"{is_pad.dtype} of shape {tuple(is_pad.shape)}")
        return is_pad if bool(is_pad.any()) else None


def repeat_batch(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, ...) -> (B * n, ...), each row repeated n times in place (sample-major inside a row)."""
    return x.repeat_interleave(n, dim=0)
