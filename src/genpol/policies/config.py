"""Policy configuration: one dataclass per family, validated before any training starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from genpol.policies.action_frame import ACTION_FRAMES

IMAGE_POOLS = ("spatial_softmax", "mean")


class ConfigError(ValueError):
    """A configuration value that cannot work; raised before anything is built."""


@dataclass
class PolicyConfig:
    """Fields every family shares: what goes in (state, cameras), what comes out (H x d chunk)."""

    family_name: ClassVar[str] = ""
    #: False for families whose encoder cannot take more than one observation step (cvae).
    observation_history: ClassVar[bool] = True

    state_dim: int = 2
    action_dim: int = 2
    horizon: int = 16
    fps: float = 10.0
    # Observations the policy sees: the current one and those 1/fps, 2/fps, ... before it (as
    # Diffusion Policy's n_obs_steps); 1 sees only the current one. More lets it tell velocity.
    n_obs_steps: int = 1
    hidden_dim: int = 256
    # Cameras: names of the image inputs, each (3, H, W) uint8 or float in [0, 1].
    cameras: list[str] = field(default_factory=list)
    image_shape: list[int] = field(default_factory=lambda: [3, 96, 96])
    image_encoder: str = "cnn"  # "cnn" or "resnet18"
    # The cnn's first layer's channels (doubling to 4x): 16 trains ~3x faster than 32 on a CPU.
    cnn_width: int = 32
    # How a feature map becomes a vector (MLP and U-Net families): "spatial_softmax" (where
    # learned keypoints are) or "mean" (what is seen, not where). Token families keep the map.
    image_pool: str = "spatial_softmax"
    # Robot the policy was trained for; the planner refuses a checkpoint for other joints.
    joint_names: list[str] = field(default_factory=list)
    # "relative": chunks are offsets from the current joint positions (state and action the same
    # joints, in the same order), which generalises to unseen start poses; see action_frame.py.
    action_frame: str = "absolute"

    @property
    def family(self) -> str:
        return self.family_name

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _positive(self, "state_dim", "action_dim", "horizon", "hidden_dim", "cnn_width",
                  "n_obs_steps")
        if self.n_obs_steps > 1 and not self.observation_history:
            raise ConfigError(
                f"n_obs_steps must be 1 for a {self.family_name} policy (its transformer sees one "
                f"observation, as LeRobot's ACT), got {self.n_obs_steps}; set n_obs_steps: 1 or "
                "choose a family that takes a history (flow, diffusion, mse, gaussian, gmm, "
                "binned)")
        if not self.fps > 0:
            raise ConfigError(f"fps must be > 0, got {self.fps}; set e.g. fps: 10")
        if self.image_encoder not in ("cnn", "resnet18"):
            raise ConfigError(
                f"image_encoder must be 'cnn' or 'resnet18', got {self.image_encoder!r}")
        if self.image_pool not in IMAGE_POOLS:
            raise ConfigError(f"image_pool must be one of {list(IMAGE_POOLS)}, got "
                              f"{self.image_pool!r}")
        if len(self.image_shape) != 3 or self.image_shape[0] != 3 or min(self.image_shape) <= 0:
            raise ConfigError(
                f"image_shape must be [3, height, width], got {list(self.image_shape)}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"camera names must be unique, got {list(self.cameras)}")
        if self.action_frame not in ACTION_FRAMES:
            raise ConfigError(f"action_frame must be one of {list(ACTION_FRAMES)}, got "
                              f"{self.action_frame!r}")
        if self.action_frame == "relative" and self.state_dim < self.action_dim:
            raise ConfigError(
                f"action_frame 'relative' offsets each action from the joint position in the "
                f"same place of the state, but state_dim ({self.state_dim}) < action_dim "
                f"({self.action_dim}); use action_frame: absolute")
        if self.joint_names and len(self.joint_names) != self.action_dim:
            raise ConfigError(
                f"joint_names has {len(self.joint_names)} names but action_dim is "
                f"{self.action_dim}; give one name per action dimension")

    def to_dict(self) -> dict[str, Any]:
        d = {"family": self.family_name}
        d.update(dataclasses.asdict(self))
        return d


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(
                f"{type(cfg).__name__}.{name} must be a positive integer, got {value!r}")


def require_positive(cfg: Any, *names: str) -> None:
    """For family configs: each named field must be a positive integer."""
    _positive(cfg, *names)
