"""`genpol record --sim`: scripted demonstrations recorded through the real recording path.

Starts sim_arm, sim_leader, teleop and recorder as separate node processes (argv and parameter
files built as `genpol bringup` builds them, from genpol.graph and config/), then for each
episode: /sim_arm/reset (the next scene), wait for sim_leader's plan, /recorder/start_episode,
/sim_leader/start (the expert plays through teleop), wait for its end plus a settle, put the
outcome (sim_arm's success flag, the scene) into the recorder's episode parameters and
/recorder/stop_episode. The mode reaches the episode's metadata on /leader/mode. Every wait has
a timeout with a message naming what is missing; the node processes are always stopped.

Lives in nodes/ because it speaks ROS (a client node on its own rclpy Context).
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String
from std_srvs.srv import Trigger

from genpol import graph, launcher
from genpol.recording import episode as ep
from genpol.sim import tasks

TASK_TEXT = {
    tasks.REACH_AROUND: "reach the target behind the post, passing it on the left or the right",
    tasks.PICK_PLACE: "pick up the cube and drop it into the bin",
}
CAMERA_TOPICS = ["/camera/image_raw", "/wrist_camera/image_raw"]
STATE_TOPICS = ["/joint_states", "/leader/joint_states"]
STALL_WARN_S = 0.5  # a longer pause in the leader's stream is worth a warning
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class RecordSettings:
    task: str = tasks.REACH_AROUND
    episodes: int = 10
    out: str | Path = "demos"
    seed: int = 0                  # sim_arm's first start pose; sim_leader's mode draws
    scene_seed: int = -1           # >= 0: one object layout for every episode
    mode: str = "random"           # random | alternate | a mode name
    episodes_per_start: int = 1    # > 1: each start pose recorded that many times (with
                                   #   alternate: once per mode, the same state both ways)
    cameras: bool = True
    settle_s: float = 0.5          # before start_episode and after the expert's end
    startup_timeout_s: float = 90.0
    backend: str = "auto"
    progress: bool = True
    keep_logs: bool = False        # keep the nodes' logs even when everything went well

    def check(self) -> None:
        if self.task not in tasks.TASKS:
            raise ValueError(f"--task must be one of {list(tasks.TASKS)}, got {self.task!r}")
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if self.episodes_per_start < 1:
            raise ValueError(f"--episodes-per-start must be >= 1, got "
                             f"{self.episodes_per_start}")
        if self.settle_s < 0 or self.startup_timeout_s <= 0:
            raise ValueError("settle and timeouts must be positive")


def _say(settings: RecordSettings, text: str) -> None:
    if settings.progress:
        print(f"[record] {text}", flush=True)


class _Client(Node):
    """Watches sim_arm's, sim_leader's and the recorder's status topics and calls services."""

    def __init__(self, context: Context):
        super().__init__("genpol_record", context=context)
        self._lock = threading.Lock()
        self.latest: dict[str, dict] = {}
        for key, topic, qos in (("sim", "/sim_arm/episode", 10),
                                ("plan", "/sim_leader/plan", LATCHED),
                                ("recorder", "/recorder/status", LATCHED)):
            self.create_subscription(String, topic, lambda m, k=key: self._on(k, m), qos)
        self.triggers = {name: self.create_client(Trigger, name) for name in (
            "/sim_arm/reset", "/sim_leader/start", "/recorder/start_episode",
            "/recorder/stop_episode", "/recorder/discard_episode")}
        self.set_params = self.create_client(SetParameters, "/recorder/set_parameters")
        self.episode_open = False

    def _on(self, key: str, msg: String) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        with self._lock:
            self.latest[key] = data

    def get(self, key: str) -> dict:
        with self._lock:
            return dict(self.latest.get(key) or {})

    def missing_services(self) -> list[str]:
        out = [n for n, c in self.triggers.items() if not c.service_is_ready()]
        return out + ([] if self.set_params.service_is_ready() else ["/recorder/set_parameters"])

    def call(self, client, request, timeout: float = 10.0):
        future = client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                client.remove_pending_request(future)
                raise RuntimeError(f"{client.srv_name} did not answer within {timeout:g} s")
            time.sleep(0.01)
        return future.result()

    def trigger(self, name: str, timeout: float = 10.0) -> str:
        result = self.call(self.triggers[name], Trigger.Request(), timeout)
        if not result.success:
            raise RuntimeError(f"{name} failed: {result.message}")
        return result.message

    def set_recorder_params(self, values: dict[str, Any]) -> None:
        request = SetParameters.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        result = self.call(self.set_params, request)
        bad = [f"{k}: {r.reason}" for k, r in zip(values, result.results) if not r.successful]
        if bad:
            raise RuntimeError(f"the recorder refused parameters: {bad}")


