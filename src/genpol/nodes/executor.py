"""executor: action chunks in, 50 Hz joint trajectories out to the ros2_control controllers.

All math lives in genpol.control (numpy); this node only translates messages and keeps time.

Time is kept by a dedicated thread that sleeps to absolute monotonic deadlines (tick_source
"thread", the default) rather than by an rclpy timer: the timer's callback waits its turn in the
executor behind the subscription callbacks and the executor's own bookkeeping, which on a small
CPU shared with the planner and the simulator costs milliseconds of jitter (`genpol bench
executor` measures both). Subscriptions stay on the rclpy executor; the core is thread-safe.
With use_sim_time the ROS timer is used, since only it follows simulated time.

A realtime tick still needs the interpreter lock. So the threads that run the subscriptions go
to SCHED_FIFO too (spin_priority, below the tick): at normal priority two busy processes per core
preempted them while they held the lock, and the tick waited for it for up to 0.3 s. Chunks
arrive as raw bytes, and one longer than max_chunk_points is dropped before rclpy builds an
object per point (10,000 points cost the lock 0.36 s). The tick thread also freezes what start-up
allocated out of the garbage collector's reach and shortens the lock's switch interval
(_quiet_interpreter). `genpol bench executor` measures the tick.

~/status (std_msgs/String, JSON, latched, once a second) says what it receives, drops and how
often the speed limit bites, and how often it re-anchored at the measured state (the arm left
its command: genpol.control.divergence), for `genpol status`. Warnings repeated every tick
("speed limited", a stale chunk) are counted there and summarised in the log
(genpol.warning_counter) rather than logged each time; a start-up fault stays an error,
repeated every few seconds.
"""

from __future__ import annotations

import collections
import gc
import json
import math
import os
import sys
import threading
import time
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker

from genpol import robot
from genpol.control import ChunkExecutor, ExecutorConfig
from genpol.control.chunk import oversized
from genpol.nodes import params
from genpol.nodes.chunk_size import trajectory_points
from genpol.nodes.markers import executed_path_marker
from genpol.nodes.messages import duration_msg, duration_s, stamp_s, trajectory_msg
from genpol.nodes.qos import LATCHED
from genpol.nodes.spin import run_node
from genpol.parameters import EXECUTOR, controller_topic_param
from genpol.recent import Recent
from genpol.warning_counter import WarningCounter, kind_of

#: threads of the rclpy executor that runs the subscriptions (and the timer, tick_source timer).
#: One: the tick has its own thread, the callbacks share one mutually exclusive group anyway, and
#: a MultiThreadedExecutor's pool costs several times the CPU and holds the interpreter lock
#: longer (its tick jitter is in the README's executor benchmark).
SPIN_THREADS = 1
#: the least time a thread that waits for the interpreter lock lets the holder run before it asks
#: for the lock (sys.setswitchinterval; Python's default, 5 ms, is a quarter of a tick)
LOCK_SWITCH_S = 0.001


class ExecutorNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("executor", **kwargs)
        params.declare(self, EXECUTOR, self._check)
        p = params.values(self, EXECUTOR)
        self.config = ExecutorConfig(
            rate_hz=p["rate_hz"], mode=p["mode"], ensemble_m=p["ensemble_m"],
            max_chunk_age_s=p["max_chunk_age_s"], lookahead_points=p["lookahead_points"],
            interpolation=p["interpolation"],
            velocity_scale=p["velocity_scale"], start_margin_rad=p["start_margin_rad"],
            max_chunk_points=p["max_chunk_points"],
            divergence_tolerance_rad=p["divergence_tolerance_rad"],
            tracking_window_s=p["tracking_window_s"], state_timeout_s=p["state_timeout_s"])
        self.core = ChunkExecutor(self.config)
        #: controller -> (its publisher, the columns of its joints in config.joint_names)
        self.controllers = {
            name: (self.create_publisher(JointTrajectory, p[controller_topic_param(name)], 10),
                   [self.config.joint_names.index(j) for j in joints])
            for name, joints in robot.CONTROLLERS.items()}
        # Raw bytes: an oversized chunk is refused before rclpy builds an object per point.
        self.create_subscription(JointTrajectory, p["chunk_topic"], self._on_chunk, 10, raw=True)
        self.create_subscription(JointState, p["state_topic"], self._on_state, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        # The commanded path for RViz: the tick appends, a 10 Hz timer on the executor draws.
        self.path_pub = self.create_publisher(Marker, p["path_topic"], 5)
        self.frame_id = p["frame_id"]
        self._path: collections.deque[np.ndarray] = collections.deque(
            maxlen=max(2, int(p["path_seconds"] * self.config.rate_hz)))
        self.create_timer(0.1, self._publish_path)
        self.ticks = 0
        self.chunks_received = 0
        self.chunks_accepted = 0
        self.chunks_oversized = 0
        self.commands_published = 0
        self.last_source = ""  # what the last tick commanded: chunk, hold or fault
        # For ~/status: per tick of the last 5 s, 1 if speed limited; and the scales applied.
        self._limited = Recent(window_s=5.0)
        self._scales = Recent(window_s=5.0)
        self.warnings = WarningCounter()
        self.status_pub = self.create_publisher(String, "~/status", LATCHED)
        self.create_timer(1.0, self._on_status_timer)
        #: monotonic start time of every tick, when record_tick_times() asked for it
        self.tick_times: collections.deque[float] | None = None

        self.tick_source = p["tick_source"]
        if self.tick_source == "thread" and self.get_parameter("use_sim_time").value:
            self.get_logger().info("use_sim_time: ticking on the ROS timer, which follows "
                                   "simulated time")
            self.tick_source = "timer"
        self.tick_priority = p["tick_priority"]
        self.tick_realtime = False  # True once the tick thread runs under SCHED_FIFO
        self.tick_spin_s = p["tick_spin_s"]
        self.spin_priority = p["spin_priority"]
        self._spin_threads: set[int] = set()  # threads of the rclpy executor seen in a callback
        self.timer = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.tick_source == "timer":
            self.timer = self.create_timer(self.config.dt, self._tick)
        else:
            self._thread = threading.Thread(target=self._tick_loop, name="executor-tick",
                                            daemon=True)
            self._thread.start()
        self.get_logger().info(
            f"executor: {self.config.mode} at {self.config.rate_hz:g} Hz "
            f"({self.tick_source} ticks), {self.config.lookahead_points} points per command")
        self._publish_status()

    def _check(self, p: Parameter) -> str:
        """A busy-wait of more than half a tick would leave the other threads no time; a
        subscription thread above the tick would come first."""
        if p.name == "tick_spin_s":
            half_tick = 0.5 / self.get_parameter("rate_hz").value
            if p.value > half_tick:
                return f"tick_spin_s must be in [0, {half_tick:g}] s (half a tick), got {p.value!r}"
        if p.name == "spin_priority":
            tick = self.get_parameter("tick_priority").value
            if 0 < tick <= p.value:
                return (f"spin_priority must be below tick_priority ({tick}) or 0, got "
                        f"{p.value!r}")
        return ""

    def record_tick_times(self, maxlen: int = 1 << 20) -> collections.deque:
        """Keep the monotonic start time of each tick from now on (the last maxlen of them)."""
        self.tick_times = collections.deque(maxlen=maxlen)
        return self.tick_times

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_reset(self, request, response):
        """A new episode: forget chunks and commands, hold where the arm is measured next."""
        self.core.reset(self._now())
        self._path.clear()
        response.success, response.message = True, "executor reset: holding the next measured state"
        return response

    def _on_state(self, msg: JointState) -> None:
        self._raise_spin_thread()
        if msg.name and len(msg.position) == len(msg.name):
            self.core.set_measured(np.asarray(msg.position, dtype=float), list(msg.name))

    def _on_chunk(self, raw: bytes) -> None:
        self._raise_spin_thread()
        self.chunks_received += 1
        points = trajectory_points(raw)
        if points is not None and points > self.config.max_chunk_points:
            self._drop_oversized(points)
            return
        msg = deserialize_message(raw, JointTrajectory)
        if len(msg.points) > self.config.max_chunk_points:  # bytes the peek could not read
            self._drop_oversized(len(msg.points))
            return
        if not msg.points:
            self._warn("dropped an empty action chunk", "empty chunk")
            return
        times = np.array([duration_s(p.time_from_start) for p in msg.points])
        try:
            positions = np.array([p.positions for p in msg.points], dtype=float)
        except ValueError:
            self._warn("dropped a chunk whose points differ in length", "ragged chunk")
            return
        result = self.core.add_chunk(stamp_s(msg.header.stamp), list(msg.joint_names), times,
                                     positions, now=self._now())
        if result.accepted:
            self.chunks_accepted += 1
        else:
            reason = result.reason.removeprefix("dropped: ")
            self._warn(f"dropped action chunk: {reason}", kind_of(reason))
        for w in result.warnings:
            self._warn(w)

    def _drop_oversized(self, points: int) -> None:
        self.chunks_oversized += 1
        self._warn(f"dropped action chunk: {oversized(points, self.config.max_chunk_points)}",
                   "oversized")

    def _tick_loop(self) -> None:
        """Tick at absolute deadlines k * dt from the start: lateness never accumulates, and
        a deadline missed by more than a period is skipped, as an rcl timer skips it. With
        tick_spin_s > 0 the thread wakes that much early and busy-waits the rest, holding the
        interpreter lock, so the subscriptions' thread cannot make the tick wait for it."""
        self._raise_priority()
        _quiet_interpreter(self.tick_spin_s)
        dt, spin = self.config.dt, self.tick_spin_s
        deadline = time.monotonic() + dt
        while not self._stop.is_set():
            delay = deadline - spin - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            while time.monotonic() < deadline:
                pass
            if self._stop.is_set() or not self.context.ok():
                return
            try:
                self._tick()
            except Exception as exc:  # a broken control loop must not fail silently
                if self._stop.is_set() or not self.context.ok():
                    return
                self.get_logger().fatal(f"executor tick failed ({type(exc).__name__}: {exc}); "
                                        "shutting down")
                self.context.try_shutdown()
                raise
            deadline += dt
            late = time.monotonic() - deadline
            if late > 0:
                deadline += math.ceil(late / dt) * dt

    def _raise_priority(self) -> None:
        """tick_priority > 0: run the tick thread under SCHED_FIFO at that priority, as
        ros2_control runs its update loop (thread_priority), so the planner's and the
        simulator's threads cannot delay it. Needs CAP_SYS_NICE or an rtprio limit
        (/etc/security/limits.conf); without, it ticks at normal priority, with a warning."""
        if self.tick_priority > 0:
            self.tick_realtime = self._set_fifo(self.tick_priority, "the tick thread",
                                                "ticking at normal priority")

    def _raise_spin_thread(self) -> None:
        """The first callback on each thread of the rclpy executor raises that thread to
        spin_priority (SCHED_FIFO, below the tick) once the tick is realtime. At normal priority
        a busy CPU preempts it, often while it holds the interpreter lock, and the tick, though
        realtime, then waits for the lock until the scheduler comes back to that thread (tens of
        ms with two busy processes per core)."""
        ident = threading.get_ident()
        if ident in self._spin_threads or not self.tick_realtime or self.spin_priority <= 0:
            return
        self._spin_threads.add(ident)
        self._set_fifo(self.spin_priority, "a subscription thread",
                       "it runs at normal priority")

    def _set_fifo(self, priority: int, what: str, otherwise: str) -> bool:
        try:  # pid 0: the calling thread, on Linux; processes it starts run at normal priority
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                                  os.sched_param(priority))
        except (AttributeError, OSError) as exc:
            self.get_logger().warning(
                f"could not run {what} at SCHED_FIFO priority {priority} ({exc}); {otherwise}. "
                "Allow it with an rtprio limit, e.g. '@realtime - rtprio 99' in "
                "/etc/security/limits.conf, or set tick_priority: 0")
            return False
        self.get_logger().info(f"{what} at SCHED_FIFO priority {priority}")
        return True

    def _tick(self) -> None:
        if self.tick_times is not None:
            self.tick_times.append(time.monotonic())
        cmd = self.core.tick(self._now())
        self.ticks += 1
        self.last_source = cmd.source
        mono = time.monotonic()
        self._limited.add(mono, cmd.speed_scale < 1.0)
        if cmd.speed_scale < 1.0:
            self._scales.add(mono, cmd.speed_scale)
        for w in cmd.warnings:
            if cmd.source == "fault":
                self.get_logger().error(w, throttle_duration_sec=5.0)
            else:
                self._warn(w)
        if len(cmd.positions) == 0:
            return  # nothing measured or commanded yet: publish nothing rather than guess
        durations = [duration_msg(t) for t in cmd.times]
        # stamp 0: the controller starts the trajectory on receipt, replacing the old one.
        for name, (publisher, columns) in self.controllers.items():
            publisher.publish(trajectory_msg(robot.CONTROLLERS[name], durations,
                                             cmd.positions[:, columns]))
        self.commands_published += 1
        self._path.append(cmd.positions[0])

    def _warn(self, text: str, kind: str | None = None) -> None:
        """Log a warning the first time of its kind, then as a summary at most every 30 s."""
        line = self.warnings.add(text, time.monotonic(), kind)
        if line:
            self.get_logger().warning(line)

    def status(self) -> dict[str, Any]:
        """What ~/status publishes (genpol.status_line formats it)."""
        now = time.monotonic()
        scales = self._scales.values(now)
        return {
            "mode": self.config.mode, "velocity_scale": self.config.velocity_scale,
            "rate_hz": self.config.rate_hz, "ticks": self.ticks, "command": self.last_source,
            "chunks_received": self.chunks_received, "chunks_accepted": self.chunks_accepted,
            "chunks_dropped": self.chunks_received - self.chunks_accepted,
            "chunks_oversized": self.chunks_oversized,
            "reanchored": self.core.reanchored, "reanchor": self.core.last_reanchor,
            "speed_limited": round(self._limited.mean(now) or 0.0, 3),
            "speed_scale": round(float(scales.min()), 3) if scales.size else None,
            "fault": self.core.fault or "", "warnings": self.warnings.counts()}

    def _on_status_timer(self) -> None:
        self._raise_spin_thread()
        self._publish_status()

    def _publish_status(self) -> None:
        for line in self.warnings.due(time.monotonic()):
            self.get_logger().warning(line)
        self.status_pub.publish(String(data=json.dumps(self.status())))

    def _publish_path(self) -> None:
        self._raise_spin_thread()
        points = list(self._path)
        if len(points) >= 2:
            self.path_pub.publish(executed_path_marker(
                np.array(points), self.config.joint_names, self.frame_id,
                self.get_clock().now().to_msg()))

    def close(self) -> None:
        """Stop the tick thread (before the publishers go away)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def _quiet_interpreter(spin_s: float) -> None:
    """Shorten the interpreter's own pauses that the tick would wait out. A full garbage
    collection walks every object while it holds the lock (25 ms in a node process here, set
    off by whatever thread allocates); gc.freeze() moves what start-up made out of its reach, so
    later collections walk only newer objects. And a thread that wants the lock asks the holder
    for it only after the switch interval: 1 ms bounds what a long callback costs the tick, and
    twice the tick's final busy-wait keeps a callback from taking the lock from a tick about to
    start (0.5 ms cost it 0.57 ms at p99 beside the planner and the simulator)."""
    gc.freeze()
    sys.setswitchinterval(min(sys.getswitchinterval(), max(LOCK_SWITCH_S, 2 * spin_s)))


def main(args=None) -> None:
    run_node(ExecutorNode, args, threads=SPIN_THREADS)


if __name__ == "__main__":
    main()
