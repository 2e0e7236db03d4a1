"""The execution-strategy benchmark: its metrics on made-up trajectories, and the quick run
through the real graph with the issue's targets object."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genpol.bench import execution as bench
from genpol.evaluation.metrics import EpisodeOutcome, jerk_figures, seam_jerk
from genpol.sim import tasks


def test_seam_jerk_sees_a_step_at_a_switch_and_nothing_on_a_smooth_path():
    t = np.arange(0, 2, 0.02)
    smooth = np.sin(t)[:, None]
    near, n_near, far, n_far = seam_jerk(t, smooth, [1.0])
    assert n_near > 0 and n_far > 0 and n_near + n_far == len(t) - 3
    ratio_smooth = np.sqrt(near / n_near) / np.sqrt(far / n_far)
    stepped = smooth + (t >= 1.0)[:, None] * 0.01  # a 10 mrad jump where the chunk switches
    near2, n2, far2, m2 = seam_jerk(t, stepped, [1.0])
    assert (n2, m2) == (n_near, n_far) and far2 == pytest.approx(far)
    assert np.sqrt(near2 / n2) / np.sqrt(far2 / m2) > 20 * ratio_smooth
    # the same step far from any switch counts as elsewhere
    _, _, far3, _ = seam_jerk(t, stepped, [0.3])
    assert far3 > 100 * far
    # an episode decided before its first switch commands nothing in the window: no figures,
    # no error (the eval crashed on it: "cannot reshape array of size 0")
    assert seam_jerk(t[:0], np.zeros((0, 6)), [1.0]) == (0.0, 0, 0.0, 0)


def test_jerk_figures_pool_episodes_and_say_how_much_is_elsewhere():
    def episode(i, seam_sq, seam_n, free_sq, free_n):
        return EpisodeOutcome(index=i, seed=i, scene_seed=None, outcome="success", duration_s=1.0,
                              mode="left", seam_jerk_sq=seam_sq, seam_ticks=seam_n,
                              free_jerk_sq=free_sq, free_ticks=free_n)
    f = jerk_figures([episode(0, 400.0, 1, 0.0, 0), episode(1, 0.0, 3, 4.0, 1)])
    assert f["seam_jerk_rms"] == pytest.approx(10.0)  # sqrt(400 / 4)
    assert f["free_jerk_rms"] == pytest.approx(2.0)
    assert f["seam_jerk_ratio"] == pytest.approx(5.0)
    assert f["free_tick_share"] == pytest.approx(0.2)
    assert jerk_figures([episode(0, 1.0, 2, 0.0, 0)])["seam_jerk_ratio"] is None


def test_mode_switch_needs_both_sides_of_the_post_near_it():
    inst = tasks.sample(tasks.REACH_AROUND, 1, 0)
    ox, oy = inst.obstacle[0], inst.obstacle[1]
    left = np.array([[ox - 0.01, oy + 0.06, 0.1], [ox, oy + 0.07, 0.1]])
    right = left * np.array([1, 0, 1]) + np.array([0, oy - 0.07, 0])
    assert not tasks.mode_switched(inst, left)
    assert tasks.mode_switched(inst, np.vstack([left, right]))
    far = right + np.array([0.3, 0, 0])  # the other side, but nowhere near the post
    assert not tasks.mode_switched(inst, np.vstack([left, far]))


def test_targets_are_not_met_by_missing_cells():
    t = bench.targets([], "flow")
    assert list(t) == ["rtc_cells_missing"] and not t["rtc_cells_missing"]["met"]


def _row(strategy: str, push: bool = False, **figures) -> dict:
    base = {"chunk_rate_hz": 6.0, "success_rate": 1.0, "mode_entropy": 0.9,
            "mode_switch_rate": 0.0, "seam_jerk_rms": 1.0, "seam_jerk_ratio": 1.0,
            "success_after_push": None}
    return {"family": "flow", "strategy": strategy, "delay_s": 0.0, "push": push,
            "figures": {**base, **figures}}


def test_the_push_target_needs_both_push_cells_and_beats_the_slow_strategy():
    rtc = _row("rtc@max")
    assert not bench.targets([rtc], "flow")["rtc_success_after_push"]["met"]  # not run
    rows = [rtc, _row("rtc@max", True, success_after_push=0.95, recovery_after_push_s=0.8),
            _row("latest@1Hz", True, success_after_push=0.90)]
    pushed = bench.targets(rows, "flow")["rtc_success_after_push"]
    assert pushed["met"]
    assert pushed["note"] == "from the push to the target: rtc@max 0.80 s, latest@1Hz -"
    rows[2] = _row("latest@1Hz", True, success_after_push=0.95)  # a tie is not "above"
    assert not bench.targets(rows, "flow")["rtc_success_after_push"]["met"]
    rows[1] = _row("rtc@max", True, success_after_push=0.85)
    rows[2] = _row("latest@1Hz", True, success_after_push=0.5)
    assert not bench.targets(rows, "flow")["rtc_success_after_push"]["met"]  # below 0.9


def test_delays_given_in_milliseconds_are_refused_before_anything_runs(tmp_path):
    from genpol.jobs import bench_execution

    with pytest.raises(ValueError, match="seconds"):
        bench_execution.run(delays=[300.0], out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(900)
def test_quick_run_through_the_graph(ros_env, reach_policy, tmp_path):
    from genpol.jobs import bench_execution

    results = bench_execution.run(quick=True, out=tmp_path, policies={"flow": reach_policy.path},
                                  progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["targets"] == json.loads(json.dumps(results["targets"]))
    cells = {r["cell"] for r in saved["results"]}
    assert cells == {"latest@1Hz +0ms", "ensemble@10Hz +0ms", "consistent+latest@max +0ms",
                     "rtc@max +0ms", "rtc@max +300ms", "rtc@max +0ms push"}
    for row in saved["results"]:
        f = row["figures"]
        assert f["episodes"] == 1 and row["wall_s"] > 0 and row["cpu_s"] > 0
        assert f["seam_jerk_rms"] is not None, f"{row['cell']}: no commanded trajectory seen"
    push = next(r for r in saved["results"] if r["push"])
    assert push["figures"]["pushed_episodes"] == 1
    for name in ("rtc_success", "rtc_mode_entropy", "rtc_mode_switches", "rtc_seam_jerk_ratio",
                 "rtc_seam_jerk_vs_ensemble_10hz", "rtc_seam_jerk_vs_latest_same_rate",
                 "rtc_success_300ms", "rtc_rate_hz"):
        entry = saved["targets"][name]
        assert {"value", "threshold", "met"} <= set(entry) <= {"value", "threshold", "met", "note"}
    assert "of the commanded ticks" in saved["targets"]["rtc_seam_jerk_ratio"]["note"]
    meta = saved["_meta"]
    assert meta["cpu_count"] and "load_average_at_start" in meta and meta["torch_threads"]
    assert (tmp_path / "success_vs_delay.png").stat().st_size > 0
    assert (tmp_path / "seam_flow.png").stat().st_size > 0


def test_every_family_run_is_judged_on_the_same_bars():
    rows = [_row("rtc@max"), {**_row("rtc@max", success_rate=0.5), "family": "diffusion"}]
    t = bench.all_targets(rows, ["flow", "diffusion"])
    assert t["rtc_success"]["met"] and not t["diffusion_rtc_success"]["met"]
    assert t["diffusion_rtc_success"]["value"] == 0.5
    assert set(t) == set(bench.targets(rows)) | {f"diffusion_{k}" for k in bench.targets(rows)}
    only = bench.all_targets(rows[1:], ["diffusion"])  # flow, the family, not run
    assert not only["rtc_cells_missing"]["met"] and not only["diffusion_rtc_success"]["met"]
