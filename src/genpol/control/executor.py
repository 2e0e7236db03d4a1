"""The chunk executor: turns the planner's overlapping action chunks into a short, safe command.

The ROS node calls add_chunk for every /genpol/action_chunk, set_measured for every
/joint_states and tick at rate_hz; it publishes what tick returns. All decisions live here so
they can be tested without ROS: which chunks still count, how they are merged, and how fast the
command may move. On anything doubtful the executor holds the last commanded position rather
than guess, and it never jumps: every step is bounded by the speed limit. When the measured
state leaves the command (genpol.control.divergence), it re-anchors: the limit then counts from
where the arm is, not from a command the arm never reached.

Thread-safe: add_chunk and set_measured may run on subscription threads while tick runs on the
node's tick thread. One lock guards the state; validating a chunk happens outside it, so a tick
never waits on that.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from collections.abc import Sequence

import numpy as np

from genpol.control.chunk import Chunk, ChunkResult, check_chunk
from genpol.control.config import ExecutorConfig
from genpol.control.divergence import TrackingWatch
from genpol.control.ensemble import merge
from genpol.control.interpolate import TIME_EPS, sample
from genpol.control.limits import limit_steps
from genpol.control.timeline import takeover_time


@dataclass
class Command:
    """What one tick produces: P points, 1/rate_hz apart, starting 1/rate_hz from now."""

    times: np.ndarray  # (P,) seconds from now
    positions: np.ndarray  # (P, J) in config.joint_names order; (0, J) = publish nothing
    source: str  # "chunk", "hold", "fault" or "silent" (no recent /joint_states)
    warnings: list[str] = field(default_factory=list)
    speed_scale: float = 1.0  # < 1: the speed limit scaled the chunks' steps down to this


class ChunkExecutor:
    def __init__(self, config: ExecutorConfig):
        self.config = config
        self._lower = np.asarray(config.lower, dtype=float)
        self._upper = np.asarray(config.upper, dtype=float)
        self._max_step = (np.asarray(config.max_velocity, dtype=float)
                          * config.velocity_scale / config.rate_hz)
        self._offsets = np.arange(1, config.lookahead_points + 1) / config.rate_hz
        self._chunks: list[Chunk] = []  # oldest first: sorted by (stamp, arrival)
        self._seq = 0
        self._newest_stamp: float | None = None
        self._last_tick: float | None = None
        self._measured = np.full(len(config.joint_names), np.nan)
        self._commanded: np.ndarray | None = None
        self._held: np.ndarray | None = None  # the first measured position, held until a chunk
        self._not_before = -np.inf  # chunks stamped earlier belong to a finished episode
        self._fault: str | None = None  # the start-up check's refusal, until a reset
        self._watch = TrackingWatch(config.joint_names, config.divergence_tolerance_rad,
                                    round(config.tracking_window_s * config.rate_hz) + 1,
                                    config.divergence_ticks)
        self._state_seq = 0  # set_measured calls so far; the tick notes when it last changed
        self._state_seen = 0
        self._state_time: float | None = None  # the tick that first saw the newest state
        self._silent = False  # states stopped for longer than state_timeout_s
        self.reanchored = 0  # times the measured state left the command and was taken up
        self.last_reanchor = ""  # why, the last time
        self._lock = threading.RLock()

    def reset(self, now: float) -> None:
        """Start over, as at a new episode: drop every chunk, forget the last command and the
        measured state (the arm may have been moved), and refuse chunks stamped before `now`
        (ones planned for the old episode still in flight). The next tick holds the first
        position measured after this."""
        with self._lock:
            self._chunks.clear()
            self._newest_stamp = None
            self._commanded = None
            self._held = None
            self._measured[:] = np.nan
            self._not_before = float(now)
            self._fault = None
            self._watch.clear()
            self._state_time, self._silent = None, False

    @property
    def fault(self) -> str | None:
        """Why nothing is commanded (the first measured position failed the start-up check)."""
        with self._lock:
            return self._fault

    @property
    def num_chunks(self) -> int:
        with self._lock:
            return len(self._chunks)

    @property
    def measured(self) -> np.ndarray | None:
        """Latest measured positions in config order, once every configured joint was seen."""
        with self._lock:
            return self._measured.copy() if np.all(np.isfinite(self._measured)) else None

    def set_measured(self, positions: np.ndarray, joint_names: Sequence[str]) -> None:
        """Record /joint_states. Joints we do not command are ignored, and so are NaN values:
        a partial message (another joint group's publisher) updates only what it names."""
        pos = np.asarray(positions, dtype=float).reshape(-1)
        names = list(joint_names)
        if pos.shape[0] != len(names):
            raise ValueError(f"set_measured got {pos.shape[0]} positions for {len(names)} names")
        index = {n: i for i, n in enumerate(self.config.joint_names)}
        updates = [(index[str(n)], v) for n, v in zip(names, pos, strict=True)
                   if str(n) in index and np.isfinite(v)]
        with self._lock:
            for i, value in updates:
                self._measured[i] = value
            if updates:
                self._state_seq += 1

    def add_chunk(self, stamp: float, joint_names: Sequence[str], times_from_start: np.ndarray,
                  positions: np.ndarray, now: float | None = None) -> ChunkResult:
        """`now`: the arrival time (the node's clock); without it, the last tick's time."""
        chunk, result = check_chunk(self.config, stamp, joint_names, times_from_start, positions,
                                    0)
        if chunk is None:
            return result
        with self._lock:
            return self._add_checked(chunk, result, now)

    def _add_checked(self, chunk: Chunk, result: ChunkResult,
                     now: float | None) -> ChunkResult:
        if chunk.stamp < self._not_before:
            return ChunkResult(False, "dropped: planned before the last reset")
        ref = self._last_tick if self._last_tick is not None else self._newest_stamp
        if ref is not None:
            age = ref - chunk.stamp
            if age > self.config.max_chunk_age_s:
                return ChunkResult(False, f"dropped: stale, stamp is {age:.3f} s old "
                                          f"(max_chunk_age_s {self.config.max_chunk_age_s})")
            if -age > self.config.max_chunk_age_s:  # it would play seconds from now
                return ChunkResult(False, f"dropped: stamp is {-age:.3f} s in the future "
                                          f"(max_chunk_age_s {self.config.max_chunk_age_s}): "
                                          "are the planner and the executor on the same clock "
                                          "(use_sim_time)?")
        arrival = now if now is not None else (self._last_tick if self._last_tick is not None
                                               else chunk.stamp)
        # The timeline contract: points up to one tick after arrival were already sent from
        # the chunk playing; this one takes over at its first point after that.
        takeover = takeover_time(chunk.times, arrival, self.config.dt)
        chunk = replace(chunk, seq=self._seq, takeover=takeover)
        self._seq += 1
        self._chunks.append(chunk)
        self._chunks.sort(key=lambda c: (c.stamp, c.seq))
        self._newest_stamp = chunk.stamp if self._newest_stamp is None \
            else max(self._newest_stamp, chunk.stamp)
        if self._last_tick is None:  # no tick to prune them yet: keep the buffer bounded
            newest = self._newest_stamp
            self._chunks = [c for c in self._chunks
                            if newest - c.stamp <= self.config.max_chunk_age_s]
        return result

    def tick(self, now: float) -> Command:
        now = float(now)
        if not np.isfinite(now):
            raise ValueError(f"tick(now) needs a finite time, got {now}")
        with self._lock:
            return self._tick(now)

    def _tick(self, now: float) -> Command:
        warnings: list[str] = []
        if self._last_tick is not None and now < self._last_tick:
            warnings.append(f"clock went back {self._last_tick - now:.3f} s: dropped all chunks")
            self._chunks.clear()
            self._newest_stamp = None
        self._last_tick = now
        # (a fault outranks silence: it needs a reset, whatever the states do)
        if self._state_silent(now, warnings) and self._fault is None:
            return self._empty(warnings, "silent")
        if self._fault is None and self._commanded is None and self._held is None:
            first = self.measured
            self._fault = None if first is None else self._start_fault(first)
        if self._fault is None and (self._commanded is not None or self._held is not None):
            self._check_tracking(now, warnings)
        if self._fault is not None:
            return Command(np.zeros(0), np.zeros((0, len(self.config.joint_names))), "fault",
                           [self._fault])
        self._chunks = [c for c in self._chunks
                        if now - c.stamp <= self.config.max_chunk_age_s
                        and c.end >= now - TIME_EPS]
        if not self._chunks:
            return self._hold(warnings)

        query = now + self._offsets
        samples = [sample(c.times, c.positions, query, self.config.interpolation)
                   for c in self._chunks]
        covered = np.stack([s[1] for s in samples])
        if not covered.any():
            return self._hold(warnings)
        start = self._commanded if self._commanded is not None else self._held
        start = start if start is not None else self.measured
        if start is None:
            warnings.append("waiting for /joint_states of "
                            f"{self._unmeasured()} before moving")
            return self._empty(warnings)

        mode = self.config.mode
        if mode == "continue":
            # Each instant from the newest chunk that has taken over by then; before any has
            # (the first chunk of an episode), from the newest that covers it.
            takeovers = np.array([c.takeover for c in self._chunks])
            taken = covered & (takeovers[:, None] <= query[None, :] + TIME_EPS)
            covered = np.where(taken.any(axis=0), taken, covered)
            mode = "latest"
        targets = merge(np.stack([s[0] for s in samples]), covered, mode,
                        self.config.ensemble_m)
        prev = start
        for p in range(targets.shape[0]):  # no chunk covers this time: hold the value before it
            if np.isnan(targets[p, 0]):
                targets[p] = prev
            prev = targets[p]

        points, scale = limit_steps(start, targets, self._max_step)
        if scale < 1.0:
            warnings.append(f"speed limited: steps scaled down to {scale:.2f} of what the chunks "
                            f"asked (velocity_scale {self.config.velocity_scale})")
        # A start beyond a limit (measured state) comes back inside at the speed limit, not in a
        # jump: the box is widened to include it. Everything chunks ask for is inside the limits.
        outside = (start < self._lower) | (start > self._upper)
        if outside.any():
            names = [n for n, o in zip(self.config.joint_names, outside, strict=True) if o]
            warnings.append(f"start position of {names} is outside the joint limits; "
                            "moving back inside at the speed limit")
        points = np.clip(points, np.minimum(self._lower, start), np.maximum(self._upper, start))
        self._commanded = points[0].copy()
        self._watch.commanded(self._commanded)
        return Command(self._offsets.copy(), points, "chunk", warnings, scale)

    def _check_tracking(self, now: float, warnings: list[str]) -> None:
        """Re-anchor when the arm has left the command (genpol.control.divergence): hold what
        is measured, drop the chunks planned before that (from a state the arm is no longer
        in) and move on from the measured state, so the speed limit counts from where the arm
        is. A measured state beyond the start-up margin is a fault, as at start-up."""
        measured = self.measured
        if measured is None:
            return
        divergence = self._watch.check(measured, now)
        if divergence is not None:
            self._reanchor(measured, divergence.since, divergence.reason, warnings)

    def _reanchor(self, measured: np.ndarray, since: float, reason: str,
                  warnings: list[str]) -> None:
        self._watch.clear()
        self.reanchored += 1
        self.last_reanchor = reason
        self._fault = self._start_fault(measured, "the measured position after a jump")
        self._commanded, self._held = measured, None
        self._not_before = max(self._not_before, since)
        self._chunks = [c for c in self._chunks if c.stamp >= self._not_before]
        warnings.append(f"re-anchored at the measured state: {reason}; dropped the chunks "
                        "planned before it")

    def _state_silent(self, now: float, warnings: list[str]) -> bool:
        """No /joint_states for state_timeout_s: whatever answers next (a restarted driver at
        its start pose, a reconnected arm that sagged) must not be sent the last command, which
        it would chase at any speed. Command nothing meanwhile; on the first state after the
        gap, re-anchor there if the arm is no longer where the command was."""
        timeout = self.config.state_timeout_s
        if self._state_seq != self._state_seen:
            self._state_seen, self._state_time = self._state_seq, now
            if self._silent:
                self._silent = False
                self._resume_after_silence(now, warnings)
            return False
        if timeout <= 0 or self._state_time is None or now - self._state_time <= timeout:
            return False
        if not self._silent:
            self._silent = True
            warnings.append(f"no /joint_states for {now - self._state_time:.2f} s "
                            f"(state_timeout_s {timeout:g}): commanding nothing until the arm "
                            "reports again")
        return True

    def _resume_after_silence(self, now: float, warnings: list[str]) -> None:
        measured, last = self.measured, self._commanded
        if last is None:
            last = self._held
        if measured is None or last is None:
            return
        off = np.abs(measured - last)
        if self.config.divergence_tolerance_rad > 0:
            moved = off > self.config.divergence_tolerance_rad
        else:
            moved = off > 0
        if not moved.any():
            warnings.append("/joint_states back; the arm is where it was commanded: going on")
            return
        what = ", ".join(f"{self.config.joint_names[j]} measured {measured[j]:.2f} rad, "
                         f"commanded {last[j]:.2f}" for j in np.flatnonzero(moved))
        self._reanchor(measured, now, f"/joint_states came back after a silence with the arm "
                                      f"elsewhere ({what})", warnings)

    def _hold(self, warnings: list[str]) -> Command:
        # Before any chunk: hold the first measured position, fixed, as a trajectory controller
        # holds its position on activation. Re-reading the measured state every tick would hold
        # nothing: the arm sagging under gravity would be followed, drifting off its start.
        if self._commanded is None and self._held is None:
            self._held = self.measured
        position = self._commanded if self._commanded is not None else self._held
        if position is None:
            return self._empty(warnings)
        self._watch.commanded(position)
        points = np.repeat(position[None, :], len(self._offsets), axis=0)
        return Command(self._offsets.copy(), points, "hold", warnings)

    def _start_fault(self, first: np.ndarray,
                     what: str = "the first measured position") -> str | None:
        """The start-up check: a joint measured far outside its limits before anything was
        commanded is a calibration fault (a zero off by a half turn reads about pi away), and
        driving it "back inside" would swing the arm at full range. Command nothing instead."""
        margin = self.config.start_margin_rad
        out = [(n, v, lo, hi) for n, v, lo, hi in zip(self.config.joint_names, first,
                                                       self._lower, self._upper, strict=True)
               if v < lo - margin or v > hi + margin]
        if not out:
            return None
        joints = "; ".join(f"{n} reads {v:.2f} rad, its limits are [{lo:.2f}, {hi:.2f}]"
                           for n, v, lo, hi in out)
        return (f"not commanding the arm: {what} is outside the joint limits by more "
                f"than start_margin_rad {margin:g} ({joints}). Likely cause: the "
                "arm's calibration does not match genpol's joint zero (about 3.14 rad off: the "
                "driver has no offsets; start with calibration:=<your LeRobot calibration "
                "JSON>), a servo wired to the wrong id, or a joint pushed past its limit by "
                "hand. Fix it, then call the executor's ~/reset.")

    def _empty(self, warnings: list[str], source: str = "hold") -> Command:
        return Command(np.zeros(0), np.zeros((0, len(self.config.joint_names))), source,
                       warnings)

    def _unmeasured(self) -> list[str]:
        return [n for n, v in zip(self.config.joint_names, self._measured, strict=True)
                if not np.isfinite(v)]
