"""The fault benchmark's node (`genpol bench faults`): it watches what the graph does while a
fault is injected, and sends the malformed chunks.

It keeps every arm command (its first point, at receipt), the joint states while asked, the
planner's chunks (their stamp and length), the latest ~/status of the planner, executor and
recorder, and frames of one camera topic; it publishes serialized chunks (built here, sent as
bytes, so a 10,000-point chunk costs the sender nothing while the executor is timed) and reads
another node's parameter. The ROS side of genpol.jobs.bench_faults, which stays free of rclpy.

`python -m genpol.nodes.fault_probe FILE RATE_HZ SECONDS SUBSCRIBERS` is the flood: a process of
its own (as a runaway planner would be) that publishes the serialized chunk in FILE on the chunk
topic at RATE_HZ for SECONDS, once SUBSCRIBERS subscriptions have matched, and prints what it
sent as JSON (its monotonic times are the machine's, comparable with the executor's ticks).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rcl_interfaces.srv import GetParameters
from rclpy.context import Context
from rclpy.parameter import parameter_value_to_python
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from genpol import robot, topics
from genpol.nodes.chunk_size import trajectory_points
from genpol.nodes.messages import duration_msg, duration_s, stamp_s, time_msg
from genpol.nodes.qos import LATCHED
from genpol.nodes.session import ClientNode

STATUSES = (("planner", topics.PLANNER_STATUS), ("executor", topics.EXECUTOR_STATUS),
            ("recorder", topics.RECORDER_STATUS))
#: longer chunks heard on the chunk topic are not read (the planner's are a few dozen points)
MAX_READ_POINTS = 1000


def _status(msg: String) -> tuple[float, dict]:
    status = json.loads(msg.data)  # a ValueError drops it
    if not isinstance(status, dict):
        raise ValueError("a status is a JSON object")
    return time.monotonic(), status


class FaultProbe(ClientNode):
    def __init__(self, context: Context):
        super().__init__("genpol_faults", context)
        self._lock = threading.Lock()
        #: (receipt time, first point (5,)) of every arm command
        self.commands: list[tuple[float, np.ndarray]] = []
        #: (header stamp, positions (6,) in robot.JOINT_NAMES order) while record_states is on
        self.states: list[tuple[float, np.ndarray]] = []
        self.record_states = False
        self.last_state: tuple[float, np.ndarray] | None = None
        #: (receipt time, stamp, time of its last point from the stamp) of every planner chunk
        self.chunks: list[tuple[float, float, float]] = []
        self.frames: list[float] = []  # receipt times on the watched camera topic
        #: > 0: the threads running this node's callbacks take SCHED_FIFO at this priority
        self.priority = 0
        self._raised: set[int] = set()
        self.create_subscription(JointTrajectory, topics.ARM_COMMAND, self._on_command, 100)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_state, 100)
        self._chunk_sub: Any = None
        self.listen_to_chunks(True)
        for key, topic in STATUSES:
            self.keep_latest(key, String, topic, LATCHED, _status)
        self.chunk_pub = self.create_publisher(JointTrajectory, topics.ACTION_CHUNK, 10)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def listen_to_chunks(self, on: bool) -> None:
        """Hear the chunk topic or not (a flood meant for the executor need not be heard).
        Raw: the probe hears its own chunks too, and must not spend the executor's time (in
        this process) turning a 10,000-point one into objects."""
        if on and self._chunk_sub is None:
            self._chunk_sub = self.create_subscription(JointTrajectory, topics.ACTION_CHUNK,
                                                       self._on_chunk, 10, raw=True)
        elif not on and self._chunk_sub is not None:
            self.destroy_subscription(self._chunk_sub)
            self._chunk_sub = None

    def _raise(self) -> None:
        """In the executor's process, a thread at normal priority that a busy CPU preempts
        while it holds the interpreter lock delays the realtime tick (the executor raises its
        own callback thread for that reason); so the probe's callback thread goes realtime
        too, below the executor's threads."""
        ident = threading.get_ident()
        if self.priority <= 0 or ident in self._raised:
            return
        self._raised.add(ident)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                                  os.sched_param(self.priority))
        except (AttributeError, OSError) as exc:
            self.get_logger().warning(f"the probe's callbacks stay at normal priority ({exc})")

    # ---- what the graph does ------------------------------------------------------------------
    def _on_command(self, msg: JointTrajectory) -> None:
        self._raise()
        if msg.points:
            with self._lock:
                self.commands.append((self.now(), np.array(msg.points[0].positions, float)))

    def _on_state(self, msg: JointState) -> None:
        self._raise()
        if len(msg.name) != len(msg.position):
            return
        by_name = dict(zip(msg.name, msg.position, strict=True))
        if any(n not in by_name for n in robot.JOINT_NAMES):
            return
        q = np.array([by_name[n] for n in robot.JOINT_NAMES], float)
        entry = (stamp_s(msg.header.stamp), q)
        with self._lock:
            self.last_state = entry
            if self.record_states:
                self.states.append(entry)

    def _on_chunk(self, raw: bytes) -> None:
        self._raise()
        points = trajectory_points(raw)
        if points is None or not 0 < points <= MAX_READ_POINTS:
            return  # not a planner's chunk
        msg = deserialize_message(raw, JointTrajectory)
        last = duration_s(msg.points[-1].time_from_start)
        with self._lock:
            self.chunks.append((self.now(), stamp_s(msg.header.stamp), last))

    def watch_frames(self, topic: str) -> None:
        """Count the frames of `topic` (its receipt times in `frames`)."""
        def on_frame(_msg: Image) -> None:
            with self._lock:
                self.frames.append(time.monotonic())

        self.create_subscription(Image, topic, on_frame, qos_profile_sensor_data)

    def record_joint_states(self, on: bool) -> None:
        """Keep every joint state from now on (forgetting those kept before), or stop."""
        with self._lock:
            if on:
                self.states.clear()
            self.record_states = on

    def commands_since(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(receipt times, first points (N, 5)) of the commands received at or after `t`."""
        with self._lock:
            got = [(s, q) for s, q in self.commands if s >= t]
        return (np.array([s for s, _ in got]),
                np.array([q for _, q in got]).reshape(len(got), -1))

    def states_since(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            got = [(s, q) for s, q in self.states if s >= t]
        return (np.array([s for s, _ in got]),
                np.array([q for _, q in got]).reshape(len(got), len(robot.JOINT_NAMES)))

    def chunks_since(self, t: float) -> list[tuple[float, float, float]]:
        with self._lock:
            return [c for c in self.chunks if c[0] >= t]

    def status(self, key: str, newer_than: float = -1.0) -> dict | None:
        """The latest ~/status of planner, executor or recorder received after `newer_than`
        (time.monotonic), or None."""
        got = self.latest(key)
        return got[1] if got is not None and got[0] > newer_than else None

    # ---- what it sends ------------------------------------------------------------------------
    @staticmethod
    def chunk_bytes(stamp: float, joint_names: Sequence[str], times: Sequence[float],
                    positions: Sequence[Sequence[float]]) -> bytes:
        """A JointTrajectory serialized as it goes on the wire; positions may be ragged."""
        msg = JointTrajectory()
        msg.header.stamp = time_msg(stamp)
        msg.joint_names = list(joint_names)
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in row],
                                           time_from_start=duration_msg(t))
                      for row, t in zip(positions, times, strict=True)]
        return serialize_message(msg)

    def send(self, raw: bytes) -> None:
        self.chunk_pub.publish(raw)

    def expect_triggers(self, *names: str) -> None:
        """Make clients for these Trigger services, so missing_services() waits for them."""
        for name in names:
            self.service(Trigger, name)

    def parameter(self, node: str, name: str, timeout: float = 10.0) -> Any:
        """Another node's parameter value, through its get_parameters service."""
        service = topics.service(node, "get_parameters")
        self.service(GetParameters, service)
        result = self.call(service, GetParameters.Request(names=[name]), timeout)
        if result is None or not result.values:
            raise RuntimeError(f"{node} did not return its parameter {name}")
        return parameter_value_to_python(result.values[0])


def flood(path: str, rate_hz: float, seconds: float, subscribers: int) -> dict[str, Any]:
    import rclpy

    raw = Path(path).read_bytes()
    rclpy.init()
    try:
        node = rclpy.create_node("genpol_flood")
        pub = node.create_publisher(JointTrajectory, topics.ACTION_CHUNK, 10)
        end = time.monotonic() + 30.0
        while pub.get_subscription_count() < subscribers:
            if time.monotonic() > end:
                raise RuntimeError(f"{topics.ACTION_CHUNK}: {pub.get_subscription_count()} "
                                   f"subscriptions matched within 30 s, expected {subscribers}")
            time.sleep(0.05)
        time.sleep(0.5)  # matched on both sides
        sent, start = 0, time.monotonic()
        deadline = start
        while time.monotonic() < start + seconds:
            pub.publish(raw)
            sent += 1
            deadline += 1.0 / rate_hz
            time.sleep(max(0.0, deadline - time.monotonic()))
        return {"sent": sent, "start": start, "end": time.monotonic()}
    finally:
        rclpy.try_shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 4:
        print("usage: python -m genpol.nodes.fault_probe FILE RATE_HZ SECONDS SUBSCRIBERS",
              file=sys.stderr)
        return 2
    print(json.dumps(flood(args[0], float(args[1]), float(args[2]), int(args[3]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
