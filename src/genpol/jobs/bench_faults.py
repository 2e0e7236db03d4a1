"""The fault benchmark's graph run (`genpol bench faults`; its rows, measures and targets:
genpol.bench.faults).

sim_arm and the planner run as node processes under the supervisor on a private ROS network
(genpol.rosenv), started from the same graph definition and config/*.yaml as `genpol bringup`;
the executor runs in this process as its node process runs it (genpol.nodes.tick_probe), so its
tick times are exact; a probe node (genpol.nodes.fault_probe) watches the topics and sends the
malformed chunks. Each row injects its fault (kill -9 and restart of a process, a bad parameter,
a malformed message, a full disk, busy processes) and checks what must hold from what the graph
published. The recorder and the camera run as processes of their own in their rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genpol import graph, parameters, robot, topics
from genpol.bench import faults as bench
from genpol.bench.common import CpuMeter, cpu_seconds, run_meta, write_results
from genpol.bench.executor import ensure_policy, period_stats
from genpol.launcher import Supervisor, node_argv, parent_death_signal
from genpol.rosenv import isolated

if TYPE_CHECKING:
    from genpol.nodes.fault_probe import FaultProbe
    from genpol.nodes.session import Session
    from genpol.nodes.tick_probe import TickProbe

Checks = list[dict[str, Any]]
Details = dict[str, Any]

#: the recorder rows' settings (config/recorder.yaml's flush period)
RECORDED_TOPICS = [topics.JOINT_STATES, topics.CAMERA_IMAGE]
FLUSH_PERIOD_S = float(parameters.defaults("recorder")["flush_period_s"])
#: the disk-full row: a tmpfs this large, filled up to leave this much for the episodes
TMPFS_MB, FREE_BYTES = 20, 3_000_000
#: without a tmpfs (not root, no mount): the recorder's files may not grow past this
FSIZE_LIMIT = 1_500_000
FAULT_CAMERA_TOPIC = "/fault_camera/image_raw"
#: SCHED_FIFO priority of the benchmark's own threads (below the executor's spin_priority)
PROBE_PRIORITY = 30
#: how far the sim_arm row moves shoulder_pan from the start pose before the kill (rad)
JUMP_RAD = 0.6


@dataclass
class Run:
    """What the rows share: the graph, the executor in this process, the probe, settings."""

    out: Path
    quick: bool
    progress: bool
    procs: Supervisor
    session: Session | None = None
    ticker: TickProbe | None = None
    probe: FaultProbe | None = None
    policy: Path | None = None
    bad: dict[str, Path] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # role -> its running process's name
    #: SCHED_FIFO priority of this process's own threads (main, probe), below the executor's
    priority: int = 0
    start_pose: np.ndarray | None = None
    restarts: int = 0

    def say(self, text: str) -> None:
        if self.progress:
            print(f"[bench faults] {text}", flush=True)

    @property
    def p(self) -> FaultProbe:
        if self.probe is None:
            raise RuntimeError("the probe node is not running")
        return self.probe

    @property
    def t(self) -> TickProbe:
        if self.ticker is None:
            raise RuntimeError("the executor is not running")
        return self.ticker

    def running(self, role: str) -> bool:
        name = self.names.get(role)
        return name is not None and name in self.procs.procs and \
            self.procs.procs[name].poll() is None

    def param_dir(self) -> Path:
        d = self.out / "logs" / "params"
        d.mkdir(parents=True, exist_ok=True)
        return d


# --------------------------------------------------------------------------------- helpers


def _within(run: Run, predicate: Callable[[], Any], timeout: float) -> float | None:
    """Seconds until `predicate` held, None if it did not within `timeout`; RuntimeError when
    a node process ends meanwhile (a row then says why it could not run)."""
    start = time.monotonic()
    while not predicate():
        run.procs.check()
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.02)
    return time.monotonic() - start


def _wait(run: Run, predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until `predicate` held; RuntimeError saying `what` did not happen otherwise."""
    took = _within(run, predicate, timeout)
    if took is None:
        raise RuntimeError(f"{what} within {timeout:g} s (logs in {run.procs.log_dir})")
    return took


def _start(run: Run, role: str, node: graph.ResolvedNode, label: str | None = None) -> int:
    label = label or role
    run.procs.start(label, node_argv(node, run.param_dir()))
    run.names[role] = label
    return run.procs.procs[label].pid


def _restart(run: Run, role: str) -> int:
    """The role's process again, with the argv it was started with."""
    argv = run.procs.argv[run.names[role]]
    run.restarts += 1
    label = f"{role}.restart{run.restarts}"
    run.procs.start(label, argv)
    run.names[role] = label
    return run.procs.procs[label].pid


