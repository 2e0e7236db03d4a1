"""`genpol bench executor`: how evenly the executor ticks at 50 Hz on a CPU it shares.

sim_arm and the planner run as separate processes, started from the same graph definition and
config/*.yaml as `genpol bringup` (the planner with a real policy: a small flow policy trained
here on the simulator's scripted demonstrations, cached under the output folder). The executor
runs in the benchmark's process exactly as its node process runs it, with the start time of
every tick recorded. Per variant (VARIANTS) it reports the period error |actual period - 20 ms|
(mean, p99, max), the ticks missed (a gap of >= 1.5 periods counts the ticks skipped in it),
the chunks received and the commands published (proof that the planner was live), and the CPU
use of each process and of everything else on the machine. Every process runs on a random
ROS_DOMAIN_ID with LOCALHOST discovery, so nothing else hears it.

This file holds the benchmark's definition: variants, the policy, statistics and the table. The
graph run is genpol.jobs.bench_executor (its in-process node: genpol.nodes.tick_probe).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genpol import presets

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


# --------------------------------------------------------------------------------- the table


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
