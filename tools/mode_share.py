"""Which way a reach_around policy's first chunk goes, offline: the share of sampled chunks
that end right of the post, at start poses of a recording and of an evaluation.

    .venv/bin/python tools/mode_share.py POLICY [--samples 32] [--settle-s 0.1 0.7] [--each 5]

The demo records every start pose once each way, so a policy that learned the data splits 50/50
at each of them; README "The demo" has the figures this measured. A policy that reads cameras
is measured on config/demo_vision.yaml's layouts (one per start pose, as that demo draws them),
its cameras rendered by the simulator at the policy's image size. The joints are read from the
simulator `--settle-s` after the reset, as the planner's first observation would be (the
commanded start pose is never one: the arm sags and the idle gripper creeps from it), once per
settle time given: a policy whose split moves with it reads a cue that the time of its first
plan sets.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from genpol import robot
from genpol.jobs.demo import load_preset
from genpol.planning import vet_policy
from genpol.sim import tasks
from genpol.sim.arm import ArmSim


def start_seeds(preset: dict, each: int = 5) -> list[int]:
    """The first `each` start poses of the preset's recordings, then of its evaluation (sim_arm
    starts episode i from pose seed + 1 + i, a recorded pose for `episodes_per_start` episodes)."""
    return [preset["record"]["seed"] + 1 + i for i in range(each)] + \
        [preset["eval"]["seed"] + 1 + i for i in range(each)]


def right_share(policy, sim: ArmSim, seed: int, preset: dict, samples: int,
                settle_s: float) -> tuple[float, float]:
    """(share of samples ending right of the post, share going through it)"""
    inst = sim.reset(seed, tasks.REACH_AROUND, preset["scene_seed"],
                     preset.get("scene_spread", 1.0))
    sim.step(settle_s)
    names = list(policy.config.joint_names)
    q = sim.joint_positions()[[robot.JOINT_NAMES.index(j) for j in names]]
    _, height, width = policy.config.image_shape
    images = {cam: sim.render(cam, width, height) for cam in policy.config.cameras}
    chunks = policy.predict_chunks(q, images or None, num_samples=samples, seed=seed)
    tips = robot.forward_kinematics(chunks[..., [names.index(j) for j in robot.JOINT_NAMES]])
    through = np.mean([tasks.mode_of(inst, path) == "through" for path in tips])
    return float(np.mean(tips[:, -1, 1] < inst.obstacle[1])), float(through)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--settle-s", type=float, nargs="+", default=[0.1],
                    help="seconds from the reset to the observation (several: one line each)")
    ap.add_argument("--each", type=int, default=5,
                    help="start poses of the recordings, and as many of the evaluation")
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = vet_policy(args.policy)
    # config/demo.yaml or demo_vision.yaml: the layouts and start poses
    preset = load_preset(vision=bool(policy.config.cameras))
    starts = start_seeds(preset, args.each)
    with ArmSim() as sim:
        for settle in args.settle_s:
            rows = [right_share(policy, sim, s, preset, args.samples, settle) for s in starts]
            shares, through = (np.array(c) for c in zip(*rows, strict=True))
            print(" ".join(f"{s}:{v:.2f}" for s, v in zip(starts, shares, strict=True)))
            print(f"{args.policy}: first chunks going right {np.mean(shares):.2f}, through "
                  f"the post {np.mean(through):.2f} "
                  f"({args.samples} samples at each of {len(starts)} start poses, observed "
                  f"{settle:g} s after the reset)")


if __name__ == "__main__":
    main()