def _kill9(run: Run, role: str) -> None:
    """SIGKILL the role's process and forget it (the supervisor would report it as failed)."""
    proc = run.procs.procs.pop(run.names[role])
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _stop(run: Run, role: str) -> None:
    """Stop the role's process the clean way (SIGINT, then SIGKILL) and forget it."""
    proc = run.procs.procs.pop(run.names.pop(role), None)
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _executor_limits(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(lower, upper, max step per tick) of the arm joints, and the tick period, as the
    executor enforces them."""
    cfg = run.t.node.config
    lower, upper, velocity = bench.arm_limits()
    return lower, upper, velocity * cfg.velocity_scale / cfg.rate_hz, cfg.dt


def _command_checks(run: Run, since: float, allowed_jumps: int = 0) -> tuple[Checks, Details]:
    """No command outside the limits; consecutive commands within the speed limit per tick
    (`allowed_jumps`: steps a re-anchoring takes to the measured state)."""
    lower, upper, max_step, dt = _executor_limits(run)
    times, q = run.p.commands_since(since)
    jumps = bench.command_jumps(times, q, max_step, dt)
    over = 0
    if len(times) > 1:
        ticks = np.maximum(1.0, np.round(np.diff(times) / dt))
        steps = np.abs(np.diff(q, axis=0)) / (max_step[None, :] * ticks[:, None])
        over = int(np.sum(steps.max(axis=1) > 1 + 1e-6))
    outside = bench.outside_limits(q, lower, upper)
    checks = [bench.check("commands outside the joint limits", outside, "0", outside == 0)]
    if allowed_jumps:
        checks.append(bench.check("command steps beyond the speed limit", over,
                                  f"<= {allowed_jumps} (re-anchoring to the measured state)",
                                  over <= allowed_jumps))
    else:
        ratio = jumps["worst_step_ratio"]
        checks.append(bench.check("worst command step / speed limit per tick", ratio, "<= 1",
                                  ratio is not None and ratio <= 1 + 1e-6))
    return checks, {**jumps, "steps_over_limit": over, "outside_limits": outside}


def _last_chunk_end(run: Run) -> float:
    """When the last planner chunk received ends (its stamp + its last point), ROS time."""
    chunks = run.p.chunks_since(-np.inf)
    return max((stamp + last for _, stamp, last in chunks), default=-np.inf)


def _pause_planner(run: Run) -> bool:
    """Stop the planner planning (it plans on nothing older than 0 s) and wait for its last
    chunk to run out; False if it is not running."""
    if not run.running("planner"):
        return False
    run.p.set_node_parameters("planner", {"max_observation_age_s": 0.0}, timeout=30)
    time.sleep(0.3)  # a chunk sampled before the set may still come
    end = _last_chunk_end(run)
    _wait(run, lambda: run.p.now() > end + 0.1, 10, "the planner's last chunk did not end")
    return True


def _resume_planner(run: Run) -> None:
    value = float(parameters.defaults("planner")["max_observation_age_s"])
    run.p.set_node_parameters("planner", {"max_observation_age_s": value}, timeout=30)


def _measured(run: Run) -> np.ndarray:
    state = run.p.last_state
    if state is None:
        raise RuntimeError("no /joint_states heard")
    return state[1]


def _executor_status(run: Run, timeout: float = 3.0) -> dict:
    """The executor's next ~/status (it publishes one a second)."""
    asked = time.monotonic()
    _wait(run, lambda: run.p.status("executor", asked) is not None, timeout,
          "no /executor/status")
    status = run.p.status("executor", asked)
    assert status is not None
    return status


def _spin_probe(run: Run) -> FaultProbe:
    from genpol.nodes.fault_probe import FaultProbe

    assert run.session is not None
    probe = FaultProbe(run.session.context)
    probe.priority = run.priority
    run.probe = run.session.spin(probe)
    _wait(run, lambda: run.p.last_state is not None, 30, "no /joint_states reached the probe")
    return run.probe


# --------------------------------------------------------------------------------- the rows


def row_bad_checkpoints(run: Run) -> tuple[Checks, Details]:
    p = run.p
    assert run.policy is not None
    good = str(run.policy.resolve())
    details: Details = {"policy": good, "kinds": {}}
    checks: Checks = []
    for kind, path in run.bad.items():
        reason, refused = "", False
        try:
            p.set_node_parameters("planner", {"policy_path": str(path)}, timeout=120)
        except RuntimeError as exc:
            reason = str(exc)
            refused = "refused parameters" in reason
        answered_mono, answered = time.monotonic(), p.now()
        value = p.parameter("planner", "policy_path")
        # (the lambdas are waited on here, before the loop moves on)
        publishing = _within(run, lambda: bool(p.chunks_since(answered)),  # noqa: B023
                             10) is not None
        _within(run, lambda: p.status("planner", answered_mono) is not None, 3)  # noqa: B023
        status = p.status("planner", answered_mono)
        running = (status or {}).get("policy_path")
        named = str(path) in (status or {}).get("last_refusal", "")
        ok = refused and value == good and publishing and running == good
        details["kinds"][kind] = {"refused": refused, "reason": reason[-300:],
                                  "parameter_after": value, "status_policy_path": running,
                                  "last_refusal_names_it": named, "still_publishing": publishing}
        what = [w for w, bad in (("accepted", not refused), ("parameter changed", value != good),
                                 ("no chunks after", not publishing),
                                 ("another policy runs", running != good)) if bad]
        checks.append(bench.check(f"{kind}: refused, parameter and policy unchanged, chunks "
                                  "still published", ", ".join(what) or "yes", "yes", ok))
        if not refused:  # put the good one back for the next kind
            with contextlib.suppress(RuntimeError):
                p.set_node_parameters("planner", {"policy_path": good}, timeout=120)
    return checks, details


def row_cpu_hogs(run: Run) -> tuple[Checks, Details]:
    """The executor alone in this process (the probe node stopped, as `genpol bench executor`
    measures it) while 2 busy processes per core run."""
    duration = 10.0 if run.quick else 60.0
    assert run.session is not None
    run.session.stop(run.p)
    run.probe = None
    cores = os.cpu_count() or 1
    hogs: list[subprocess.Popen] = []
    ticker = run.t
    rate = ticker.node.config.rate_hz
    try:
        for _ in range(2 * cores):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                         preexec_fn=parent_death_signal()))
        time.sleep(1.0)
        before = ticker.counts()
        meter = CpuMeter({**run.procs.pids(), "bench": os.getpid(),
                          **{f"hog{i}": h.pid for i, h in enumerate(hogs)}})
        ticks = ticker.record_ticks()
        meter.start()
        end = time.monotonic() + duration
        while time.monotonic() < end:
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            run.procs.check()
        ticker.stop_recording()
        cpu = meter.stop()
        after = ticker.counts()
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait(timeout=10)
    hog_cpu = round(sum(v for k, v in cpu.items() if k.startswith("hog")), 1)
    cpu = {k: v for k, v in cpu.items() if not k.startswith("hog")} | {"hogs_percent": hog_cpu}
    stats = period_stats(list(ticks), rate)
    _spin_probe(run)
    details = {"hogs": len(hogs), "duration_s": duration, **stats,
               "hog_period_error_p99_ms": stats["period_error_p99_ms"],
               "hog_missed_ticks": stats["missed_ticks"],
               "expected_ticks": int(round(duration * rate)),
               "chunks_received": after[0] - before[0], "chunks_accepted": after[1] - before[1],
               "commands_published": after[2] - before[2], "cpu": cpu,
               "tick_realtime": ticker.node.tick_realtime}
    p99, missed = stats["period_error_p99_ms"], stats["missed_ticks"]
    return [bench.check("tick period error p99 (ms)", p99, f"<= {bench.HOG_P99_MS_MAX}",
                        p99 <= bench.HOG_P99_MS_MAX),
            bench.check("missed ticks", missed, "0", missed == 0),
            bench.check("ticks / expected", stats["ticks"] / details["expected_ticks"],
                        ">= 0.99", stats["ticks"] >= 0.99 * details["expected_ticks"])], details


