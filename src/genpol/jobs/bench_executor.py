"""The executor benchmark's graph run (`genpol bench executor`; what it measures:
genpol.bench.executor).

sim_arm and the planner run as node processes under the supervisor, on a private ROS network
(genpol.rosenv); the executor runs in this process as a tick probe (genpol.nodes.tick_probe),
one variant after another, while the CPU meter watches every process. rclpy stays in nodes/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genpol import graph
from genpol.bench.common import CpuMeter, run_meta, target, write_results
from genpol.bench.executor import (POLICY, TARGET_P99_MS, VARIANTS, ensure_policy, format_row,
                                   period_stats)
from genpol.launcher import Supervisor
from genpol.rosenv import isolated

if TYPE_CHECKING:
    from genpol.nodes.session import Session

#: the nodes of `genpol bringup policy_path:=...` that run as processes beside the probe
PROCESSES = ("sim_arm", "planner")


def graph_nodes(policy_path: Path) -> list[graph.ResolvedNode]:
    """sim_arm and planner, exactly as `genpol bringup policy_path:=...` resolves them."""
    nodes = graph.resolve({"policy_path": str(Path(policy_path).resolve())})
    return [node for node in nodes if node.name in PROCESSES]


def _measure(session: Session, variant: str, duration: float, warmup: float,
             startup_timeout: float, procs: Supervisor, progress: bool) -> dict[str, Any]:
    """One variant: the executor node in this process, measured for `duration` seconds."""
    from genpol.nodes.tick_probe import TickProbe

    overrides, threads = VARIANTS[variant]
    probe = TickProbe(session, overrides, threads)
    try:
        start = time.monotonic()
        while True:
            received, accepted, published = probe.counts()
            if accepted and published:
                break
            procs.check()
            if time.monotonic() - start > startup_timeout:
                raise RuntimeError(
                    f"no action chunks reached the executor within {startup_timeout:g} s "
                    f"({received} received, {published} commands); "
                    f"see the logs in {procs.log_dir}")
            time.sleep(0.1)
        time.sleep(warmup)
        if progress:
            print(f"[bench executor] {variant}: planner live; measuring {duration:g} s",
                  flush=True)
        before = probe.counts()
        meter = CpuMeter({**procs.pids(), "bench": os.getpid()})
        ticks = probe.record_ticks()
        meter.start()
        end = time.monotonic() + duration
        while time.monotonic() < end:
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            procs.check()
        probe.stop_recording()
        cpu = meter.stop()
        after = probe.counts()
        how = probe.describe()
        rate = how.pop("rate_hz")
        row = {"variant": variant, **how, "duration_s": duration, "rate_hz": rate,
               "expected_ticks": int(round(duration * rate)),
               **period_stats(list(ticks), rate),
               "chunks_received": after[0] - before[0], "chunks_accepted": after[1] - before[1],
               "commands_published": after[2] - before[2],
               "cpu": cpu}
        row["meets_target"] = bool(row["period_error_p99_ms"] <= TARGET_P99_MS
                                   and row["missed_ticks"] == 0)
        return row
    finally:
        probe.close()


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
    from genpol.nodes import tick_probe

    params_file = graph.config_dir() / "executor.yaml"
    meta = run_meta(command)
    rows = []
    wall = time.perf_counter()
    with isolated(out / "logs" / "ros") as env, \
            Supervisor(out / "logs", tag="bench-executor") as procs:
        procs.start_graph(graph_nodes(Path(policy)))
        argvs = {name: " ".join(argv) for name, argv in procs.argv.items()}
        with tick_probe.session(params_file) as session:
            for variant in variants:
                rows.append(_measure(session, variant, duration, warmup,
                                     startup_timeout, procs, progress))
                if progress:
                    print(format_row(rows[-1]), flush=True)
    meta.update({
        "benchmark": "executor", "duration_s": duration,
        "ros_domain_id": int(env["ROS_DOMAIN_ID"] or 0),
        "discovery_range": "LOCALHOST", "policy": str(policy), "policy_config": POLICY,
        "train_steps": train_steps, "demos_per_seed": demos,
        "planner_device": _planner_device(),
        "processes": argvs,
        "executor_params_file": str(params_file),
        "variants": {v: {"overrides": VARIANTS[v][0], "spin_threads": VARIANTS[v][1] or "node"}
                     for v in variants},
        "target": f"period error p99 <= {TARGET_P99_MS} ms and 0 missed ticks",
        "wall_seconds": round(time.perf_counter() - wall, 1),
    })
    results = {"_meta": meta, "targets": targets(rows), "results": rows}
    write_results(out, results)
    return results


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, judged on the default configuration (the "thread" variant, as
    config/executor.yaml runs it); empty when that variant was not measured."""
    row = next((r for r in rows if r["variant"] == "thread"), None)
    if row is None:
        return {}
    p99, missed = row["period_error_p99_ms"], row["missed_ticks"]
    return {"thread_period_error_p99_ms": target(p99, TARGET_P99_MS, p99 <= TARGET_P99_MS),
            "thread_missed_ticks": target(missed, 0, missed == 0)}


def _planner_device() -> str:
    from genpol.planning import resolve_device

    return resolve_device("auto")  # config/planner.yaml: device auto
