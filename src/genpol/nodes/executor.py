"""executor: action chunks in, 50 Hz joint trajectories out to the ros2_control controllers.

All math lives in genpol.control (numpy); this node only translates messages and keeps time.
"""

from __future__ import annotations

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from genpol import robot
from genpol.control import ChunkExecutor, ExecutorConfig
from genpol.nodes.messages import duration_msg, duration_s, stamp_s, trajectory_msg
from genpol.nodes.runner import run_node


class ExecutorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("executor", **kwargs)
        p = {
            "rate_hz": 50.0, "mode": "ensemble", "ensemble_m": 0.01, "max_chunk_age_s": 1.0,
            "lookahead_points": 5, "velocity_scale": 1.0,
            "chunk_topic": "/genpol/action_chunk", "state_topic": "/joint_states",
            "arm_topic": "/arm_controller/joint_trajectory",
            "gripper_topic": "/gripper_controller/joint_trajectory",
        }
        for name, default in p.items():
            self.declare_parameter(name, default)
        get = lambda n: self.get_parameter(n).value  # noqa: E731
        self.config = ExecutorConfig(
            rate_hz=float(get("rate_hz")), mode=get("mode"), ensemble_m=float(get("ensemble_m")),
            max_chunk_age_s=float(get("max_chunk_age_s")),
            lookahead_points=int(get("lookahead_points")),
            velocity_scale=float(get("velocity_scale")))
        self.core = ChunkExecutor(self.config)
        self.arm_pub = self.create_publisher(JointTrajectory, get("arm_topic"), 10)
        self.gripper_pub = self.create_publisher(JointTrajectory, get("gripper_topic"), 10)
        self.create_subscription(JointTrajectory, get("chunk_topic"), self._on_chunk, 10)
        self.create_subscription(JointState, get("state_topic"), self._on_state, 10)
        self.arm_idx = [self.config.joint_names.index(j) for j in robot.ARM_JOINTS]
        self.grip_idx = [self.config.joint_names.index(robot.GRIPPER_JOINT)]
        self.timer = self.create_timer(1.0 / self.config.rate_hz, self._tick)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.ticks = 0
        self.get_logger().info(
            f"executor: {self.config.mode} at {self.config.rate_hz:g} Hz, "
            f"{self.config.lookahead_points} points per command")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_reset(self, request, response):
        """A new episode: forget chunks and commands, hold where the arm is measured next."""
        self.core.reset(self._now())
        response.success, response.message = True, "executor reset: holding the next measured state"
        return response

    def _on_state(self, msg: JointState) -> None:
        if msg.name and len(msg.position) == len(msg.name):
            self.core.set_measured(np.asarray(msg.position, dtype=float), list(msg.name))

    def _on_chunk(self, msg: JointTrajectory) -> None:
        if not msg.points:
            self.get_logger().warning("dropped an empty action chunk")
            return
        times = np.array([duration_s(p.time_from_start) for p in msg.points])
        try:
            positions = np.array([p.positions for p in msg.points], dtype=float)
        except ValueError:
            self.get_logger().warning("dropped a chunk whose points differ in length")
            return
        result = self.core.add_chunk(stamp_s(msg.header.stamp), list(msg.joint_names), times,
                                     positions)
        if not result.accepted:
            self.get_logger().warning(f"dropped action chunk: {result.reason}")
        for w in result.warnings:
            self.get_logger().warning(w, throttle_duration_sec=1.0)

    def _tick(self) -> None:
        cmd = self.core.tick(self._now())
        self.ticks += 1
        for w in cmd.warnings:
            self.get_logger().warning(w, throttle_duration_sec=1.0)
        if len(cmd.positions) == 0:
            return  # nothing measured or commanded yet: publish nothing rather than guess
        durations = [duration_msg(t) for t in cmd.times]
        # stamp 0: the controller starts the trajectory on receipt, replacing the old one.
        self.arm_pub.publish(trajectory_msg(robot.ARM_JOINTS, durations,
                                            cmd.positions[:, self.arm_idx]))
        self.gripper_pub.publish(trajectory_msg((robot.GRIPPER_JOINT,), durations,
                                                cmd.positions[:, self.grip_idx]))


def main(args=None) -> None:
    run_node(ExecutorNode, args)


if __name__ == "__main__":
    main()