def row_malformed_chunks(run: Run) -> tuple[Checks, Details]:
    p, ticker = run.p, run.t
    node = ticker.node
    paused = _pause_planner(run)
    try:
        return _malformed(run, p, ticker, node)
    finally:
        # A chunk accepted for later (the future stamp) must not play into the next row.
        with contextlib.suppress(RuntimeError):
            p.trigger(topics.service("executor", "reset"))
        if paused:
            _resume_planner(run)


def _malformed(run: Run, p: FaultProbe, ticker: TickProbe, node: Any) -> tuple[Checks, Details]:
    dt = node.config.dt
    flood_s = 1.0 if run.quick else 3.0
    at = _measured(run)
    # Built before the timing starts: making 10,000 points into a message takes this process
    # a while, and the executor ticks in it.
    oversized = bench.malformed_chunk("oversized", p.now(), at)
    oversized_raw = p.chunk_bytes(oversized.stamp, oversized.joint_names, oversized.times,
                                  oversized.positions)
    flood = bench.nan_chunk(p.now(), at)
    flood_raw = p.chunk_bytes(flood.stamp, flood.joint_names, flood.times, flood.positions)
    received0, accepted0, _ = ticker.counts()
    t_row = p.now()
    ticks = ticker.record_ticks()
    kinds: Details = {}
    checks: Checks = []
    delay = None
    for kind in bench.MALFORMED_KINDS:
        chunk = oversized if kind == "oversized" else bench.malformed_chunk(kind, p.now(),
                                                                            _measured(run))
        raw = oversized_raw if kind == "oversized" else p.chunk_bytes(
            chunk.stamp, chunk.joint_names, chunk.times, chunk.positions)
        r0, a0, _ = ticker.counts()
        warned0 = dict(node.warnings.counts())
        sent = time.monotonic()
        p.send(raw)
        _within(run, lambda: ticker.counts()[0] > r0, 3)  # noqa: B023  (waited for here)
        time.sleep(0.15)  # the callback counts the chunk first, then checks it
        r1, a1, _ = ticker.counts()
        warned = {k: n - warned0.get(k, 0) for k, n in node.warnings.counts().items()
                  if n > warned0.get(k, 0)}
        got = bench.outcome(r1 - r0, a1 - a0)
        clamped = any("clamped" in k for k in warned)
        ok = got == "refused" if chunk.expect == "refused" else got == "accepted" and clamped
        kinds[kind] = {"expected": chunk.expect, "outcome": got, "warnings": warned}
        if kind == "oversized":
            time.sleep(0.2)
            delay = bench.tick_delay_ms(list(ticks.copy()), sent, sent + 0.3, dt)  # ticking
            kinds[kind]["tick_delay_ms"] = delay
        checks.append(bench.check(f"{kind}: {chunk.expect}",
                                  got + (" (clamped)" if clamped else ""), chunk.expect, ok))
        time.sleep(0.2)

    r0, a0, _ = ticker.counts()
    p.listen_to_chunks(False)  # the executor alone hears it, as in its own process
    try:
        sent_n, start, flood_end = _flood(run, flood_raw, flood_s)
    finally:
        p.listen_to_chunks(True)
    time.sleep(0.3)
    r1, a1, _ = ticker.counts()
    ticker.stop_recording()
    all_ticks = list(ticks)
    flood_ticks = [t for t in all_ticks if start <= t <= flood_end]
    flood_stats = period_stats(flood_ticks, node.config.rate_hz)
    row_stats = period_stats(all_ticks, node.config.rate_hz)
    kinds["nan_flood"] = {"sent": sent_n, "received": r1 - r0, "accepted": a1 - a0,
                          "rate_hz": round(sent_n / (flood_end - start), 1),
                          "ticks": flood_stats}
    checks.append(bench.check("NaN flood at 300 Hz: every chunk refused",
                              f"{a1 - a0} of {r1 - r0} received accepted ({sent_n} sent)",
                              "0 accepted", r1 - r0 > 0 and a1 == a0))
    rate = bench.rate_hz(all_ticks)
    checks.append(bench.check("tick rate over the row (Hz)", rate, "50 +- 0.5",
                              rate is not None and abs(rate - node.config.rate_hz) <= 0.5))
    checks.append(bench.check("missed ticks over the row (the flood included)",
                              row_stats["missed_ticks"], "0", row_stats["missed_ticks"] == 0))
    checks.append(bench.check("10,000-point chunk: tick delay (ms)", delay,
                              f"<= {bench.OVERSIZED_DELAY_MS_MAX}",
                              delay is not None and delay <= bench.OVERSIZED_DELAY_MS_MAX))
    command_checks, commands = _command_checks(run, t_row)
    checks += command_checks
    received, accepted, _ = ticker.counts()
    status = _executor_status(run)
    dropped = (received - received0) - (accepted - accepted0)
    checks.append(bench.check(
        "~/status counts the drops (chunks_dropped, chunks_oversized)",
        f"{status.get('chunks_dropped')}, {status.get('chunks_oversized')}",
        f"dropped grew by {dropped}, oversized >= 1",
        status.get("chunks_dropped", 0) >= dropped and status.get("chunks_oversized", 0) >= 1))
    return checks, {"kinds": kinds, "ticks": row_stats, "commands": commands,
                    "oversized_chunk_tick_delay_ms": delay,
                    "executor_status": {k: status.get(k) for k in (
                        "chunks_received", "chunks_accepted", "chunks_dropped",
                        "chunks_oversized", "warnings")}}


