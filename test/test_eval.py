"""`genpol eval`: the metrics on their own, the files they are written to, and a short closed-loop
evaluation through the real graph (sim_arm, planner, executor over rclpy/DDS) with conftest's
small flow policy."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genpol import cli
from genpol.evaluation.metrics import (OUTCOMES, EpisodeOutcome, first_push, format_table,
                                       judge, mode_entropy, mode_fractions, summarize)
from genpol.sim import tasks

MODES = tasks.MODES[tasks.REACH_AROUND]


def _episode(i: int, outcome: str, mode: str, duration: float = 3.0,
             dist=None) -> EpisodeOutcome:
    return EpisodeOutcome(index=i, seed=i + 1, scene_seed=0, outcome=outcome,
                          duration_s=duration, mode=mode, final_distance_m=dist)


# ---------------------------------------------------------------------------------- metrics


def test_mode_entropy_is_normalised_over_the_task_modes():
    assert mode_entropy({"left": 5, "right": 5}, MODES) == pytest.approx(1.0)
    assert mode_entropy({"left": 7}, MODES) == 0.0
    assert mode_entropy({}, MODES) == 0.0
    # Binary entropy in bits, as bench/multimodal computes it for a 0.25 / 0.75 split.
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert mode_entropy({"left": 1, "right": 3}, MODES) == pytest.approx(h)
    # Paths that took no mode do not count towards the split.
    assert mode_entropy({"left": 2, "right": 2, "through": 6, "none": 1}, MODES) == 1.0
    # K modes: divided by log K.
    assert mode_entropy({"a": 1, "b": 1, "c": 1}, ("a", "b", "c")) == pytest.approx(1.0)
    assert mode_entropy({"a": 1, "b": 1}, ("a", "b", "c")) == pytest.approx(math.log(2) /
                                                                             math.log(3))


def test_mode_fractions_cover_every_episode():
    f = mode_fractions(["left", "left", "through", "right"], MODES)
    assert list(f) == ["left", "right", "through"]
    assert f == {"left": 0.5, "right": 0.25, "through": 0.25}
    assert mode_fractions(["right"], MODES) == {"left": 0.0, "right": 1.0}
    assert sum(mode_fractions(["none", "left", "x"], MODES).values()) == pytest.approx(1.0)


def test_summary_figures():
    eps = [_episode(0, "success", "left", 3.0, 0.01), _episode(1, "success", "right", 4.0, 0.005),
           _episode(2, "collision", "through", 1.0, 0.09), _episode(3, "timeout", "left", 10.0)]
    s = summarize(eps, MODES)
    assert s["episodes"] == 4
    assert s["success_rate"] == 0.5 and s["collision_rate"] == 0.25 and s["timeout_rate"] == 0.25
    assert s["mode_fractions"] == {"left": 0.5, "right": 0.25, "through": 0.25}
    assert s["mode_entropy"] == pytest.approx(mode_entropy({"left": 2, "right": 1}, MODES))
    assert s["mean_episode_s"] == pytest.approx(4.5)
    assert s["mean_success_s"] == pytest.approx(3.5)
    assert s["mean_final_distance_m"] == pytest.approx(0.035)
    table = format_table(s, eps)
    assert "success rate     0.50" in table and "through" in table
    with pytest.raises(ValueError, match="no episodes"):
        summarize([], MODES)
    with pytest.raises(ValueError, match="outcome"):
        _episode(0, "crashed", "left")
    assert eps[2].row()["collided"] and not eps[2].row()["success"]


def test_success_after_push_counts_pushed_episodes_only():
    eps = [_episode(0, "success", "left"), _episode(1, "success", "right"),
           _episode(2, "collision", "left"), _episode(3, "timeout", "right")]
    s = summarize(eps, MODES)
    assert s["pushed_episodes"] == 0 and s["success_after_push"] is None
    assert "push" not in format_table(s, eps)
    eps[1].pushed_at_s, eps[2].pushed_at_s = 1.02, 1.0
    s = summarize(eps, MODES)
    assert s["pushed_episodes"] == 2 and s["success_after_push"] == 0.5
    assert s["success_rate"] == 0.5  # still over all episodes
    assert s["recovery_after_push_s"] == pytest.approx(3.0 - 1.02)  # the pushed success only
    assert "success after push 0.50 (2 pushed episodes), 1.98 s from the push to the target" \
        in format_table(s, eps)
    assert eps[1].row()["pushed_at_s"] == 1.02
    # The push's sim time comes from sim_arm's statuses (absent keys: an older sim_arm).
    statuses = [{"time_s": 0.9, "pushes": 0, "pushed_at_s": None}, {"time_s": 1.0},
                {"time_s": 1.02, "pushes": 1, "pushed_at_s": 1.017},
                {"time_s": 1.1, "pushes": 1, "pushed_at_s": 1.017}]
    assert first_push(statuses) == 1.017
    assert first_push(statuses[:2]) is None


def test_judge_success_hold_collision_and_timeout():
    def st(t, success=False, collided=False):
        return {"time_s": t, "success": success, "collided": collided}

    assert judge([st(0.0), st(0.1)], timeout_s=10) is None
    # Success counts from when it began, once it has held for hold_s.
    run = [st(0.0), st(2.0, True), st(2.2, True), st(2.4, True)]
    assert judge(run, 10, hold_s=0.5) is None
    assert judge(run + [st(2.5, True)], 10, hold_s=0.5) == ("success", 2.0)
    # A success that breaks off starts over.
    assert judge([st(1.0, True), st(1.2), st(1.4, True), st(1.9, True)], 10) == ("success", 1.4)
    assert judge([st(0.5), st(0.6, collided=True)], 10) == ("collision", 0.6)
    assert judge([st(9.9), st(10.0)], 10) == ("timeout", 10.0)
    # A success under way at the timeout may finish its hold; one that breaks off is a timeout.
    assert judge([st(9.8, True), st(10.0, True), st(10.3, True)], 10) == ("success", 9.8)
    assert judge([st(9.8, True), st(10.0, True), st(10.1)], 10) == ("timeout", 10.0)


# ---------------------------------------------------------------------------------- files


def test_plot_and_video_files(tmp_path):
    import av
    import matplotlib.image

    from genpol.evaluation.plots import plot_paths
    from genpol.data.video import write_mp4
    from genpol.evaluation.video import Clip, render_clips

    inst = tasks.sample(tasks.REACH_AROUND, 1, 0)
    path = np.linspace(inst.obstacle + [-0.06, 0.0, 0.08], inst.target, 30)
    path[:, 1] += np.sin(np.linspace(0, np.pi, 30)) * 0.08  # round the post on the left
    eps = [_episode(0, "success", "left"), _episode(1, "collision", "through")]
    png = plot_paths(tmp_path / "p.png", tasks.REACH_AROUND, eps, [path, path[:10]], "t")
    img = matplotlib.image.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 600

    frames = [np.full((96, 96, 3), 40 * k % 255, np.uint8) for k in range(12)]
    video = render_clips([Clip(frames, "episode 0", "success (left) 3.0 s")], fps=10)
    assert len(video) == 12 + 10 and video[0].shape == (288, 288, 3)
    mp4 = write_mp4(tmp_path / "v.mp4", video, fps=10)
    with av.open(str(mp4)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == len(video)
    assert (decoded[0].width, decoded[0].height) == (288, 288)
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "empty.mp4", [])


def test_bad_policy_path_is_refused_before_anything_starts(tmp_path, capsys):
    code = cli.main(["eval", "--policy", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert code == 2
    assert "--policy" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()  # no node was started
    code = cli.main(["eval", "--policy", str(tmp_path), "--task", "stack_cups"])
    assert code == 2 and "unknown task" in capsys.readouterr().err


def test_push_at_must_be_non_negative_and_before_the_timeout(tmp_path, capsys):
    from genpol.jobs.eval import EvalSettings

    for bad in (-0.5, math.nan):
        with pytest.raises(ValueError, match="--push-at must be >= 0"):
            EvalSettings(policy=str(tmp_path), push_at_s=bad).check()
    with pytest.raises(ValueError, match="not before the episode timeout"):
        EvalSettings(policy=str(tmp_path), push_at_s=3.0, timeout_s=3.0).check()
    code = cli.main(["eval", "--policy", str(tmp_path), "--push-at", "-1"])
    assert code == 2 and "--push-at must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_node_parameters_are_checked_and_typed_like_their_config(tmp_path, capsys):
    from genpol.jobs.eval import _typed_like_config

    typed = _typed_like_config("planner", {"inference_rate_hz": 2, "num_samples": 16})
    assert typed == {"inference_rate_hz": 2.0, "num_samples": 16}
    assert isinstance(typed["inference_rate_hz"], float)
    # A float list's whole numbers too (YAML reads `[0.2, 0, 0, 0, 0, 0]` with ints).
    offset = _typed_like_config("sim_arm", {"push_offset_rad": [0.2, 0, 0, 0, 0, 0]})
    assert [type(v) for v in offset["push_offset_rad"]] == [float] * 6
    with pytest.raises(ValueError, match="planner has no parameter 'num_sample'"):
        _typed_like_config("planner", {"num_sample": 16})


# ---------------------------------------------------------------------------------- closed loop


def test_probe_pushes_sim_arm_once_per_episode_at_the_asked_time(ros):
    """The eval probe calls /sim_arm/push when an episode's time_s reaches push_at_s, once, in
    every episode; without push_at_s it neither needs nor calls the service."""
    from rclpy.parameter import Parameter
    from rclpy.utilities import get_default_context

    from genpol.nodes.eval_probe import PUSH_SERVICE, EvalProbe
    from genpol.nodes.sim_arm import SimArmNode
    from ros_helpers import spinning, wait_for

    idle = EvalProbe(get_default_context(), cameras=False)
    assert PUSH_SERVICE not in idle._service_clients
    idle.destroy_node()
    sim = SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0)])
    probe = EvalProbe(get_default_context(), cameras=False, push_at_s=0.5)
    with spinning(sim, probe):
        assert wait_for(lambda: PUSH_SERVICE not in probe.missing_services()
                        and probe.latest_status is not None, timeout=5)
        for episode in (1, 2):
            probe.begin(record_frames=False)
            probe.reset("sim_arm")
            probe.start_at(probe.now())
            assert wait_for(lambda: any(s["time_s"] >= 1.2 for s in probe.statuses()), timeout=5)
            rec = probe.end()
            assert rec.push_called and "tip moved" in rec.push_reply and not rec.push_error
            assert {s["episode"] for s in rec.statuses} == {episode}
            assert max(s["pushes"] for s in rec.statuses) == 1  # once, not at every status
            assert 0.5 <= first_push(rec.statuses) < 0.75
            assert sim.pushes == 1


def _node_processes(domain: str) -> list[int]:
    """PIDs of genpol node processes on this test's ROS domain (Linux /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"genpol.nodes." in cmdline and f"ROS_DOMAIN_ID={domain}".encode() in environ:
            pids.append(int(proc.name))
    return pids


