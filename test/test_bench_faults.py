"""The fault benchmark: its pure parts (the measures, a row's verdict, the targets, the broken
checkpoints and malformed chunks it injects), and its --quick form through the real graph
(malformed chunks, a recorder killed mid-episode, broken checkpoints), whose results.json must
have the shape every benchmark's has and whose rows must pass."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genpol import cli, robot
from genpol.bench import faults

META_KEYS = {"command", "host_cpu", "cpu_count", "torch_threads", "load_average_at_start",
             "load_average_at_end", "wall_seconds", "cpu_seconds", "ros_domain_id"}


#: checks of the quick rows that measure timing: left to the bench, not judged in the suite
TIMING_CHECKS = {"tick rate over the row (Hz)", "missed ticks over the row (the flood included)",
                 "10,000-point chunk: tick delay (ms)"}


# ---- pure ---------------------------------------------------------------------------------------
def test_commands_within_the_speed_limit_and_a_jump_beyond_it():
    step = np.full(5, 0.06)
    t = np.arange(10) * 0.02
    q = np.outer(np.arange(10), step)  # exactly the limit each tick
    assert faults.command_jumps(t, q, step, 0.02)["worst_step_ratio"] == pytest.approx(1.0)
    lost = np.delete(np.arange(10), 4)  # a command lost on the way: two ticks, two steps
    assert faults.command_jumps(t[lost], q[lost], step, 0.02)["worst_step_ratio"] == \
        pytest.approx(1.0)
    q[6:, 1] += 0.5  # a jump
    jumps = faults.command_jumps(t, q, step, 0.02)
    assert jumps["worst_step_ratio"] > 8 and jumps["worst_joint"] == "shoulder_lift"
    lower, upper, _ = faults.arm_limits()
    assert faults.outside_limits(np.vstack([lower, upper + 0.1]), lower, upper) == 5


def test_settled_at_is_the_first_command_of_the_final_hold():
    t = np.arange(6) * 0.02
    q = np.array([[0.0], [0.1], [0.2], [0.3], [0.3], [0.3]])
    assert faults.settled_at(t, q) == pytest.approx(0.06)
    assert faults.settled_at(t, np.zeros((6, 1))) == 0.0
    assert faults.settled_at([], np.zeros((0, 1))) is None


def test_measured_speed_skips_the_pair_across_a_restart():
    limit = robot.velocity_limits()
    t = np.array([0.0, 0.01, 0.02, 0.03, 0.04])
    q = np.zeros((5, 6))
    q[1:3, 0] = [0.01, 0.02]  # 1 rad/s
    q[3:, 0] = 0.7  # the restarted process reports another pose
    s = faults.measured_speed(t, q, limit, breaks=[0.025])
    assert s["worst_speed_ratio"] == pytest.approx(1.0 / limit[0])
    assert s["worst_joint"] == "shoulder_pan"
    assert faults.measured_speed(t, q, limit)["worst_speed_ratio"] == pytest.approx(
        68.0 / limit[0])  # the pair across the restart, had it counted
    q[4, 0] = 0.8  # 10 rad/s after the restart
    assert faults.measured_speed(t, q, limit, breaks=[0.025])["worst_speed_ratio"] == \
        pytest.approx(10.0 / limit[0])


def test_tick_delay_and_rate():
    t = np.arange(20) * 0.02
    t[10:] += 0.004  # tick 10 started 4 ms late
    assert faults.tick_delay_ms(t, 0.19, 0.25, 0.02) == pytest.approx(4.0)
    assert faults.tick_delay_ms(t, 0.0, 0.1, 0.02) == pytest.approx(0.0, abs=1e-9)
    assert faults.rate_hz(np.arange(51) * 0.02) == pytest.approx(50.0)


def test_each_malformed_chunk_carries_its_fault():
    at = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])
    chunks = {k: faults.malformed_chunk(k, 100.0, at) for k in faults.MALFORMED_KINDS}
    assert math.isnan(chunks["nan"].positions[3][1])
    assert "elbow" in chunks["wrong_joint_names"].joint_names
    j = robot.JOINT_NAMES.index("wrist_roll")
    assert max(p[j] for p in chunks["out_of_limits"].positions) > robot.upper_limits()[j]
    assert chunks["out_of_limits"].expect == "clamped"
    assert chunks["stale_stamp"].stamp < 100.0 - 1 < 100.0 + 1 < chunks["future_stamp"].stamp
    assert chunks["empty"].times == [] and chunks["empty"].positions == []
    assert {len(p) for p in chunks["ragged"].positions} == {5, 6}
    assert np.any(np.diff(chunks["non_monotonic_times"].times) <= 0)
    assert len(chunks["oversized"].times) == faults.OVERSIZED_POINTS
    flood = faults.nan_chunk(100.0, at)
    assert all(math.isnan(v) for p in flood.positions for v in p)
    with pytest.raises(ValueError, match="unknown malformed chunk"):
        faults.malformed_chunk("upside_down", 0.0, at)


def test_a_row_passes_only_if_it_ran_and_every_check_holds():
    ok = faults.check("x", 1.0, "<= 2", True)
    bad = faults.check("y", 3.0, "<= 2", False)
    assert faults.row_result("cpu_hogs", [ok])["passed"]
    row = faults.row_result("cpu_hogs", [ok, bad])
    assert not row["passed"] and row["failed_checks"] == ["y"]
    row = faults.row_result("disk_full", [], error="RuntimeError: mount failed")
    assert not row["passed"] and row["number"] == 5
    assert faults.row_result("disk_full", [])["error"] == "nothing was measured"
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        faults.check_rows(["nope"])
    assert faults.check_rows(["camera_unplug", "bad_checkpoints"]) == ["bad_checkpoints",
                                                                       "camera_unplug"]


def test_targets_of_rows_not_run_are_not_met_and_the_table_says_so():
    hogs = faults.row_result("cpu_hogs", [faults.check("p99", 0.2, "<= 1", True)],
                             {"hog_period_error_p99_ms": 0.2, "hog_missed_ticks": 0})
    broken = faults.row_result("planner_kill", [], error="no planner")
    t = faults.targets([hogs, broken], wall_s=100.0, quick=False, flush_period_s=0.5)
    assert t["hog_period_error_p99_ms"] == {"value": 0.2, "threshold": "<= 1.0 ms", "met": True}
    assert t["hog_missed_ticks"]["met"] and t["wall_s"]["met"]
    assert not t["every_row_passes"]["met"] and "planner_kill" in t["every_row_passes"]["value"]
    assert t["recorder_lost_s"]["value"] is None and not t["recorder_lost_s"]["met"]
    assert "not run" in t["recorder_lost_s"]["note"]
    assert not faults.targets([hogs], 200.0, quick=True, flush_period_s=0.5)["wall_s"]["met"]
    table = faults.format_table({"results": [hogs, broken], "targets": t})
    assert "| 8 | two busy processes per core" in table and "did not run: no planner" in table
    assert table.count("**no**") >= 3


def test_every_broken_checkpoint_is_refused_by_vetting_and_the_good_one_is_not(tmp_path):
    from genpol.bench.bad_checkpoints import BREAKS, make_bad_checkpoints, tiny_policy
    from genpol.planning import vet_policy
    from genpol.policies.checkpoint import CheckpointError

    good = tiny_policy(tmp_path / "good")
    vet_policy(str(good))
    bad = make_bad_checkpoints(good, tmp_path / "bad")
    assert set(bad) == set(BREAKS)
    for kind, path in bad.items():
        try:
            vet_policy(str(path))
        except CheckpointError:
            continue
        pytest.fail(f"the {kind} checkpoint was not refused")
    vet_policy(str(good))  # the copies left the original as it was


def test_the_bench_takes_its_options():
    args = cli.build_parser().parse_args(["bench", "faults", "--quick", "--rows",
                                          "cpu_hogs,disk_full", "--policy", "p"])
    assert (args.rows, args.policy, args.quick) == ("cpu_hogs,disk_full", "p", True)
    assert args.func is cli.cmd_bench_faults


# ---- through the graph --------------------------------------------------------------------------
def test_quick_faults_through_the_graph(tmp_path):
    pytest.importorskip("rclpy")
    from genpol.jobs import bench_faults

    results = bench_faults.run(quick=True, out=tmp_path, progress=False, command="test")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved["_meta"]) >= META_KEYS and saved["_meta"]["command"] == "test"
    assert saved["_meta"]["rows"] == ["bad_checkpoints", "malformed_chunks", "recorder_kill"]
    for name, target in saved["targets"].items():
        assert {"value", "threshold", "met"} <= set(target), name
    # timing (tick rate, missed ticks, tick delay) depends on the host's load: the bench judges
    # it (make bench-faults), the suite only that it was measured
    for name in ("repaired_read_by_rosbags_and_mcap", "recorder_lost_s"):
        assert saved["targets"][name]["met"], (name, saved["targets"][name])
    rows = {r["row"]: r for r in saved["results"]}
    assert set(rows) == set(faults.QUICK_ROWS)
    table = (tmp_path / "results.md").read_text()
    print("\n" + table)
    for name, row in rows.items():
        assert not row["error"], (name, row["error"])
        failed = set(row["failed_checks"]) - TIMING_CHECKS
        assert not failed, (name, [c for c in row["checks"] if c["what"] in failed])
        assert f"| {row['number']} | {row['fault']} |" in table
    # what the rows saw, not just their verdicts
    kinds = rows["malformed_chunks"]["details"]["kinds"]
    assert kinds["nan_flood"]["received"] > 0 and kinds["nan_flood"]["accepted"] == 0
    assert kinds["out_of_limits"]["outcome"] == "accepted"
    assert len(rows["bad_checkpoints"]["checks"]) == 10
    assert rows["recorder_kill"]["details"]["recorder restart"]["open_episode"][
        "rosbags_messages"] > 10