def _flood(run: Run, raw: bytes, seconds: float) -> tuple[int, float, float]:
    """The NaN flood from a process of its own (genpol.nodes.fault_probe's main), as a runaway
    planner would send it: (chunks sent, its monotonic start and end)."""
    file = run.out / "malformed_chunks" / "nan_chunk.cdr"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(raw)
    done = subprocess.run([sys.executable, "-m", "genpol.nodes.fault_probe", str(file),
                           str(bench.FLOOD_HZ), str(seconds), "1"], capture_output=True,
                          text=True, timeout=seconds + 90, preexec_fn=parent_death_signal())
    if done.returncode != 0:
        raise RuntimeError(f"the flood process failed: {done.stderr.strip()[-500:]}")
    sent = json.loads(done.stdout.strip().splitlines()[-1])
    return int(sent["sent"]), float(sent["start"]), float(sent["end"])


def row_planner_kill(run: Run) -> tuple[Checks, Details]:
    p, ticker = run.p, run.t
    restart_timeout = 240.0
    if not run.running("planner"):
        raise RuntimeError("the planner is not running")
    t0 = p.now()
    _wait(run, lambda: bool(p.chunks_since(t0)), 30, "no chunk from the planner")
    time.sleep(1.0)
    t_kill = p.now()
    _kill9(run, "planner")
    time.sleep(0.5)  # a chunk in flight lands
    end = _last_chunk_end(run)
    _wait(run, lambda: p.now() > max(end, t_kill) + 1.5, 20, "the clock did not move on")
    times, q = p.commands_since(t_kill)
    settled = bench.settled_at(times, q)
    hold_ms = None if settled is None else (settled - end) * 1e3
    gaps = np.diff(np.concatenate([[t_kill], times])) if len(times) else np.array([np.inf])
    status_hold = _executor_status(run)
    # The restart: the executor must take the new planner's chunks.
    accepted0 = ticker.counts()[1]
    _restart(run, "planner")
    resume_s = _within(run, lambda: ticker.counts()[1] > accepted0, restart_timeout)
    played = None
    if resume_s is not None:  # which source its ticks command from, for the next 3 s
        sources = []
        end_watch = time.monotonic() + 3.0
        while time.monotonic() < end_watch:
            sources.append(ticker.node.last_source)
            time.sleep(0.02)
        played = sources.count("chunk") / len(sources)
    status_resumed = _executor_status(run)
    checks = [
        bench.check("the executor holds: last command change after the last chunk's end (ms)",
                    hold_ms, f"<= {bench.HOLD_MS_MAX:g}",
                    hold_ms is not None and hold_ms <= bench.HOLD_MS_MAX),
        bench.check("commands keep coming: longest gap after the kill (ms)",
                    float(gaps.max() * 1e3), f"<= {bench.HOLD_MS_MAX:g}",
                    gaps.max() * 1e3 <= bench.HOLD_MS_MAX),
        bench.check("~/status says hold", status_hold.get("command"), "hold",
                    status_hold.get("command") == "hold"),
        bench.check("chunks followed again after the restart (s to the first accepted)",
                    resume_s, f"<= {restart_timeout:g}", resume_s is not None),
        bench.check("ticks commanding from a chunk in the 3 s after that (fraction)", played,
                    "> 0", played is not None and played > 0),
    ]
    command_checks, commands = _command_checks(run, t0)
    return checks + command_checks, {
        "last_chunk_end_after_kill_s": round(end - t_kill, 3), "hold_ms": hold_ms,
        "planner_restart_to_first_accepted_s": resume_s, "chunk_ticks_after_resume": played,
        "commands": commands,
        "executor_status_after": {k: status_resumed.get(k) for k in
                                  ("command", "chunks_received", "chunks_accepted")}}


def row_sim_arm_kill(run: Run) -> tuple[Checks, Details]:
    p, ticker = run.p, run.t
    node = ticker.node
    paused = _pause_planner(run)
    try:
        return _sim_arm_kill(run, p, node)
    finally:
        if paused:
            _resume_planner(run)


