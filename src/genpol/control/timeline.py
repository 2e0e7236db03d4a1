"""The timeline contract between the planner and the executor, for continuation chunks.

A chunk is stamped with its observation time t0 and its point k plays at t0 + k/fps. In the
executor's `continue` mode a chunk that arrives at time a takes over at its first point at or
after a + one tick (the points before that were already sent to the controller from the chunk
playing); until then the chunk playing keeps playing. Both sides compute that point with
`takeover_index`, so the planner knows, before it samples, which points of its new chunk the
robot will take from the previous one: those, with the takeover point and the one after it,
are the committed prefix that real-time chunking makes the new chunk equal (and the overlap
after it, which it leans toward). The executor's B-spline (genpol.control.interpolate) at the
takeover point depends on that point and its two neighbours, all committed, so position,
velocity and acceleration carry across the switch.

numpy only: the executor imports this, the policies read `Prefix`.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass

import numpy as np

from genpol import robot

SCHEDULES = ("exp", "linear", "hard")
#: what a guided sampler writes into its denoised estimate at every step: the committed steps,
#: or the whole overlap blended by the soft-mask weights
INPAINTS = ("committed", "overlap")
DEFAULT_INPAINT = "overlap"  # the planner's rtc_inpaint default too
#: the planner's strategies: continue the committed prefix, or only select among free samples
CHUNKINGS = ("rtc", "select")


def first_at_or_after(times: np.ndarray, t: float) -> float:
    """The first of the chunk's (increasing) point times at or after t; its end if none."""
    i = int(np.searchsorted(times, t - 1e-9))
    return float(times[min(i, len(times) - 1)])


def takeover_time(times: np.ndarray, arrival: float, tick_s: float) -> float:
    """The executor's side of the rule: the chunk point (absolute times) it switches at."""
    return first_at_or_after(times, arrival + tick_s)


def takeover_index(stamp: float, fps: float, arrival: float, tick_s: float) -> int:
    """The planner's side, before the chunk exists: the index of the first point (at
    stamp + k/fps) at or after arrival + tick_s, as takeover_time finds it."""
    first = arrival + tick_s - stamp
    return max(0, math.ceil(first * fps - 1e-9))


def switch_time(stamp: float, times: np.ndarray, arrival: float, mode: str,
                tick_s: float) -> float:
    """When the executor starts playing a chunk (stamp, point times from it) that arrived at
    `arrival`: in `continue` mode at its takeover point, in the other modes on the next tick."""
    if mode == "continue":
        return takeover_time(stamp + np.asarray(times, float), arrival, tick_s)
    return arrival + tick_s


