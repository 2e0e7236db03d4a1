"""Scripted demonstrations as training data: the experts of tasks.py played out in the simulator.

Each demonstration is rolled out in ArmSim (so the states are what the servos really reached,
lagging the set points as a real arm's do) and cut into (state, action chunk) samples at the
policy's fps: state = the measured joint positions at t, action[k] = the expert's set point at
t + k/fps, which is how the planner labels a chunk (point k at k/fps after the observation).
Images are rendered only when cameras are asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genpol import robot
from genpol.data.arrays import ChunkData
from genpol.sim import tasks
from genpol.sim.arm import ArmSim


def scripted_chunks(task: str = tasks.REACH_AROUND, seeds: Sequence[int] = (0,),
                    demos_per_seed: int = 10, horizon: int = 16, fps: float = 10.0,
                    cameras: Sequence[str] = (), image_size: tuple[int, int] = (96, 96),
                    settle_s: float = 1.0, rng_seed: int = 0,
                    scene_seed: int | None = None) -> ChunkData:
    """Samples from demos_per_seed expert demonstrations on each scene seed, the modes taking
    turns (equal shares, so a policy's mode balance reflects learning, not the draw).

    settle_s: extra time after the plan ends, sampled too, so a policy learns to stay put.
    scene_seed: one object layout for every seed (see tasks.sample); seeds then vary the start.
    """
    if demos_per_seed <= 0 or not len(seeds):
        raise ValueError("need at least one seed and one demonstration per seed")
    rng = np.random.default_rng(rng_seed)
    states: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    images: dict[str, list[np.ndarray]] = {cam: [] for cam in cameras}
    frame_steps: list[int] = []  # each sample's step in its demonstration
    with ArmSim() as sim:
        for seed in seeds:
            for i in range(demos_per_seed):
                inst = sim.reset(int(seed), task, scene_seed)
                modes = tasks.MODES[task]
                plan = tasks.expert(inst, modes[i % len(modes)], rng=rng)
                t0 = sim.time

                def targets(t: float, plan=plan, t0=t0) -> np.ndarray:
                    return plan(t - t0)
                for step, t in enumerate(np.arange(0.0, plan.duration + settle_s, 1.0 / fps)):
                    frame_steps.append(step)
                    if t > 0:
                        sim.step(t0 + t - sim.time, targets=targets)
                    states.append(sim.joint_positions())
                    actions.append(np.stack([plan(t + k / fps) for k in range(horizon)]))
                    for cam in cameras:
                        images[cam].append(sim.render(cam, *image_size))
    return ChunkData(np.array(states), np.array(actions),
                     {cam: np.stack(frames) for cam, frames in images.items()},
                     list(robot.JOINT_NAMES), fps, frame_index=np.array(frame_steps))
