"""Merging overlapping chunks: ACT temporal ensembling, latest-only, or a plain average.

Several chunks usually predict the same instant. Ensembling weights them w_i = exp(-m * i) with
i = 0 the OLDEST chunk covering that instant (ACT's convention: m > 0 favours older predictions,
which smooths the motion; m = 0 is the plain average).
"""

from __future__ import annotations

import numpy as np


def merge_weights(covered: np.ndarray, mode: str, m: float = 0.0) -> np.ndarray:
    """Normalised weights (C, P) for C chunks ordered oldest first, over P output times.

    covered (C, P) says which chunk covers which time. Columns no chunk covers are all zero.
    """
    covered = np.asarray(covered, dtype=bool)
    rank = np.cumsum(covered, axis=0) - 1  # i: position among the chunks covering that time
    if mode == "ensemble":
        w = np.where(covered, np.exp(-m * np.maximum(rank, 0)), 0.0)
    elif mode == "average":
        w = covered.astype(float)
    elif mode == "latest":
        w = (covered & (rank == covered.sum(axis=0) - 1)).astype(float)
    else:
        raise ValueError(f"unknown mode {mode!r}; use ensemble, latest or average")
    total = w.sum(axis=0)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def merge(values: np.ndarray, covered: np.ndarray, mode: str, m: float = 0.0) -> np.ndarray:
    """Merged positions (P, J) from values (C, P, J); rows no chunk covers are NaN."""
    w = merge_weights(covered, mode, m)
    out = np.einsum("cp,cpj->pj", w, values)
    out[~covered.any(axis=0)] = np.nan
    return out