def _sim_arm_kill(run: Run, p: FaultProbe, node: Any) -> tuple[Checks, Details]:
    assert run.start_pose is not None
    dead_s = 1.0 if run.quick else 2.0
    # Take the arm JUMP_RAD away from the start pose the restarted sim_arm will report, so the
    # restart is a jump the executor must take up.
    far = run.start_pose.copy()
    j = 0  # shoulder_pan
    room_up = robot.upper_limits()[j] - 0.1 - far[j]
    far[j] += JUMP_RAD if room_up >= JUMP_RAD else -JUMP_RAD
    times = [k / 10.0 for k in range(10)]
    end = time.monotonic() + 15.0
    while np.abs(_measured(run) - far)[:5].max() >= 0.05:  # a chunk lives 1 s: send anew
        if time.monotonic() > end:
            raise RuntimeError(f"the arm did not reach {far.round(3).tolist()} before the kill "
                               f"(at {_measured(run).round(3).tolist()})")
        at = _measured(run)
        path = [list(map(float, at + (far - at) * min(1.0, k / 4))) for k in range(10)]
        p.send(p.chunk_bytes(p.now(), list(robot.JOINT_NAMES), times, path))
        time.sleep(0.5)
        run.procs.check()
    p.record_joint_states(True)
    t_rec = p.now()
    time.sleep(0.5)
    reanchored0 = node.core.reanchored
    t_kill = p.now()
    _kill9(run, "sim_arm")
    time.sleep(dead_s)
    t_restart = p.now()
    _restart(run, "sim_arm")
    _wait(run, lambda: (p.last_state or (0.0,))[0] > t_restart, 180,
          "no /joint_states from the restarted sim_arm")
    first = p.last_state
    assert first is not None
    _within(run, lambda: node.core.reanchored > reanchored0, 5)
    time.sleep(3.0)
    p.record_joint_states(False)
    stamps, q = p.states_since(t_rec)
    limit = robot.velocity_limits() * node.config.velocity_scale
    before = stamps < t_restart
    speed_before = bench.measured_speed(stamps[before], q[before], limit)
    speed_after = bench.measured_speed(stamps[~before], q[~before], limit)
    status = _executor_status(run)
    reanchors = node.core.reanchored - reanchored0
    tol = 1 + bench.SPEED_TOLERANCE
    # How far the restarted arm moved off its start pose in its first second (toward the
    # command the executor held for the arm before the kill, until it re-anchored).
    first_s = (stamps >= first[0]) & (stamps <= first[0] + 1.0)
    moved = float(np.abs(q[first_s] - first[1]).max()) if first_s.any() else None
    checks: Checks = []
    for what, s in (("after the restart", speed_after), ("before the kill", speed_before)):
        ratio = s["worst_speed_ratio"]
        checks.append(bench.check(f"measured joint speed / limit, {what}", ratio, f"<= {tol:g}",
                                  ratio is not None and ratio <= tol))
    checks.append(bench.check("re-anchors counted in ~/status",
                              status.get("reanchored"), ">= 1", reanchors >= 1
                              and status.get("reanchored", 0) >= node.core.reanchored))
    command_checks, commands = _command_checks(run, t_kill, allowed_jumps=max(1, reanchors))
    checks += command_checks
    return checks, {
        "jump_rad": round(float(np.abs(first[1] - far).max()), 3),
        "restarted_at_start_pose_rad": round(float(np.abs(first[1] - run.start_pose).max()), 4),
        "sim_arm_restart_to_first_state_s": round(first[0] - t_restart, 2),
        "reanchored": reanchors, "reanchor": status.get("reanchor"),
        "moved_in_first_second_after_restart_rad": moved,
        "speed_before_kill": speed_before, "speed_after_restart": speed_after,
        "commands": commands, "states": int(len(stamps)), "t_kill_offset_s": t_kill - t_rec}


def _recorder_node(dataset: Path, min_free_mb: float = 1.0) -> graph.ResolvedNode:
    spec = next(s for s in graph.RECORD_NODES if s.name == "recorder")
    (node,) = graph.resolve({}, {"recorder": {
        "dataset_dir": str(dataset), "topics": RECORDED_TOPICS, "backend": "mcap",
        "flush_period_s": FLUSH_PERIOD_S, "min_free_mb": min_free_mb}}, nodes=[spec])
    return node


def _recorder_ready(run: Run) -> None:
    p = run.p
    p.expect_triggers(*(topics.service("recorder", n) for n in ("start_episode", "stop_episode")))
    _wait(run, lambda: not p.missing_services(), 120, "the recorder's services did not appear")
    asked = time.monotonic()
    _wait(run, lambda: ((p.status("recorder", asked) or {}).get("received") or {}).get(
        topics.JOINT_STATES, 0) > 0, 30, "the recorder heard no /joint_states")


def _episode(run: Run, seconds: float) -> str:
    run.p.trigger(topics.service("recorder", "start_episode"), timeout=20)
    time.sleep(seconds)
    return run.p.trigger(topics.service("recorder", "stop_episode"), timeout=20)


def _files(bag: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(bag.iterdir())
            if f.is_file()}


def read_bag(bag: Path) -> dict[str, Any]:
    """What the standard readers make of an episode bag: rosbags' rosbag2 Reader (needs
    metadata.yaml) and the mcap library's indexed reader (needs the summary)."""
    import yaml
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader

    out: dict[str, Any] = {}
    try:
        with Reader(bag) as reader:
            out["rosbags_messages"] = sum(1 for _ in reader.messages())
    except Exception as exc:  # any way the reader refuses is the finding
        out["rosbags_error"] = f"{type(exc).__name__}: {exc}"
    try:
        (mcap_file,) = sorted(bag.glob("*.mcap"))
        with open(mcap_file, "rb") as f:
            indexed = make_reader(f)
            summary = indexed.get_summary()
            if summary is None or summary.statistics is None:
                raise ValueError("no summary")
            times = [m.log_time for _, _, m in indexed.iter_messages()]
        out["mcap_messages"] = len(times)
        out["mcap_summary_count"] = summary.statistics.message_count
        out["last_log_time_ns"] = max(times) if times else None
    except Exception as exc:
        out["mcap_error"] = f"{type(exc).__name__}: {exc}"
    meta = yaml.safe_load((bag / "episode.yaml").read_text()) if (
        bag / "episode.yaml").is_file() else {}
    out["status"] = (meta or {}).get("status")
    out["message_counts"] = (meta or {}).get("message_counts")
    n = out.get("rosbags_messages")
    out["readable"] = bool(n and n == out.get("mcap_messages") == out.get("mcap_summary_count"))
    return out


