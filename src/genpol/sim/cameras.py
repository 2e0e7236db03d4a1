"""Where the simulated cameras are, and the pinhole that maps a point in the scene to a pixel of
the front camera (numpy only: the evaluator draws the sampled chunks into its video with it,
without MuJoCo)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FRONT_EYE = (0.56, 0.0, 0.40)   # m, base frame: in front of the arm, above the table
FRONT_AT = (0.16, 0.0, 0.07)
FRONT_FOVY_DEG = 55.0


def lookat_xyaxes(eye: Sequence[float], target: Sequence[float],
                  up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """MJCF camera `xyaxes` (image right, image up) for a camera at eye looking at target."""
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    return np.concatenate([right, np.cross(right, forward)])


def project_front(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Points (..., 3) in the base frame -> pixel (u, v) (..., 2) in the front camera's image
    (row 0 at the top, as the camera topic publishes it); NaN behind the camera."""
    right_up = lookat_xyaxes(FRONT_EYE, FRONT_AT)
    right, up = right_up[:3], right_up[3:]
    forward = np.cross(up, right)  # the viewing direction (MuJoCo's -z)
    rel = np.asarray(points, float) - np.asarray(FRONT_EYE)
    depth = rel @ forward
    f = (height / 2.0) / math.tan(math.radians(FRONT_FOVY_DEG) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (width - 1) / 2.0 + f * (rel @ right) / depth
        v = (height - 1) / 2.0 - f * (rel @ up) / depth
    out = np.stack([u, v], axis=-1)
    out[depth <= 1e-6] = np.nan
    return out
