"""LeRobotDataset v3.0: our writer and reader, LeRobot-made SO-101 datasets, damaged files,
training from a v3 directory, time alignment of recorded topics, and `genpol dataset build`."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
av = pytest.importorskip("av")

from genpol.data.align import DEFAULT_CAMERAS, align_episode  # noqa: E402
from genpol.data.arrays import DataError  # noqa: E402
from genpol.data.episode import EpisodeFrames  # noqa: E402
from genpol.data.lerobot import (  # noqa: E402
    DEFAULT_HORIZON, lerobot_joint_order, lerobot_to_radians, load_v3, radians_to_lerobot,
    read_dataset)
from genpol.data.lerobot_write import write_dataset  # noqa: E402
from genpol.data.sources import load_chunks  # noqa: E402
from genpol.robot import JOINT_NAMES, JOINTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (12, 5, 9)
H, W = 32, 48


def marked_frames(t: int, episode: int, cam: int) -> np.ndarray:
    """(t, H, W, 3) frames whose brightness encodes (episode, frame): smooth, so the codec keeps
    it within a few levels."""
    img = np.zeros((t, H, W, 3), np.uint8)
    img[..., 0] = np.linspace(0, 200, W, dtype=np.uint8)[None, None, :]
    img[..., 1] = (20 * np.arange(t) % 250)[:, None, None]
    img[..., 2] = 40 + 60 * episode + 20 * cam
    return img


def episodes() -> list[EpisodeFrames]:
    rng = np.random.default_rng(0)
    out = []
    for e, t in enumerate(LENGTHS):
        out.append(EpisodeFrames(
            rng.uniform(-1, 1, (t, 6)), rng.uniform(-1, 1, (t, 6)),
            {"front": marked_frames(t, e, 0), "wrist": marked_frames(t, e, 1)},
            task="reach around" if e != 1 else "pick place",
            extras={"success": e != 1, "mode": ["left", None, "right"][e]}))
    return out


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v3") / "ours"
    write_dataset(root, episodes(), fps=10)
    return root


# ---------------------------------------------------------------------------------------------
# Our writer -> our reader
# ---------------------------------------------------------------------------------------------

def test_round_trip_values_metadata_and_video(ours):
    info = json.loads((ours / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["total_episodes"] == 3 and info["total_frames"] == sum(LENGTHS)
    assert info["total_tasks"] == 2 and info["genpol"]["units"] == "rad"
    front = info["features"]["observation.images.front"]
    assert front["dtype"] == "video" and front["shape"] == [H, W, 3]
    assert front["info"]["video.codec"] in ("h264", "mpeg4")
    assert info["features"]["action"]["names"] == list(JOINT_NAMES)
    stats = json.loads((ours / "meta/stats.json").read_text())
    assert {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"} <= \
        set(stats["observation.state"])
    assert np.asarray(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    assert stats["action"]["count"] == [sum(LENGTHS)]
    # The frame table holds exactly LeRobot's columns (its loader casts to the declared features).
    frames = pq.read_table(ours / "data/chunk-000/file-000.parquet")
    assert sorted(frames.column_names) == sorted(
        ["observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
         "task_index"])
    assert frames.column("index").to_pylist() == list(range(sum(LENGTHS)))
    table = pq.read_table(ours / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["dataset_from_index"] for r in table] == [0, 12, 17]
    assert [r["videos/observation.images.wrist/from_timestamp"] for r in table] == \
        pytest.approx([0.0, 1.2, 1.7])
    assert "stats/observation.state/q99" in table[0]
    tasks = pq.read_table(ours / "meta/tasks.parquet").to_pylist()
    assert tasks == [{"task_index": 0, "task": "reach around"},
                     {"task_index": 1, "task": "pick place"}]

    ds = read_dataset(ours)
    assert ds.source == "genpol" and ds.fps == 10.0 and ds.joint_names == list(JOINT_NAMES)
    assert ds.cameras == ["front", "wrist"]
    for want, got in zip(episodes(), ds.episodes, strict=True):
        np.testing.assert_array_equal(got.state, want.state)
        np.testing.assert_array_equal(got.action, want.action)
        assert got.task == want.task and got.extras == want.extras
        for cam in ("front", "wrist"):
            err = np.abs(got.images[cam].astype(int) - want.images[cam])
            assert err.mean() < 3 and err.max() <= 24, (cam, err.mean(), err.max())


def test_chunks_stop_at_episode_ends_and_pad_with_the_last_action(ours):
    data = load_chunks(ours, horizon=4)  # through the source registry, as `genpol train` does
    eps = episodes()
    assert len(data) == sum(LENGTHS) and data.horizon == 4 and data.fps == 10.0
    assert data.joint_names == list(JOINT_NAMES) and sorted(data.images) == ["front", "wrist"]
    start = 0
    for ep in eps:
        t = len(ep)
        for k in range(t):
            want = ep.action[np.minimum(np.arange(k, k + 4), t - 1)]
            np.testing.assert_array_equal(data.action[start + k], want)
            assert data.action_is_pad[start + k].tolist() == [k + j >= t for j in range(4)]
            np.testing.assert_array_equal(data.state[start + k], ep.state[k])
        # the image of each sample is the frame of its state (green channel = 20 * frame)
        green = data.images["front"][start:start + t, :, :, 1].mean(axis=(1, 2))
        np.testing.assert_allclose(green, 20 * np.arange(t) % 250, atol=4)
        start += t
    assert load_chunks(ours, horizon=12).horizon == 12
    with pytest.raises(DataError, match=r"horizon 13 is longer than its longest episode \(12"):
        load_chunks(ours, horizon=13)
    with pytest.raises(DataError, match=f"horizon {DEFAULT_HORIZON} is longer"):
        load_v3(ours)  # no horizon asked for: the policies' default
    with pytest.raises(DataError, match="horizon must be a positive integer"):
        load_chunks(ours, horizon=0)


def test_files_roll_over_by_size_and_odd_sizes_keep_full_chroma(tmp_path):
    rng = np.random.default_rng(2)
    eps = [EpisodeFrames(rng.normal(size=(t, 6)), rng.normal(size=(t, 6)),
                         {"cam": rng.integers(0, 255, (t, 31, 45, 3), dtype=np.uint8)})
           for t in (40, 30, 35)]
    root = write_dataset(tmp_path / "small_files", eps, fps=7.5, chunks_size=2,
                         data_files_size_in_mb=0.001, video_files_size_in_mb=0.05)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("file-*.*"))
    assert "data/chunk-001/file-000.parquet" in names, names  # 2 files per chunk
    assert "videos/observation.images.cam/chunk-000/file-001.mp4" in names, names
    info = json.loads((root / "meta/info.json").read_text())
    assert info["fps"] == 7.5
    assert info["features"]["observation.images.cam"]["info"]["video.pix_fmt"] == "yuv444p"
    ds = read_dataset(root)
    for want, got in zip(eps, ds.episodes, strict=True):
        np.testing.assert_array_equal(got.state, want.state)
        assert got.images["cam"].shape == want.images["cam"].shape
        # random noise is the worst case for a codec; still the same frames, in order
        err = np.abs(got.images["cam"].astype(int) - want.images["cam"]).mean(axis=(1, 2, 3))
        assert err.max() < 15, err


def test_default_horizon_and_cameras_match_the_rest_of_genpol():
    yaml = pytest.importorskip("yaml")
    from genpol.policies.config import PolicyConfig

    assert PolicyConfig.__dataclass_fields__["horizon"].default == DEFAULT_HORIZON
    planner = yaml.safe_load((ROOT / "config/planner.yaml").read_text())
    topics = planner["planner"]["ros__parameters"]["camera_topics"]
    assert dict(t.split("=", 1) for t in topics) == DEFAULT_CAMERAS


# ---------------------------------------------------------------------------------------------
# A dataset laid out the way LeRobot writes it (SO-101: degrees, gripper 0-100, ".pos" names)
# ---------------------------------------------------------------------------------------------

LEROBOT_NAMES = [f"{j}.pos" for j in JOINT_NAMES]


def _encode(path: Path, frames: np.ndarray, fps: int) -> str:
    """One MP4 holding `frames`, as LeRobot's encoder leaves it (AV1 when this PyAV has it)."""
    codec = "libsvtav1" if "libsvtav1" in av.codecs_available else "libx264"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        opts = {"g": "2", "crf": "30"} if codec == "libsvtav1" else {"g": "2", "crf": "18"}
        if codec == "libsvtav1":
            opts["svtav1-params"] = "log-level=1"
        stream = out.add_stream(codec, rate=Fraction(fps), options=opts)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return "av1" if codec == "libsvtav1" else "h264"


