"""Shared fixtures. ROS tests run real rclpy over DDS, isolated from other runs on this machine.

`ros_env` (session): genpol.rosenv's private network (a random ROS_DOMAIN_ID for this pytest
run, LOCALHOST discovery, a private ROS_LOG_DIR), set in os.environ before any rclpy.init so
in-process nodes and child processes (`ros2 launch`, `genpol bringup`) alike see it. `ros` (per
test): rclpy initialised on the default context and shut down after. Helpers for spinning and
collecting topics are in ros_helpers.py. `reach_policy` (session): a small flow policy trained on
scripted reach_around demonstrations, for the closed-loop tests. `frame_cache` (session, always):
decoded video frames are cached in a directory of the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


@pytest.fixture(scope="session", autouse=True)
def frame_cache(tmp_path_factory):
    """Decoded video frames go to a directory of this run, not the user's ~/.cache."""
    old = os.environ.get("GENPOL_CACHE_DIR")
    os.environ["GENPOL_CACHE_DIR"] = str(tmp_path_factory.mktemp("frame_cache"))
    yield os.environ["GENPOL_CACHE_DIR"]
    if old is None:
        os.environ.pop("GENPOL_CACHE_DIR", None)
    else:
        os.environ["GENPOL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def ros_env(tmp_path_factory):
    pytest.importorskip("rclpy", reason="rclpy not installed (make setup adds the ROS 2 wheels)")
    from genpol.rosenv import isolated

    with isolated(tmp_path_factory.mktemp("ros_log")) as env:
        yield env


@pytest.fixture
def ros(ros_env):
    import rclpy

    rclpy.init()
    try:
        yield ros_env
    finally:
        rclpy.try_shutdown()


@dataclass(frozen=True)
class ReachPolicy:
    path: str          # checkpoint directory
    scene_seed: int    # the one object layout it was trained on (sim_arm's scene_seed)
    seeds: tuple       # the start poses it saw (sim_arm's seed / tasks.sample's seed)


@pytest.fixture(scope="session")
def reach_policy(tmp_path_factory) -> ReachPolicy:
    """A small flow policy for reach_around: scripted demonstrations (both modes, equal shares)
    from a few start poses in one fixed scene, trained once per test session and shared by the
    closed-loop tests (test_bringup, test_eval). The policy sees joint states only, so it learns
    that one layout; launch the graph with scene_seed:=0 and seeds in `seeds`."""
    import torch

    from genpol import presets
    from genpol.sim import tasks
    from genpol.sim.demos import scripted_chunks
    from genpol.train import TrainConfig, config_for_data, train

    seeds, scene_seed = (0, 1, 2, 3), 0
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = scripted_chunks(tasks.REACH_AROUND, seeds=seeds, demos_per_seed=6,
                               scene_seed=scene_seed)
        config = config_for_data("flow", data, **presets.policy("flow"))
        out = tmp_path_factory.mktemp("policy") / "reach_flow"
        train(config, data, TrainConfig(steps=2000, device="cpu", progress=False,
                                        **presets.train("flow")), out_dir=out)
    finally:
        torch.set_num_threads(threads)
    return ReachPolicy(str(out), scene_seed, seeds)
