"""The evaluator's node: resets the graph through its Trigger services, pushes the arm once
per episode if asked (sim_arm's ~/push, at a sim time) and records what an episode produced
(sim_arm's episode status, joint states, camera frames).

`genpol eval` (genpol.jobs.eval) spins it in its client session (genpol.nodes.session), imported
only when an evaluation runs, so the rest of genpol.evaluation works without ROS.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import numpy as np
from rclpy.context import Context
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from genpol import robot, topics
from genpol.camera.image import from_image_fields
from genpol.nodes.markers import NAMESPACE as CHUNK_NAMESPACE
from genpol.nodes.messages import duration_s, stamp_s
from genpol.nodes.session import ClientNode

RESET_SERVICES = ("sim_arm", "executor", "planner")
PUSH_SERVICE = topics.service("sim_arm", "push")


@dataclass
class Recording:
    """What one episode produced, everything stamped at or after `t0` (ROS time, s)."""

    after_episode: int       # statuses of sim_arm episodes after this one belong to us
    t0: float = float("inf")
    record_frames: bool = False
    statuses: list[dict] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)  # (6,) in robot.JOINT_NAMES order
    frame_stamps: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    push_called: bool = False  # ~/push requested in this episode (once at most)
    push_reply: str = ""       # its answer, once it came
    push_error: str = ""       # why it failed, if it did
    # The executor's arm commands (receipt time, first point (5,)) and the planner's chunks
    # (receipt time, stamp, point times from the stamp): the commanded trajectory and its seams.
    commands: list[tuple[float, np.ndarray]] = field(default_factory=list)
    chunks: list[tuple[float, float, np.ndarray]] = field(default_factory=list)
    # While frames are recorded: the planner's sampled chunks as end-effector paths (receipt
    # time, [(H, 3) per sample, the executed one first]), what RViz draws from chunk_markers.
    chunk_paths: list[tuple[float, list[np.ndarray]]] = field(default_factory=list)
    # Every plan's markers: (receipt time, their stamp = the observation it was planned on).
    plans: list[tuple[float, float]] = field(default_factory=list)

    def joint_path(self) -> np.ndarray:
        return np.array(self.positions).reshape(-1, len(robot.JOINT_NAMES))


class EvalProbe(ClientNode):
    def __init__(self, context: Context, cameras: bool, push_at_s: float = 0.0):
        """push_at_s > 0: call sim_arm's ~/push once per episode, at the first episode status
        whose time_s reaches it (statuses come at 10 Hz: up to 0.1 s late; the status after
        the push gives its exact sim time)."""
        super().__init__("genpol_eval", context)
        self.push_at_s = push_at_s
        self._rec_lock = threading.Lock()
        self._rec: Recording | None = None
        self.latest_status: dict | None = None
        self.states_seen = 0
        self.frames_seen = 0
        self.create_subscription(String, topics.SIM_EPISODE, self._on_status, 10)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_state, 100)
        self.create_subscription(JointTrajectory, topics.ARM_COMMAND, self._on_command, 100)
        self.create_subscription(JointTrajectory, topics.ACTION_CHUNK, self._on_chunk, 10)
        if cameras:
            self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image,
                                     qos_profile_sensor_data)
        self.create_subscription(MarkerArray, topics.CHUNK_MARKERS, self._on_markers, 10)
        for name in RESET_SERVICES:
            self.service(Trigger, topics.service(name, "reset"))
        if push_at_s > 0:  # only then is the graph not ready without it
            self.service(Trigger, PUSH_SERVICE)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ---- callbacks ----------------------------------------------------------------------------
    def _on_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
        except ValueError:
            self.get_logger().warning(f"unreadable episode status: {msg.data[:80]!r}")
            return
        push = False
        with self._rec_lock:
            self.latest_status = status
            rec = self._rec
            if rec is not None and int(status.get("episode", -1)) > rec.after_episode:
                rec.statuses.append(status)
                push = (0 < self.push_at_s <= float(status.get("time_s", 0.0))
                        and not rec.push_called)
                rec.push_called |= push
        if push and rec is not None:
            # Asynchronously: this callback runs on the thread that would deliver the answer.
            future = self.service(Trigger, PUSH_SERVICE).call_async(Trigger.Request())
            future.add_done_callback(lambda f: self._on_pushed(rec, f))

    def _on_pushed(self, rec: Recording, future) -> None:
        result = future.result()
        with self._rec_lock:
            if result is not None and result.success:
                rec.push_reply = result.message
            else:
                rec.push_error = getattr(result, "message", "") or "no response"

    def _on_state(self, msg: JointState) -> None:
        if len(msg.name) != len(msg.position):
            return
        by_name = dict(zip(msg.name, msg.position, strict=True))
        if any(j not in by_name for j in robot.JOINT_NAMES):
            return
        stamp = stamp_s(msg.header.stamp)
        with self._rec_lock:
            self.states_seen += 1
            rec = self._rec
            if rec is not None and stamp >= rec.t0:
                rec.stamps.append(stamp)
                rec.positions.append(np.array([by_name[j] for j in robot.JOINT_NAMES]))

    def _on_command(self, msg: JointTrajectory) -> None:
        if not msg.points:
            return
        got = self.now()
        with self._rec_lock:
            rec = self._rec
            if rec is not None and got >= rec.t0:
                rec.commands.append((got, np.array(msg.points[0].positions, dtype=float)))

    def _on_chunk(self, msg: JointTrajectory) -> None:
        got = self.now()
        times = np.array([duration_s(p.time_from_start) for p in msg.points])
        with self._rec_lock:
            rec = self._rec
            if rec is not None and got >= rec.t0:
                rec.chunks.append((got, stamp_s(msg.header.stamp), times))

    def _on_markers(self, msg: MarkerArray) -> None:
        got = self.now()
        strips = sorted((m for m in msg.markers if m.ns == CHUNK_NAMESPACE
                         and m.action == Marker.ADD and m.type == Marker.LINE_STRIP),
                        key=lambda m: m.id)
        if not strips:
            return
        with self._rec_lock:
            rec = self._rec
            if rec is None or got < rec.t0:
                return
            rec.plans.append((got, stamp_s(strips[0].header.stamp)))
            if rec.record_frames:
                rec.chunk_paths.append(
                    (got, [np.array([[p.x, p.y, p.z] for p in m.points]) for m in strips]))

    def _on_image(self, msg: Image) -> None:
        with self._rec_lock:
            self.frames_seen += 1
            rec = self._rec
            wanted = rec is not None and rec.record_frames and stamp_s(msg.header.stamp) >= rec.t0
        if not wanted or rec is None:
            return
        try:
            img = from_image_fields(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        except ValueError as exc:
            self.get_logger().warning(f"camera frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        with self._rec_lock:
            if self._rec is rec:
                rec.frame_stamps.append(stamp_s(msg.header.stamp))
                rec.frames.append(img)

    # ---- episode bookkeeping ------------------------------------------------------------------
    def begin(self, record_frames: bool) -> Recording:
        """Start collecting statuses of the next sim_arm episode; states and frames follow
        once start_at() sets the time they must be stamped after."""
        with self._rec_lock:
            after = -1 if self.latest_status is None else int(self.latest_status["episode"])
            self._rec = Recording(after, record_frames=record_frames)
            return self._rec

    def start_at(self, t0: float) -> None:
        with self._rec_lock:
            if self._rec is not None:
                self._rec.t0 = t0

    def statuses(self) -> list[dict]:
        with self._rec_lock:
            return list(self._rec.statuses) if self._rec is not None else []

    def end(self) -> Recording:
        with self._rec_lock:
            rec, self._rec = self._rec, None
        if rec is None:
            raise RuntimeError("no episode is being recorded")
        return rec

    # ---- services -----------------------------------------------------------------------------
    def reset(self, name: str, timeout: float = 10.0) -> str:
        """Call /<name>/reset and wait for the answer; RuntimeError if it fails or times out."""
        return self.trigger(topics.service(name, "reset"), timeout)