def make_lerobot_dataset(root: Path, fps: int = 15, to_values=None,
                         first_pan_deg: float | None = None) -> dict:
    """Two episodes in two data files, one video file holding both, pandas-style tasks table,
    per-episode stats columns; values in LeRobot's SO-101 units (degrees and gripper percent,
    or `to_values(radians)`). Returns the truth in radians (shoulder_pan of the first frame at
    `first_pan_deg` if given)."""
    rng = np.random.default_rng(1)
    lengths = [8, 6]
    lo = np.array([j.lower for j in JOINTS])
    hi = np.array([j.upper for j in JOINTS])
    truth = {"state": [], "action": [], "front": []}
    for e, t in enumerate(lengths):
        for key in ("state", "action"):
            truth[key].append(rng.uniform(lo * 0.9, hi * 0.9, (t, 6)).astype(np.float32))
        truth["front"].append(marked_frames(t, e, 0))
    if first_pan_deg is not None:
        truth["state"][0][0, 0] = np.radians(first_pan_deg)

    def to_lerobot(rad: np.ndarray) -> np.ndarray:  # written out independently of the reader
        out = np.degrees(rad.astype(np.float64))
        out[:, 5] = (rad[:, 5] - lo[5]) / (hi[5] - lo[5]) * 100.0
        return out.astype(np.float32)

    to_lerobot = to_values or to_lerobot

    index = 0
    rows = []
    for e, t in enumerate(lengths):
        table = pa.table({
            "action": pa.array(to_lerobot(truth["action"][e]).tolist(), pa.list_(pa.float32())),
            "observation.state": pa.array(to_lerobot(truth["state"][e]).tolist(),
                                          pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(t, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(t, dtype=np.int64)),
            "episode_index": pa.array(np.full(t, e, np.int64)),
            "index": pa.array(index + np.arange(t, dtype=np.int64)),
            "task_index": pa.array(np.zeros(t, np.int64))})
        path = root / f"data/chunk-000/file-{e:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        key = "observation.images.front"
        from_ts = sum(lengths[:e]) / fps
        rows.append({"episode_index": e, "tasks": ["Grab the cube"], "length": t,
                     "data/chunk_index": 0, "data/file_index": e,
                     "dataset_from_index": index, "dataset_to_index": index + t,
                     f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                     f"videos/{key}/from_timestamp": from_ts,
                     f"videos/{key}/to_timestamp": from_ts + t / fps,
                     "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                     "stats/action/mean": to_lerobot(truth["action"][e]).mean(0).tolist(),
                     "stats/action/count": [t]})
        index += t
    codec = _encode(root / "videos/observation.images.front/chunk-000/file-000.mp4",
                    np.concatenate(truth["front"]), fps)
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pandas_meta = {"index_columns": ["task"], "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
         "numpy_type": "int64", "metadata": None},
        {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
         "metadata": None}]}
    tasks = pa.table({"task_index": [0], "task": ["Grab the cube"]}).replace_schema_metadata(
        {"pandas": json.dumps(pandas_meta)})
    pq.write_table(tasks, root / "meta/tasks.parquet")
    vector = {"dtype": "float32", "shape": [6], "names": LEROBOT_NAMES}
    info = {
        "codebase_version": "v3.0", "robot_type": "so101_follower", "total_episodes": 2,
        "total_frames": sum(lengths), "total_tasks": 1, "chunks_size": 1000,
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
        "splits": {"train": "0:2"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            "action": vector, "observation.state": vector,
            "observation.images.front": {
                "dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": H, "video.width": W, "video.codec": codec,
                         "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                         "video.fps": fps, "video.channels": 3, "has_audio": False}},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            **{k: {"dtype": "int64", "shape": [1], "names": None}
               for k in ("frame_index", "episode_index", "index", "task_index")}}}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/stats.json").write_text("{}")
    return truth


