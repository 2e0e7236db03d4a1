"""`genpol bench executor`: how evenly the executor ticks at 50 Hz on a CPU it shares.

sim_arm and the planner run as separate processes, started from the same graph definition and
config/*.yaml as `genpol bringup` (the planner with a real policy: a small flow policy trained
here on the simulator's scripted demonstrations, cached under the output folder). The executor
runs in this process exactly as its node process runs it (ExecutorNode, parameters from
config/executor.yaml, spun by the rclpy executor its main() uses), with the start time of every
tick recorded. Per variant (VARIANTS) it reports the period error |actual period - 20 ms|
(mean, p99, max), the ticks missed (a gap of >= 1.5 periods counts the ticks skipped in it),
the chunks received and the commands published (proof that the planner was live), and the CPU
use of each process and of everything else on the machine. Every process runs on a random
ROS_DOMAIN_ID with LOCALHOST discovery, so nothing else hears it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from genpol import presets
from genpol.bench.common import CpuMeter, run_meta, write_results
from genpol.launcher import parent_death_signal

#: the small flow policy the planner runs (config values from config/presets.yaml)
POLICY = presets.policy("flow")
#: variant -> (parameter overrides on top of config/executor.yaml, threads of the rclpy executor
#: spinning the node; None = the node's SPIN_THREADS, as its main() spins it)
VARIANTS: dict[str, tuple[dict[str, Any], int | None]] = {
    # as configured: the deadline thread at SCHED_FIFO priority, with its short final spin
    "thread": ({"tick_source": "thread"}, None),
    # the deadline thread at normal priority, sleeping the whole way
    "thread_plain": ({"tick_source": "thread", "tick_priority": 0, "tick_spin_s": 0.0}, None),
    # an rclpy wall timer on the same single-threaded executor
    "timer": ({"tick_source": "timer"}, None),
    # the node as it was first written: an rclpy timer on a MultiThreadedExecutor(2)
    "timer_mt": ({"tick_source": "timer"}, 2),
}
TARGET_P99_MS = 0.5


# --------------------------------------------------------------------------------- the policy


def ensure_policy(path: Path, steps: int = 300, demos: int = 20, seed: int = 0,
                  progress: bool = True) -> Path:
    """A flow policy trained on scripted reach_around demonstrations, at `path`; reused when a
    previous run trained the same one there."""
    key = {"family": "flow", "policy": POLICY, "steps": steps, "demos_per_seed": demos,
           "seeds": [0], "seed": seed}
    key_file = path / "bench_policy.json"
    if (path / "model.safetensors").is_file() and key_file.is_file():
        try:
            if json.loads(key_file.read_text()) == key:
                return path
        except ValueError:
            pass
    from genpol.sim.demos import scripted_chunks
    from genpol.train import TrainConfig, config_for_data, train

    if progress:
        print(f"[bench executor] training a small flow policy ({steps} steps) into {path}",
              flush=True)
    data = scripted_chunks(seeds=(0,), demos_per_seed=demos, rng_seed=seed)
    config = config_for_data("flow", data, **POLICY)
    train(config, data, TrainConfig(steps=steps, seed=seed, device="cpu", progress=progress,
                                    **presets.train("flow")), out_dir=path)
    key_file.write_text(json.dumps(key))
    return path


# --------------------------------------------------------------------------------- statistics


def period_stats(tick_times: Sequence[float], rate_hz: float) -> dict[str, Any]:
    """Period error |gap - 1/rate| between consecutive tick starts, and missed ticks: a gap of
    >= 1.5 periods skipped round(gap / period) - 1 ticks."""
    t = np.asarray(tick_times, dtype=float)
    period = 1.0 / rate_hz
    if t.size < 2:
        nan = float("nan")
        return {"ticks": int(t.size), "period_mean_ms": nan, "period_error_mean_ms": nan,
                "period_error_p99_ms": nan, "period_error_max_ms": nan, "missed_ticks": 0,
                "late_gaps": 0}
    gaps = np.diff(t)
    err = np.abs(gaps - period) * 1e3
    long = gaps[gaps >= 1.5 * period]
    return {
        "ticks": int(t.size),
        "period_mean_ms": round(float(gaps.mean() * 1e3), 4),
        "period_error_mean_ms": round(float(err.mean()), 4),
        "period_error_p99_ms": round(float(np.percentile(err, 99)), 4),
        "period_error_max_ms": round(float(err.max()), 4),
        "missed_ticks": int(np.sum(np.round(long / period) - 1)),
        "late_gaps": int(long.size),
    }


# --------------------------------------------------------------------------------- processes


@contextlib.contextmanager
def isolated_ros(log_dir: Path) -> Iterator[int]:
    """A random ROS_DOMAIN_ID, LOCALHOST discovery and a private ROS_LOG_DIR in os.environ for
    this process and its children; the previous values come back afterwards."""
    keys = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_LOG_DIR")
    saved = {k: os.environ.get(k) for k in keys}
    domain = random.SystemRandom().randint(1, 100)  # Fast DDS ports stay below ephemeral ones
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; it would override the range
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ["ROS_LOG_DIR"] = str(log_dir)
    try:
        yield domain
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Children:
    """Node processes logging to <log_dir>/<name>.log. Stopped on exit however the block ends:
    SIGINT (a clean rclpy shutdown), then SIGTERM, then SIGKILL for any that linger."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def __enter__(self) -> "Children":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, name: str, argv: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "w")
        self._logs.append(log)
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            env=os.environ.copy(),
                                            preexec_fn=parent_death_signal())

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                try:
                    tail = (self.log_dir / f"{name}.log").read_text()[-2500:]
                except OSError:
                    tail = ""
                raise RuntimeError(f"{name} exited with code {p.returncode}; the end of its log "
                                   f"({self.log_dir / (name + '.log')}):\n{tail}")

    def stop(self, grace: float = 5.0) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                p.send_signal(sig)
            end = time.monotonic() + grace
            for p in alive:
                try:
                    p.wait(max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for log in self._logs:
            log.close()
        self._logs.clear()


def graph_commands(policy_path: Path, workdir: Path) -> list[tuple[str, list[str]]]:
    """sim_arm and planner, argv exactly as `genpol bringup policy_path:=...` builds them."""
    from genpol import graph, launcher

    args = graph.resolve_arguments({"policy_path": str(Path(policy_path).resolve())})
    return [(name, argv) for name, argv in launcher.commands(args, workdir)
            if name in ("sim_arm", "planner")]


# --------------------------------------------------------------------------------- the run


def _measure(ctx, variant: str, duration: float, warmup: float,
             startup_timeout: float, children: Children, progress: bool) -> dict[str, Any]:
    """One variant: the executor node in this process, measured for `duration` seconds."""
    from rclpy.parameter import Parameter

    from genpol.nodes.executor import SPIN_THREADS, ExecutorNode
    from genpol.nodes.spin import make_executor

    overrides, threads = VARIANTS[variant]
    threads = threads or SPIN_THREADS
    node = ExecutorNode(context=ctx, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])
    executor = make_executor(threads, context=ctx)  # as run_node spins it
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, name="bench-spin", daemon=True)
    spin.start()
    try:
        start = time.monotonic()
        while node.chunks_accepted == 0 or node.commands_published == 0:
            children.check_alive()
            if time.monotonic() - start > startup_timeout:
                raise RuntimeError(
                    f"no action chunks reached the executor within {startup_timeout:g} s "
                    f"({node.chunks_received} received, {node.commands_published} commands); "
                    f"see the logs in {children.log_dir}")
            time.sleep(0.1)
        time.sleep(warmup)
        if progress:
            print(f"[bench executor] {variant}: planner live; measuring {duration:g} s",
                  flush=True)
        before = (node.chunks_received, node.chunks_accepted, node.commands_published)
        pids = {name: p.pid for name, p in children.procs.items()}
        meter = CpuMeter({**pids, "bench": os.getpid()})
        ticks = node.record_tick_times()
        meter.start()
        end = time.monotonic() + duration
        while time.monotonic() < end:
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            children.check_alive()
        node.tick_times = None
        cpu = meter.stop()
        after = (node.chunks_received, node.chunks_accepted, node.commands_published)
        rate = node.config.rate_hz
        row = {"variant": variant, "tick_source": node.tick_source,
               "tick_priority": node.tick_priority if node.tick_source == "thread" else 0,
               "tick_spin_s": node.tick_spin_s if node.tick_source == "thread" else 0.0,
               "tick_realtime": node.tick_realtime,
               "spin_executor": type(executor).__name__, "spin_threads": threads,
               "duration_s": duration, "rate_hz": rate,
               "expected_ticks": int(round(duration * rate)),
               **period_stats(list(ticks), rate),
               "chunks_received": after[0] - before[0], "chunks_accepted": after[1] - before[1],
               "commands_published": after[2] - before[2],
               "cpu": cpu}
        row["meets_target"] = bool(row["period_error_p99_ms"] <= TARGET_P99_MS
                                   and row["missed_ticks"] == 0)
        return row
    finally:
        executor.shutdown(timeout_sec=2.0)
        spin.join(timeout=5.0)
        node.destroy_node()


