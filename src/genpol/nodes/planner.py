"""planner: latest observation in, sampled action chunks out (and their paths as markers).

Inference runs on its own thread so subscription callbacks never wait on the policy.
~/status (std_msgs/String, JSON, latched, once a second) says what runs and how fast, for
`genpol status`; repeated warnings are counted there and summarised in the log
(genpol.warning_counter) rather than logged each time.
`genpol param set planner policy_path <dir>` (or `ros2 param set /planner policy_path <dir>`)
swaps the policy at run time: the set answers once the checkpoint has been vetted and loaded
(genpol.planning.vet_policy, about a second on a CPU), and a refused one leaves the running
policy and the parameter as they were.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import traceback
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from genpol.camera.image import from_image_fields
from genpol.control.selection import ChunkSelector
from genpol.control.timeline import PlannerTimeline, Prefix
from genpol.nodes import params
from genpol.nodes.markers import chunk_markers
from genpol.nodes.messages import duration_msg, stamp_s, time_msg, trajectory_msg
from genpol.nodes.qos import LATCHED
from genpol.nodes.spin import run_node
from genpol.parameters import PLANNER
from genpol.planning import SUPERSEDED, Candidate, PolicyHalted, PolicyHolder
from genpol.policies.checkpoint import CheckpointError
from genpol.recent import Recent
from genpol.warning_counter import WarningCounter


#: parameters applied by assigning the attribute of the same name
RUN_TIME = ("num_samples", "fresh_num_samples", "inference_rate_hz", "max_observation_age_s",
            "sampling_steps", "chunking", "rtc_schedule", "rtc_max_guidance", "rtc_inpaint",
            "rtc_max_departure_rad", "added_delay_s")


class PlannerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("planner", **kwargs)
        params.declare(self, PLANNER)
        p = params.values(self, PLANNER)
        self.holder = PolicyHolder(p["device"], p["cpu_threads"],
                                   warm_samples=lambda: self.num_samples,
                                   precision=p["precision"], compile=p["compile"])
        self.frame_id = p["frame_id"]
        # The values a `ros2 param set` may change, read by the inference thread from here.
        self.num_samples = p["num_samples"]
        self.fresh_num_samples = p["fresh_num_samples"]
        self.inference_rate_hz = p["inference_rate_hz"]
        self.max_observation_age_s = p["max_observation_age_s"]
        self.sampling_steps = p["sampling_steps"]
        self.chunking = p["chunking"]
        self.rtc_schedule = p["rtc_schedule"]
        self.rtc_max_guidance = p["rtc_max_guidance"]
        self.rtc_inpaint = p["rtc_inpaint"]
        self.rtc_max_departure_rad = p["rtc_max_departure_rad"]
        self.added_delay_s = p["added_delay_s"]
        self.selector = ChunkSelector(p["selection"])
        self.timeline = PlannerTimeline(tick_s=1.0 / p["executor_rate_hz"])
        self._lock = threading.Lock()
        self._state: tuple[float, dict[str, float]] | None = None
        self._images: dict[str, np.ndarray] = {}
        self._last_planned_stamp = -1.0
        self._reset_time = -1.0
        self.chunks_published = 0
        self.chunks_departed = 0
        # For ~/status: chunks of the last 5 s, observation-to-chunk latencies of the last 10 s.
        self._published = Recent(window_s=5.0)
        self._latency_ms = Recent(window_s=10.0)
        self.load_error = ""  # why the start-up policy_path was refused
        self.loading = ""  # the path being vetted
        self.last_refusal = ""  # the last policy_path refused: "path: reason"
        self._pending: dict[str, Candidate] = {}  # vetted in the on-set callback, for _apply
        self.warnings = WarningCounter()

        self.chunk_pub = self.create_publisher(JointTrajectory, p["chunk_topic"], 10)
        self.marker_pub = self.create_publisher(MarkerArray, p["marker_topic"], 10)
        self.create_subscription(JointState, p["state_topic"], self._on_state, 10)
        for entry in p["camera_topics"]:
            cam, _, topic = entry.partition("=")
            self.create_subscription(Image, topic, functools.partial(self._on_image, cam), 2)

        path = p["policy_path"]
        if path:
            reason = self._vet(path)
            if reason:
                self.load_error = reason
                self.last_refusal = f"{path}: {reason}"
                self.get_logger().error(f"policy_path refused: {reason}; nothing runs until a "
                                        "good one is set")
                # the parameter names what runs: nothing (the on-set check is not in place yet)
                self.set_parameters([Parameter("policy_path", value="")])
            else:
                self._install(path)
        else:
            self.get_logger().info("no policy yet: set one with `genpol param set planner "
                                   "policy_path <checkpoint dir>` (or `ros2 param set /planner "
                                   "policy_path <checkpoint dir>`)")
        self.add_on_set_parameters_callback(self._check_policy_path)
        self.add_post_set_parameters_callback(self._apply)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.status_pub = self.create_publisher(String, "~/status", LATCHED)
        self.create_timer(1.0, self._publish_status)
        self._publish_status()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._thread.start()

    # ---- parameters ---------------------------------------------------------------------------
    def _check_policy_path(self, changed: list[Parameter]) -> SetParametersResult:
        """A new policy_path is vetted in full and loaded before the set is answered, so a
        refusal reaches the caller and the running policy stays. Registered after start-up: an
        empty or bad start-up path is logged and the planner waits for a good one."""
        for p in changed:
            reason = self._vet(p.value) if p.name == "policy_path" else ""
            if reason:
                self.last_refusal = f"{p.value}: {reason}"
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _vet(self, path: str) -> str:
        """Empty once `path` is vetted and its policy waits in _pending, else why not."""
        started = time.monotonic()
        self.loading = path
        try:
            candidate = self.holder.prepare(path)
        except CheckpointError as exc:
            return str(exc)
        except Exception as exc:  # a fault in vetting must refuse, never take the node down
            return f"checking {path} failed: {type(exc).__name__}: {exc}"
        finally:
            self.loading = ""
        if self.holder.superseded(candidate):
            return f"{SUPERSEDED} while {path} was checked"
        self._pending[path] = candidate
        self.get_logger().info(f"policy {path} vetted in {time.monotonic() - started:.2f} s")
        return ""

    def _install(self, path: str) -> None:
        """Run the policy vetted for `path`, unless a later request runs already."""
        candidate = self._pending.pop(path, None)
        if candidate is None:
            self.get_logger().error(f"policy_path {path} was accepted without being vetted; "
                                    f"{self.holder.path or 'no policy'} keeps running")
            return
        self._pending = {k: c for k, c in self._pending.items() if c.request > candidate.request}
        if self.holder.install(candidate):
            self.load_error = ""
            self._log_policy()
        else:
            self.get_logger().warning(f"policy {path} not switched in: a later request runs "
                                      f"({self.holder.path})")

    def _apply(self, changed: list[Parameter]) -> None:
        for p in changed:
            if p.name == "policy_path":
                self._install(p.value)
            elif p.name == "selection":
                self.selector = ChunkSelector(p.value)
            elif p.name in RUN_TIME:
                setattr(self, p.name, p.value)
                if p.name == "chunking":
                    self._log_policy()

    def _on_reset(self, request, response):
        """A new episode: forget observations, and the mode the last chunks committed to."""
        with self._lock:
            self._state = None
            self._images.clear()
            self.holder.history.reset()
            self._last_planned_stamp = self._reset_time = self.get_clock().now().nanoseconds * 1e-9
            self.selector.reset()
            self.timeline.reset()
        response.success, response.message = True, "planner reset"
        return response

    def _log_policy(self) -> None:
        policy = self.holder.policy
        if policy is None:
            return
        cfg = policy.config
        self.get_logger().info(
            f"policy {self.holder.path}: {cfg.family}, chunk {cfg.horizon} x {cfg.action_dim} at "
            f"{cfg.fps:g} Hz, cameras {cfg.cameras or 'none'}, on {self.holder.device}; "
            f"keeps its mode by {self.strategy(policy)}")

    def strategy(self, policy) -> str:
        """How chunks after the first keep to what is playing, for this policy and `chunking`."""
        method = policy.prefix_method if self.chunking == "rtc" else None
        if method == "guidance":
            return "real-time chunking (guided sampling)"
        if method == "forcing":
            return "a forced prefix (the committed steps' tokens given)"
        return f"selection ({self.selector.mode})"

    def _prefix_for(self, stamp: float):
        """What a chunk for the observation at `stamp` must continue (genpol.control.timeline),
        for the policy that samples it."""
        def prefix(policy) -> Prefix | None:
            if self.chunking != "rtc" or policy.prefix_method is None:
                return None
            cfg = policy.config
            return self.timeline.prefix(policy, stamp, cfg.fps, cfg.horizon, self.rtc_schedule,
                                        self.rtc_max_guidance, self.rtc_inpaint)
        return prefix

    def _samples_for(self, stamp: float):
        """Samples for a chunk planned at `stamp`: at least `fresh_num_samples` for one that
        chooses the mode afresh, which is then a draw among the samples inside a mode
        (selection.typical): with 8 samples a few between the modes are as close to each other
        as to a mode and may be drawn; 32 tell the modes apart (README, "Execution
        strategies")."""
        def samples(policy) -> int:
            if not self.timeline.playing(policy, stamp):
                return max(self.num_samples, self.fresh_num_samples)
            return self.num_samples
        return samples

    def _steps_for(self, stamp: float):
        """Denoising steps for a chunk planned at `stamp`: `sampling_steps` while a chunk plays,
        the checkpoint's own for one that chooses the mode afresh (the first of an episode, after
        a gap or a swap). Few flow steps pull samples toward the mean of the modes (one Euler
        step is the mean), and a first chunk between them drives at the obstacle (with 5 steps
        for every chunk, 2 collisions in 20 episodes; see README, "Execution strategies")."""
        def steps(policy) -> int:
            return self.sampling_steps if self.timeline.playing(policy, stamp) else 0
        return steps

    # ---- observations -------------------------------------------------------------------------
    def _on_state(self, msg: JointState) -> None:
        if len(msg.name) != len(msg.position):
            return
        with self._lock:
            self._state = (stamp_s(msg.header.stamp),
                           dict(zip(msg.name, msg.position, strict=True)))
            self.holder.observe(*self._state, self._images)  # for policies that see a history

    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            img = from_image_fields(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        except ValueError as exc:
            self._warn(f"camera {camera}: {exc}")
            return
        with self._lock:
            if stamp_s(msg.header.stamp) < self._reset_time:
                return  # rendered before the reset: the last episode's scene, still in flight
            self._images[camera] = img

    # ---- inference thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        # The rate limit counts planned chunks only: an attempt with nothing to plan on (right
        # after a reset, before the first state or image) must not cost a whole period, or a
        # 1 Hz planner leaves the arm standing for a second at every episode's start.
        next_time = time.monotonic()
        while not self._stop.is_set() and rclpy.ok(context=self.context):
            if self.inference_rate_hz > 0:
                delay = next_time - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                    continue
            started = time.monotonic()
            try:
                planned = self._plan_once()
            except Exception as exc:
                if not rclpy.ok(context=self.context):
                    return  # Ctrl-C shut the context down mid-publish: just stop
                # A bug must not end planning silently with the node still up (the executor
                # then holds for good): say so, in ~/status too, and try the next observation.
                kind = f"planning failed: {type(exc).__name__}"
                if kind not in self.warnings.counts():
                    self.get_logger().error(traceback.format_exc())
                self._warn(f"{kind}: {exc}", kind=kind)
                self._stop.wait(0.1)
                continue
            if planned and self.inference_rate_hz > 0:
                period = 1.0 / self.inference_rate_hz
                # on time: keep the cadence; more than a period late: start it again from now
                next_time = next_time + period if started - next_time <= period else \
                    started + period
            elif not planned:
                self._stop.wait(0.005)

    def _plan_once(self) -> bool:
        with self._lock:
            state, images = self._state, dict(self._images)
        if state is None or self.holder.policy is None or self.holder.halted:
            return False  # nothing to plan on, or from (a halted policy waits for a new one)
        stamp, positions = state
        now = self.get_clock().now().nanoseconds * 1e-9
        if stamp <= self._last_planned_stamp or now - stamp > self.max_observation_age_s:
            return False  # nothing new, or too old to plan on
        names = self.holder.policy.config.joint_names
        measured = np.array([positions.get(n, np.nan) for n in names])
        if self.timeline.lost(measured, stamp):
            self.timeline.reset()  # the executor re-anchors: choose afresh, do not continue
            self._warn("the arm left the last chunk (pushed, or its driver restarted): "
                       "planning afresh from the measured state")
        try:
            policy, chunks, prefix = self.holder.sample(positions, images,
                                                        self._samples_for(stamp),
                                                        self._prefix_for(stamp),
                                                        self._steps_for(stamp), stamp=stamp)
        except PolicyHalted as exc:
            self.get_logger().error(str(exc))  # once: planning stops here
            return False
        except ValueError as exc:
            self._warn(f"not planning: {exc}")
            return False
        if self.added_delay_s > 0:
            self._stop.wait(self.added_delay_s)
        with self._lock:
            if stamp < self._reset_time:
                return False  # a reset came while sampling: this chunk is for the old episode
            self._last_planned_stamp = stamp
            self._publish(policy, stamp, chunks, prefix)
        return True

    def _publish(self, policy, stamp: float, chunks: np.ndarray,
                 prefix: Prefix | None = None) -> None:
        cfg = policy.config
        observed = stamp  # a continuation chunk is stamped on the playing chunk's step grid
        stamp = prefix.stamp if prefix is not None and prefix.stamp is not None else stamp
        sent, departure = self.selector.pick(chunks, stamp, cfg.fps, policy, prefix,
                                             self.rtc_max_departure_rad)
        if sent is None:
            self.chunks_departed += 1
            self.get_logger().info(
                f"not sent: the chosen chunk leaves the playing one by {departure:.3f} rad > "
                f"rtc_max_departure_rad {self.rtc_max_departure_rad:g}; it keeps playing",
                throttle_duration_sec=2.0)
            return
        chunks = sent
        self.timeline.published(policy, stamp, cfg.fps, chunks[0],
                                self.get_clock().now().nanoseconds * 1e-9, observed)
        durations = [duration_msg(k / cfg.fps) for k in range(cfg.horizon)]
        self.chunk_pub.publish(trajectory_msg(cfg.joint_names, durations, chunks[0],
                                              stamp=time_msg(stamp)))
        self.chunks_published += 1
        now = self.get_clock().now().nanoseconds * 1e-9
        self._published.add(time.monotonic())
        self._latency_ms.add(time.monotonic(), 1000.0 * (now - observed))
        # stamped with the observation they were planned on (a continuation chunk's own stamp
        # is on the playing chunk's step grid, up to half a step away from it)
        self.marker_pub.publish(chunk_markers(chunks, cfg.joint_names, self.frame_id,
                                              time_msg(observed)))

    # ---- status -------------------------------------------------------------------------------
    def _warn(self, text: str, kind: str | None = None) -> None:
        """Log a warning the first time of its kind, then as a summary at most every 30 s."""
        line = self.warnings.add(text, time.monotonic(), kind)
        if line:
            self.get_logger().warning(line)

    def status(self) -> dict[str, Any]:
        """What ~/status publishes (genpol.status_line formats it)."""
        now = time.monotonic()
        policy = self.holder.policy
        p50, p99 = (self._latency_ms.percentile(now, q) for q in (50, 99))
        return {
            "policy_path": self.holder.path, "family": policy.config.family if policy else "",
            "chunking": self.chunking, "strategy": self.strategy(policy) if policy else "",
            "num_samples": self.num_samples, "chunks_published": self.chunks_published,
            "chunks_not_sent": self.chunks_departed, "rate_hz": round(self._published.rate(now), 2),
            "latency_ms": {"p50": None if p50 is None else round(p50, 1),
                           "p99": None if p99 is None else round(p99, 1)},
            "loading": self.loading, "load_error": self.load_error,
            "loaded_at": self.holder.loaded_at, "last_refusal": self.last_refusal,
            "halted": self.holder.halted,
            "refused": params.last_refusal(self), "warnings": self.warnings.counts()}

    def _publish_status(self) -> None:
        for line in self.warnings.due(time.monotonic()):
            self.get_logger().warning(line)
        self.status_pub.publish(String(data=json.dumps(self.status())))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def main(args=None) -> None:
    # One executor thread: inference has its own thread already, and rclpy's
    # MultiThreadedExecutor costs ~45 % of a core at 100 Hz of joint states, taking the GIL
    # from the inference thread (chunk latency 2-5x longer on a 2-core machine).
    run_node(PlannerNode, args, threads=1)


if __name__ == "__main__":
    main()
