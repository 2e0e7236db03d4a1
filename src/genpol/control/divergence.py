"""Is the arm still where the executor sends it?

The speed limit bounds each step between two commands, not the step from where the arm really
is. When the measured state leaves the command (a driver restarted at its start pose, a
collision, a hand on the arm), following the old command from there is a jump the limit never
saw. This watch says when that happened, so the executor can start again from what it measures.

The measured state trails the command by the controller's tracking lag and its own delay
(0.1 to 0.3 s in a starved simulator), so a joint counts as off only when it lies further than
the tolerance from every command of the last window (outside the range those commands span,
widened by the tolerance), and only when that lasts a few ticks, so one bad reading does not
count. The gripper is not watched: a grasp blocks it short of its
command by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genpol import robot


@dataclass(frozen=True)
class Divergence:
    since: float  # the first tick it was seen
    reason: str


class TrackingWatch:
    def __init__(self, joint_names: Sequence[str], tolerance: float, window: int,
                 ticks: int):
        self.joint_names = list(joint_names)
        self.tolerance = float(tolerance)
        self.ticks = int(ticks)
        self._watched = np.array([n != robot.GRIPPER_JOINT for n in self.joint_names])
        self._recent = np.zeros((max(1, window), len(self.joint_names)))  # a ring
        self._next = self._filled = 0
        self._since: float | None = None
        self._count = 0

    def clear(self) -> None:
        """Forget the commands (a reset, a re-anchoring): nothing to compare with until the
        next one."""
        self._next = self._filled = 0
        self._since, self._count = None, 0

    def commanded(self, position: np.ndarray) -> None:
        """The position this tick commanded (its first point)."""
        self._recent[self._next] = position
        self._next = (self._next + 1) % len(self._recent)
        self._filled = min(self._filled + 1, len(self._recent))

    def check(self, measured: np.ndarray, now: float) -> Divergence | None:
        """A Divergence once the measured state has been off for `ticks` checks running."""
        if self.tolerance <= 0 or not self._filled:
            return None
        recent = self._recent[:self._filled]
        low, high = recent.min(axis=0), recent.max(axis=0)
        off = np.maximum(low - measured, measured - high)  # > 0: outside what was commanded
        over = self._watched & (off > self.tolerance)
        if not over.any():
            self._since, self._count = None, 0
            return None
        if self._count == 0:
            self._since = now
        self._count += 1
        if self._count < self.ticks:
            return None
        latest = self._recent[self._next - 1]
        what = ", ".join(f"{self.joint_names[j]} measured {measured[j]:.2f} rad, commanded "
                         f"{latest[j]:.2f}" for j in np.flatnonzero(over))
        since = self._since if self._since is not None else now
        return Divergence(since, f"the arm left its command by more than "
                                 f"divergence_tolerance_rad {self.tolerance:g} for "
                                 f"{self._count} ticks ({what})")
