"""sim_arm: the MuJoCo SO-101 standing in for the arm, its ros2_control joint_trajectory
controllers and its cameras.

Trajectories in (the controllers' topic interface), /joint_states and camera frames out; ~/reset
starts the next episode and ~/push shoves the arm off its path (push_offset_rad). Physics
runs in wall-clock time: each state tick advances the simulation by the time since the last one.
Everything runs on one thread, because the OpenGL context that renders the cameras belongs to
the thread that created it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from genpol import robot, topics
from genpol.camera.image import camera_info_fields, camera_info_topic
from genpol.nodes import params
from genpol.nodes.messages import IMAGE_QOS, duration_s, image_msgs, stamp_s
from genpol.nodes.spin import run_node
from genpol.parameters import SIM_ARM
from genpol.sim import gl, scene, tasks  # noqa: F401  (gl first: it picks MuJoCo's backend)
from genpol.sim.arm import ArmSim
from genpol.sim.trajectory import TrajectoryFollower

#: camera name in the scene -> image topic (and its camera_info beside it)
CAMERA_TOPICS = {scene.FRONT_CAMERA: topics.CAMERA_IMAGE,
                 scene.WRIST_CAMERA: topics.WRIST_CAMERA_IMAGE}
#: the most physics one tick may catch up: beyond this the sim slows down rather than stalls
MAX_STEP_S = 0.05


class SimArmNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_arm", **kwargs)
        params.declare(self, SIM_ARM, check=_check_param)
        p = params.values(self, SIM_ARM)
        self.task_name = p["task"]
        self.seed = p["seed"]
        self.scene_seed = p["scene_seed"]  # -1: each episode draws its own layout
        self.scene_spread = p["scene_spread"]
        # > 1: consecutive episodes share a start pose, so demonstrations can show each mode
        # from the same state (what makes p(action | state) multimodal in the data)
        self.episodes_per_start = p["episodes_per_start"]
        self.size = (p["camera_width"], p["camera_height"])
        # A reset teleports the arm, but the command stream (the executor) learns of it only
        # after its own reset, a few ms later: what it sends meanwhile was computed for the old
        # episode and would yank the arm off its new start. For reset_guard_s after a reset, a
        # trajectory whose first point is more than reset_guard_rad from the start pose is
        # ignored; the first one that starts near it (or the end of the guard) ends the guard.
        self.reset_guard_s = p["reset_guard_s"]
        self.reset_guard_rad = p["reset_guard_rad"]
        self._guard_until: dict[str, float] = {}
        self.ignored_after_reset = 0
        self.push_offset = np.array(p["push_offset_rad"], dtype=float)
        self.pushes = 0  # this episode's ~/push calls, and the sim time of the last one
        self.pushed_at_s: float | None = None
        cameras = list(p["cameras"])

        self.sim = ArmSim()
        self.followers = {name: TrajectoryFollower(joints) for name, joints in
                          robot.CONTROLLERS.items()}
        self._columns = {name: [robot.JOINT_NAMES.index(j) for j in joints]
                         for name, joints in robot.CONTROLLERS.items()}
        self.episode = 0
        self._reset_scene()
        self.rejected = 0

        self.state_pub = self.create_publisher(JointState, topics.JOINT_STATES, 10)
        for name in robot.CONTROLLERS:
            self.create_subscription(JointTrajectory, topics.controller_command(name),
                                     functools.partial(self._on_trajectory, name), 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        # A disturbance for evaluations: the arm is shoved off its path and must be brought back.
        self.create_service(Trigger, "~/push", self._on_push)
        # Episode status for evaluation and recording: JSON, so tools need no custom message.
        self.status_pub = self.create_publisher(String, "~/episode", 10)
        self.create_timer(0.1, self._publish_status)

        self.cameras = {}
        camera_rate = p["camera_rate_hz"]
        if camera_rate > 0 and cameras:
            if gl.backend is None:
                self.get_logger().error(f"sim_arm: no camera frames: {gl.problem}")
            else:
                for cam in cameras:
                    fovy = float(self.sim.model.cam(cam).fovy[0])
                    topic = CAMERA_TOPICS[cam]
                    self.cameras[cam] = (
                        self.create_publisher(Image, topic, IMAGE_QOS),
                        self.create_publisher(CameraInfo, camera_info_topic(topic), IMAGE_QOS),
                        camera_info_fields(*self.size, fovy, vertical=True))
                for cam in self.cameras:  # GL contexts now, not in the first tick (~0.1 s)
                    self.sim.render(cam, *self.size)
                self.create_timer(1.0 / camera_rate, self._publish_frames)
        self._last_wall: float | None = None  # physics starts with the first tick
        self.create_timer(1.0 / p["joint_state_rate_hz"], self._tick)
        self.get_logger().info(
            f"sim_arm: {self.task_name} seed {self.seed}, physics at {1 / self.sim.timestep:g} Hz, "
            f"joint states at {p['joint_state_rate_hz']:g} Hz, cameras {list(self.cameras)} "
            f"at {camera_rate:g} Hz ({self.size[0]}x{self.size[1]}, {gl.backend})")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reset_scene(self) -> tasks.TaskInstance:
        start = -(-self.episode // self.episodes_per_start)  # episodes 1..n: seed + 1, ...
        inst = self.sim.reset(self.seed + start, self.task_name, self.scene_seed,
                              self.scene_spread)
        q = self.sim.joint_positions()
        for name, follower in self.followers.items():
            follower.reset(q[self._columns[name]])
        return inst

    def _on_reset(self, request, response):
        self.episode += 1
        inst = self._reset_scene()
        self._last_wall = None
        self.pushes, self.pushed_at_s = 0, None
        if self.reset_guard_s > 0:
            until = self._now() + self.reset_guard_s
            self._guard_until = dict.fromkeys(robot.CONTROLLERS, until)
        self._publish_status()
        response.success = True
        response.message = f"{self.task_name} episode {self.episode} (seed {inst.seed})"
        return response

    def _on_push(self, request, response):
        before = self.sim.joint_positions()
        moved = self.sim.push(self.push_offset)
        applied = self.sim.joint_positions() - before  # less than asked at a joint limit
        self.pushes += 1
        self.pushed_at_s = round(self.sim.time, 3)
        self._publish_status()
        joints = ", ".join(f"{name} {dq:+.3f}" for name, dq in
                           zip(robot.JOINT_NAMES, applied, strict=True) if abs(dq) > 1e-6)
        response.success = True
        response.message = (f"pushed at {self.pushed_at_s:.2f} s: tip moved {moved * 100:.1f} cm "
                            f"({joints or 'no joint moved'} rad)")
        self.get_logger().info(f"sim_arm: episode {self.episode} {response.message}")
        return response

    def _publish_status(self) -> None:
        inst = self.sim.task
        assert inst is not None  # the constructor resets the simulator into its first episode
        status = {"task": inst.name, "seed": inst.seed, "scene_seed": inst.scene_seed,
                  "scene_spread": inst.spread,
                  "episode": self.episode, "time_s": round(self.sim.time, 3),
                  "success": tasks.success(self.sim), "collided": self.sim.collided,
                  "target": inst.target.round(4).tolist(), "pushes": self.pushes,
                  "pushed_at_s": self.pushed_at_s}
        self.status_pub.publish(String(data=json.dumps(status)))

    def _on_trajectory(self, controller: str, msg: JointTrajectory) -> None:
        now = self._now()
        if self._guard_until and not self._guard_accepts(controller, msg, now):
            return
        start = stamp_s(msg.header.stamp) or now  # zero stamp: start on receipt, as JTC does
        try:
            times = [duration_s(p.time_from_start) for p in msg.points]
            positions = np.array([list(p.positions) for p in msg.points], dtype=float)
            ok, reason = self.followers[controller].set_trajectory(
                start, list(msg.joint_names), times, positions, now=now)
        except ValueError as exc:  # ragged points
            ok, reason = False, f"points differ in length ({exc})"
        if not ok:
            self.rejected += 1
            self.get_logger().warning(f"{controller}: trajectory rejected: {reason}",
                                      throttle_duration_sec=1.0)

    def _guard_accepts(self, controller: str, msg: JointTrajectory, now: float) -> bool:
        """False for a trajectory that was planned before the last reset (see reset_guard_s)."""
        until = self._guard_until.get(controller)
        if until is None:
            return True
        hold = dict(zip(self.followers[controller].joint_names,
                        self.sim.joint_positions()[self._columns[controller]], strict=True))
        # strict=False: a malformed message is the follower's to refuse, after this check
        first = (dict(zip(msg.joint_names, msg.points[0].positions, strict=False))
                 if msg.points else {})
        far = any(abs(v - hold[n]) > self.reset_guard_rad for n, v in first.items() if n in hold)
        if far and now < until:
            self.ignored_after_reset += 1
            return False
        del self._guard_until[controller]
        return True

    def _targets_at(self, wall0: float, sim0: float):
        def targets(t_sim: float) -> np.ndarray:
            now = wall0 + (t_sim - sim0)
            q = np.empty(len(robot.JOINT_NAMES))
            for name, follower in self.followers.items():
                q[self._columns[name]] = follower.target(now)
            return q
        return targets

    def _tick(self) -> None:
        wall = self._now()
        if self._last_wall is None:
            self._last_wall = wall
        elapsed = wall - self._last_wall
        if elapsed > MAX_STEP_S:
            self.get_logger().warning(f"sim_arm: {elapsed * 1e3:.0f} ms since the last step; "
                                      f"simulating {MAX_STEP_S * 1e3:.0f} ms of it",
                                      throttle_duration_sec=5.0)
            elapsed = MAX_STEP_S
        if elapsed >= self.sim.timestep / 2:
            self.sim.step(elapsed, targets=self._targets_at(wall - elapsed, self.sim.time))
            self._last_wall = wall
        msg = JointState(name=list(robot.JOINT_NAMES),
                         position=self.sim.joint_positions().tolist(),
                         velocity=self.sim.joint_velocities().tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.state_pub.publish(msg)

    def _publish_frames(self) -> None:
        stamp = self.get_clock().now().to_msg()
        for cam, (image_pub, info_pub, info_fields) in self.cameras.items():
            header = Header(stamp=stamp, frame_id=f"{cam}_camera")
            img, info = image_msgs(self.sim.render(cam, *self.size), header, info_fields)
            image_pub.publish(img)
            info_pub.publish(info)

    def close(self) -> None:
        self.sim.close()


def _check_param(p: Parameter) -> str:
    """push_offset_rad: one finite offset per joint (rclpy has checked it is a float list)."""
    if p.name != "push_offset_rad":
        return ""
    values = list(p.value)
    if len(values) != len(robot.JOINT_NAMES) or not np.all(np.isfinite(values)):
        return (f"push_offset_rad must be {len(robot.JOINT_NAMES)} finite values (rad, in the "
                f"order {list(robot.JOINT_NAMES)}), got {values}")
    return ""


def main(args=None) -> None:
    run_node(SimArmNode, args, threads=1)


if __name__ == "__main__":
    main()
