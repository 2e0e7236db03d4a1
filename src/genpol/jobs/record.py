"""`genpol record --sim`: scripted demonstrations recorded through the real recording path.

Starts sim_arm, sim_leader, teleop and recorder as separate node processes (graph.RECORDING,
resolved and supervised as `genpol bringup` does it), then for each episode: /sim_arm/reset (the
next scene), wait for sim_leader's plan, /recorder/start_episode, /sim_leader/start (the expert
plays through teleop), wait for its end plus a settle, put the outcome (sim_arm's success flag,
the scene) into the recorder's episode parameters and /recorder/stop_episode. The mode reaches
the episode's metadata on /leader/mode. Every wait has a timeout with a message naming what is
missing; the node processes are always stopped. Its ROS side is genpol.nodes.record_client,
spun in the client session; rclpy is imported only once a recording starts.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genpol import graph, topics
from genpol.launcher import Supervisor
from genpol.recording import episode as ep
from genpol.rosenv import job_network
from genpol.sim import tasks

if TYPE_CHECKING:
    from genpol.nodes.record_client import RecordClient

TASK_TEXT = {
    tasks.REACH_AROUND: "reach the target behind the post, passing it on the left or the right",
    tasks.PICK_PLACE: "pick up the cube and drop it into the bin",
}
CAMERA_TOPICS = [topics.CAMERA_IMAGE, topics.WRIST_CAMERA_IMAGE]
STATE_TOPICS = [topics.JOINT_STATES, topics.LEADER_JOINT_STATES]
STALL_WARN_S = 0.5  # a longer pause in the leader's stream is worth a warning
SIM_RESET = topics.service("sim_arm", "reset")
LEADER_START = topics.service("sim_leader", "start")
START_EPISODE = topics.service("recorder", "start_episode")
STOP_EPISODE = topics.service("recorder", "stop_episode")
DISCARD_EPISODE = topics.service("recorder", "discard_episode")


@dataclass
class RecordSettings:
    task: str = tasks.REACH_AROUND
    episodes: int = 10
    out: str | Path = "demos"
    seed: int = 0                  # sim_arm's first start pose; sim_leader's mode draws
    scene_seed: int = -1           # >= 0: one object layout for every episode
    scene_spread: float = 1.0      # reach_around: how far layouts range sideways
    mode: str = "random"           # random | alternate | a mode name
    episodes_per_start: int = 1    # > 1: each start pose recorded that many times (with
                                   #   alternate: once per mode, the same state both ways)
    cameras: bool = True
    settle_s: float = 0.5          # before start_episode and after the expert's end
    startup_timeout_s: float = 90.0
    backend: str = "auto"
    progress: bool = True
    keep_logs: bool = False        # keep the nodes' logs even when everything went well
    workers: int = 1               # > 1: that many graphs at once (jobs/record_workers.py)

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
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")


def _say(settings: RecordSettings, text: str) -> None:
    if settings.progress:
        print(f"[record] {text}", flush=True)


def _wait(what: str, predicate: Callable[[], Any], timeout: float,
          procs: Supervisor, detail: Callable[[], str] = lambda: "") -> Any:
    end = time.monotonic() + timeout
    while True:
        procs.check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            extra = detail()
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}"
                               + (f": {extra}" if extra else "") +
                               f" (node logs in {procs.log_dir})")
        time.sleep(0.05)


def launch_args(settings: RecordSettings) -> dict[str, str]:
    return {"task": settings.task, "seed": str(settings.seed),
            "scene_seed": str(settings.scene_seed), "scene_spread": str(settings.scene_spread)}


def node_params(settings: RecordSettings, out: Path) -> dict[str, dict[str, Any]]:
    """Each node's parameters beyond its config/ file and the launch arguments."""
    return {
        "sim_arm": {"episodes_per_start": settings.episodes_per_start,
                    **({} if settings.cameras else {"camera_rate_hz": 0.0})},
        "sim_leader": {"wait_for_start": True, "mode": settings.mode, "seed": settings.seed},
        "recorder": {"dataset_dir": str(out), "task": TASK_TEXT[settings.task],
                     "topics": recorded_topics(settings), "backend": settings.backend},
    }


def recorded_topics(settings: RecordSettings) -> list[str]:
    return (CAMERA_TOPICS if settings.cameras else []) + STATE_TOPICS


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def record_sim(settings: RecordSettings) -> list[Path]:
    """Record settings.episodes episodes; returns their bag directories. Ctrl-C or SIGTERM
    discards the episode in progress and stops the nodes (KeyboardInterrupt). The graph runs on
    rosenv.job_network."""
    settings.check()
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        if settings.workers > 1:  # each worker a `genpol record --sim` on its own network
            from genpol.jobs.record_workers import record_parallel

            return record_parallel(settings)
        with job_network("record"):
            return _record(settings)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)


