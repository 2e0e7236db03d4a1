"""`genpol eval`: closed-loop evaluation of a policy through the simulated ROS graph.

Starts the same nodes as `genpol bringup` (sim_arm, planner, executor; one process each,
resolved by genpol.graph, with --param values on top, and supervised by genpol.launcher), then
drives episodes from an in-process probe node (genpol.nodes.eval_probe, in the client session):
reset sim_arm (the next start pose), the planner and the executor through their ~/reset
services, and watch /sim_arm/episode and /joint_states until success has held for hold_s, the
arm touches the obstacle, or the timeout. With push_at_s the probe also shoves the arm once per
episode (sim_arm's ~/push), so success after a disturbance is measured. The node processes are
stopped on every way out. rclpy is imported only once a run starts.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genpol import graph, parameters, robot
from genpol.evaluation import report
from genpol.control.timeline import switch_time
from genpol.evaluation.metrics import (EpisodeOutcome, first_push, format_table, judge,
                                       seam_jerk)
from genpol.evaluation.video import Clip, paths_at
from genpol.sim.cameras import project_front
from genpol.launcher import Supervisor
from genpol.rosenv import job_network
from genpol.sim import tasks

if TYPE_CHECKING:
    from genpol.nodes.eval_probe import EvalProbe

#: sim seconds an episode may take, per task (the experts take ~3.5 s and ~7 s)
TIMEOUTS = {tasks.REACH_AROUND: 10.0, tasks.PICK_PLACE: 20.0}


@dataclass
class EvalSettings:
    policy: str
    task: str = tasks.REACH_AROUND
    episodes: int = 10
    out: str = "eval-results"
    seed: int = 0             # sim_arm's seed: episode i starts from pose seed + 1 + i
    scene_seed: int = -1      # >= 0: one layout for every episode
    scene_spread: float = 1.0  # reach_around: how far layouts range sideways
    executor_mode: str = ""   # empty: config/executor.yaml's mode
    videos: int = 3           # episodes recorded into the MP4
    timeout_s: float = 0.0    # 0: TIMEOUTS[task]
    hold_s: float = 0.5       # success must hold this long
    push_at_s: float = 0.0    # > 0: sim_arm's ~/push once per episode at this sim time
    startup_timeout_s: float = 120.0
    progress: bool = True
    #: extra node parameters over config/<node>.yaml: {"planner": {"num_samples": 16}}
    params: dict = field(default_factory=dict)

    def check(self) -> None:
        from genpol.control.config import MODES
        from genpol.planning import check_checkpoint

        if self.task not in tasks.TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {list(tasks.TASKS)}")
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if self.videos < 0:
            raise ValueError(f"--videos must be >= 0, got {self.videos}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        if self.timeout_s < 0 or self.hold_s < 0:
            raise ValueError("--timeout-s and the hold time must be >= 0")
        if not (math.isfinite(self.push_at_s) and self.push_at_s >= 0):
            raise ValueError(f"--push-at must be >= 0 (sim seconds into each episode; 0: no "
                             f"push), got {self.push_at_s:g}")
        if self.push_at_s >= self.timeout:
            raise ValueError(f"--push-at {self.push_at_s:g} is not before the episode timeout "
                             f"({self.timeout:g} s): no episode would be pushed")
        if self.executor_mode and self.executor_mode not in MODES:
            raise ValueError(f"--executor-mode must be one of {list(MODES)}, "
                             f"got {self.executor_mode!r}")
        unknown = sorted(set(self.params) - {"sim_arm", "planner", "executor"})
        if unknown:
            raise ValueError(f"--param names a node outside the sim graph: {unknown}; use "
                             "sim_arm.NAME, planner.NAME or executor.NAME")
        self.params = {node: _typed_like_config(node, values)
                       for node, values in self.params.items()}
        reason = check_checkpoint(self.policy)
        if reason:
            raise ValueError(f"--policy: {reason}")

    @property
    def timeout(self) -> float:
        return self.timeout_s or TIMEOUTS[self.task]

    def executor_timing(self) -> tuple[str, float]:
        """(merge mode, tick period) the executor runs with: --executor-mode or --param over
        its parameter table's defaults."""
        values = parameters.defaults("executor") | self.params.get("executor", {})
        return self.executor_mode or values["mode"], 1.0 / float(values["rate_hz"])

    def launch_args(self) -> dict[str, str]:
        args = {"policy_path": str(Path(self.policy).resolve()), "task": self.task,
                "seed": str(self.seed), "scene_seed": str(self.scene_seed),
                "scene_spread": str(self.scene_spread)}
        return args | ({"executor_mode": self.executor_mode} if self.executor_mode else {})


