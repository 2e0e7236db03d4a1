"""Conversions between ROS message fields and plain Python numbers, shared by the nodes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint


def stamp_s(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def time_msg(seconds: float) -> Time:
    sec = int(np.floor(seconds))
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def duration_s(d: Duration) -> float:
    return d.sec + d.nanosec * 1e-9


def duration_msg(seconds: float) -> Duration:
    sec = int(np.floor(seconds))
    return Duration(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def trajectory_msg(joint_names: Sequence[str], durations: Sequence[Duration],
                   positions: np.ndarray, stamp: Time | None = None) -> JointTrajectory:
    msg = JointTrajectory()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.joint_names = list(joint_names)
    msg.points = [JointTrajectoryPoint(positions=[float(v) for v in row], time_from_start=d)
                  for row, d in zip(positions, durations)]
    return msg
