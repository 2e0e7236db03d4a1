"""teleop: the follower side of a leader/follower SO-101. /leader/joint_states in, short joint
trajectories toward the leader's pose out to the arm's ros2_control controllers.

Each leader message becomes one single-point trajectory per controller (arm joints, gripper),
joints matched by name, reaching the leader's pose after lead_time_s (longer when that would
exceed the joints' velocity limits), stamped zero so the controller starts it on receipt and it
replaces the previous one. Messages with NaN or inf, or without every joint of a controller,
are refused with a (throttled) warning; positions are clamped to the joint limits. When the
leader falls silent the last trajectory ends and the follower holds there.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from genpol import robot
from genpol.nodes.messages import duration_msg, trajectory_msg
from genpol.nodes.runner import run_node

CONTROLLERS = {"arm": robot.ARM_JOINTS, "gripper": (robot.GRIPPER_JOINT,)}


def follow_command(names, positions, last, lead_time_s: float,
                   ) -> tuple[dict[str, np.ndarray], float, list[str]]:
    """({controller: positions}, duration, problems) for one leader message.

    last: {joint: last commanded position} (for the velocity limit). A controller whose joints
    are not all present, or whose values are not finite, is left out with a problem named."""
    by_name = dict(zip(names, positions))
    lower, upper = robot.lower_limits(), robot.upper_limits()
    vmax = robot.velocity_limits()
    out, problems, duration = {}, [], float(lead_time_s)
    for controller, joints in CONTROLLERS.items():
        missing = [j for j in joints if j not in by_name]
        if missing:
            problems.append(f"{controller}: joints {missing} missing")
            continue
        q = np.array([by_name[j] for j in joints], dtype=float)
        if not np.all(np.isfinite(q)):
            problems.append(f"{controller}: non-finite positions {q.tolist()}")
            continue
        idx = [robot.JOINT_NAMES.index(j) for j in joints]
        q = np.clip(q, lower[idx], upper[idx])
        prev = np.array([last.get(j, np.nan) for j in joints])
        ratio = np.abs(q - prev) / vmax[idx]  # seconds each joint needs at its limit
        ratio = ratio[np.isfinite(ratio)]
        if len(ratio):
            duration = max(duration, float(np.max(ratio)))
        out[controller] = q
    return out, duration, problems


class TeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__("teleop", **kwargs)
        defaults = {"leader_topic": "/leader/joint_states",
                    "arm_topic": "/arm_controller/joint_trajectory",
                    "gripper_topic": "/gripper_controller/joint_trajectory",
                    "lead_time_s": 0.05}
        for name, default in defaults.items():
            self.declare_parameter(name, default)
        get = lambda n: self.get_parameter(n).value  # noqa: E731
        self.lead_time_s = float(get("lead_time_s"))
        if self.lead_time_s <= 0:
            raise ValueError("teleop: lead_time_s must be > 0")
        self.pubs = {"arm": self.create_publisher(JointTrajectory, get("arm_topic"), 10),
                     "gripper": self.create_publisher(JointTrajectory, get("gripper_topic"), 10)}
        self.create_subscription(JointState, get("leader_topic"), self._on_leader, 10)
        self.last: dict[str, float] = {}
        self.forwarded = 0
        self.refused = 0
        self.get_logger().info(f"teleop: following {get('leader_topic')} "
                               f"({self.lead_time_s * 1e3:.0f} ms lead)")

    def _on_leader(self, msg: JointState) -> None:
        if len(msg.name) != len(msg.position):
            self.refused += 1
            self.get_logger().warning("leader message with names and positions of different "
                                      "lengths refused", throttle_duration_sec=2.0)
            return
        commands, duration, problems = follow_command(list(msg.name), list(msg.position),
                                                      self.last, self.lead_time_s)
        if problems:
            self.refused += 1
            self.get_logger().warning(f"leader message refused in part: {'; '.join(problems)}",
                                      throttle_duration_sec=2.0)
        for controller, q in commands.items():
            joints = CONTROLLERS[controller]
            self.pubs[controller].publish(
                trajectory_msg(joints, [duration_msg(duration)], q[None]))
            self.last.update(zip(joints, q.tolist()))
        if commands:
            self.forwarded += 1


def main(args=None) -> None:
    run_node(TeleopNode, args)


if __name__ == "__main__":
    main()