def _typed_like_config(node: str, values: dict[str, Any]) -> dict[str, Any]:
    """--param values checked against the node's parameter table (which config/<node>.yaml
    equals): an unknown name is an error (the node would die on it at start-up), and a whole
    number for a float parameter (`rate=2`) becomes a float, since ROS rejects an INTEGER for a
    DOUBLE (and so for each element of a float list)."""
    known = parameters.defaults(node)
    out = {}
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"--param {node}.{name}: {node} has no parameter {name!r}; it has "
                             f"{sorted(known)}")
        default = known[name]
        if isinstance(default, list) and default and isinstance(default[0], float) \
                and isinstance(value, list):
            value = [_float_if_whole(v) for v in value]
        elif isinstance(default, float):
            value = _float_if_whole(value)
        out[name] = value
    return out


def _float_if_whole(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _say(settings: EvalSettings, text: str) -> None:
    if settings.progress:
        print(f"[eval] {text}", flush=True)


# --------------------------------------------------------------------------------- episodes


def _wait_ready(settings: EvalSettings, procs: Supervisor, probe: EvalProbe) -> None:
    start = time.monotonic()
    while True:
        procs.check()
        missing = probe.missing_services()
        if probe.states_seen == 0:
            missing.append("/joint_states")
        if probe.latest_status is None:
            missing.append("/sim_arm/episode")
        if settings.videos and probe.frames_seen == 0:
            missing.append("/camera/image_raw")
        if not missing:
            return
        if time.monotonic() - start > settings.startup_timeout_s:
            raise RuntimeError(f"the graph was not ready after {settings.startup_timeout_s:g} s: "
                               f"still waiting for {missing} (logs in {procs.log_dir})")
        time.sleep(0.1)


@dataclass
class Trace:
    """An episode's commanded arm trajectory (the executor's first points, at receipt; times
    from the episode's reset) and when each chunk started to play."""

    times: np.ndarray      # (T,)
    positions: np.ndarray  # (T, 5) robot.ARM_JOINTS
    switches: np.ndarray   # (K,)


def _write_traces(path: Path, traces: list[Trace]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for i, tr in enumerate(traces):
        arrays |= {f"times_{i}": tr.times, f"positions_{i}": tr.positions,
                   f"switches_{i}": tr.switches}
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def _latency_ms(received: Iterable[tuple[float, float]], until: float) -> list[float]:
    """(arrival, stamp) pairs that arrived by `until` -> arrival - stamp in ms."""
    return [round((got - stamp) * 1000.0, 2) for got, stamp in received if got <= until]


def _episode(i: int, settings: EvalSettings, procs: Supervisor, probe: EvalProbe
             ) -> tuple[EpisodeOutcome, np.ndarray, Clip | None, Trace]:
    probe.begin(record_frames=i < settings.videos)
    # Order matters. sim_arm first: the arm jumps to the next start pose (and ignores commands
    # planned before, see its reset_guard_s). Then the planner: it forgets the last episode's
    # mode and plans only on observations from now (the new pose). Then the executor: it drops
    # every chunk planned before now, including ones the planner chose by consistency with the
    # last episode's, and holds the state it measures next. (A chunk planned between the two
    # resets is dropped too, but it was drawn afresh at the new pose: keeping to its mode
    # biases nothing.)
    probe.reset("sim_arm")
    probe_t0 = probe.now()
    probe.start_at(probe_t0)
    probe.reset("planner")
    probe.reset("executor")
    wall_limit = time.monotonic() + 3 * settings.timeout + 30
    decided = None
    while decided is None:
        time.sleep(0.05)
        procs.check()
        statuses = probe.statuses()
        decided = judge(statuses, settings.timeout, settings.hold_s)
        if decided is None and time.monotonic() > wall_limit:
            raise RuntimeError(f"episode {i}: sim_arm's episode time stopped advancing "
                               f"(logs in {procs.log_dir})")
    rec = probe.end()
    if rec.push_error:
        raise RuntimeError(f"episode {i}: /sim_arm/push failed: {rec.push_error} (logs in "
                           f"{procs.log_dir})")
    outcome, t_end = decided
    first = rec.statuses[0]
    inst = tasks.sample(settings.task, int(first["seed"]), first["scene_seed"],
                        float(first.get("scene_spread", 1.0)))
    if not np.allclose(inst.target, first["target"], atol=1e-3):
        raise RuntimeError(f"episode {i}: sim_arm's target {first['target']} is not the one "
                           f"tasks.sample gives for seed {inst.seed}: are they the same genpol?")
    q = rec.joint_path()
    tips = robot.forward_kinematics(q) if len(q) else np.zeros((0, 3))
    mode, tick_s = settings.executor_timing()
    switches = [switch_time(stamp, times, got, mode, tick_s) for got, stamp, times in rec.chunks]
    cmd_t = np.array([t for t, _ in rec.commands])
    cmd_q = (np.array([p for _, p in rec.commands], float).reshape(len(cmd_t), -1)
             if rec.commands else np.zeros((0, len(robot.JOINT_NAMES))))  # none: nothing moved
    # The commanded motion between the first chunk's start and the outcome: before it the
    # executor holds (and follows the reset's jump), after it the episode is over.
    during = ((cmd_t >= min(switches, default=np.inf))
              & (cmd_t <= probe_t0 + float(t_end)))
    jerk = seam_jerk(cmd_t[during], cmd_q[during], switches)
    final = closest = offset = None
    if len(q):
        offset = float(np.linalg.norm(tips[0] - robot.forward_kinematics(inst.q_start)))
        if settings.task == tasks.REACH_AROUND:
            dist = np.linalg.norm(tips - inst.target, axis=1)
            final, closest = float(dist[-1]), float(dist.min())
    episode = EpisodeOutcome(index=i, seed=inst.seed, scene_seed=inst.scene_seed,
                      scene_spread=inst.spread, outcome=outcome,
                      duration_s=round(float(t_end), 3),
                      mode=tasks.mode_of(inst, q) if len(q) else "none",
                      final_distance_m=final, min_distance_m=closest, start_offset_m=offset,
                      samples=len(q), pushed_at_s=first_push(statuses),
                      mode_switched=tasks.mode_switched(inst, q),
                      seam_jerk_sq=jerk[0], seam_ticks=jerk[1], free_jerk_sq=jerk[2],
                      free_ticks=jerk[3], chunk_rate_hz=_rate(rec, probe_t0, float(t_end)),
                      chunk_latency_ms=_latency_ms(((got, stamp) for got, stamp, _ in rec.chunks),
                                                   probe_t0 + float(t_end)),
                      planner_latency_ms=_latency_ms(rec.plans, probe_t0 + float(t_end)))
    clip = None
    if rec.record_frames:
        label = f"{episode.outcome} ({episode.mode}) {episode.duration_s:.1f} s"
        clip = Clip(rec.frames, f"{settings.task} episode {i}, seed {inst.seed}", label,
                    rec.frame_stamps, _projected_paths(rec))
    trace = Trace(cmd_t - probe_t0, cmd_q, np.array(switches) - probe_t0)
    return episode, tips, clip, trace


def _projected_paths(rec) -> list[list[np.ndarray]]:
    """The sampled chunks' end-effector paths in each recorded front-camera frame's pixels."""
    if not rec.frames or not rec.chunk_paths:
        return []
    h, w = rec.frames[0].shape[:2]
    return [[project_front(p, w, h) for p in paths]
            for paths in paths_at(rec.frame_stamps, rec.chunk_paths)]


def _rate(rec, t0: float, duration: float) -> float | None:
    """Chunks received per second over the episode's first `duration` seconds."""
    if duration <= 0:
        return None
    return sum(1 for got, _, _ in rec.chunks if got - t0 <= duration) / duration


def _frame_rate(clips: list[Clip]) -> float:
    gaps = np.concatenate([np.diff(c.stamps) for c in clips] or [np.zeros(0)])
    gaps = gaps[gaps > 0]
    return float(np.clip(round(1.0 / np.median(gaps)), 1, 60)) if len(gaps) else 10.0


def _raise_keyboard_interrupt(*_):
    raise KeyboardInterrupt


def run(settings: EvalSettings, command: str | None = None) -> dict[str, Any]:
    """Run the evaluation and write its files; returns results.json's content.

    ValueError for bad settings (before anything starts); RuntimeError if the graph fails; on
    Ctrl-C (or SIGTERM) the graph is stopped, the episodes so far are written (marked
    interrupted) and KeyboardInterrupt propagates. The graph runs on rosenv.job_network.
    """
    settings.check()
    with job_network("eval"):
        return _run(settings, command)


def _run(settings: EvalSettings, command: str | None) -> dict[str, Any]:
    try:
        from genpol.nodes.eval_probe import EvalProbe
        from genpol.nodes.session import Session
    except ImportError as exc:
        raise RuntimeError(f"genpol eval needs rclpy and the ROS 2 messages ({exc}); `make "
                           "setup` installs them, or source a ROS 2 distribution") from exc
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    episodes: list[EpisodeOutcome] = []
    paths: list[np.ndarray] = []
    clips: list[Clip] = []
    traces: list[Trace] = []
    interrupted = False
    old_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        nodes = graph.resolve(settings.launch_args(), settings.params)
        procs = Supervisor(out / "logs", tag="eval")
        _say(settings, f"starting {settings.task} graph (sim_arm, planner, executor); node logs "
                       f"in {procs.log_dir}")
        with procs, Session() as session:
            procs.start_graph(nodes)
            probe = session.spin(EvalProbe(session.context, cameras=settings.videos > 0,
                                           push_at_s=settings.push_at_s))
            _wait_ready(settings, procs, probe)
            _say(settings, f"graph ready after {time.perf_counter() - wall:.1f} s; "
                           f"{settings.episodes} episodes, timeout {settings.timeout:g} s")
            for i in range(settings.episodes):
                ep, tips, clip, trace = _episode(i, settings, procs, probe)
                episodes.append(ep)
                traces.append(trace)
                paths.append(tips)
                if clip is not None:
                    clips.append(clip)
                wins = sum(e.success for e in episodes)
                dist = ("" if ep.final_distance_m is None
                        else f", final {ep.final_distance_m * 100:.1f} cm")
                if ep.pushed_at_s is not None:
                    dist += f", pushed at {ep.pushed_at_s:.2f} s"
                _say(settings, f"episode {i + 1}/{settings.episodes} seed {ep.seed}: "
                               f"{ep.outcome} ({ep.mode}) in {ep.duration_s:.1f} s{dist}; "
                               f"success so far {wins}/{len(episodes)}")
    except KeyboardInterrupt:
        interrupted = True
        _say(settings, "interrupted: graph stopped")
    finally:
        signal.signal(signal.SIGTERM, old_term)
    if not episodes:  # interrupted before the first episode ended: nothing to report
        raise KeyboardInterrupt
    from genpol.policies.checkpoint import read_config

    raw = read_config(settings.policy)
    policy = {"path": str(Path(settings.policy).resolve()),
              **{k: raw.get(k) for k in ("family", "horizon", "fps", "cameras")}}
    _write_traces(out / "commands.npz", traces)
    results = report.write(out, settings.task, episodes, paths, clips,
                           {**asdict(settings), "timeout_s": settings.timeout}, policy,
                           time.perf_counter() - wall, _frame_rate(clips), interrupted, command)
    if settings.progress:
        print()
        print(format_table(results["figures"], episodes))
        print(f"\nwall time {results['wall_seconds']:.1f} s")
        for key, path in results["files"].items():
            print(f"{key:<13} {path}")
    if interrupted:
        raise KeyboardInterrupt
    return results