def test_reads_a_lerobot_so101_dataset_converting_to_radians(tmp_path):
    root = tmp_path / "lerobot_so101"
    truth = make_lerobot_dataset(root, first_pan_deg=-105.0)
    ds = read_dataset(root, lerobot_units="degrees")
    assert ds.source == "lerobot" and ds.fps == 15.0 and ds.joint_names == list(JOINT_NAMES)
    assert ds.units == "degrees"
    assert ds.tasks == {0: "Grab the cube"} and [len(e) for e in ds.episodes] == [8, 6]
    for e, ep in enumerate(ds.episodes):
        np.testing.assert_allclose(ep.state, truth["state"][e], atol=1e-5)
        np.testing.assert_allclose(ep.action, truth["action"][e], atol=1e-5)
        assert ep.task == "Grab the cube"
        err = np.abs(ep.images["front"].astype(int) - truth["front"][e])
        assert err.mean() < 6, err.mean()  # episode 1 found at its from_timestamp in the file
    data = load_chunks(root, horizon=3, lerobot_units="degrees")
    assert data.state.shape == (14, 6) and data.action.shape == (14, 3, 6)
    assert list(data.images) == ["front"] and data.images["front"].shape == (14, H, W, 3)


def test_lerobot_units_are_read_from_the_values_or_asked_for_never_guessed(tmp_path):
    # all within +-100: degrees or -100..100? LeRobot's info.json cannot say: refused
    make_lerobot_dataset(tmp_path / "ambiguous",
                         to_values=lambda rad: np.clip(np.degrees(rad), 0, 90).astype(np.float32))
    with pytest.raises(DataError, match="does not say whether the arm joints are degrees or "
                                        "-100..100.*--lerobot-units degrees"):
        read_dataset(tmp_path / "ambiguous")
    # a value beyond 100 proves degrees
    truth = make_lerobot_dataset(tmp_path / "wide", first_pan_deg=120.0)
    ds = read_dataset(tmp_path / "wide")
    assert ds.units == "degrees"
    np.testing.assert_allclose(ds.episodes[0].state, truth["state"][0], atol=1e-5)
    with pytest.raises(DataError, match="beyond -100..100, so they are degrees"):
        read_dataset(tmp_path / "wide", lerobot_units="range")


