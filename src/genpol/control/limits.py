"""The last line of defence before a command leaves the executor: the speed limit.

Steps that are too fast are shrunk as a whole vector, not joint by joint, so the arm still moves
towards where the policy wanted, only slower; clipping joints separately would bend the path.
"""

from __future__ import annotations

import numpy as np


def limit_steps(start: np.ndarray, targets: np.ndarray,
                max_step: np.ndarray) -> tuple[np.ndarray, float]:
    """Follow targets (P, J) from start (J,), each step at most max_step (J,) per joint.

    Returns the limited points (P, J) and the smallest scale applied (1.0 = nothing limited).
    """
    out = np.empty_like(targets, dtype=float)
    prev = np.asarray(start, dtype=float)
    worst = 1.0
    for p in range(targets.shape[0]):
        step = targets[p] - prev
        ratio = float(np.max(np.abs(step) / max_step))
        if ratio > 1.0:
            step = step / ratio
            worst = min(worst, 1.0 / ratio)
        prev = prev + step
        out[p] = prev
    return out, worst