def _eval_cmd(policy, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "genpol.cli", "eval", "--policy", policy.path,
            "--task", tasks.REACH_AROUND, "--scene-seed", str(policy.scene_seed), "--seed",
            str(policy.seeds[0]), "--out", str(out), *extra]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_eval_closed_loop_writes_consistent_results(ros_env, reach_policy, tmp_path):
    out = tmp_path / "eval"
    start = time.monotonic()
    run = subprocess.run(_eval_cmd(reach_policy, out, "--episodes", "3", "--videos", "2"),
                         capture_output=True, text=True, timeout=150, env=os.environ.copy())
    wall = time.monotonic() - start
    print(run.stdout[-3000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "episode 3/3" in run.stdout and "success rate" in run.stdout
    assert _node_processes(ros_env["ROS_DOMAIN_ID"]) == []

    r = json.loads((out / "results.json").read_text())
    rows, fig = r["episodes"], r["figures"]
    assert r["task"] == tasks.REACH_AROUND and r["modes"] == list(MODES)
    assert not r["interrupted"]
    assert [e["index"] for e in rows] == [0, 1, 2]
    # sim_arm's ~/reset draws the next start: seed + 1, + 2, ...
    assert [e["seed"] for e in rows] == [reach_policy.seeds[0] + k for k in (1, 2, 3)]
    assert all(e["scene_seed"] == reach_policy.scene_seed for e in rows)
    for e in rows:
        assert e["outcome"] in OUTCOMES
        assert e["success"] == (e["outcome"] == "success")
        assert e["collided"] == (e["outcome"] == "collision")
        assert 0 < e["duration_s"] <= r["settings"]["timeout_s"] + 1e-6
        assert e["samples"] > 50  # /joint_states at 100 Hz
        assert 0 <= e["min_distance_m"] <= e["final_distance_m"] + 1e-9 < 0.5
        assert e["start_offset_m"] < 0.01  # the arm starts where tasks.sample puts it
        if e["success"]:
            assert e["final_distance_m"] < 1.5 * tasks.REACH_TOLERANCE
        assert e["pushed_at_s"] is None  # no --push-at
    n = len(rows)
    assert fig["episodes"] == n
    assert fig["success_rate"] == pytest.approx(sum(e["success"] for e in rows) / n)
    assert fig["collision_rate"] == pytest.approx(sum(e["collided"] for e in rows) / n)
    assert fig["success_rate"] + fig["collision_rate"] + fig["timeout_rate"] == pytest.approx(1)
    assert fig["mode_fractions"] == mode_fractions([e["mode"] for e in rows], MODES)
    counts = {m: sum(e["mode"] == m for e in rows) for m in MODES}
    assert fig["mode_entropy"] == pytest.approx(mode_entropy(counts, MODES))
    assert fig["mean_episode_s"] == pytest.approx(np.mean([e["duration_s"] for e in rows]))
    assert fig["pushed_episodes"] == 0 and fig["success_after_push"] is None
    latency = fig["chunk_latency_ms"]
    assert latency["count"] >= 3 and 0 < latency["p50"] <= latency["p99"] < 5000
    # observation to plan, from the markers' stamp (test_planner_node checks that stamp)
    planner = fig["planner_latency_ms"]
    assert planner["count"] >= 3 and 2.0 < planner["p50"] <= planner["p99"] < 5000
    assert r["policy"]["family"] == "flow"
    assert r["command"].startswith("genpol eval") and "--episodes 3" in r["command"]
    assert r["versions"]["genpol"] and r["versions"]["python"]
    assert r["date"][:2] == "20" and 0 < r["wall_seconds"] <= wall + 1
    # The policy is trained on these very starts: it should mostly get there.
    assert fig["success_rate"] >= 1 / 3, run.stdout[-2000:]

    import av
    import matplotlib.image

    png = Path(r["files"]["paths_png"])
    assert png.stat().st_size > 20_000
    assert matplotlib.image.imread(png).std() > 0.05  # not a blank canvas
    mp4 = Path(r["files"]["video_mp4"])
    with av.open(str(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) >= 20  # two episodes of >= 1 s at 10 Hz, plus the outcome holds
    assert np.std(np.stack(frames).astype(float)) > 10  # the scene, not a flat colour
    assert np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean() > 1  # it moved
    for name in ("sim_arm", "planner", "executor"):
        log = (out / "logs" / f"{name}.log").read_text()
        assert "Traceback" not in log, log[-2000:]


def test_eval_push_at_pushes_each_episode_and_reports_success_after_push(ros_env, reach_policy,
                                                                       tmp_path):
    out = tmp_path / "eval"
    run = subprocess.run(_eval_cmd(reach_policy, out, "--episodes", "2", "--videos", "0",
                                   "--push-at", "0.5"),
                         capture_output=True, text=True, timeout=120, env=os.environ.copy())
    print(run.stdout[-3000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads((out / "results.json").read_text())
    rows, fig = r["episodes"], r["figures"]
    for e in rows:
        # Pushed once, as soon as sim_arm's status (10 Hz) reported 0.5 s, unless over by then.
        if e["duration_s"] >= 0.8:
            assert 0.5 <= e["pushed_at_s"] < 0.8, e
    pushed = [e for e in rows if e["pushed_at_s"] is not None]
    assert fig["pushed_episodes"] == len(pushed) > 0
    assert fig["success_after_push"] == pytest.approx(np.mean([e["success"] for e in pushed]))
    assert r["settings"]["push_at_s"] == 0.5
    assert "success after push" in run.stdout and "pushed at 0." in run.stdout
    log = (out / "logs" / "sim_arm.log").read_text()
    assert log.count("pushed at") == len(pushed), log[-2000:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_every_node(ros_env, reach_policy, tmp_path):
    proc = subprocess.Popen(_eval_cmd(reach_policy, tmp_path / "eval", "--episodes", "50"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ.copy())
    domain = ros_env["ROS_DOMAIN_ID"]
    try:
        deadline = time.monotonic() + 60
        while len(_node_processes(domain)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_node_processes(domain)) == 3, "the graph did not start"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    assert _node_processes(domain) == []
