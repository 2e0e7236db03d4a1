"""A joint trajectory follower with the topic semantics of ros2_control's
joint_trajectory_controller (JTC), so the simulated arm accepts exactly what the real one does.

- A trajectory is (start time, joint names, times from start, positions); a new one replaces
  whatever of the current one lies after its start time (the part before still plays out).
- Joints are matched by name, in any order. Unknown joints, duplicate names, a subset when
  allow_partial_joints_goal is off, non-increasing or negative times, wrong shapes or non-finite
  values are refused with a reason and change nothing (JTC: validate everything at the
  boundary). With partial goals allowed, missing joints hold their command.
- Between the command at the start time and the first point, and between points, the command
  is interpolated linearly in time (JTC with interpolation_method: none; our executor already
  sends dense 50 Hz points). After the last point the last point is held; before any trajectory
  the hold position (the arm's position when the follower was reset) is held.

numpy only: nodes/sim_arm.py translates JointTrajectory messages into set_trajectory calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genpol import robot


class TrajectoryFollower:
    """Joint position commands over time for a fixed set of joints (JTC's `joints` parameter)."""

    def __init__(self, joint_names: Sequence[str] = robot.JOINT_NAMES,
                 initial: Sequence[float] | None = None, allow_partial_joints_goal: bool = False):
        self.joint_names = tuple(joint_names)
        if len(set(self.joint_names)) != len(self.joint_names) or not self.joint_names:
            raise ValueError(f"joint names must be unique and non-empty: {self.joint_names}")
        self.allow_partial_joints_goal = allow_partial_joints_goal
        self._times = np.empty(0)
        self._points = np.empty((0, len(self.joint_names)))
        self.reset(np.zeros(len(self.joint_names)) if initial is None else initial)

    def reset(self, hold: Sequence[float] | np.ndarray) -> None:
        """Drop any trajectory and hold `hold` (JTC on activation: hold the current position)."""
        q = np.array(hold, dtype=float)
        if q.shape != (len(self.joint_names),) or not np.all(np.isfinite(q)):
            raise ValueError(f"hold position must be {len(self.joint_names)} finite values")
        self._hold = q
        self._times = np.empty(0)
        self._points = np.empty((0, len(self.joint_names)))

    @property
    def end_time(self) -> float | None:
        """Time of the last point of the current trajectory, None if none arrived."""
        return float(self._times[-1]) if len(self._times) else None

    def target(self, now: float) -> np.ndarray:
        """Position command (n,) at time `now` (seconds, same clock as start_time).

        Queries are expected in non-decreasing time: knots in the past are dropped as it goes.
        """
        past = int(np.searchsorted(self._times, now, side="right")) - 1
        if past > 0:  # keep one knot at or before now: it anchors the interpolation
            self._times, self._points = self._times[past:], self._points[past:]
        return self._command_at(now)

    def set_trajectory(self, start_time: float, joint_names: Sequence[str],
                       times_from_start: Sequence[float], positions,
                       now: float | None = None) -> tuple[bool, str]:
        """Accept (True, "") or refuse (False, reason) a trajectory; a refusal changes nothing.

        start_time: when the trajectory starts (a JointTrajectory's header.stamp; the caller
        substitutes "now" for a zero stamp, as JTC does). times_from_start: (K,) seconds,
        strictly increasing, >= 0. positions: (K, len(joint_names)). now: if given, a trajectory
        that has already ended is refused (JTC does the same).
        """
        names = list(joint_names)
        if not names:
            return False, "no joint names"
        if len(set(names)) != len(names):
            return False, f"duplicate joint names in {names}"
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            return False, f"unknown joints {unknown}; this controller has {list(self.joint_names)}"
        missing = [n for n in self.joint_names if n not in names]
        if missing and not self.allow_partial_joints_goal:
            return False, (f"joints {missing} missing and allow_partial_joints_goal is false")
        try:
            times = np.asarray(times_from_start, float)
            points = np.asarray(positions, float)
            start = float(start_time)
        except (TypeError, ValueError) as exc:
            return False, f"not numeric: {exc}"
        if times.ndim != 1 or len(times) == 0:
            return False, "times_from_start must be a non-empty 1-D sequence"
        if points.shape != (len(times), len(names)):
            return False, (f"positions must have shape ({len(times)}, {len(names)}), "
                           f"got {points.shape}")
        if not (np.isfinite(start) and np.all(np.isfinite(times)) and np.all(np.isfinite(points))):
            return False, "non-finite start time, times or positions"
        if times[0] < 0:
            return False, f"negative time_from_start {times[0]}"
        if np.any(np.diff(times) <= 0):
            return False, "times_from_start must be strictly increasing"
        if now is not None and start + times[-1] < now:
            return False, f"trajectory ended at {start + times[-1]:.3f} s, before now ({now:.3f} s)"

        anchor = self._command_at(start)
        full = np.repeat(anchor[None], len(times), axis=0)
        columns = [self.joint_names.index(n) for n in names]
        full[:, columns] = points
        keep = self._times < start
        new_times, new_points = start + times, full
        if times[0] > 0:  # ramp from the command at the start time to the first point
            new_times = np.concatenate([[start], new_times])
            new_points = np.vstack([anchor[None], new_points])
        # Before the start the old command plays on (or the hold: interpolation clamps to the
        # first knot, the anchor); from the start the new trajectory replaces the rest.
        self._times = np.concatenate([self._times[keep], new_times])
        self._points = np.vstack([self._points[keep], new_points])
        return True, ""

    def _command_at(self, t: float) -> np.ndarray:
        """The current command at time t without dropping anything (no side effects)."""
        if not len(self._times):
            return self._hold.copy()
        if t >= self._times[-1]:
            return self._points[-1].copy()
        return np.array([np.interp(t, self._times, self._points[:, j])
                         for j in range(len(self.joint_names))])