def test_lerobot_range_dataset_is_converted_with_the_arms_calibration(tmp_path):
    from test_calibration import FOLLOWER

    from genpol import calibration

    cal = calibration.parse(FOLLOWER, "follower")
    rng = np.random.default_rng(5)
    written = {}

    def to_range(rad):  # any -100..100 values (gripper 0..100): kept to check against
        values = rng.uniform(-100, 100, rad.shape).astype(np.float32)
        values[:, 5] = np.abs(values[:, 5])
        written.setdefault("first", values)
        return values

    make_lerobot_dataset(tmp_path / "range", to_values=to_range)
    with pytest.raises(DataError, match="relative to the recording arm's calibrated range; pass "
                                        "--calibration"):
        read_dataset(tmp_path / "range", lerobot_units="range")
    ds = read_dataset(tmp_path / "range", lerobot_units="range", calibration=cal)
    # by hand: ticks = min + (v + 100) / 200 * (max - min); the driver reads (ticks - offset)
    # * 2 pi / 4096, offset = the middle of the range (gripper: min reads the lower limit)
    values = written["first"]  # the first table written: episode 0's actions
    expected = np.empty_like(values, dtype=np.float64)
    for i, joint in enumerate(JOINT_NAMES):
        m = FOLLOWER[joint]
        if joint == "gripper":
            ticks = m["range_min"] + values[:, i] / 100 * (m["range_max"] - m["range_min"])
            offset = m["range_min"] - round(JOINTS[5].lower * 4096 / (2 * np.pi))
        else:
            ticks = m["range_min"] + (values[:, i] + 100) / 200 * (m["range_max"] - m["range_min"])
            offset = round((m["range_min"] + m["range_max"]) / 2)
        expected[:, i] = (ticks - offset) * 2 * np.pi / 4096
    np.testing.assert_allclose(ds.episodes[0].action, expected, atol=1e-5)
    assert ds.units == "range"