class _Ros:
    """rclpy on a private Context, the client spinning on a background thread."""

    def __init__(self):
        self.context = Context()
        # No rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt that stops the nodes.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.client = _Client(self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.client)
        self._thread = threading.Thread(target=self._spin, name="record-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # the context shut down under it
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.client.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _wait(what: str, predicate: Callable[[], Any], timeout: float,
          procs: launcher.NodeProcesses, detail: Callable[[], str] = lambda: "") -> Any:
    end = time.monotonic() + timeout
    while True:
        procs.check_alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            extra = detail()
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}"
                               + (f": {extra}" if extra else "") +
                               f" (node logs in {procs.log_dir})")
        time.sleep(0.05)


def _node_specs(settings: RecordSettings, out: Path) -> list[tuple[graph.NodeSpec, dict]]:
    sim_arm = next(s for s in graph.NODES if s.name == "sim_arm")
    topics = (CAMERA_TOPICS if settings.cameras else []) + STATE_TOPICS
    values = {
        "sim_arm": {"task": settings.task, "seed": settings.seed,
                    "scene_seed": settings.scene_seed,
                    "episodes_per_start": settings.episodes_per_start,
                    **({} if settings.cameras else {"camera_rate_hz": 0.0})},
        "sim_leader": {"wait_for_start": True, "mode": settings.mode, "seed": settings.seed},
        "teleop": {},
        "recorder": {"dataset_dir": str(out), "task": TASK_TEXT[settings.task],
                     "topics": topics, "backend": settings.backend},
    }
    return [(spec, values[spec.name]) for spec in (sim_arm, *graph.RECORD_NODES)]


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def record_sim(settings: RecordSettings) -> list[Path]:
    """Record settings.episodes episodes; returns their bag directories. Ctrl-C or SIGTERM
    discards the episode in progress and stops the nodes (KeyboardInterrupt)."""
    settings.check()
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return _record(settings)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)


def _record(settings: RecordSettings) -> list[Path]:
    out = Path(settings.out).expanduser().resolve()
    reason = ep.check_writable(out, 0)
    if reason:
        raise RuntimeError(reason)
    log_dir = Path(tempfile.mkdtemp(prefix="genpol-record-logs-"))
    topics = (CAMERA_TOPICS if settings.cameras else []) + STATE_TOPICS
    done: list[Path] = []
    ok = False
    with tempfile.TemporaryDirectory(prefix="genpol-record-") as tmp, \
            launcher.NodeProcesses(log_dir) as procs:
        cfg = graph.config_dir()
        for spec, values in _node_specs(settings, out):
            argv = launcher.node_argv(spec, cfg / spec.params_file, values, Path(tmp))
            procs.start(spec.name, argv)
        _say(settings, f"started {', '.join(n for n, _ in procs.procs)}; waiting for them "
                       f"(logs in {log_dir})")
        ros = _Ros()
        try:
            client = ros.client
            _wait("the nodes' services", lambda: not client.missing_services(),
                  settings.startup_timeout_s, procs, lambda: str(client.missing_services()))

            def unseen() -> list[str]:
                received = client.get("recorder").get("received", {})
                return [t for t in topics if not received.get(t)]

            _wait("messages on every recorded topic", lambda: not unseen(),
                  settings.startup_timeout_s, procs,
                  lambda: f"nothing yet on {unseen()}" + (
                      " (cameras need offscreen GL: see sim_arm's log, or record with "
                      "--no-cameras)" if set(unseen()) & set(CAMERA_TOPICS) else ""))
            try:
                for i in range(settings.episodes):
                    done.append(_episode(i, settings, client, procs))
            except BaseException:
                _discard_open(settings, client)
                raise
            ok = True
        finally:
            ros.close()
    if ok and not settings.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    elif ok:
        _say(settings, f"node logs kept in {log_dir}")
    return done


