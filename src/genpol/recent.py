"""What happened in the last few seconds: a rate, percentiles, a fraction, for the ~/status lines.

A status says how the graph runs now, not since start-up: a planner that was slow while the
policy loaded and fast since must read fast. Plain Python and numpy, thread-safe (the executor
adds from its tick thread and reads from its status timer).
"""

from __future__ import annotations

import collections
import threading

import numpy as np


class Recent:
    """(time, value) pairs of the last `window_s` seconds of any monotonic clock."""

    def __init__(self, window_s: float = 5.0, maxlen: int = 10_000):
        self.window_s = float(window_s)
        self._items: collections.deque[tuple[float, float]] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._first: float | None = None

    def add(self, now: float, value: float = 1.0) -> None:
        with self._lock:
            if self._first is None:
                self._first = now
            self._items.append((now, float(value)))
            self._prune(now)

    def _prune(self, now: float) -> None:
        while self._items and self._items[0][0] <= now - self.window_s:
            self._items.popleft()

    def values(self, now: float) -> np.ndarray:
        with self._lock:
            self._prune(now)
            return np.array([v for _, v in self._items], dtype=float)

    def rate(self, now: float) -> float:
        """Events per second over the window; while less than a window has passed since the
        first event, over the time between the first and the latest (so a planner that has just
        started is not read slow)."""
        with self._lock:
            self._prune(now)
            if self._first is None or not self._items:
                return 0.0
            count, latest = len(self._items), self._items[-1][0]
            if now - self._first >= self.window_s:
                return count / self.window_s
            return (count - 1) / (latest - self._first) if latest > self._first else 0.0

    def percentile(self, now: float, q: float) -> float | None:
        """The q-th percentile (0..100) of the window's values; None if it is empty."""
        values = self.values(now)
        return float(np.percentile(values, q)) if values.size else None

    def mean(self, now: float) -> float | None:
        values = self.values(now)
        return float(values.mean()) if values.size else None