def test_lerobot_units_and_names():
    lo, hi = JOINTS[5].lower, JOINTS[5].upper
    values = np.array([[90.0, -45.0, 0.0, 180.0, -90.0, 0.0], [0, 0, 0, 0, 0, 100.0],
                       [0, 0, 0, 0, 0, 50.0]])
    rad = lerobot_to_radians(values)
    np.testing.assert_allclose(rad[0, :5], np.radians([90, -45, 0, 180, -90]), atol=1e-6)
    np.testing.assert_allclose(rad[:, 5], [lo, hi, (lo + hi) / 2], atol=1e-6)
    np.testing.assert_allclose(radians_to_lerobot(rad), values, atol=1e-4)
    shuffled = ["gripper.pos", "elbow_flex.pos", "shoulder_pan.pos", "wrist_roll.pos",
                "shoulder_lift.pos", "wrist_flex.pos"]
    order = lerobot_joint_order(shuffled)
    assert [shuffled[i] for i in order] == LEROBOT_NAMES
    assert lerobot_joint_order(["x", "y", "z", "roll", "pitch", "yaw"]) is None


def test_a_lerobot_dataset_of_another_robot_is_refused(tmp_path):
    root = tmp_path / "other"
    make_lerobot_dataset(root)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["action"]["names"] = ["x", "y", "z", "roll", "pitch", "gripper"]
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"action names .* are not the SO-101's joints"):
        read_dataset(root)


# ---------------------------------------------------------------------------------------------
# Damaged datasets
# ---------------------------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, pattern", [
    (lambda r: _truncate(r / "data/chunk-000/file-000.parquet"),
     r"data/chunk-000/file-000\.parquet \(frames of episodes 0, 1, 2\).*truncated or damaged"),
    (lambda r: _truncate(r / "meta/episodes/chunk-000/file-000.parquet"),
     r"meta/episodes/chunk-000/file-000\.parquet \(episode table\).*truncated or damaged"),
    (lambda r: _truncate(r / "videos/observation.images.wrist/chunk-000/file-000.mp4"),
     r"observation\.images\.wrist/chunk-000/file-000\.mp4: cannot decode.*truncated or damaged"
     r".*camera wrist, episodes 0, 1, 2"),
    (lambda r: (r / "videos/observation.images.front/chunk-000/file-000.mp4").unlink(),
     r"front/chunk-000/file-000\.mp4: video file is missing \(camera front, episodes 0, 1, 2"),
    (lambda r: (r / "data/chunk-000/file-000.parquet").unlink(),
     r"file-000\.parquet is missing \(frames of episodes 0, 1, 2\)"),
    (lambda r: (r / "meta/info.json").write_text("{not json"), r"meta/info\.json: not valid JSON"),
], ids=["data-truncated", "episodes-truncated", "mp4-truncated", "mp4-missing", "data-missing",
        "info-not-json"])
def test_damaged_files_raise_data_error_naming_file_and_episode(ours, tmp_path, damage, pattern):
    root = tmp_path / "copy"
    shutil.copytree(ours, root)
    damage(root)
    with pytest.raises(DataError, match=pattern):
        load_chunks(root, horizon=4)