def row_recorder_kill(run: Run) -> tuple[Checks, Details]:
    base = run.out / "recorder_kill"
    shutil.rmtree(base, ignore_errors=True)
    dataset, by_cli = base / "demos", base / "demos_genpol_bag_repair"
    _start(run, "recorder", _recorder_node(dataset))
    try:
        _recorder_ready(run)
        _episode(run, 1.0)
        closed = dataset / "episode_000000"
        closed_files = _files(closed)
        run.p.trigger(topics.service("recorder", "start_episode"), timeout=20)
        time.sleep(1.5 if run.quick else 2.5)
        _kill9(run, "recorder")
        kill_ns = time.time_ns()
        shutil.copytree(dataset, by_cli)
        cli = subprocess.run([sys.executable, "-m", "genpol", "bag", "repair", str(by_cli)],
                             capture_output=True, text=True, timeout=120)
        _restart(run, "recorder")  # it repairs what it finds before it takes a request
        _recorder_ready(run)
        log = run.procs.log_dir / f"{run.names['recorder']}.log" if run.procs.log_dir else None
        logged = [line for line in (log.read_text().splitlines() if log else [])
                  if "episode_000001" in line]
    finally:
        _stop(run, "recorder")
    checks: Checks = []
    details: Details = {"flush_period_s": FLUSH_PERIOD_S, "genpol_bag_repair": {
        "returncode": cli.returncode, "output": (cli.stdout + cli.stderr).strip()[-1500:]},
        "recorder_log": logged[-3:]}
    lost_all, readable_all = [], []
    for how, root in (("recorder restart", dataset), ("genpol bag repair", by_cli)):
        got = read_bag(root / "episode_000001")
        old = read_bag(root / "episode_000000")
        unchanged = _files(root / "episode_000000") == closed_files
        last = got.get("last_log_time_ns")
        lost = None if last is None else (kill_ns - last) * 1e-9
        lost_all.append(lost)
        readable_all.append(got["readable"])
        details[how] = {"open_episode": got, "closed_episode": old, "lost_s": lost,
                        "closed_unchanged": unchanged}
        checks += [
            bench.check(f"{how}: closed episode unchanged and readable",
                        f"{'unchanged' if unchanged else 'CHANGED'}, {old['status']}, "
                        f"{old.get('rosbags_messages')} messages", "unchanged, complete",
                        unchanged and old["readable"] and old["status"] == "complete"),
            bench.check(f"{how}: open episode read by rosbags and mcap (messages)",
                        f"{got.get('rosbags_messages')} / {got.get('mcap_messages')}"
                        + (f" {got.get('rosbags_error') or got.get('mcap_error')}"
                           if not got["readable"] else ""), "equal, > 0", got["readable"]),
            bench.check(f"{how}: open episode status", got["status"], "incomplete",
                        got["status"] == "incomplete"),
            bench.check(f"{how}: lost before the kill (s)", lost,
                        f"<= {FLUSH_PERIOD_S + bench.FLUSH_SLACK_S:g}",
                        lost is not None and lost <= FLUSH_PERIOD_S + bench.FLUSH_SLACK_S)]
    checks.append(bench.check("genpol bag repair exit code", cli.returncode, "0",
                              cli.returncode == 0))
    checks.append(bench.check("the restarted recorder logged its repair", len(logged), ">= 1",
                              any("repaired" in line for line in logged)))
    known = [v for v in lost_all if v is not None]
    details["recorder_lost_s"] = max(known) if len(known) == len(lost_all) else None
    details["repaired_read_by_rosbags_and_mcap"] = all(readable_all)
    return checks, details


def row_disk_full(run: Run) -> tuple[Checks, Details]:
    base = run.out / "disk_full"
    mnt = base / "mnt"
    if mnt.is_mount():
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    shutil.rmtree(base, ignore_errors=True)
    mnt.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs",
                              str(mnt)], capture_output=True, text=True)
    method = "tmpfs" if mounted.returncode == 0 else "file size limit (RLIMIT_FSIZE)"
    run.say(f"disk full: {method}" + ("" if mounted.returncode == 0 else
                                      f" (mount failed: {mounted.stderr.strip()})"))
    dataset = mnt / "demos"
    filler = mnt / "filler"
    try:
        if mounted.returncode == 0:
            _fill(filler, shutil.disk_usage(mnt).free - FREE_BYTES)
        pid = _start(run, "recorder", _recorder_node(dataset, min_free_mb=0.5),
                     "recorder.disk_full")
        if mounted.returncode != 0:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))
        return _disk_full(run, dataset, filler, method, mounted.returncode == 0, pid)
    finally:
        _stop(run, "recorder")
        if mounted.returncode == 0:
            subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


def _fill(path: Path, size: int) -> None:
    block = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        while size > 0:
            f.write(block[:min(size, len(block))])
            size -= len(block)


