"""Following a leader arm: one leader pose -> one target per ros2_control controller (numpy only).

Joints are matched by name, positions clamped to the joint limits, and the time to reach the
pose stretched where the joints' velocity limits ask for it; a controller with a joint missing
or not finite is left out, with the problem named, rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from genpol import robot


def follow_command(names: Sequence[str], positions: Sequence[float],
                   last: Mapping[str, float], lead_time_s: float,
                   ) -> tuple[dict[str, np.ndarray], float, list[str]]:
    """({controller: positions}, duration, problems) for one leader message.

    last: {joint: last commanded position} (for the velocity limit). Controllers and their
    joints are robot.CONTROLLERS."""
    by_name = dict(zip(names, positions, strict=True))
    lower, upper = robot.lower_limits(), robot.upper_limits()
    vmax = robot.velocity_limits()
    out, problems, duration = {}, [], float(lead_time_s)
    for controller, joints in robot.CONTROLLERS.items():
        missing = [j for j in joints if j not in by_name]
        if missing:
            problems.append(f"{controller}: joints {missing} missing")
            continue
        q = np.array([by_name[j] for j in joints], dtype=float)
        if not np.all(np.isfinite(q)):
            problems.append(f"{controller}: non-finite positions {q.tolist()}")
            continue
        idx = [robot.JOINT_NAMES.index(j) for j in joints]
        q = np.clip(q, lower[idx], upper[idx])
        prev = np.array([last.get(j, np.nan) for j in joints])
        ratio = np.abs(q - prev) / vmax[idx]  # seconds each joint needs at its limit
        ratio = ratio[np.isfinite(ratio)]
        if len(ratio):
            duration = max(duration, float(np.max(ratio)))
        out[controller] = q
    return out, duration, problems