def test_a_video_missing_its_last_frames_names_the_episode(tmp_path):
    root = tmp_path / "short_video"
    truth = make_lerobot_dataset(root)
    video = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    _encode(video, np.concatenate(truth["front"])[:-2], 15)  # the file lost episode 1's end
    with pytest.raises(DataError, match=r"file-000\.mp4 \(episode 1, camera front\): no frame "
                                        r"at 0\.8.*truncated or damaged"):
        read_dataset(root)


def test_frames_missing_from_the_data_file_are_reported(ours, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(ours, root)
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 3), path)  # episode 2 lost 3 frames
    with pytest.raises(DataError, match=r"file-000\.parquet \(episode 2\): holds 6 frames of "
                                        r"episode 2, the episode table says 9"):
        read_dataset(root)


# ---------------------------------------------------------------------------------------------
# Training from a v3 directory
# ---------------------------------------------------------------------------------------------

def test_genpol_train_on_a_v3_dataset(ours, tmp_path, capsys):
    from genpol.cli import main
    from genpol.policies import load_policy

    code = main(["train", "--data", str(ours), "--family", "mse", "--out", str(tmp_path / "ck"),
                 "--steps", "5", "--batch-size", "8", "--set", "horizon=4",
                 "--set", "hidden_dim=32", "--no-progress", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert f"trained mse for 5 steps on {sum(LENGTHS)} samples" in capsys.readouterr().out
    config = load_policy(tmp_path / "ck").config
    assert config.cameras == ["front", "wrist"] and config.image_shape == [3, H, W]
    assert config.joint_names == list(JOINT_NAMES) and config.fps == 10.0
    assert config.horizon == 4


# ---------------------------------------------------------------------------------------------
# Time alignment of recorded topics (fake episodes with the recording API's shape)
# ---------------------------------------------------------------------------------------------

def _stamp(ns: int) -> SimpleNamespace:
    return SimpleNamespace(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def joint_topic(times_ns, value_of, rng, header: bool = True, names=JOINT_NAMES, t0: int = 0):
    """JointState-like messages at times_ns (values at seconds since t0), joint order shuffled
    in every message."""
    msgs = []
    for t in times_ns:
        order = rng.permutation(len(names))
        msgs.append(SimpleNamespace(
            header=SimpleNamespace(stamp=_stamp(int(t) if header else 0)),
            name=[names[i] for i in order],
            position=np.array([value_of(names[i], (t - t0) * 1e-9) for i in order])))
    # receive times lag the stamps by 3 ms (used only where a stamp is zero)
    return SimpleNamespace(msgtype="sensor_msgs/msg/JointState",
                           stamps_ns=np.asarray(times_ns, np.int64) + 3_000_000, messages=msgs)


def image_topic(times_ns, size=(8, 6)):
    w, h = size
    msgs = []
    for i, t in enumerate(times_ns):
        data = np.full((h, w, 3), i, np.uint8)  # frame i is filled with i
        msgs.append(SimpleNamespace(header=SimpleNamespace(stamp=_stamp(int(t))), height=h,
                                    width=w, encoding="rgb8", step=w * 3,
                                    data=data.reshape(-1)))
    return SimpleNamespace(msgtype="sensor_msgs/msg/Image",
                           stamps_ns=np.asarray(times_ns, np.int64), messages=msgs)


def state_value(joint: str, t: float) -> float:
    return JOINT_NAMES.index(joint) + 0.5 * t


def action_value(joint: str, t: float) -> float:
    return -JOINT_NAMES.index(joint) + 2.0 * t


def fake_episode(rng, t0=1_700_000_000_000_000_000):
    ms = 1_000_000
    state_t = t0 + np.arange(0, 3000, 10) * ms            # 100 Hz from 0 s to 2.99 s
    action_t = t0 + 250 * ms + np.arange(0, 2500, 20) * ms  # 50 Hz from 0.25 s to 2.73 s
    front_t = t0 + 400 * ms + np.arange(0, 2600, 100) * ms + 7 * ms  # 10 Hz from 0.407 s
    wrist_t = t0 + 100 * ms + np.arange(0, 2900, 33) * ms  # ~30 Hz from 0.1 s
    topics = {
        "/joint_states": joint_topic(state_t, state_value, rng, t0=t0),
        "/leader/joint_states": joint_topic(action_t, action_value, rng, header=False, t0=t0),
        "/camera/image_raw": image_topic(front_t),
        "/wrist_camera/image_raw": image_topic(wrist_t),
    }
    meta = {"task": "reach", "fps": 30.0, "success": True, "mode": "left", "notes": "",
            "status": "complete", "episode_index": 4}
    return SimpleNamespace(path=Path("/data/demos/episode_000004"), metadata=meta,
                           topics=topics), dict(t0=t0, front=front_t, wrist=wrist_t)


def test_alignment_resamples_matches_names_and_skips_the_head():
    rng = np.random.default_rng(3)
    episode, truth = fake_episode(rng)
    fps = 20.0
    frames = align_episode(episode, fps)
    # every stream has data from the first camera frame (0.407 s); leader stamps are zero, so
    # its receive times (+3 ms) count: it ends at 2.483 s... 2.48 + 0.003 s
    start = truth["t0"] + 407_000_000
    t = start + np.round(np.arange(len(frames)) * 1e9 / fps).astype(np.int64)
    last_action = truth["t0"] + 250_000_000 + 2480_000_000 + 3_000_000
    assert t[-1] <= last_action < t[-1] + 1e9 / fps
    secs = (t - truth["t0"]) * 1e-9
    want_state = np.stack([[state_value(j, s) for j in JOINT_NAMES] for s in secs])
    want_action = np.stack([[action_value(j, s - 0.003) for j in JOINT_NAMES] for s in secs])
    np.testing.assert_allclose(frames.state, want_state, atol=1e-5)
    np.testing.assert_allclose(frames.action, want_action, atol=1e-5)
    for cam, topic_t in (("front", truth["front"]), ("wrist", truth["wrist"])):
        latest = np.searchsorted(topic_t, t, side="right") - 1  # at or before, never after
        assert (latest >= 0).all()
        np.testing.assert_array_equal(frames.images[cam][:, 0, 0, 0], latest)
        assert frames.images[cam].shape == (len(frames), 6, 8, 3)
    assert frames.task == "reach" and frames.extras["success"] is True
    assert frames.extras["mode"] == "left" and frames.extras["episode_index"] == 4


def test_alignment_options_and_errors():
    rng = np.random.default_rng(4)
    episode, _ = fake_episode(rng)
    only_front = align_episode(episode, 10, {"front": "/camera/image_raw"}, image_size=(4, 3))
    assert list(only_front.images) == ["front"] and only_front.images["front"].shape[1:] == \
        (3, 4, 3)
    assert align_episode(episode, 10, {}).images == {}
    with pytest.raises(DataError, match=r"episode_000004.*camera 'top' topic /top was not "
                                        "recorded"):
        align_episode(episode, 10, {"top": "/top"})
    episode.topics["/leader/joint_states"] = joint_topic(
        np.arange(10) * 10_000_000, action_value, rng, names=JOINT_NAMES[:5])
    with pytest.raises(DataError, match=r"episode_000004.*/leader/joint_states names joint "
                                        "'gripper'"):
        align_episode(episode, 10)
    episode.topics["/leader/joint_states"] = joint_topic(
        np.arange(10) * 10_000_000, action_value, rng)  # long before the others start
    with pytest.raises(DataError, match="episode_000004.*never overlap"):
        align_episode(episode, 10)
    del episode.topics["/joint_states"]
    with pytest.raises(DataError, match=r"episode_000004.*no messages on /joint_states"):
        align_episode(episode, 10)


# ---------------------------------------------------------------------------------------------
# `genpol dataset build` from bags written by the recording code
# ---------------------------------------------------------------------------------------------

def _record_bags(dataset: Path, count: int = 2) -> None:
    """Episode bags through the recorder's core (no ROS graph): joint states, leader commands,
    camera frames."""
    recorder = pytest.importorskip("genpol.recording.recorder")
    from genpol.recording.types import jazzy_typestore
    from genpol.recording.writer import TopicInfo

    store = jazzy_typestore()
    js, img_t = store.types["sensor_msgs/msg/JointState"], store.types["sensor_msgs/msg/Image"]
    header, time_t = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    topics = [TopicInfo("/joint_states", "sensor_msgs/msg/JointState"),
              TopicInfo("/leader/joint_states", "sensor_msgs/msg/JointState"),
              TopicInfo("/camera/image_raw", "sensor_msgs/msg/Image")]
    base = 1_700_000_000_000_000_000
    for e in range(count):
        rec = recorder.EpisodeRecorder(dataset, backend="mcap", min_free_mb=1.0)
        rec.start(task="reach around", fps=10.0, joint_names=list(JOINT_NAMES), topics=topics)
        for k in range(200):  # 2 s at 100 Hz
            t = base + k * 10_000_000
            stamp = time_t(sec=t // 10**9, nanosec=t % 10**9)
            for topic, value in (("/joint_states", state_value),
                                 ("/leader/joint_states", action_value)):
                msg = js(header=header(stamp=stamp, frame_id=""), name=list(JOINT_NAMES),
                         position=np.array([value(j, k * 0.01) for j in JOINT_NAMES]),
                         velocity=np.array([], float), effort=np.array([], float))
                rec.write(topic, t, store.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
            if k % 10 == 0:  # 10 Hz camera
                pixels = marked_frames(1, e, 0)[0]
                pixels[..., 1] = 10 * (k // 10)
                msg = img_t(header=header(stamp=stamp, frame_id="cam"), height=H, width=W,
                            encoding="rgb8", is_bigendian=0, step=W * 3,
                            data=pixels.reshape(-1))
                rec.write("/camera/image_raw", t,
                          store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
        rec.stop(success=e == 0, mode=["left", "right"][e % 2])


def test_dataset_build_from_recorded_bags_then_train(tmp_path, capsys):
    from genpol.cli import main

    _record_bags(tmp_path / "demos")
    out = tmp_path / "v3"
    code = main(["dataset", "build", str(tmp_path / "demos"), str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "wrote 1 episodes" in printed and "episode_000001: not successful" in printed
    ds = read_dataset(out)
    assert len(ds) == 1 and ds.episodes[0].extras["success"] is True
    code = main(["dataset", "build", str(tmp_path / "demos"), str(out), "--no-progress",
                 "--include-unsuccessful", "--overwrite"])
    assert code == 0, capsys.readouterr().err
    assert "wrote 2 episodes" in capsys.readouterr().out
    ds = read_dataset(out)
    assert ds.fps == 10.0 and ds.cameras == ["front"] and [len(e) for e in ds.episodes] == [20, 20]
    ep = ds.episodes[0]
    secs = np.arange(20) * 0.1
    np.testing.assert_allclose(ep.state, [[state_value(j, s) for j in JOINT_NAMES]
                                          for s in secs], atol=1e-5)
    np.testing.assert_allclose(ep.action, [[action_value(j, s) for j in JOINT_NAMES]
                                           for s in secs], atol=1e-5)
    green = ep.images["front"][..., 1].mean(axis=(1, 2))
    np.testing.assert_allclose(green, 10 * np.arange(20), atol=4)
    assert ep.task == "reach around" and ep.extras["success"] is True
    assert ds.episodes[1].extras["mode"] == "right"

    # an existing output is kept unless asked to overwrite it; the failed episode is left out
    # unless asked for (and the output says so)
    assert main(["dataset", "build", str(tmp_path / "demos"), str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["dataset", "build", str(tmp_path / "demos" / "episode_000000"), str(out),
                 "--overwrite", "--fps", "5", "--cameras", "none",
                 "--no-progress"]) == 0
    ds = read_dataset(out)
    assert len(ds) == 1 and ds.fps == 5.0 and ds.cameras == []

    code = main(["train", "--data", str(out), "--family", "mse", "--out", str(tmp_path / "ck"),
                 "--steps", "5", "--batch-size", "4", "--set", "horizon=4",
                 "--set", "hidden_dim=16", "--no-progress", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
