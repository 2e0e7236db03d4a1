"""The evaluator's rclpy side: a probe node that resets the graph through its Trigger services and
records what an episode produced (sim_arm's episode status, joint states, camera frames).

Imported only when an evaluation runs (genpol.evaluation.runner imports it lazily), so the rest
of genpol.evaluation works without ROS; it lives in nodes/ with the rest of the rclpy code. It
runs on its own rclpy Context, so it never disturbs another user of the default one in the same
process.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from genpol import robot
from genpol.camera.image import from_image_fields
from genpol.nodes.messages import stamp_s

RESET_SERVICES = ("sim_arm", "executor", "planner")
STATUS_TOPIC = "/sim_arm/episode"
STATE_TOPIC = "/joint_states"
CAMERA_TOPIC = "/camera/image_raw"


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

    def joint_path(self) -> np.ndarray:
        return np.array(self.positions).reshape(-1, len(robot.JOINT_NAMES))


class EvalProbe(Node):
    def __init__(self, context: Context, cameras: bool):
        super().__init__("genpol_eval", context=context)
        self._lock = threading.Lock()
        self._rec: Recording | None = None
        self.latest_status: dict | None = None
        self.states_seen = 0
        self.frames_seen = 0
        self.create_subscription(String, STATUS_TOPIC, self._on_status, 10)
        self.create_subscription(JointState, STATE_TOPIC, self._on_state, 100)
        if cameras:
            self.create_subscription(Image, CAMERA_TOPIC, self._on_image, qos_profile_sensor_data)
        self.resets = {name: self.create_client(Trigger, f"/{name}/reset")
                       for name in RESET_SERVICES}

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ---- callbacks ----------------------------------------------------------------------------
    def _on_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
        except ValueError:
            self.get_logger().warning(f"unreadable episode status: {msg.data[:80]!r}")
            return
        with self._lock:
            self.latest_status = status
            rec = self._rec
            if rec is not None and int(status.get("episode", -1)) > rec.after_episode:
                rec.statuses.append(status)

    def _on_state(self, msg: JointState) -> None:
        if len(msg.name) != len(msg.position):
            return
        by_name = dict(zip(msg.name, msg.position))
        if any(j not in by_name for j in robot.JOINT_NAMES):
            return
        stamp = stamp_s(msg.header.stamp)
        with self._lock:
            self.states_seen += 1
            rec = self._rec
            if rec is not None and stamp >= rec.t0:
                rec.stamps.append(stamp)
                rec.positions.append(np.array([by_name[j] for j in robot.JOINT_NAMES]))

    def _on_image(self, msg: Image) -> None:
        with self._lock:
            self.frames_seen += 1
            rec = self._rec
            wanted = rec is not None and rec.record_frames and stamp_s(msg.header.stamp) >= rec.t0
        if not wanted:
            return
        try:
            img = from_image_fields(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        except ValueError as exc:
            self.get_logger().warning(f"camera frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        with self._lock:
            if self._rec is rec:
                rec.frame_stamps.append(stamp_s(msg.header.stamp))
                rec.frames.append(img)

    # ---- episode bookkeeping ------------------------------------------------------------------
    def latest_episode(self) -> int:
        with self._lock:
            return -1 if self.latest_status is None else int(self.latest_status["episode"])

    def begin(self, record_frames: bool) -> Recording:
        """Start collecting statuses of the next sim_arm episode; states and frames follow
        once start_at() sets the time they must be stamped after."""
        with self._lock:
            after = -1 if self.latest_status is None else int(self.latest_status["episode"])
            self._rec = Recording(after, record_frames=record_frames)
            return self._rec

    def start_at(self, t0: float) -> None:
        with self._lock:
            if self._rec is not None:
                self._rec.t0 = t0

    def statuses(self) -> list[dict]:
        with self._lock:
            return list(self._rec.statuses) if self._rec is not None else []

    def end(self) -> Recording:
        with self._lock:
            rec, self._rec = self._rec, None
        if rec is None:
            raise RuntimeError("no episode is being recorded")
        return rec

    # ---- services -----------------------------------------------------------------------------
    def missing_services(self) -> list[str]:
        return [f"/{n}/reset" for n, c in self.resets.items() if not c.service_is_ready()]

    def reset(self, name: str, timeout: float = 10.0) -> str:
        """Call /<name>/reset and wait for the answer; RuntimeError if it fails or times out."""
        future = self.resets[name].call_async(Trigger.Request())
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                self.resets[name].remove_pending_request(future)
                raise RuntimeError(f"/{name}/reset did not answer within {timeout:g} s")
            time.sleep(0.002)
        result = future.result()
        if result is None or not result.success:
            raise RuntimeError(f"/{name}/reset failed: "
                               f"{getattr(result, 'message', 'no response')}")
        return result.message


class RosSession:
    """rclpy on a private Context with the probe spinning on a background thread."""

    def __init__(self, cameras: bool):
        self.context = Context()
        # No rclpy signal handlers: Ctrl-C stays Python's KeyboardInterrupt, which the runner
        # turns into an orderly stop of the graph.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            self.probe = EvalProbe(self.context, cameras)
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(self.probe)
        except Exception:
            rclpy.try_shutdown(context=self.context)
            raise
        self._thread = threading.Thread(target=self._spin, name="eval-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # the context shut down under it: nothing left to do
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)


def session(cameras: bool) -> Iterator[RosSession]:
    """Context manager form of RosSession (see runner)."""
    import contextlib

    @contextlib.contextmanager
    def _cm():
        s = RosSession(cameras)
        try:
            yield s
        finally:
            s.close()

    return _cm()
