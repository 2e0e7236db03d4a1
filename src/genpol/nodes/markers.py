"""Sampled chunks as RViz markers: one end-effector path per sample, the executed one highlighted,
so a person sees which modes the policy is choosing between."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from genpol import robot

NAMESPACE = "genpol_chunks"


def chunk_markers(chunks: np.ndarray, joint_names: Sequence[str], frame_id: str,
                  stamp: Time) -> MarkerArray:
    """chunks (N, H, A) in `joint_names` order -> N LINE_STRIPs; sample 0 is the executed one."""
    order = [list(joint_names).index(j) for j in robot.JOINT_NAMES]
    paths = robot.forward_kinematics(chunks[..., order])  # (N, H, 3)
    out = MarkerArray()
    clear = Marker(action=Marker.DELETEALL, ns=NAMESPACE)
    clear.header.frame_id = frame_id
    out.markers.append(clear)
    n = len(paths)
    for i, path in enumerate(paths):
        m = Marker(type=Marker.LINE_STRIP, action=Marker.ADD, ns=NAMESPACE, id=i)
        m.header.frame_id, m.header.stamp = frame_id, stamp
        m.pose.orientation.w = 1.0
        m.lifetime = Duration(sec=1)
        executed = i == 0
        m.scale.x = 0.006 if executed else 0.003
        if executed:
            m.color = ColorRGBA(r=0.1, g=1.0, b=0.2, a=1.0)
        else:
            r, g, b = colorsys.hsv_to_rgb((i / max(n, 2)) % 1.0, 0.7, 1.0)
            m.color = ColorRGBA(r=r, g=g, b=b, a=0.6)
        m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in path]
        out.markers.append(m)
    return out


EXECUTED_NAMESPACE = "genpol_executed"


def executed_path_marker(positions: np.ndarray, joint_names: Sequence[str], frame_id: str,
                         stamp: Time) -> Marker:
    """The commanded joint positions (T, A), oldest first, as one white end-effector path: what
    the arm was actually told to do, beside the chunks it was choosing from."""
    order = [list(joint_names).index(j) for j in robot.JOINT_NAMES]
    path = robot.forward_kinematics(np.asarray(positions, float)[:, order])
    m = Marker(type=Marker.LINE_STRIP, action=Marker.ADD, ns=EXECUTED_NAMESPACE, id=0)
    m.header.frame_id, m.header.stamp = frame_id, stamp
    m.pose.orientation.w = 1.0
    m.scale.x = 0.004
    m.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=0.9)
    m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in path]
    return m
