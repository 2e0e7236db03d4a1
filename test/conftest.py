"""Shared fixtures. ROS tests run real rclpy over DDS, isolated from other runs on this machine.

`ros_env` (session): a random ROS_DOMAIN_ID for this pytest run, LOCALHOST discovery and a private
ROS_LOG_DIR, set in os.environ before any rclpy.init so in-process nodes and child processes
(`ros2 launch`, `genpol bringup`) alike see it. `ros` (per test): rclpy initialised on the default
context and shut down after. Helpers for spinning and collecting topics are in ros_helpers.py.
"""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture(scope="session")
def ros_env(tmp_path_factory):
    pytest.importorskip("rclpy", reason="rclpy not installed (make setup adds the ROS 2 wheels)")
    keys = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_LOG_DIR")
    saved = {k: os.environ.get(k) for k in keys}
    # 1..100: Fast DDS's ports for these stay below Linux's ephemeral range.
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; it would override the range
    os.environ["ROS_LOG_DIR"] = str(tmp_path_factory.mktemp("ros_log"))
    yield {k: os.environ.get(k) for k in saved}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def ros(ros_env):
    import rclpy

    rclpy.init()
    try:
        yield ros_env
    finally:
        rclpy.try_shutdown()