def _disk_full(run: Run, dataset: Path, filler: Path, method: str, tmpfs: bool,
               pid: int) -> tuple[Checks, Details]:
    p = run.p
    _recorder_ready(run)
    _episode(run, 1.0)
    closed = dataset / "episode_000000"
    closed_files = _files(closed)
    p.trigger(topics.service("recorder", "start_episode"), timeout=20)
    asked = time.monotonic()
    full_s = _within(run, lambda: bool((p.status("recorder", asked) or {}).get("error")), 60)
    error = (p.status("recorder") or {}).get("error")
    try:
        stop_answer, stopped_ok = p.trigger(topics.service("recorder", "stop_episode"),
                                            timeout=20), True
    except RuntimeError as exc:
        stop_answer, stopped_ok = str(exc), False
    failed = read_bag(dataset / "episode_000001")
    alive = run.running("recorder")
    old = read_bag(closed)
    unchanged = _files(closed) == closed_files
    # Space again: the next episode must record as usual.
    if tmpfs:
        filler.unlink()
    else:
        resource.prlimit(pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    again = None
    with contextlib.suppress(RuntimeError):
        _episode(run, 1.0)
        again = read_bag(dataset / "episode_000002")
    checks = [
        bench.check("the recorder reported the write error", (error or "")[-120:], "an error",
                    bool(error)),
        bench.check("stop_episode answered the failure", "failed" if not stopped_ok else
                    "succeeded", "failed", not stopped_ok),
        bench.check("the episode is marked failed (episode.yaml)", failed["status"], "failed",
                    failed["status"] == "failed"),
        bench.check("the closed episode unchanged and readable",
                    f"{'unchanged' if unchanged else 'CHANGED'}, {old['status']}",
                    "unchanged, complete", unchanged and old["readable"]
                    and old["status"] == "complete"),
        bench.check("the recorder still runs", alive, "true", alive),
        bench.check("records again once space is freed (next episode)",
                    None if again is None else f"{again['status']}, "
                    f"{again.get('rosbags_messages')} messages", "complete, readable",
                    again is not None and again["readable"] and again["status"] == "complete"),
    ]
    return checks, {"method": method, "seconds_to_full": full_s, "error": error,
                    "stop_answer": stop_answer[-300:], "failed_episode": failed,
                    "closed_episode": old, "next_episode": again}


def row_camera_unplug(run: Run) -> tuple[Checks, Details]:
    import cv2

    from genpol.camera.capture import CaptureConfig

    base = run.out / "camera_unplug"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    clip, away = base / "clip.avi", base / "clip.avi.unplugged"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (64, 48))
    for k in range(30):
        writer.write(np.full((48, 64, 3), 8 * k, np.uint8))
    writer.release()
    probe_cap = cv2.VideoCapture(str(clip))
    readable = probe_cap.isOpened() and probe_cap.read()[0]
    probe_cap.release()
    if not readable:
        raise RuntimeError(f"OpenCV cannot read back the clip it wrote ({clip}): no MJPG codec")
    spec = next(s for s in graph.NODES if s.name == "camera")
    (node,) = graph.resolve({"sim": "false"}, {"camera": {
        "source": str(clip), "width": 64, "height": 48, "fps": 30.0, "loop_video": True,
        "topic": FAULT_CAMERA_TOPIC, "frame_id": "fault_camera"}}, nodes=[spec])
    away_s = 3.0 if run.quick else 6.0
    retry_max = CaptureConfig().retry_max_s
    p = run.p
    p.frames.clear()
    p.watch_frames(FAULT_CAMERA_TOPIC)
    pid = _start(run, "camera", node)
    try:
        _wait(run, lambda: len(p.frames) >= 10, 90, "no frames from the camera")
        meter = CpuMeter({"camera": pid})
        n0 = len(p.frames)
        meter.start()
        time.sleep(2.0)
        streaming = meter.stop()
        fps = (len(p.frames) - n0) / 2.0
        clip.rename(away)
        time.sleep(0.5)  # frames already on their way
        n_away = len(p.frames)
        meter.start()
        time.sleep(away_s)
        idle = meter.stop()
        during = len(p.frames) - n_away
        away.rename(clip)
        n_back = len(p.frames)
        resume_s = _within(run, lambda: len(p.frames) > n_back, retry_max + 4)
        log = run.procs.log_dir / "camera.log" if run.procs.log_dir else None
        said = [line.split("] ", 1)[-1] for line in (log.read_text().splitlines() if log else [])
                if "unavailable" in line][:1]
    finally:
        _stop(run, "camera")
    cpu_away = idle["camera_percent"]
    return [
        bench.check("frames while the file is away", during, "0", during == 0),
        bench.check("camera CPU while away (% of a core)", cpu_away,
                    f"<= {bench.CAMERA_IDLE_CPU_MAX:g}", cpu_away <= bench.CAMERA_IDLE_CPU_MAX),
        bench.check("frames resume after it is back (s)", resume_s, f"<= {retry_max + 1:g}",
                    resume_s is not None and resume_s <= retry_max + 1),
    ], {"fps_streaming": fps, "cpu_streaming_percent": streaming["camera_percent"],
        "cpu_away_percent": cpu_away, "away_s": away_s, "resume_s": resume_s,
        "logged": said}


ROW_FUNCTIONS: dict[str, Callable[[Run], tuple[Checks, Details]]] = {
    "planner_kill": row_planner_kill, "sim_arm_kill": row_sim_arm_kill,
    "camera_unplug": row_camera_unplug, "recorder_kill": row_recorder_kill,
    "disk_full": row_disk_full, "malformed_chunks": row_malformed_chunks,
    "bad_checkpoints": row_bad_checkpoints, "cpu_hogs": row_cpu_hogs}
#: rows that need the policy graph (sim_arm, the planner, the executor)
NEEDS_GRAPH = frozenset(ROW_FUNCTIONS) - {"camera_unplug"}


# --------------------------------------------------------------------------------- the run


def _policy(out: Path, policy: str | Path | None, quick: bool, train_steps: int, demos: int,
            seed: int, progress: bool) -> Path:
    if policy is not None:
        from genpol.planning import check_checkpoint

        reason = check_checkpoint(str(policy))
        if reason:
            raise ValueError(f"--policy: {reason}")
        return Path(policy)
    if quick:  # untrained, around the start pose: instant, and it plans
        from genpol.bench.bad_checkpoints import tiny_policy
        from genpol.sim import tasks

        home = tasks.sample(tasks.REACH_AROUND, 0).q_start
        return tiny_policy(out / "policy_untrained", home)
    return ensure_policy(out / "policy", train_steps, demos, seed, progress)


