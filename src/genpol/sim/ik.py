"""Inverse kinematics for scripted experts: gripper tip position plus approach pitch.

The SO-101 has five arm joints, so a full 6-D pose is not reachable in general; the tip position
plus how steeply the gripper points down (pitch; 0 = horizontal, pi/2 = straight down) is, and
that is exactly what grasping and reaching need. Damped least squares on robot.py's numpy
forward kinematics (numerical Jacobian), so it needs no MuJoCo and is deterministic: the same
start and targets give the same joints. Warm-started along a dense path it converges in a few
iterations per sample.
"""

from __future__ import annotations

import numpy as np

from genpol import robot

SOLVED = 1e-4   # m; tip error below which a solution counts (direction scaled the same way)
_ARM = 4        # shoulder_pan, shoulder_lift, elbow_flex, wrist_flex (wrist_roll, gripper held)
_DIR_WEIGHT = 0.05  # metres per unit of approach-direction error: 1 rad ~ 5 cm


def tip_pitch(q: np.ndarray) -> np.ndarray:
    """Approach pitch (...,) of the gripper: the angle of its x axis below the horizontal."""
    x_axis = robot.tip_transform(q)[..., :3, 0]
    return np.arcsin(np.clip(-x_axis[..., 2], -1.0, 1.0))


def _residual(q: np.ndarray, position: np.ndarray, direction: np.ndarray) -> np.ndarray:
    pose = robot.tip_transform(q)
    return np.concatenate([pose[..., :3, 3] - position,
                           _DIR_WEIGHT * (pose[..., :3, 0] - direction)], axis=-1)


def solve(position, pitch: float, q_init: np.ndarray, iterations: int = 100,
          damping: float = 1e-3) -> tuple[np.ndarray, float]:
    """Joints (6,) putting the tip at `position` pointing down at `pitch`, and the residual norm.

    Only the first four joints move; wrist_roll and gripper keep q_init's values. The approach
    direction lies in the vertical plane through the base and the target, which the SO-101's
    planar arm can always match.
    """
    position = np.asarray(position, float)
    q = np.clip(np.asarray(q_init, float).copy(), robot.lower_limits(), robot.upper_limits())
    radial = position[:2] / max(np.linalg.norm(position[:2]), 1e-9)
    direction = np.array([np.cos(pitch) * radial[0], np.cos(pitch) * radial[1], -np.sin(pitch)])
    lower, upper = robot.lower_limits()[:_ARM], robot.upper_limits()[:_ARM]
    eps = 1e-6
    err = np.inf
    for _ in range(iterations):
        probes = np.repeat(q[None], _ARM + 1, axis=0)
        probes[1:, :_ARM] += eps * np.eye(_ARM)
        res = _residual(probes, position, direction)
        r0 = res[0]
        err = float(np.linalg.norm(r0))
        if err < SOLVED:
            break
        jac = (res[1:] - r0).T / eps  # (6, 4)
        step = np.linalg.solve(jac.T @ jac + damping * np.eye(_ARM), -jac.T @ r0)
        q[:_ARM] = np.clip(q[:_ARM] + step, lower, upper)
    return q, err


def solve_path(positions: np.ndarray, pitches: np.ndarray, q_init: np.ndarray) -> np.ndarray:
    """Joints (T, 6) following tip positions (T, 3) and pitches (T,), each sample warm-started
    from the previous one so the arm takes the continuous branch. Raises if a sample is out of
    reach, so an expert never silently demonstrates a pose it does not reach."""
    out = np.empty((len(positions), 6))
    q = np.asarray(q_init, float)
    for k, (p, a) in enumerate(zip(positions, pitches, strict=True)):
        q, err = solve(p, float(a), q)
        if err > 1e-3:
            raise ValueError(f"IK failed at sample {k}: target {p}, pitch {a:.2f}, "
                             f"residual {err:.4f}")
        out[k] = q
    return out
