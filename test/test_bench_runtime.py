"""The runtime benchmarks: executor tick timing in its short form, and each bench's options (the
planner bench's own tests are in test_bench_planner.py)."""

from __future__ import annotations

import json
import math

import pytest

from genpol import cli
from genpol.bench import executor as bench_executor
from genpol.jobs import bench_executor as executor_job

META_KEYS = {"command", "host_cpu", "torch", "date", "cpu_count"}


def test_period_stats_counts_missed_ticks():
    dt = 0.02
    times = [k * dt for k in range(10)] + [12 * dt, 13 * dt]  # ticks 10 and 11 skipped
    stats = bench_executor.period_stats(times, 50.0)
    assert stats["ticks"] == 12
    assert stats["missed_ticks"] == 2 and stats["late_gaps"] == 1
    assert stats["period_error_max_ms"] == pytest.approx(40.0)
    assert stats["period_error_p99_ms"] <= stats["period_error_max_ms"]
    jittered = bench_executor.period_stats([0.0, 0.0205, 0.0400, 0.0601], 50.0)
    assert jittered["missed_ticks"] == 0
    assert jittered["period_error_max_ms"] == pytest.approx(0.5, abs=1e-6)


def test_each_bench_takes_only_its_own_options(capsys):
    parse = cli.build_parser().parse_args
    args = parse(["bench", "multimodal", "--quick", "--device", "cuda", "--jobs", "3"])
    assert (args.bench, args.device, args.jobs, args.quick) == ("multimodal", "cuda", 3, True)
    args = parse(["bench", "planner", "--configs", "state", "--iters", "5", "--out", "o"])
    assert (args.configs, args.iters, args.out) == ("state", 5, "o")
    args = parse(["bench", "executor", "--quick", "--variants", "thread", "--duration", "5"])
    assert (args.variants, args.duration, args.train_steps) == ("thread", 5.0, 300)
    assert args.func is cli.cmd_bench_executor
    for wrong in (["bench", "planner", "--jobs", "2"], ["bench", "planner", "--variants", "x"],
                  ["bench", "executor", "--device", "cuda"],
                  ["bench", "executor", "--families", "flow"],
                  ["bench", "multimodal", "--variants", "thread"],
                  ["bench", "obstacle"], ["bench"]):
        with pytest.raises(SystemExit) as exit_:
            parse(wrong)
        assert exit_.value.code == 2, wrong
    assert "unrecognized arguments: --jobs" in capsys.readouterr().err


def test_executor_bench_short_run(ros_env, tmp_path):
    results = executor_job.run(duration=4.0, out=tmp_path, variants=("thread",), train_steps=5,
                                 demos=2, warmup=0.5, progress=False, command="test")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["_meta"]) >= META_KEYS
    (row,) = saved["results"]
    assert row["variant"] == "thread" and row["tick_source"] == "thread"
    assert row["ticks"] >= 0.8 * row["expected_ticks"]
    assert row["chunks_received"] > 0 and row["commands_published"] > 0
    for key in ("period_mean_ms", "period_error_mean_ms", "period_error_p99_ms",
                "period_error_max_ms"):
        assert math.isfinite(row[key]), key
    assert row["period_mean_ms"] == pytest.approx(20.0, abs=2.0)
    targets = saved["targets"]
    assert targets["thread_period_error_p99_ms"]["value"] == row["period_error_p99_ms"]
    assert targets["thread_missed_ticks"]["value"] == row["missed_ticks"]
    for target in targets.values():
        assert set(target) == {"value", "threshold", "met"}
    # The policy is cached: a second run does not train again.
    assert (tmp_path / "policy" / "bench_policy.json").is_file()
    print("\n" + bench_executor.format_table(results))
