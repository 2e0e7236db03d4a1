"""Tasks with scripted experts that are multimodal on purpose.

reach_around: put the gripper tip on a target behind a post, passing it on the left or on the
right. Both are equally good, and their average runs into the post: the case a point-estimate
policy gets wrong and a generative one should not.
pick_place: pick the cube and drop it in the bin, grasping it from straight above ("top") or
from an angle in front ("front"): two distinct joint-space paths to the same result.

Everything here is numpy (IK through robot.py's kinematics), deterministic per seed: sample()
draws a scene from a seed, expert() turns a scene, a mode and a generator into a joint
trajectory at 30 Hz, success() judges an ArmSim, mode_of() names the mode a path took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genpol import robot
from genpol.sim import ik

if TYPE_CHECKING:
    from genpol.sim.arm import ArmSim

REACH_AROUND = "reach_around"
PICK_PLACE = "pick_place"
TASKS = (REACH_AROUND, PICK_PLACE)
MODES = {REACH_AROUND: ("left", "right"), PICK_PLACE: ("top", "front")}
RATE_HZ = 30.0

# Geometry shared with scene.py (kept here so tasks stay importable without MuJoCo).
CUBE_HALF = 0.0125
BIN_INNER_HALF = 0.045
BIN_WALL_HEIGHT = 0.035
OBSTACLE_HALF = (0.015, 0.030, 0.035)  # a post 3 cm deep, 6 cm wide, 7 cm tall
PARKED = np.array([0.15, 0.0, -0.30])

GRIPPER_OPEN = 1.0
GRIPPER_CLOSED = 0.0  # commanded below the cube's width: the servo squeezes
REACH_TOLERANCE = 0.02  # m, tip to target
SPREAD_MAX = 4.0  # reach_around's layouts stay within the arm's reach and the front camera's view
_NOMINAL = np.array([0.0, -0.6, 1.2, 1.0, 0.0, 0.2])  # IK seed: elbow up, gripper down-forward


@dataclass(frozen=True, eq=False)
class TaskInstance:
    """One randomised scene. Unused objects sit at PARKED (under the table)."""

    name: str
    seed: int
    q_start: np.ndarray   # (6,) initial joints
    target: np.ndarray    # (3,) reach target (marker centre)
    obstacle: np.ndarray  # (3,) obstacle base centre (on the table)
    cube: np.ndarray      # (3,) cube centre
    cube_yaw: float
    bin: np.ndarray       # (3,) bin floor centre
    scene_seed: int | None = None  # the layout's own seed, if it was fixed apart from `seed`
    spread: float = 1.0            # how far the layouts range sideways (sample's `spread`)


@dataclass(frozen=True, eq=False)
class ExpertPlan:
    """A demonstration as joint set points: positions[k] at times[k] (RATE_HZ, from 0).

    Call it with a time for a set point (linear between samples, held after the end), e.g.
    ArmSim.step(dt, targets=lambda t: plan(t - t0)).
    """

    times: np.ndarray      # (T,)
    positions: np.ndarray  # (T, 6)
    mode: str

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def __call__(self, t: float) -> np.ndarray:
        return np.array([np.interp(t, self.times, self.positions[:, j]) for j in range(6)])


def sample(task: str, seed: int, scene_seed: int | None = None,
           spread: float = 1.0) -> TaskInstance:
    """The scene for (task, seed): start pose and object placements, identical every time.

    scene_seed: draw the object placements from this seed instead, so that episodes share one
    layout and differ in their start pose (what a policy that sees only joint states can learn).
    spread: reach_around's sideways ranges (the post's and the target's offset from it) times
    this. At 1 a policy blind to the scene can still reach most targets (they lie within a few
    cm of each other); at 3 the target ranges over 20 cm, so only a policy that sees it can.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")
    if not 0.0 <= spread <= SPREAD_MAX:
        raise ValueError(f"scene spread must be in [0, {SPREAD_MAX:g}], got {spread}")
    rng = np.random.default_rng([int(seed), TASKS.index(task)])
    start_tip = np.array([rng.uniform(0.16, 0.18), rng.uniform(-0.03, 0.03),
                          rng.uniform(0.07, 0.09)])
    q_start, err = ik.solve(start_tip, rng.uniform(0.9, 1.1), _NOMINAL)
    if err > 1e-3:
        raise AssertionError(f"start pose out of reach for seed {seed}")
    if scene_seed is not None and scene_seed >= 0:
        rng = np.random.default_rng([int(scene_seed), TASKS.index(task), 1])
    target, obstacle, cube, bin_, yaw = PARKED, PARKED, PARKED.copy(), PARKED, 0.0
    if task == REACH_AROUND:
        obstacle = np.array([rng.uniform(0.215, 0.235),
                             rng.uniform(-0.015 * spread, 0.015 * spread), 0.0])
        target = np.array([obstacle[0] + rng.uniform(0.075, 0.09),
                           obstacle[1] + rng.uniform(-0.02 * spread, 0.02 * spread),
                           rng.uniform(0.04, 0.06)])
        cube[2] += 0.01 + CUBE_HALF  # resting in the parked bin
    else:
        q_start[5] = 0.0
        radius, angle = rng.uniform(0.19, 0.22), rng.uniform(-0.35, 0.35)
        cube = np.array([radius * np.cos(angle), radius * np.sin(angle), CUBE_HALF])
        yaw = angle + rng.uniform(-0.2, 0.2)
        side = rng.choice([-1.0, 1.0])
        b_radius, b_angle = rng.uniform(0.17, 0.20), side * rng.uniform(1.0, 1.25)
        bin_ = np.array([b_radius * np.cos(b_angle), b_radius * np.sin(b_angle), 0.0])
    return TaskInstance(task, int(seed), q_start, target, obstacle, cube, float(yaw), bin_,
                        None if scene_seed is None or scene_seed < 0 else int(scene_seed),
                        float(spread))


