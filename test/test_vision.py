"""What a camera-conditioned policy needs: layouts wide enough that only seeing helps, keypoint
pooling that keeps where things are, shift augmentation, and the front camera's pinhole (the
evaluator draws the sampled chunks into the video with it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genpol.evaluation.video import Clip, paths_at, render_clips
from genpol.policies.nets.image import SpatialSoftmax
from genpol.sim import tasks
from genpol.sim.cameras import project_front
from genpol.train import random_shift


def test_spread_widens_the_layouts_and_keeps_spread_one_as_it_was():
    narrow = [tasks.sample(tasks.REACH_AROUND, s) for s in range(200)]
    wide = [tasks.sample(tasks.REACH_AROUND, s, spread=3.0) for s in range(200)]
    assert all(np.array_equal(a.q_start, b.q_start) for a, b in zip(narrow, wide, strict=True))
    ys = np.array([i.target[1] for i in narrow]), np.array([i.target[1] for i in wide])
    assert np.ptp(ys[0]) < 0.075 and np.ptp(ys[1]) > 0.18
    # the default layout (spread 1) is the one every earlier recording and checkpoint used
    inst = tasks.sample(tasks.REACH_AROUND, 7, 0)
    assert inst.spread == 1.0
    np.testing.assert_allclose(inst.target, tasks.sample(tasks.REACH_AROUND, 7, 0, 1.0).target)
    with pytest.raises(ValueError, match="spread"):
        tasks.sample(tasks.REACH_AROUND, 0, spread=9.0)


def test_spatial_softmax_finds_where_a_feature_is():
    pool = SpatialSoftmax(1, keypoints=1)
    with torch.no_grad():
        pool.keypoints.weight.fill_(10.0)
        pool.keypoints.bias.zero_()
    fmap = torch.zeros(2, 1, 9, 9)
    fmap[0, 0, 1, 7] = 1.0   # top right
    fmap[1, 0, 7, 1] = 1.0   # bottom left
    xy = pool(fmap)
    assert xy.shape == (2, 2)
    assert xy[0, 0] > 0.5 and xy[0, 1] < -0.5
    assert xy[1, 0] < -0.5 and xy[1, 1] > 0.5


def test_random_shift_moves_each_image_by_its_own_whole_pixel_offset():
    img = torch.zeros(16, 3, 20, 20, dtype=torch.uint8)
    img[:, :, 10, 10] = 255
    out = random_shift(img, 4, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == img.shape
    where = [divmod(int(o[0].flatten().argmax()), 20) for o in out]
    assert all(6 <= r <= 14 and 6 <= c <= 14 for r, c in where)
    assert len(set(where)) > 4  # not one offset for the whole batch
    assert torch.equal(random_shift(img, 0, torch.Generator()), img)


def test_a_shifted_batch_keeps_its_labels():
    from genpol.data.arrays import ChunkData
    from genpol.train import _batch, _to_tensors

    rng = np.random.default_rng(0)
    data = ChunkData(rng.standard_normal((10, 2)).astype(np.float32),
                     rng.standard_normal((10, 4, 2)).astype(np.float32), joint_names=["a", "b"],
                     fps=10.0, images={"front": rng.integers(0, 255, (10, 16, 16, 3), np.uint8)})
    t = _to_tensors(data, torch.device("cpu"), True)
    plain = _batch(t, 8, torch.Generator().manual_seed(3), torch.device("cpu"), 0)
    shifted = _batch(t, 8, torch.Generator().manual_seed(3), torch.device("cpu"), 4)
    assert torch.equal(plain["state"], shifted["state"])
    assert torch.equal(plain["action"], shifted["action"])
    assert not torch.equal(plain["images"]["front"], shifted["images"]["front"])


def test_paths_are_drawn_from_the_latest_set_received_by_each_frame():
    a, b = [np.zeros((3, 2))], [np.ones((3, 2)), np.ones((3, 2))]
    got = paths_at([0.0, 1.0, 1.5, 3.0], [(0.5, a), (2.0, b)])
    assert [len(p) for p in got] == [0, 1, 1, 2]
    frame = np.zeros((20, 20, 3), np.uint8)
    path = [np.array([[2.0, 2.0], [17.0, 17.0]])]
    drawn = render_clips([Clip([frame], "c", paths=[path])], scale=2)[0]
    plain = render_clips([Clip([frame], "c")], scale=2)[0]
    diag = drawn[[20, 24, 28], [20, 24, 28]]
    assert (diag[:, 1] > 200).all() and (plain[[20, 24, 28], [20, 24, 28]] == 0).all()


def test_the_front_camera_pinhole_matches_the_rendered_image():
    pytest.importorskip("genpol.sim.scene", reason="mujoco not installed")
    from genpol.sim.arm import ArmSim

    with ArmSim() as sim:
        for seed in (1, 2, 3):
            inst = sim.reset(seed, tasks.REACH_AROUND, spread=3.0)
            img = sim.render("front", 128, 96).astype(int)
            green = (img[..., 1] > 150) & (img[..., 0] < 90) & (img[..., 2] < 110)
            assert green.sum() > 3, "the target marker is out of the front camera's view"
            rows, cols = np.nonzero(green)
            u, v = project_front(inst.target, 128, 96)
            assert abs(cols.mean() - u) < 2.0 and abs(rows.mean() - v) < 2.0


def test_vision_targets_name_each_target_and_fail_a_missing_run():
    from genpol.jobs.demo import vision_targets

    vision = {"figures": {"success_rate": 0.95, "mode_entropy": 0.9, "chunk_rate_hz": 1.0,
                          "planner_latency_ms": {"p99": 80.0}, "chunk_latency_ms": {"p99": 150.0}}}
    blind = {"figures": {"success_rate": 0.3, "mode_entropy": 0.7}}
    t = vision_targets({"vision": vision, "blind": blind}, 1400.0)
    assert list(t) == ["vision_success", "vision_mode_entropy", "vision_planner_latency_p99_ms",
                       "blind_success", "wall_s"]
    assert all(v["met"] for v in t.values())
    assert not vision_targets({"vision": vision, "blind": blind}, 1600.0)["wall_s"]["met"]
    t = vision_targets({"vision": vision})  # the control was not run: its target is not met
    assert t["blind_success"] == {"value": None, "threshold": "<= 0.5", "met": False}
    blind["figures"]["success_rate"] = 0.6
    assert not vision_targets({"vision": vision, "blind": blind})["blind_success"]["met"]


def test_no_cameras_without_vision_is_refused():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "genpol", "demo", "--no-cameras"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "--vision" in run.stderr


def test_the_evaluator_projects_each_frames_latest_chunks_into_it():
    from types import SimpleNamespace

    from genpol import robot
    from genpol.jobs.eval import _projected_paths

    q = np.array([[0.0, -0.6, 1.2, 1.0, 0.0, 0.2], [0.3, -0.3, 0.9, 1.0, 0.0, 0.2]])
    tip = robot.forward_kinematics(q)  # (2, 3): a short path in front of the arm
    rec = SimpleNamespace(frames=[np.zeros((96, 96, 3), np.uint8)] * 3,
                          frame_stamps=[0.0, 1.0, 2.0],
                          chunk_paths=[(0.5, [tip, tip[::-1]]), (1.5, [tip])])
    got = _projected_paths(rec)
    assert [len(p) for p in got] == [0, 2, 1]
    uv = got[1][0]
    assert uv.shape == (2, 2) and ((uv > 0) & (uv < 96)).all()
    np.testing.assert_allclose(got[1][1], uv[::-1])


def test_frames_are_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    from genpol.data import video

    monkeypatch.setenv("GENPOL_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(6)]
    path = video.write_mp4(tmp_path / "v.mp4", frames, fps=10.0)
    decoded, times = video.read_video(path)
    first, first_t = video.read_video_cached(path)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    np.testing.assert_array_equal(first, decoded)
    np.testing.assert_array_equal(first_t, times)

    def no_decoding(p):
        raise AssertionError("decoded again")

    monkeypatch.setattr(video, "read_video", no_decoding)
    again, again_t = video.read_video_cached(path)
    np.testing.assert_array_equal(again, decoded)
    np.testing.assert_array_equal(again_t, times)


def test_an_image_conditioned_policy_picks_the_chunk_the_image_calls_for():
    """Same state, two scenes that differ only in where a bright block is: the chunk must follow
    the image (rise for one, fall for the other), which a blind policy cannot do."""
    from genpol.data.arrays import ChunkData
    from genpol.train import TrainConfig, config_for_data, train

    n, size, horizon = 128, 24, 6
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 2, n)
    images = np.full((n, size, size, 3), 40, np.uint8)
    for i, s in enumerate(scene):
        col = 2 if s == 0 else size - 8
        images[i, 8:16, col:col + 6] = 230
    ramp = np.linspace(0, 1, horizon, dtype=np.float32)[:, None] * np.array([1.0, -0.5],
                                                                            np.float32)
    sign = np.where(scene == 0, 1.0, -1.0).astype(np.float32)[:, None, None]
    state = np.zeros((n, 2), np.float32) + 0.01 * rng.standard_normal((n, 2)).astype(np.float32)
    data = ChunkData(state, sign * ramp[None], joint_names=["a", "b"], fps=10.0,
                     images={"front": images})
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = config_for_data("flow", data, hidden_dim=32, down_dims=[16, 32], n_groups=4,
                              cnn_width=8, num_steps=10)
        policy = train(cfg, data, TrainConfig(steps=250, batch_size=32, lr=3e-3, device="cpu",
                                              progress=False, image_shift=2)).policy
    finally:
        torch.set_num_threads(threads)
    for s, want in ((0, ramp), (1, -ramp)):
        img = images[int(np.argmax(scene == s))]
        chunks = policy.predict_chunks(np.zeros(2, np.float32), {"front": img}, 16, seed=0)
        err_right = np.abs(chunks - want).mean(axis=(1, 2))
        err_wrong = np.abs(chunks + want).mean(axis=(1, 2))
        assert (err_right < err_wrong).mean() >= 0.9, (s, err_right, err_wrong)
