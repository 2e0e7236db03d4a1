"""Conversions between ROS message fields and plain Python numbers, shared by the nodes."""

from __future__ import annotations

import array
import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from genpol.camera.image import to_image_fields

# Reliable publishers match both reliable and best-effort subscribers (the reverse is not true);
# depth 1 because only the newest frame matters. Subscribers that want the latest frame with no
# retransmission waits should use rclpy.qos.qos_profile_sensor_data.
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       history=HistoryPolicy.KEEP_LAST)


def stamp_s(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _sec_nanosec(seconds: float) -> tuple[int, int]:
    """(sec, nanosec) through integer nanoseconds: a fraction that rounds up to a whole second
    carries into sec (12.9999999998 is 13 s 0 ns, not 12 s 0 ns)."""
    sec = math.floor(seconds)
    # Only the fraction is scaled: seconds * 1e9 of an epoch time would lose precision.
    return divmod(sec * 1_000_000_000 + round((seconds - sec) * 1e9), 1_000_000_000)


def time_msg(seconds: float) -> Time:
    sec, nanosec = _sec_nanosec(seconds)
    return Time(sec=sec, nanosec=nanosec)


def duration_s(d: Duration) -> float:
    return d.sec + d.nanosec * 1e-9


def duration_msg(seconds: float) -> Duration:
    sec, nanosec = _sec_nanosec(seconds)
    return Duration(sec=sec, nanosec=nanosec)


def trajectory_msg(joint_names: Sequence[str], durations: Sequence[Duration],
                   positions: np.ndarray, stamp: Time | None = None) -> JointTrajectory:
    msg = JointTrajectory()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.joint_names = list(joint_names)
    msg.points = [JointTrajectoryPoint(positions=[float(v) for v in row], time_from_start=d)
                  for row, d in zip(positions, durations, strict=True)]
    return msg


def image_msgs(rgb: np.ndarray, header: Header, info_fields: dict) -> tuple[Image, CameraInfo]:
    """An rgb8 Image and its CameraInfo, sharing one header."""
    fields = to_image_fields(rgb, "rgb8")
    img = Image(height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                is_bigendian=fields["is_bigendian"], step=fields["step"], header=header)
    img.data = array.array("B", fields["data"])  # a bytes value is checked per element: slow
    info = CameraInfo(**info_fields)
    info.header = header
    return img, info