# ----------------------------------------------------------------------------- path building


def _min_jerk(s: np.ndarray) -> np.ndarray:
    return s ** 3 * (10 - 15 * s + 6 * s * s)


def _spline(points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Cubic Hermite (Catmull-Rom tangents) through points (N, 3), parameterised by chord length,
    evaluated at arc parameters u."""
    knots = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    if knots[-1] < 1e-9:
        return np.repeat(points[:1], len(u), axis=0)
    tangents = np.gradient(points, knots, axis=0)
    seg = np.clip(np.searchsorted(knots, u, side="right") - 1, 0, len(points) - 2)
    h = knots[seg + 1] - knots[seg]
    s = ((u - knots[seg]) / h)[:, None]
    h = h[:, None]
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return (h00 * points[seg] + h10 * h * tangents[seg] + h01 * points[seg + 1]
            + h11 * h * tangents[seg + 1])


class _PlanBuilder:
    """Appends motions of the tip (through via points, min-jerk in time) and gripper changes,
    solving IK sample by sample from the previous joints."""

    def __init__(self, q_start: np.ndarray):
        self.q = np.asarray(q_start, float).copy()
        self.samples = [self.q.copy()]
        pose = robot.tip_transform(self.q)
        self.tip, self.pitch = pose[:3, 3].copy(), float(ik.tip_pitch(self.q))

    def move(self, vias, pitch: float, duration: float, gripper: float | None = None) -> None:
        points = np.vstack([self.tip[None], np.atleast_2d(vias)])
        n = max(1, int(round(duration * RATE_HZ)))
        s = _min_jerk(np.arange(1, n + 1) / n)
        length = np.linalg.norm(np.diff(points, axis=0), axis=1).sum()
        tips = _spline(points, s * length)
        pitches = self.pitch + s * (pitch - self.pitch)
        path = ik.solve_path(tips, pitches, self.q)
        g0 = self.q[5]
        path[:, 5] = g0 if gripper is None else g0 + s * (gripper - g0)
        self.samples.extend(path)
        self.q, self.tip, self.pitch = path[-1].copy(), tips[-1].copy(), float(pitch)

    def hold(self, duration: float, gripper: float | None = None) -> None:
        self.move(self.tip, self.pitch, duration, gripper)

    def plan(self, mode: str) -> ExpertPlan:
        positions = np.array(self.samples)
        return ExpertPlan(np.arange(len(positions)) / RATE_HZ, positions, mode)


def _reach_around(task: TaskInstance, mode: str, rng: np.random.Generator) -> ExpertPlan:
    side = 1.0 if mode == "left" else -1.0  # +y is the robot's left
    ox, oy = task.obstacle[:2]
    hx, hy, _ = OBSTACLE_HALF
    clear = hy + rng.uniform(0.085, 0.1)
    z = rng.uniform(0.065, 0.085)
    # Swing out sideways first: the jaws reach below and ahead of the tip, and a diagonal line
    # from the start would clip the post's front corner with them.
    aside = [ox - hx - rng.uniform(0.04, 0.05), oy + side * clear * rng.uniform(0.7, 0.8), z]
    beside = [ox - rng.uniform(0.01, 0.02), oy + side * clear, z]
    behind = [ox + hx + rng.uniform(0.045, 0.055), oy + side * clear * rng.uniform(0.5, 0.6),
              z + 0.01]
    b = _PlanBuilder(task.q_start)
    b.move([aside, beside, behind, task.target], rng.uniform(1.0, 1.1), rng.uniform(2.6, 3.2))
    b.hold(0.6)
    return b.plan(mode)


def _pick_place(task: TaskInstance, mode: str, rng: np.random.Generator) -> ExpertPlan:
    radial = task.cube[:2] / np.linalg.norm(task.cube[:2])
    grasp = task.cube + [0.0, 0.0, 0.004]
    if mode == "top":
        pitch = np.pi / 2 - rng.uniform(0.0, 0.08)
        pre = grasp + [0.0, 0.0, rng.uniform(0.035, 0.045)]
    else:
        pitch = rng.uniform(0.75, 0.9)
        back = rng.uniform(0.035, 0.045)
        pre = grasp + back * np.array([-np.cos(pitch) * radial[0], -np.cos(pitch) * radial[1],
                                       np.sin(pitch)])
    lift = grasp + [0.0, 0.0, rng.uniform(0.07, 0.08)]
    drop = task.bin + [0.0, 0.0, rng.uniform(0.10, 0.12)]
    b = _PlanBuilder(task.q_start)
    b.move([pre], pitch, rng.uniform(1.4, 1.7), gripper=GRIPPER_OPEN)
    b.move([grasp], pitch, rng.uniform(0.7, 0.9))
    b.hold(0.5, gripper=GRIPPER_CLOSED)
    b.hold(0.2)
    b.move([lift], min(pitch, 1.25), rng.uniform(0.7, 0.9))  # tilts up: wrist_flex limit
    b.move([drop], rng.uniform(1.0, 1.2), rng.uniform(1.4, 1.7))
    b.hold(0.4, gripper=GRIPPER_OPEN)
    b.hold(0.6)
    return b.plan(mode)


def expert(task: TaskInstance, mode: str | None = None,
           rng: np.random.Generator | None = None) -> ExpertPlan:
    """A scripted demonstration for `task` in `mode` (None: drawn 50/50 from rng).

    rng also varies timing, clearances and heights, so repeated demonstrations differ a little
    within a mode and a lot between modes.
    """
    rng = np.random.default_rng(task.seed) if rng is None else rng
    modes = MODES[task.name]
    mode = modes[int(rng.integers(len(modes)))] if mode is None else mode
    if mode not in modes:
        raise ValueError(f"{task.name} modes are {modes}, not {mode!r}")
    build = _reach_around if task.name == REACH_AROUND else _pick_place
    return build(task, mode, rng)


# ----------------------------------------------------------------------------- evaluation


def success(sim: ArmSim) -> bool:
    """reach_around: tip within REACH_TOLERANCE of the target and no obstacle contact since
    reset. pick_place: cube resting inside the bin."""
    task = sim.task
    if task is None:
        return False
    if task.name == REACH_AROUND:
        near = np.linalg.norm(sim.ee_position() - task.target) < REACH_TOLERANCE
        return bool(near and not sim.collided)
    offset = sim.cube_position() - task.bin
    return bool(np.all(np.abs(offset[:2]) < BIN_INNER_HALF)
                and offset[2] < BIN_WALL_HEIGHT)


def mode_switched(task: TaskInstance, path: np.ndarray, margin: float = 0.01) -> bool:
    """reach_around: did the tip, near the post, stand clearly on one side of it (beyond its
    half width + margin) and later clearly on the other? A policy that commits to a way round
    and then changes its mind mid-episode; always False for other tasks."""
    if task.name != REACH_AROUND or len(path) == 0:
        return False
    path = np.asarray(path, float)
    tips = robot.forward_kinematics(path) if path.shape[-1] == 6 else path
    near = np.abs(tips[:, 0] - task.obstacle[0]) < OBSTACLE_HALF[0] + 0.05
    lateral = tips[near, 1] - task.obstacle[1]
    sides = np.sign(lateral[np.abs(lateral) > OBSTACLE_HALF[1] + margin])
    return bool(len(sides) and np.any(sides != sides[0]))


def mode_of(task: TaskInstance, path: np.ndarray) -> str:
    """Which way a path went: joint positions (T, 6), or tip positions (T, 3) for reach_around.

    reach_around: "left"/"right" by the tip's mean side of the post while beside it, "through"
    if it stays within the post's width, "none" if it never gets there.
    pick_place: "top" if the gripper points within ~25 degrees of straight down at the path's
    lowest tip point (the grasp), else "front".
    """
    path = np.asarray(path, float)
    if task.name == REACH_AROUND:
        tips = robot.forward_kinematics(path) if path.shape[-1] == 6 else path
        beside = np.abs(tips[:, 0] - task.obstacle[0]) < OBSTACLE_HALF[0] + 0.02
        if not beside.any():
            return "none"
        lateral = float(np.mean(tips[beside, 1] - task.obstacle[1]))
        if abs(lateral) < OBSTACLE_HALF[1]:
            return "through"
        return "left" if lateral > 0 else "right"
    if path.shape[-1] != 6:
        raise ValueError("pick_place mode_of needs joint positions (T, 6)")
    lowest = int(np.argmin(robot.forward_kinematics(path)[:, 2]))
    return "top" if ik.tip_pitch(path[lowest]) > 1.13 else "front"