def _record(settings: RecordSettings) -> list[Path]:
    out = Path(settings.out).expanduser().resolve()
    reason = ep.check_writable(out, 0)
    if reason:
        raise RuntimeError(reason)
    try:
        from genpol.nodes.record_client import RecordClient
        from genpol.nodes.session import Session
    except ImportError as exc:
        raise RuntimeError(f"genpol record needs rclpy and the ROS 2 messages ({exc}); `make "
                           "setup` installs them, or source a ROS 2 distribution") from exc
    nodes = graph.resolve(launch_args(settings), node_params(settings, out), graph.RECORDING)
    log_dir = Path(tempfile.mkdtemp(prefix="genpol-record-logs-"))
    done: list[Path] = []
    with Supervisor(log_dir, tag="record") as procs:
        # out of the terminal's group: on Ctrl-C the recorder must not stop the open episode
        # itself (it would keep it, success unknown) before this job discards it
        procs.start_graph(nodes, own_session=True)
        _say(settings, f"started {', '.join(procs.procs)}; waiting for them "
                       f"(logs in {log_dir})")
        with Session() as session:
            client = session.spin(RecordClient(session.context))
            _wait("the nodes' services", lambda: not client.missing_services(),
                  settings.startup_timeout_s, procs, lambda: str(client.missing_services()))
            wanted = recorded_topics(settings)

            def unseen() -> list[str]:
                received = client.status("recorder").get("received", {})
                return [t for t in wanted if not received.get(t)]

            _wait("messages on every recorded topic", lambda: not unseen(),
                  settings.startup_timeout_s, procs,
                  lambda: f"nothing yet on {unseen()}" + (
                      " (cameras need offscreen GL: see sim_arm's log, or record with "
                      "--no-cameras)" if set(unseen()) & set(CAMERA_TOPICS) else ""))
            episodes = _Episodes(settings, client, procs)
            try:
                for i in range(settings.episodes):
                    done.append(episodes.record(i))
            except BaseException:
                episodes.discard_open()
                raise
    if not settings.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        _say(settings, f"node logs kept in {log_dir}")
    return done


class _Episodes:
    """One episode after another through the recorder; knows whether one is open."""

    def __init__(self, settings: RecordSettings, client: RecordClient, procs: Supervisor):
        self.settings = settings
        self.client = client
        self.procs = procs
        self.open = False

    def discard_open(self) -> None:
        """Interrupted or failed mid-episode: what was recorded is not a demonstration. Discard
        it, if the recorder opened it (its status says so within a second)."""
        if not self.open:
            return
        client = self.client
        end = time.monotonic() + 1.0
        while not client.status("recorder").get("recording") and time.monotonic() < end:
            time.sleep(0.02)
        if client.status("recorder").get("recording"):
            with contextlib.suppress(Exception):  # the recorder may be shutting down already
                _say(self.settings, client.trigger(DISCARD_EPISODE, timeout=3.0))

    def record(self, i: int) -> Path:
        settings, client, procs = self.settings, self.client, self.procs
        t_start = time.monotonic()
        before = client.status("sim").get("episode", -1)
        client.trigger(SIM_RESET)
        episode = _wait("sim_arm's status after the reset",
                        lambda: (client.status("sim").get("episode", -1) > before
                                 and client.status("sim")["episode"]), 10.0, procs)
        plan = _wait(f"sim_leader's plan for episode {episode}",
                     lambda: (client.status("plan").get("episode") == episode
                              and client.status("plan")),
                     10.0, procs, lambda: f"its last plan: {client.status('plan')}")
        time.sleep(settings.settle_s)  # the arm holds the start pose
        self.open = True  # from here on an interruption discards what was recorded
        client.trigger(START_EPISODE)
        path = _wait("the recorder to open the episode",
                     lambda: client.status("recorder").get("recording") and
                     client.status("recorder").get("path"), 5.0, procs)
        client.trigger(LEADER_START)
        _wait(f"the {plan['mode']} demonstration to end",
              lambda: (client.status("plan").get("episode") == episode
                       and client.status("plan").get("state") == "done"),
              plan["duration_s"] + 15.0, procs,
              lambda: f"sim_leader's plan: {client.status('plan')}")
        time.sleep(settings.settle_s)
        status = _wait("sim_arm's status",
                       lambda: (client.status("sim").get("episode") == episode
                                and client.status("sim")), 5.0, procs)
        client.set_node_parameters("recorder", {
            "episode_success": bool(status["success"]),
            "episode_extra": json.dumps({"sim": {
                "task": status["task"], "episode": episode, "seed": status["seed"],
                "scene_seed": status.get("scene_seed"), "collided": status["collided"],
                "target": status.get("target"), "expert_mode": plan["mode"],
                "expert_duration_s": plan["duration_s"]}}),
        })
        client.trigger(STOP_EPISODE)
        self.open = False
        path = Path(path)
        meta = ep.read_metadata(path) or {}
        if meta.get("mode") != plan["mode"]:
            raise RuntimeError(f"episode {path.name}: the recorder stored mode "
                               f"{meta.get('mode')!r}, but the expert played {plan['mode']!r}")
        counts = meta.get("message_counts", {})
        frames = "+".join(str(counts.get(t, 0)) for t in CAMERA_TOPICS if t in counts)
        stall = _longest_gap(path, topics.LEADER_JOINT_STATES)
        _say(settings, f"episode {i + 1}/{settings.episodes} -> {path}: {plan['mode']}, "
                       f"{'success' if status['success'] else 'FAILED'}"
                       f"{' (collided)' if status['collided'] else ''}, "
                       f"{counts.get(topics.JOINT_STATES, 0)} joint states"
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