def run(duration: float = 60.0, out: str | Path | None = None,
        variants: Sequence[str] = tuple(VARIANTS), policy: str | Path | None = None,
        train_steps: int = 300, demos: int = 20, seed: int = 0, warmup: float = 2.0,
        startup_timeout: float = 120.0, progress: bool = True,
        command: str | None = None) -> dict[str, Any]:
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ValueError(f"variants must be among {list(VARIANTS)}, got {list(variants)}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    out = Path(out or "bench-results/executor")
    out.mkdir(parents=True, exist_ok=True)
    if policy is None:
        policy = ensure_policy(out / "policy", train_steps, demos, seed, progress)
    else:
        from genpol.planning import check_checkpoint

        reason = check_checkpoint(str(policy))
        if reason:
            raise ValueError(f"policy: {reason}")
    import rclpy

    from genpol.graph import config_dir

    params_file = config_dir() / "executor.yaml"
    meta = run_meta(command)
    rows = []
    wall = time.perf_counter()
    with isolated_ros(out / "logs" / "ros") as domain, \
            tempfile.TemporaryDirectory(prefix="genpol-bench-") as tmp, \
            Children(out / "logs") as children:
        cmds = graph_commands(Path(policy), Path(tmp))
        for name, argv in cmds:
            children.start(name, argv)
        ctx = rclpy.Context()
        rclpy.init(args=["--ros-args", "--params-file", str(params_file)], context=ctx)
        try:
            for variant in variants:
                rows.append(_measure(ctx, variant, duration, warmup,
                                     startup_timeout, children, progress))
                if progress:
                    print(format_row(rows[-1]), flush=True)
        finally:
            rclpy.try_shutdown(context=ctx)
    meta.update({
        "benchmark": "executor", "duration_s": duration, "ros_domain_id": domain,
        "discovery_range": "LOCALHOST", "policy": str(policy), "policy_config": POLICY,
        "train_steps": train_steps, "demos_per_seed": demos,
        "planner_device": _planner_device(),
        "processes": {name: " ".join(argv) for name, argv in cmds},
        "executor_params_file": str(params_file),
        "variants": {v: {"overrides": VARIANTS[v][0], "spin_threads": VARIANTS[v][1] or "node"}
                     for v in variants},
        "target": f"period error p99 <= {TARGET_P99_MS} ms and 0 missed ticks",
        "wall_seconds": round(time.perf_counter() - wall, 1),
    })
    results = {"_meta": meta, "results": rows}
    write_results(out, results)
    return results


def _planner_device() -> str:
    from genpol.planning import resolve_device

    return resolve_device("auto")  # config/planner.yaml: device auto


def table_head() -> str:
    return (f"{'variant':<12} {'ticks':>6} {'err_mean_ms':>11} {'err_p99_ms':>10} "
            f"{'err_max_ms':>10} {'missed':>6} {'chunks':>6} {'commands':>8} {'cpu_%':>6} "
            f"{'other_%':>7}")


def format_row(r: dict[str, Any]) -> str:
    return (f"{r['variant']:<12} {r['ticks']:>6} {r['period_error_mean_ms']:>11.3f} "
            f"{r['period_error_p99_ms']:>10.3f} {r['period_error_max_ms']:>10.3f} "
            f"{r['missed_ticks']:>6} {r['chunks_received']:>6} {r['commands_published']:>8} "
            f"{r['cpu']['machine_percent']:>6.1f} {r['cpu']['other_processes_percent']:>7.1f}")


def format_table(results: dict[str, Any]) -> str:
    head = table_head()
    return "\n".join([head, "-" * len(head)] + [format_row(r) for r in results["results"]])
