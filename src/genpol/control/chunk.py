"""Action chunks at the executor's boundary: everything a planner sends is checked here, once.

A chunk that cannot be trusted (wrong joints, bad shapes, NaN/inf, times not increasing) is
refused whole; one that merely asks for positions beyond the joint limits is clamped and kept,
with a warning, because the rest of it is still a sensible plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np

from genpol.control.config import ExecutorConfig


@dataclass
class ChunkResult:
    """What add_chunk did with a chunk; reason is empty when it was accepted."""

    accepted: bool
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    """A checked chunk: absolute times (K,) strictly increasing, positions (K, J) in config
    order."""

    stamp: float
    times: np.ndarray
    positions: np.ndarray
    seq: int  # arrival order; breaks ties between equal stamps
    #: `continue` mode: when this chunk starts to play (genpol.control.timeline)
    takeover: float = -np.inf

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])


def refuse(reason: str) -> tuple[None, ChunkResult]:
    return None, ChunkResult(False, reason)


def oversized(points: int, max_points: int) -> str:
    return (f"oversized: {points} points, max_chunk_points is {max_points} (a chunk "
            "that long is a planner bug; raise max_chunk_points if it is not)")


def check_chunk(config: ExecutorConfig, stamp: float, joint_names: Sequence[str],
                times_from_start: np.ndarray, positions: np.ndarray,
                seq: int) -> tuple[Chunk | None, ChunkResult]:
    """Validate one chunk and put it in config joint order; staleness is the caller's business."""
    try:
        stamp = float(stamp)
        times = np.asarray(times_from_start, dtype=float)
        pos = np.asarray(positions, dtype=float)
    except (TypeError, ValueError) as e:
        return refuse(f"dropped: stamp, times or positions are not numbers ({e})")
    if not np.isfinite(stamp):
        return refuse(f"dropped: stamp is {stamp}")

    names = [str(n) for n in joint_names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return refuse(f"dropped: joints {dupes} named more than once")
    unknown = [n for n in names if n not in config.joint_names]
    if unknown:
        return refuse(f"dropped: unknown joints {unknown}; expected {config.joint_names}")
    missing = [n for n in config.joint_names if n not in names]
    if missing:
        return refuse(f"dropped: missing joints {missing}")

    if times.ndim != 1 or times.shape[0] == 0:
        return refuse(f"dropped: need at least one point, times_from_start has shape {times.shape}")
    k = times.shape[0]
    if k > config.max_chunk_points:
        return refuse(f"dropped: {oversized(k, config.max_chunk_points)}")
    if pos.shape != (k, len(names)):
        return refuse(f"dropped: positions have shape {pos.shape}, expected ({k}, {len(names)}) "
                      "for the given times and joint names")
    bad_t = np.flatnonzero(~np.isfinite(times))
    if bad_t.size:
        return refuse(f"dropped: NaN/inf in time_from_start of point {int(bad_t[0])}")
    bad = np.argwhere(~np.isfinite(pos))
    if bad.size:
        p, j = (int(v) for v in bad[0])
        return refuse(f"dropped: NaN/inf in point {p}, joint {names[j]}")
    steps = np.diff(times)
    if np.any(steps <= 0):
        p = int(np.flatnonzero(steps <= 0)[0]) + 1
        return refuse(f"dropped: times not strictly increasing at point {p} "
                      f"({times[p - 1]:.4f} s then {times[p]:.4f} s)")

    pos = pos[:, [names.index(n) for n in config.joint_names]]
    warnings = clamp_warnings(config, pos)
    pos = np.clip(pos, config.lower, config.upper)
    chunk = Chunk(stamp, stamp + times, pos, seq)
    return chunk, ChunkResult(True, "", warnings)


def clamp_warnings(config: ExecutorConfig, pos: np.ndarray) -> list[str]:
    """One warning per joint that leaves its limits, naming the farthest value."""
    warnings = []
    lower, upper = np.asarray(config.lower), np.asarray(config.upper)
    for j, name in enumerate(config.joint_names):
        col = pos[:, j]
        out = (col < lower[j]) | (col > upper[j])
        if out.any():
            worst = col[out][np.argmax(np.abs(col[out] - np.clip(col[out], lower[j], upper[j])))]
            warnings.append(f"clamped {name}: {worst:.4f} rad is outside "
                            f"[{lower[j]:.4f}, {upper[j]:.4f}] "
                            f"({int(out.sum())} of {len(col)} points)")
    return warnings
