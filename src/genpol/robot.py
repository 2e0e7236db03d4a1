"""The SO-ARM101, defined once: joint names and limits used by every other part of genpol.

Units follow ROS: radians and radians per second. The gripper joint is the moving jaw's angle
(0 = closed). Limits follow the public SO-101 description; velocity limits are conservative
for the Feetech STS3215 servos (about 0.22 s per 60 degrees at 7.4 V, i.e. ~4.7 rad/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointLimit:
    name: str
    lower: float  # rad
    upper: float  # rad
    max_velocity: float  # rad/s
    max_effort: float  # N m


JOINTS: tuple[JointLimit, ...] = (
    JointLimit("shoulder_pan", -1.91986, 1.91986, 3.0, 2.9),
    JointLimit("shoulder_lift", -1.74533, 1.74533, 3.0, 2.9),
    JointLimit("elbow_flex", -1.69, 1.69, 3.0, 2.9),
    JointLimit("wrist_flex", -1.65806, 1.65806, 3.0, 2.9),
    JointLimit("wrist_roll", -2.74385, 2.84121, 3.0, 2.9),
    JointLimit("gripper", -0.17453, 1.74533, 3.0, 2.9),
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)
ARM_JOINTS: tuple[str, ...] = JOINT_NAMES[:5]
GRIPPER_JOINT = "gripper"


def lower_limits() -> np.ndarray:
    return np.array([j.lower for j in JOINTS])


def upper_limits() -> np.ndarray:
    return np.array([j.upper for j in JOINTS])


def velocity_limits() -> np.ndarray:
    return np.array([j.max_velocity for j in JOINTS])