def soft_mask(horizon: int, committed: int, overlap: int, schedule: str = "exp") -> np.ndarray:
    """Guidance weight per step: 1 over the committed prefix, decaying to 0 across the rest of
    the overlap, 0 beyond it (Black et al. 2025, eq. 5: c_i (e^c_i - 1) / (e - 1) with
    c_i = (overlap - i) / (overlap - committed + 1)); "linear" uses c_i, "hard" only the prefix."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    committed = min(max(committed, 0), horizon)
    overlap = min(max(overlap, committed), horizon)
    w = np.zeros(horizon)
    w[:committed] = 1.0
    if schedule != "hard" and overlap > committed:
        i = np.arange(committed, overlap)
        c = (overlap - i) / (overlap - committed + 1)
        w[committed:overlap] = c * np.expm1(c) / np.expm1(1.0) if schedule == "exp" else c
    return w


@dataclass(frozen=True)
class Prefix:
    """What the robot will still play of the previous chunk, on the new chunk's step times.

    actions (H, A) in the policy's units and joint order (rows past `overlap` are unused);
    the first `committed` steps are played from the previous chunk whatever the new one says,
    the steps up to `overlap` are where the two chunks overlap.
    """

    actions: np.ndarray
    committed: int
    overlap: int
    schedule: str = "exp"
    max_guidance: float = 5.0
    #: the stamp the new chunk is sent with (its step 0): on the playing chunk's step grid
    #: (PlannerTimeline.prefix); None: the observation's
    stamp: float | None = None
    inpaint: str = DEFAULT_INPAINT  # see INPAINTS

    def __post_init__(self) -> None:
        if self.inpaint not in INPAINTS:
            raise ValueError(f"inpaint must be one of {list(INPAINTS)}, got {self.inpaint!r}")

    def weights(self) -> np.ndarray:
        return soft_mask(len(self.actions), self.committed, self.overlap, self.schedule)

    def continue_into(self, chunks: np.ndarray) -> np.ndarray:
        """chunks (N, H, A) made to continue the prefix: the committed steps exactly (they are
        played from the previous chunk whatever a new one says, and the executor's switch lands
        on them), the rest of the overlap faded from the prefix into each chunk with the soft
        mask, so the switch is seamless.

        Guidance pulls a sample only as far as the net's denoised estimate responds to x (for
        small nets, part of the way). The planner chooses among the samples first: the fade
        would hide which way each one went."""
        w = self.weights()[:, None]
        return w * self.actions + (1 - w) * chunks

    def departure(self, chunk: np.ndarray) -> float:
        """How far a chunk (H, A) leaves the prefix where it should follow it: the largest
        soft-mask-weighted difference over the overlap (a joint's rad). Continuing the prefix
        into a chunk that took the other way round an obstacle would fade between the modes."""
        w = self.weights()[:self.overlap, None]
        return float(np.abs(w * (chunk[:self.overlap] - self.actions[:self.overlap])).max(
            initial=0.0))


#: the executor's defaults for noticing that the arm left its commands (parameters.py:
#: divergence_tolerance_rad, tracking_window_s); the planner uses the same to stop continuing
LOST_TOLERANCE_RAD, LOST_WINDOW_S = 0.3, 0.5
GRIPPER_INDEX = robot.JOINT_NAMES.index(robot.GRIPPER_JOINT)  # a grasp holds it short on purpose


class PlannerTimeline:
    """The planner's model of what the executor plays: its own last chunk, and how late its
    chunks land (the measured delay from observation to publication, the worst of the recent
    ones, so that a slow sample does not leave the prefix too short).

    Thread-safe: the planner's inference thread plans and publishes with it while its reset
    service (another thread) clears it; unguarded, a reset during `lost` killed the inference
    thread ("deque mutated during iteration")."""

    def __init__(self, tick_s: float = 0.02, margin_s: float = 0.01, window: int = 10):
        self._lock = threading.Lock()
        self.tick_s = tick_s
        self.margin_s = margin_s
        self._delays: collections.deque[float] = collections.deque(maxlen=window)
        self._last: tuple[object, np.ndarray, np.ndarray] | None = None
        #: the last few chunks sent (times, positions): until the newest takes over, the arm
        #: plays the one before
        self._sent: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque(maxlen=4)

    def reset(self) -> None:
        """A new episode: nothing is playing."""
        with self._lock:
            self._last = None
            self._sent.clear()

    def playing(self, key: object, stamp: float) -> bool:
        """Whether a chunk of this policy still plays at `stamp`: a chunk planned now follows
        one (continues it or is compared with it) rather than choosing the mode afresh."""
        with self._lock:
            last = self._last
        return last is not None and last[0] is key and last[1][0] <= stamp <= last[1][-1]

    @property
    def delay_s(self) -> float | None:
        with self._lock:
            return max(self._delays) if self._delays else None

    def lost(self, measured: np.ndarray, stamp: float, tolerance: float = LOST_TOLERANCE_RAD,
             window_s: float = LOST_WINDOW_S) -> bool:
        """Whether the arm has left what the planner sent: some arm joint measured at `stamp` is
        further than `tolerance` from every point of its last few chunks over the `window_s`
        before (the executor's rule, and its tracking lag). The executor then re-anchors at the
        measured state and drops those chunks (a push, a restarted driver), so continuing them
        would steer back toward where the arm no longer is; the next chunk chooses afresh."""
        with self._lock:
            sent = list(self._sent)
        near = [positions[(times >= stamp - window_s) & (times <= stamp + 1e-9)]
                for times, positions in sent]
        points = np.concatenate(near) if near else np.zeros((0, 0))
        if len(points) == 0:
            return False
        arm = [i for i in range(min(points.shape[1], len(measured))) if i != GRIPPER_INDEX]
        gaps = np.abs(points[:, arm] - np.asarray(measured, float)[arm]).min(axis=0)
        return bool(np.any(gaps > tolerance))  # an unmeasured joint (NaN) never counts

    def published(self, key: object, stamp: float, fps: float, positions: np.ndarray,
                  published_at: float, observed: float | None = None) -> None:
        """The chunk the planner just sent (positions (H, A), step 0 at `stamp`), planned on the
        observation at `observed` (default: stamp); `key` names the policy."""
        observed = stamp if observed is None else observed
        times = stamp + np.arange(len(positions)) / fps
        last = (key, times, np.asarray(positions, dtype=float).copy())
        with self._lock:
            self._delays.append(max(0.0, published_at - observed))
            self._last = last
            self._sent.append((times, last[2]))

    def prefix(self, key: object, stamp: float, fps: float, horizon: int,
               schedule: str = "exp", max_guidance: float = 5.0,
               inpaint: str = DEFAULT_INPAINT) -> Prefix | None:
        """The prefix a chunk for the observation at `stamp` should continue, or None when
        nothing of this policy is playing over its steps (the first chunk, after a gap or a
        swap)."""
        with self._lock:
            last, delays = self._last, list(self._delays)
        if last is None or last[0] is not key:
            return None
        _, prev_times, prev = last
        # On the playing chunk's step grid, as real-time chunking's discrete steps are: the
        # committed steps are that chunk's own points, and the switch adds no interpolation knot
        # between two of its points (a seam otherwise bends the commanded path twice within a
        # step). Step 0 moves at most half a step from the observation; it is committed anyway.
        shift = math.floor((stamp - prev_times[0]) * fps + 0.5)  # steps since its step 0
        overlap = min(horizon, len(prev) - shift)
        if shift < 0 or overlap <= 0:
            return None
        observed, stamp = stamp, float(prev_times[0] + shift / fps)
        delay = max(delays, default=0.0) + self.margin_s
        # The executor switches at the takeover point k and interpolates toward k + 1 on the
        # tick after, so the segment [k, k + 1] is the previous chunk's too.
        committed = min(takeover_index(stamp, fps, observed + delay, self.tick_s) + 2, overlap)
        actions = np.zeros((horizon, prev.shape[1]))
        actions[:overlap] = prev[shift:shift + overlap]
        return Prefix(actions, committed, overlap, schedule, max_guidance, stamp, inpaint)
