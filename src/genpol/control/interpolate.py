"""Resampling a chunk onto the executor's grid.

Policies emit actions at their own fps (10 or 30 Hz); the controller is fed on a 50 Hz grid.

"bspline" (the default) plays the uniform cubic B-spline whose control points are the chunk's
points, with phantom end points that make it start and end exactly on the chunk's first and last
point. Its acceleration is continuous (C2), so the command's jerk is bounded everywhere, where
linear interpolation turns the velocity at every knot (10 times a second at 10 fps: a jerk
spike each time). Its span [k, k + 1] depends on points k - 1 .. k + 2 only, so a continuation
chunk that repeats the playing one's points up to its takeover point k and one after (the
timeline's committed prefix) takes over with position, velocity and acceleration unchanged: a
seam is as smooth as the path around it. It reproduces straight-line motion exactly and rounds
corners by a sixth of the second difference (under 5 mm of tip motion at the speeds here).

"linear" passes through every point and never leaves the chunk's range of values (the B-spline
stays within each span's four control points, and the executor clips to the joint limits).
"""

from __future__ import annotations

import numpy as np

# Output times that miss a chunk's first or last point by float rounding still count as covered.
TIME_EPS = 1e-9
INTERPOLATIONS = ("bspline", "linear")


def sample(times: np.ndarray, positions: np.ndarray, query: np.ndarray,
           interpolation: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Positions (Q, J) of one chunk at the query times (Q,), and which queries it covers (Q,).

    times (K,) strictly increasing, positions (K, J). Rows for uncovered queries hold the nearest
    end point; callers must ignore them.
    """
    covered = (query >= times[0] - TIME_EPS) & (query <= times[-1] + TIME_EPS)
    if times.shape[0] == 1:
        return np.repeat(positions[:1], query.shape[0], axis=0), covered
    i = np.clip(np.searchsorted(times, query, side="right") - 1, 0, times.shape[0] - 2)
    frac = np.clip((query - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)[:, None]
    if interpolation == "linear":
        return positions[i] + frac * (positions[i + 1] - positions[i]), covered
    if interpolation != "bspline":
        raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, "
                         f"got {interpolation!r}")
    # Control points with a phantom on each end (2 P0 - P1, 2 Pn - Pn-1): the spline then
    # starts on P0 with the first span's velocity and no acceleration, and ends likewise.
    p = np.concatenate([2 * positions[:1] - positions[1:2], positions,
                        2 * positions[-1:] - positions[-2:-1]])
    s = frac
    b0 = (1 - s) ** 3 / 6
    b1 = (3 * s**3 - 6 * s**2 + 4) / 6
    b2 = (-3 * s**3 + 3 * s**2 + 3 * s + 1) / 6
    b3 = s**3 / 6
    return b0 * p[i] + b1 * p[i + 1] + b2 * p[i + 2] + b3 * p[i + 3], covered
