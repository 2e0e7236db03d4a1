"""A private ROS 2 network for one run: a random domain, LOCALHOST discovery, its own log folder.

Benchmarks and tests set it in os.environ before any rclpy.init, so in-process nodes and every
child process (node processes, `genpol bringup`) hear each other and nothing else on the machine.
No rclpy here: it only edits the environment.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_LOG_DIR")


@contextlib.contextmanager
def isolated(log_dir: str | Path) -> Iterator[dict[str, str | None]]:
    """Set the private network in os.environ for the block; yields the values set (by KEYS) and
    puts the previous ones back afterwards."""
    saved = {k: os.environ.get(k) for k in KEYS}
    # 1..100: Fast DDS's ports for these domains stay below Linux's ephemeral range.
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; it would override the range
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    os.environ["ROS_LOG_DIR"] = str(log_dir)
    try:
        yield {k: os.environ.get(k) for k in KEYS}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
