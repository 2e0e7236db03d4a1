"""Resampling a chunk onto the executor's grid.

Policies emit actions at their own fps (10 or 30 Hz); the controller is fed on a 50 Hz grid.
Linear interpolation in time is exact for straight-line motion and never overshoots the
chunk's own points, so it cannot leave the (already clamped) joint limits.
"""

from __future__ import annotations

import numpy as np

# Output times that miss a chunk's first or last point by float rounding still count as covered.
TIME_EPS = 1e-9


def sample(times: np.ndarray, positions: np.ndarray,
           query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (Q, J) of one chunk at the query times (Q,), and which queries it covers (Q,).

    times (K,) strictly increasing, positions (K, J). Rows for uncovered queries hold the nearest
    end point; callers must ignore them.
    """
    covered = (query >= times[0] - TIME_EPS) & (query <= times[-1] + TIME_EPS)
    if times.shape[0] == 1:
        return np.repeat(positions[:1], query.shape[0], axis=0), covered
    i = np.clip(np.searchsorted(times, query, side="right") - 1, 0, times.shape[0] - 2)
    frac = np.clip((query - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)[:, None]
    values = positions[i] + frac * (positions[i + 1] - positions[i])
    return values, covered
