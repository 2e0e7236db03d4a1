"""teleop: the follower side of a leader/follower SO-101. /leader/joint_states in, short joint
trajectories toward the leader's pose out to the arm's ros2_control controllers.

Each leader message becomes one single-point trajectory per controller (arm joints, gripper),
joints matched by name, reaching the leader's pose after lead_time_s (longer when that would
exceed the joints' velocity limits), stamped zero so the controller starts it on receipt and it
replaces the previous one. Messages with NaN or inf, or without every joint of a controller,
are refused with a (throttled) warning; positions are clamped to the joint limits (the math is
genpol.control.teleop). When the leader falls silent the last trajectory ends and the follower
holds there.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from genpol import robot
from genpol.control.teleop import follow_command
from genpol.nodes import params
from genpol.nodes.messages import duration_msg, trajectory_msg
from genpol.nodes.spin import run_node
from genpol.parameters import TELEOP, controller_topic_param


class TeleopNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("teleop", **kwargs)
        params.declare(self, TELEOP)
        p = params.values(self, TELEOP)
        self.lead_time_s = p["lead_time_s"]
        self.pubs = {name: self.create_publisher(JointTrajectory,
                                                 p[controller_topic_param(name)], 10)
                     for name in robot.CONTROLLERS}
        self.create_subscription(JointState, p["leader_topic"], self._on_leader, 10)
        self.last: dict[str, float] = {}
        self.forwarded = 0
        self.refused = 0
        self.get_logger().info(f"teleop: following {p['leader_topic']} "
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
            joints = robot.CONTROLLERS[controller]
            self.pubs[controller].publish(
                trajectory_msg(joints, [duration_msg(duration)], q[None]))
            self.last.update(zip(joints, q.tolist(), strict=True))
        if commands:
            self.forwarded += 1


def main(args=None) -> None:
    run_node(TeleopNode, args)


if __name__ == "__main__":
    main()
