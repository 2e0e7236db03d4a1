"""The planner's recent observations, for policies that see a history (n_obs_steps > 1).

A policy trained on observations 1/fps apart must be given the same spacing at run time, whatever
rate joint states arrive at, so each observation is kept with its stamp and the policy is given
the ones nearest to t, t - 1/fps, ... When the episode began later than that (or right after a
reset) the earliest kept observation stands in for the missing ones, as training padded them.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Observation:
    stamp: float  # seconds
    positions: Mapping[str, float]  # joint name -> position
    images: Mapping[str, np.ndarray]  # camera -> (H, W, 3) uint8


class ObservationHistory:
    """Observations of the last `span_s` seconds, in stamp order; safe across threads (the node's
    callbacks add, the planner's thread picks)."""

    def __init__(self, span_s: float = 1.0, max_len: int = 1000):
        self.span_s = span_s
        self.max_len = max_len
        self._stamps: list[float] = []
        self._items: list[Observation] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, stamp: float, positions: Mapping[str, float],
            images: Mapping[str, np.ndarray] | None = None) -> None:
        """Keep an observation; one not newer than the newest kept is ignored (a repeat)."""
        with self._lock:
            if self._stamps and stamp <= self._stamps[-1]:
                return
            self._stamps.append(stamp)
            self._items.append(Observation(stamp, dict(positions), dict(images or {})))
            drop = bisect.bisect_left(self._stamps, stamp - self.span_s)
            drop = max(drop, len(self._items) - self.max_len)
            if drop > 0:
                del self._stamps[:drop], self._items[:drop]

    def pick(self, stamp: float, steps: int, period: float, cameras: Collection[str] = (),
             joints: Collection[str] = ()) -> list[Observation]:
        """`steps` observations, the oldest first: those nearest to stamp - (steps - 1) * period,
        ..., stamp - period, stamp, among the ones not newer than `stamp` that have every camera
        and joint asked for; the earliest such one repeats where the history is short. Empty if
        there is none."""
        with self._lock:
            end = bisect.bisect_right(self._stamps, stamp)
            stamps, items = self._stamps[:end], self._items[:end]

        def usable(i: int) -> bool:
            o = items[i]
            return all(c in o.images for c in cameras) and all(j in o.positions for j in joints)
        picked = []
        for back in range(steps - 1, -1, -1):
            target = stamp - back * period
            after = bisect.bisect_left(stamps, target)
            before = after - 1
            while before >= 0 and not usable(before):
                before -= 1
            while after < end and not usable(after):
                after += 1
            if before < 0 and after == end:
                return []
            if after == end or (before >= 0 and target - stamps[before] <= stamps[after] - target):
                after = before
            picked.append(items[after])
        return picked

    def reset(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._items.clear()