def _discard_open(settings: RecordSettings, client: _Client) -> None:
    """Interrupted or failed mid-episode: what was recorded is not a demonstration. Discard it,
    if the recorder opened it (its status says so within a second)."""
    if not client.episode_open:
        return
    end = time.monotonic() + 1.0
    while not client.get("recorder").get("recording") and time.monotonic() < end:
        time.sleep(0.02)
    if client.get("recorder").get("recording"):
        try:
            _say(settings, client.trigger("/recorder/discard_episode", timeout=3.0))
        except Exception:  # the recorder may be shutting down already
            pass


def _episode(i: int, settings: RecordSettings, client: _Client,
             procs: launcher.NodeProcesses) -> Path:
    t_start = time.monotonic()
    before = client.get("sim").get("episode", -1)
    client.trigger("/sim_arm/reset")
    episode = _wait("sim_arm's status after the reset",
                    lambda: (client.get("sim").get("episode", -1) > before
                             and client.get("sim")["episode"]), 10.0, procs)
    plan = _wait(f"sim_leader's plan for episode {episode}",
                 lambda: (client.get("plan").get("episode") == episode and client.get("plan")),
                 10.0, procs, lambda: f"its last plan: {client.get('plan')}")
    time.sleep(settings.settle_s)  # the arm holds the start pose
    client.episode_open = True  # from here on an interruption discards what was recorded
    client.trigger("/recorder/start_episode")
    path = _wait("the recorder to open the episode",
                 lambda: client.get("recorder").get("recording") and
                 client.get("recorder").get("path"), 5.0, procs)
    client.trigger("/sim_leader/start")
    _wait(f"the {plan['mode']} demonstration to end",
          lambda: (client.get("plan").get("episode") == episode
                   and client.get("plan").get("state") == "done"),
          plan["duration_s"] + 15.0, procs, lambda: f"sim_leader's plan: {client.get('plan')}")
    time.sleep(settings.settle_s)
    status = _wait("sim_arm's status", lambda: (client.get("sim").get("episode") == episode
                                                and client.get("sim")), 5.0, procs)
    client.set_recorder_params({
        "episode_success": bool(status["success"]),
        "episode_extra": json.dumps({"sim": {
            "task": status["task"], "episode": episode, "seed": status["seed"],
            "scene_seed": status.get("scene_seed"), "collided": status["collided"],
            "target": status.get("target"), "expert_mode": plan["mode"],
            "expert_duration_s": plan["duration_s"]}}),
    })
    client.trigger("/recorder/stop_episode")
    client.episode_open = False
    path = Path(path)
    meta = ep.read_metadata(path) or {}
    if meta.get("mode") != plan["mode"]:
        raise RuntimeError(f"episode {path.name}: the recorder stored mode {meta.get('mode')!r}"
                           f", but the expert played {plan['mode']!r}")
    counts = meta.get("message_counts", {})
    frames = "+".join(str(counts.get(t, 0)) for t in CAMERA_TOPICS if t in counts)
    stall = _longest_gap(path, "/leader/joint_states")
    _say(settings, f"episode {i + 1}/{settings.episodes} -> {path}: {plan['mode']}, "
                   f"{'success' if status['success'] else 'FAILED'}"
                   f"{' (collided)' if status['collided'] else ''}, "
                   f"{counts.get('/joint_states', 0)} joint states"
                   + (f", {frames} frames" if frames else "")
                   + f" ({time.monotonic() - t_start:.1f} s)"
                   + (f"; WARNING: the leader fell silent for {stall:.1f} s (a loaded "
                      "machine?): consider discarding it" if stall > STALL_WARN_S else ""))
    return path


def _longest_gap(path: Path, topic: str) -> float:
    """The longest pause (s) between two recorded messages on topic."""
    from genpol.recording.bag import read_episode

    stamps = read_episode(path, topics=[topic]).topics[topic].stamps_ns
    return float(np.diff(stamps).max() * 1e-9) if len(stamps) > 1 else 0.0