def _realtime_below(executor: Any) -> int:
    """With the executor's threads realtime, this process's others go realtime just below
    them: at normal priority, a thread of ours that a busy CPU preempts while it holds the
    interpreter lock would delay the tick, which the executor's own process (its callback
    thread realtime too) does not do. 0 (normal priority) otherwise."""
    spin = int(executor.spin_priority)
    if not executor.tick_realtime or spin <= 1:
        return 0
    priority = min(PROBE_PRIORITY, spin - 1)
    try:  # children (node processes, the busy ones) start at normal priority
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                              os.sched_param(priority))
    except (AttributeError, OSError):
        return 0
    return priority


def _normal_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _start_graph(run: Run, startup_timeout: float) -> None:
    from genpol.nodes import tick_probe

    assert run.policy is not None
    nodes = [n for n in graph.resolve({"policy_path": str(run.policy.resolve())})
             if n.name in ("sim_arm", "planner")]
    for node in nodes:
        _start(run, node.name, node)
    run.session = tick_probe.session(graph.config_dir() / "executor.yaml")
    run.ticker = tick_probe.TickProbe(run.session, {})
    _wait(run, lambda: run.t.node.ticks > 0, 30, "the executor did not tick")
    run.priority = _realtime_below(run.t.node)
    _spin_probe(run)
    t = run.t
    _wait(run, lambda: t.counts()[1] > 0 and t.counts()[2] > 0, startup_timeout,
          "no chunk reached the executor")


def run(rows: Sequence[str] | None = None, quick: bool = False, out: str | Path = "",
        policy: str | Path | None = None, train_steps: int = 300, demos: int = 20,
        seed: int = 0, startup_timeout: float = 240.0, progress: bool = True,
        command: str | None = None) -> dict[str, Any]:
    names = bench.check_rows(list(rows) if rows else
                             list(bench.QUICK_ROWS if quick else bench.BY_NAME))
    out = Path(out or "bench-results/faults")
    out.mkdir(parents=True, exist_ok=True)
    meta = run_meta(command)
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    policy_path = None
    bad: dict[str, Path] = {}
    if set(names) & NEEDS_GRAPH:
        policy_path = _policy(out, policy, quick, train_steps, demos, seed, progress)
        if "bad_checkpoints" in names:
            from genpol.bench.bad_checkpoints import make_bad_checkpoints

            bad = make_bad_checkpoints(policy_path, out / "bad_checkpoints")
    results: list[dict[str, Any]] = []
    setup_s = time.perf_counter() - wall0
    with isolated(out / "logs" / "ros") as env, \
            Supervisor(out / "logs", tag="bench-faults") as procs:
        state = Run(out, quick, progress, procs, policy=policy_path, bad=bad)
        try:
            if set(names) & NEEDS_GRAPH:
                state.say("starting sim_arm and the planner; the executor runs in this process")
                _start_graph(state, startup_timeout)
                state.start_pose = _initial_pose(state)
            else:
                from genpol.nodes.fault_probe import FaultProbe
                from genpol.nodes.session import Session

                state.session = Session()
                state.probe = state.session.spin(FaultProbe(state.session.context))
            for name in names:
                results.append(_one_row(state, name))
        finally:
            _normal_priority()
            if state.ticker is not None:
                state.ticker.close()
            if state.session is not None:
                state.session.close()
    wall = time.perf_counter() - wall0
    meta.update({
        "benchmark": "faults", "quick": quick, "rows": names,
        "ros_domain_id": int(env["ROS_DOMAIN_ID"] or 0), "discovery_range": "LOCALHOST",
        "policy": str(policy_path) if policy_path else None,
        "policy_source": ("--policy" if policy is not None else "untrained (--quick)" if quick
                          else f"trained here ({train_steps} steps, cached)")
        if policy_path else None,
        "processes": {n: " ".join(a) for n, a in procs.argv.items()},
        "flush_period_s": FLUSH_PERIOD_S, "setup_seconds": round(setup_s, 1),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu_seconds() - cpu0, 1)})
    results.sort(key=lambda r: r["number"])
    out_json = {"_meta": meta,
                "targets": bench.targets(results, wall, quick, FLUSH_PERIOD_S),
                "results": results}
    write_results(out, out_json)
    (out / "results.md").write_text(bench.format_table(out_json) + "\n")
    return out_json


def _initial_pose(run: Run) -> np.ndarray:
    """sim_arm's start pose: where a restarted sim_arm (seed 0, episode 0) stands."""
    from genpol.sim import tasks

    return tasks.sample(tasks.REACH_AROUND, int(parameters.defaults("sim_arm")["seed"])).q_start


def _one_row(run: Run, name: str) -> dict[str, Any]:
    row = bench.BY_NAME[name]
    run.say(f"row {name}: {row.fault}")
    start = time.perf_counter()
    try:
        checks, details = ROW_FUNCTIONS[name](run)
        error = ""
    except Exception as exc:  # the row could not run: it says why and does not pass
        checks, details, error = [], {}, f"{type(exc).__name__}: {exc}"
    result = bench.row_result(name, checks, details, error, time.perf_counter() - start)
    if result["passed"]:
        run.say(f"row {name}: passed ({result['wall_s']:g} s)")
    else:
        why = error or "; ".join(f"{c['what']} = {c['value']} (want {c['threshold']})"
                                 for c in checks if not c["ok"])
        run.say(f"row {name}: NOT passed: {why}")
    return result
