"""The one interface every policy family implements.

A policy models p(action chunk | observation). Families differ only in two methods working on
normalised tensors: `_loss` (training) and `_sample` (N chunks per observation). Everything a caller
touches (shape checks, normalisation, numpy convenience) lives here, once.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from genpol.policies.config import PolicyConfig
from genpol.policies.normalize import Normalizer

Obs = Mapping[str, Any]  # {"state": (B, S), "images": {camera: (B, 3, H, W)}}


class Policy(nn.Module):
    """Base class: subclasses set `config_class` and implement `_loss` and `_sample`."""

    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig
    #: True when `sample` returns different chunks for the same observation.
    stochastic: ClassVar[bool] = True

    def __init__(self, config: PolicyConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}")
        self.config = config
        self.normalizer = Normalizer(config.state_dim, config.action_dim)

    # ---- what families implement -------------------------------------------------------------
    def _loss(self, obs: dict, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """obs normalised, action (B, H, A) in [-1, 1]; returns (scalar loss, logging info)."""
        raise NotImplementedError

    def _sample(self, obs: dict, num_samples: int,
                generator: torch.Generator | None) -> torch.Tensor:
        """obs normalised with batch B; returns (B, num_samples, H, A) normalised actions."""
        raise NotImplementedError

    # ---- the public interface ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.normalizer.state_mean.device

    def forward(self, batch: Obs) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss; `forward` so that DistributedDataParallel sees it."""
        return self.compute_loss(batch)

    def compute_loss(self, batch: Obs) -> tuple[torch.Tensor, dict[str, float]]:
        obs = self._prepare_obs(batch)
        action = self._check_action(batch["action"], obs["state"].shape[0])
        return self._loss(obs, self.normalizer.normalize_action(action))

    @torch.no_grad()
    def sample(self, obs: Obs, num_samples: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, num_samples, H, A) action chunks in the data's units, all drawn in one batch."""
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        was_training = self.training
        self.eval()  # dropout off: sampling randomness comes from the model, never from dropout
        try:
            chunks = self._sample(self._prepare_obs(obs), num_samples, generator)
        finally:
            self.train(was_training)
        return self.normalizer.unnormalize_action(chunks)

    def predict_chunks(self, state: np.ndarray, images: Mapping[str, np.ndarray] | None = None,
                       num_samples: int = 1, seed: int | None = None) -> np.ndarray:
        """One observation from numpy (state (S,), images (H, W, 3) uint8) -> (N, H, A) numpy."""
        state_t = torch.as_tensor(np.asarray(state, dtype=np.float32), device=self.device)
        obs: dict[str, Any] = {"state": state_t.unsqueeze(0) if state_t.ndim == 1 else state_t}
        if images:
            obs["images"] = {
                name: torch.as_tensor(np.ascontiguousarray(img), device=self.device)
                .permute(2, 0, 1).unsqueeze(0)
                for name, img in images.items()}
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
        return self.sample(obs, num_samples, gen)[0].cpu().numpy()

    def set_stats(self, stats: Mapping[str, Any]) -> None:
        self.normalizer.set_stats(stats)

    # ---- checks at the boundary --------------------------------------------------------------
    def _prepare_obs(self, obs: Obs) -> dict:
        if "state" not in obs:
            raise ValueError("observation has no 'state'; pass {'state': tensor of shape (B, "
                             f"{self.config.state_dim})}}")
        state = torch.as_tensor(obs["state"], dtype=torch.float32, device=self.device)
        if state.ndim != 2 or state.shape[1] != self.config.state_dim:
            raise ValueError(
                f"observation 'state' has shape {tuple(state.shape)}, expected "
                f"(batch, {self.config.state_dim})")
        batch = state.shape[0]
        images = dict(obs.get("images") or {})
        expected = set(self.config.cameras)
        if set(images) != expected:
            raise ValueError(
                f"observation cameras {sorted(images)} do not match the policy's cameras "
                f"{sorted(expected)}")
        shape = tuple(self.config.image_shape)
        prepared = {}
        for name, img in images.items():
            img = torch.as_tensor(img, device=self.device)
            if img.ndim != 4 or tuple(img.shape[1:]) != shape or img.shape[0] != batch:
                raise ValueError(
                    f"image {name!r} has shape {tuple(img.shape)}, expected "
                    f"({batch}, {shape[0]}, {shape[1]}, {shape[2]})")
            prepared[name] = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        return {"state": self.normalizer.normalize_state(state), "images": prepared}

    def _check_action(self, action: Any, batch: int) -> torch.Tensor:
        action = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        expected = (batch, self.config.horizon, self.config.action_dim)
        if tuple(action.shape) != expected:
            raise ValueError(f"action chunk has shape {tuple(action.shape)}, expected {expected}")
        return action


def repeat_batch(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, ...) -> (B * n, ...), each row repeated n times in place (sample-major inside a row)."""
    return x.repeat_interleave(n, dim=0)
