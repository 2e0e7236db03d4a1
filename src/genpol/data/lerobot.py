"""LeRobotDataset v3.0 on disk, read with our own code (pyarrow + PyAV, no lerobot); the writer
is lerobot_write.py, the statistics stats.py, video video.py.

Layout (what LeRobot v3.0 writes, and what we write):

    <root>/meta/info.json                      codebase_version "v3.0", fps, totals, path
                                                templates, features (dtype, shape, names, video
                                                info); ours adds a "genpol" block (units)
    <root>/meta/stats.json                     per feature min/max/mean/std/count/q01..q99
    <root>/meta/tasks.parquet                  task_index + task (pandas index "task")
    <root>/meta/episodes/chunk-000/file-000.parquet
                                                one row per episode: episode_index, tasks, length,
                                                data/{chunk,file}_index,
                                                dataset_{from,to}_index, videos/<key>/{chunk_index,
                                                file_index,from_timestamp,to_timestamp},
                                                stats/<feature>/<stat>, and genpol/<extra>
                                                (success, mode, ...)
    <root>/data/chunk-000/file-000.parquet     one row per frame: observation.state, action,
                                                timestamp, frame_index, episode_index, index,
                                                task_index
    <root>/videos/<key>/chunk-000/file-000.mp4 the episodes' frames one after another

Units. The ROS side works in radians. Our datasets store radians and say so in info.json:
`"genpol": {"units": "rad", ...}`. A dataset without that block is taken as recorded by LeRobot
for an SO-101 (joint names like "shoulder_pan.pos"); the gripper is 0..100 there, and the arm
joints are either degrees (`use_degrees=True`, LeRobot's default from 0.4.4) or -100..100 of the
arm's calibrated range (the default before). LeRobot's info.json has no field that says which
(its features, names and robot_type are the same), so the values decide only when they can: an
arm value beyond +-100 is degrees. Otherwise the reader is told (`lerobot_units`, `genpol train
--lerobot-units`) and refuses to guess. -100..100 needs the arm's calibration file
(genpol.calibration), which also converts degrees exactly as the arm's driver will read them;
degrees without it go through `lerobot_to_radians`: degrees -> radians, and the gripper linearly
onto its joint range in genpol.robot, 0 -> the lower limit (closed), 100 -> the upper limit.

Training samples (`load_v3`): per episode, (state_t, action[t:t+H], images_t); a chunk never
crosses into the next episode, and past an episode's end its last action repeats.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genpol.calibration import LEROBOT_MODES, Calibration
from genpol.data.arrays import ChunkData, DataError, chunk_episode
from genpol.data.episode import EpisodeFrames
from genpol.robot import GRIPPER_JOINT, JOINT_NAMES, JOINTS

CODEBASE_VERSION = "v3.0"
GENPOL_FORMAT = 1
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH, STATS_PATH, TASKS_PATH = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
STATE, ACTION, IMAGE_PREFIX = "observation.state", "action", "observation.images."
# Training chunk length when none is asked for: PolicyConfig's default horizon (test-checked).
DEFAULT_HORIZON = 16


# --------------------------------------------------------------------------------------------
# Units: LeRobot's SO-101 convention <-> radians
# --------------------------------------------------------------------------------------------

def _gripper_range() -> tuple[float, float]:
    limit = next(j for j in JOINTS if j.name == GRIPPER_JOINT)
    return limit.lower, limit.upper


def lerobot_to_radians(values: np.ndarray) -> np.ndarray:
    """(..., 6) LeRobot SO-101 values in JOINT_NAMES order -> radians: arm joints degrees ->
    radians; gripper 0..100 (percent open) -> lower..upper limit of genpol.robot's gripper."""
    out = np.asarray(values, dtype=np.float64).copy()
    g = JOINT_NAMES.index(GRIPPER_JOINT)
    arm = [i for i in range(len(JOINT_NAMES)) if i != g]
    lo, hi = _gripper_range()
    out[..., arm] = np.deg2rad(out[..., arm])
    out[..., g] = lo + out[..., g] / 100.0 * (hi - lo)
    return out.astype(np.float32)


def radians_to_lerobot(values: np.ndarray) -> np.ndarray:
    """The inverse of lerobot_to_radians."""
    out = np.asarray(values, dtype=np.float64).copy()
    g = JOINT_NAMES.index(GRIPPER_JOINT)
    arm = [i for i in range(len(JOINT_NAMES)) if i != g]
    lo, hi = _gripper_range()
    out[..., arm] = np.rad2deg(out[..., arm])
    out[..., g] = (out[..., g] - lo) / (hi - lo) * 100.0
    return out.astype(np.float32)


def _feature_names(feature: dict) -> list[str]:
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:  # older LeRobot: {"motors": [...]}
        names = next(iter(names.values()))
    return [str(n) for n in names] if isinstance(names, list) else []


def lerobot_joint_order(names: Sequence[str]) -> list[int] | None:
    """Column of each of our JOINT_NAMES among LeRobot's names ("shoulder_pan.pos", ...), or None
    when they are not the SO-101's six joints."""
    plain = [n[:-len(".pos")] if n.endswith(".pos") else n for n in names]
    if sorted(plain) != sorted(JOINT_NAMES):
        return None
    return [plain.index(j) for j in JOINT_NAMES]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

class V3Dataset:
    """A v3.0 dataset read into memory: episodes in radians, our joint names and order."""

    def __init__(self, root: Path, info: dict, fps: float, joint_names: list[str],
                 episodes: list[EpisodeFrames], tasks: dict[int, str], source: str,
                 units: str = "rad"):
        self.root, self.info, self.fps = root, info, fps
        self.joint_names, self.episodes, self.tasks = joint_names, episodes, tasks
        self.source = source  # "genpol" or "lerobot" (converted to radians)
        self.units = units  # what the arm joints were stored in: rad, degrees or range

    @property
    def cameras(self) -> list[str]:
        return sorted(self.episodes[0].images) if self.episodes else []

    def __len__(self) -> int:
        return len(self.episodes)


def is_v3_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / INFO_PATH).is_file() or (path / "meta").is_dir())


def _read_info(root: Path) -> dict:
    path = root / INFO_PATH
    if not path.is_file():
        raise DataError(f"{path} is missing: not a LeRobot v3 dataset")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise DataError(f"{path}: expected an object with 'features'")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DataError(f"{path}: codebase_version {version!r}; genpol reads LeRobot v3.x "
                        "datasets (convert older ones with LeRobot's v2.1 -> v3.0 converter)")
    for key in (STATE, ACTION):
        if key not in info["features"]:
            raise DataError(f"{path}: no {key!r} feature (features: {sorted(info['features'])})")
    try:
        if not float(info.get("fps", 0)) > 0:
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"{path}: fps must be a positive number, got {info.get('fps')!r}") \
            from None
    return info


def _read_parquet(path: Path, what: str, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path} is missing ({what})")
    try:
        with pq.ParquetFile(path) as pf:
            names = pf.schema_arrow.names
            missing = [c for c in columns or [] if c not in names]
            if missing:
                raise DataError(f"{path} ({what}): no column {missing} (has {names})")
            return pf.read(columns=columns)
    except DataError:
        raise
    except Exception as exc:  # ArrowInvalid, OSError, ...
        raise DataError(f"{path} ({what}): cannot read parquet ({type(exc).__name__}: {exc}); "
                        "the file is truncated or damaged") from None


def _read_tasks(root: Path) -> dict[int, str]:
    table = _read_parquet(root / TASKS_PATH, "task table")
    meta = table.schema.metadata or {}
    text_col = "task"
    if "task" not in table.column_names:
        index_cols = []
        if b"pandas" in meta:
            with contextlib.suppress(ValueError):
                index_cols = [c for c in json.loads(meta[b"pandas"]).get("index_columns", [])
                              if isinstance(c, str)]
        text_col = next((c for c in index_cols + ["__index_level_0__"]
                         if c in table.column_names), "")
    if "task_index" not in table.column_names or not text_col:
        raise DataError(f"{root / TASKS_PATH} (task table): expected columns task_index and "
                        f"task, got {table.column_names}")
    return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(),
                                           table.column(text_col).to_pylist(), strict=True)}


def _read_episode_table(root: Path) -> list[dict[str, Any]]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DataError(f"{root / 'meta' / 'episodes'} holds no episode table "
                        "(chunk-*/file-*.parquet)")
    rows: list[dict[str, Any]] = []
    for path in files:
        table = _read_parquet(path, "episode table")
        keep = [c for c in table.column_names if not c.startswith("stats/")]
        rows.extend(table.select(keep).to_pylist())
    for need in ("episode_index", "length", "data/chunk_index", "data/file_index"):
        missing = [r.get("episode_index") for r in rows if r.get(need) is None]
        if missing:
            raise DataError(f"{files[0].parent.parent}: the episode table lacks {need!r} for "
                            f"episodes {missing[:5]}")
    rows.sort(key=lambda r: int(r["episode_index"]))
    return rows


def _vectors(table, column: str, dims: int, path: Path, episodes: str) -> np.ndarray:
    import pyarrow as pa

    col = table.column(column).combine_chunks()
    if col.null_count:
        raise DataError(f"{path} (episodes {episodes}): {column} has {col.null_count} empty rows")
    if not (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)
            or pa.types.is_large_list(col.type)):
        raise DataError(f"{path} (episodes {episodes}): {column} is {col.type}, expected a list "
                        "of numbers per frame")
    flat = col.flatten().to_numpy(zero_copy_only=False)
    if flat.size != len(col) * dims:
        raise DataError(f"{path} (episodes {episodes}): {column} rows do not all hold {dims} "
                        "values")
    return flat.astype(np.float32).reshape(len(col), dims)


def _decode_images(values: list, path: Path, key: str, episode: int) -> np.ndarray:
    """LeRobot `image` features: one struct {bytes, path} (PNG/JPEG) per frame."""
    import cv2

    frames = []
    for i, v in enumerate(values):
        data = v.get("bytes") if isinstance(v, dict) else v
        img = None
        if data:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{path} (episode {episode}): {key} frame {i} is not a readable "
                            "image")
        frames.append(np.ascontiguousarray(img[..., ::-1]))
    return np.stack(frames)


def _units(root: Path, info: dict) -> tuple[str, list[str], dict[str, list[int] | None]]:
    """(source "genpol" | "lerobot", joint names, column order of JOINT_NAMES per feature for
    LeRobot data) from info.json."""
    features = info["features"]
    block = info.get("genpol")
    if isinstance(block, dict):
        if block.get("units") != "rad":
            raise DataError(f"{root / INFO_PATH}: genpol units {block.get('units')!r} are not "
                            "known (expected 'rad')")
        names = _feature_names(features[STATE]) or [str(j) for j in block.get("joint_names")
                                                     or []]
        return "genpol", names, {STATE: None, ACTION: None}
    orders = {}  # no genpol block: recorded by LeRobot (SO-101 names, degrees, gripper percent)
    for key in (STATE, ACTION):
        names = _feature_names(features[key])
        orders[key] = lerobot_joint_order(names)
        if orders[key] is None:
            raise DataError(
                f"{root / INFO_PATH}: {key} names {names} are not the SO-101's joints "
                f"({[j + '.pos' for j in JOINT_NAMES]}); genpol converts LeRobot datasets of the "
                f"SO-101 only (robot_type {info.get('robot_type')!r})")
    return "lerobot", list(JOINT_NAMES), orders


def _cam_name(key: str) -> str:
    return key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else key


def _read_frames(root: Path, info: dict, rows: list[dict], dims: dict[str, int],
                 image_keys: list[str]) -> dict[int, dict[str, Any]]:
    """Per episode: state, action, timestamp, task_index and `image` features, read one data
    file at a time."""
    features, fps = info["features"], float(info["fps"])
    by_file: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for row in rows:
        by_file[(int(row["data/chunk_index"]), int(row["data/file_index"]))].append(row)
    out: dict[int, dict[str, Any]] = {}
    template = info.get("data_path") or DATA_PATH
    for (chunk, file), file_rows in sorted(by_file.items()):
        fpath = root / template.format(chunk_index=chunk, file_index=file)
        names = ", ".join(str(r["episode_index"]) for r in file_rows)
        table = _read_parquet(fpath, f"frames of episodes {names}",
                              [STATE, ACTION, "episode_index", "frame_index"]
                              + [k for k in ("timestamp", "task_index") if k in features]
                              + image_keys)
        state = _vectors(table, STATE, dims[STATE], fpath, names)
        action = _vectors(table, ACTION, dims[ACTION], fpath, names)
        ep_col = table.column("episode_index").to_numpy()
        frame_col = table.column("frame_index").to_numpy()
        ts_col = (table.column("timestamp").to_numpy().astype(np.float64)
                  if "timestamp" in table.column_names else frame_col / fps)
        task_col = (table.column("task_index").to_pylist()
                    if "task_index" in table.column_names else None)
        for row in file_rows:
            e = int(row["episode_index"])
            sel = np.flatnonzero(ep_col == e)
            sel = sel[np.argsort(frame_col[sel], kind="stable")]
            if len(sel) != int(row["length"]) or len(sel) == 0:
                raise DataError(f"{fpath} (episode {e}): holds {len(sel)} frames of episode {e}, "
                                f"the episode table says {row['length']}; the dataset is "
                                "incomplete or damaged")
            if not np.array_equal(frame_col[sel], np.arange(len(sel))):
                raise DataError(f"{fpath} (episode {e}): frame_index is not 0..{len(sel) - 1}")
            out[e] = {"state": state[sel], "action": action[sel], "timestamp": ts_col[sel],
                      "task_index": None if task_col is None else task_col[sel[0]],
                      "images": {_cam_name(key): _decode_images(
                          table.column(key).take(sel).to_pylist(), fpath, key, e)
                          for key in image_keys}}
    return out


def _nearest_frames(times: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Index of the decoded frame nearest to each wanted time."""
    if len(times) == 1:
        return np.zeros(len(want), int)
    pick = np.clip(np.searchsorted(times, want), 1, len(times) - 1)
    left_closer = np.abs(times[pick - 1] - want) <= np.abs(times[pick] - want)
    return np.where(left_closer, pick - 1, pick)


def _read_videos(root: Path, info: dict, rows: list[dict], key: str,
                 per_episode: dict[int, dict[str, Any]]) -> None:
    """Adds camera `key`'s frames to each episode, one video file at a time: frame k of an
    episode sits at its from_timestamp + its timestamp in the file."""
    from genpol.data.video import VideoError, read_video_cached

    fps, cam = float(info["fps"]), _cam_name(key)
    files: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for row in rows:
        ci, fi = row.get(f"videos/{key}/chunk_index"), row.get(f"videos/{key}/file_index")
        if ci is None or fi is None or row.get(f"videos/{key}/from_timestamp") is None:
            raise DataError(f"{root}/meta/episodes (episode {row['episode_index']}): no video "
                            f"location for {key}")
        files[(int(ci), int(fi))].append(row)
    template = info.get("video_path") or VIDEO_PATH
    for (chunk, file), file_rows in sorted(files.items()):
        vpath = root / template.format(video_key=key, chunk_index=chunk, file_index=file)
        try:
            frames, times = read_video_cached(vpath)
        except VideoError as exc:
            names = ", ".join(str(r["episode_index"]) for r in file_rows)
            raise DataError(f"{exc} (camera {cam}, episodes {names})") from None
        for row in file_rows:
            e = int(row["episode_index"])
            want = float(row[f"videos/{key}/from_timestamp"]) + per_episode[e]["timestamp"]
            pick = _nearest_frames(times, want)
            bad = np.flatnonzero(np.abs(times[pick] - want) >= 0.5 / fps)
            if len(bad):
                k = int(bad[0])
                raise DataError(
                    f"{vpath} (episode {e}, camera {cam}): no frame at {want[k]:.3f} s for "
                    f"frame {k} (the file's {len(times)} frames span {times[0]:.3f}-"
                    f"{times[-1]:.3f} s); the video is truncated or damaged")
            per_episode[e]["images"][cam] = frames[pick]


def _lerobot_units(root: Path, episodes: dict[int, dict[str, Any]],
                   orders: dict[str, list[int] | None], asked: str | None,
                   calibration: Calibration | None) -> str:
    """degrees or range for a LeRobot dataset's arm joints: what the values prove, else what
    the caller says; never a guess."""
    if asked not in (None, *LEROBOT_MODES):
        raise DataError(f"lerobot_units must be one of {LEROBOT_MODES}, got {asked!r}")
    arm = [JOINT_NAMES.index(j) for j in JOINT_NAMES if j != GRIPPER_JOINT]
    largest = max((float(np.abs(ep[field][:, orders[key]][:, arm]).max(initial=0.0))
                   for ep in episodes.values()
                   for field, key in (("state", STATE), ("action", ACTION))), default=0.0)
    how = ("pass --lerobot-units degrees if it was recorded with use_degrees=True (LeRobot's "
           "default from 0.4.4), or --lerobot-units range --calibration <the arm's LeRobot "
           "calibration JSON> for -100..100 (the default before)")
    if asked == "range" and largest > 100.0 + 1e-3:
        raise DataError(f"{root}: arm joint values reach {largest:.1f}, beyond -100..100, so "
                        "they are degrees, not range values; use --lerobot-units degrees")
    units = asked or ("degrees" if largest > 100.0 + 1e-3 else None)
    if units is None:
        raise DataError(f"{root} was recorded by LeRobot and its info.json does not say whether "
                        "the arm joints are degrees or -100..100 (LeRobot stores no unit), and "
                        f"no value (largest {largest:.1f}) is beyond 100 to tell; {how}")
    if units == "range" and calibration is None:
        raise DataError(f"{root}: -100..100 values are relative to the recording arm's "
                        "calibrated range; pass --calibration <its LeRobot calibration JSON> "
                        "to convert them to joint angles")
    return units


def read_dataset(path: str | Path, lerobot_units: str | None = None,
                 calibration: Calibration | None = None) -> V3Dataset:
    """Read a LeRobot v3.0 dataset (ours, or recorded by LeRobot for an SO-101) into memory.
    `lerobot_units` (degrees or range) and `calibration`: for LeRobot's data only (module
    docstring, "Units")."""
    root = Path(path)
    info = _read_info(root)
    features = info["features"]
    dims = {}
    for key in (STATE, ACTION):
        shape = features[key].get("shape") or []
        if len(shape) != 1 or int(shape[0]) < 1:
            raise DataError(f"{root / INFO_PATH}: {key} must be a vector feature, shape {shape}")
        dims[key] = int(shape[0])
    source, joint_names, orders = _units(root, info)
    tasks = _read_tasks(root)
    rows = _read_episode_table(root)
    cam_keys = sorted(k for k, f in features.items()
                      if isinstance(f, dict) and f.get("dtype") in ("video", "image"))
    per_episode = _read_frames(root, info, rows, dims,
                               [k for k in cam_keys if features[k]["dtype"] == "image"])
    for key in cam_keys:
        if features[key]["dtype"] == "video":
            _read_videos(root, info, rows, key, per_episode)

    units = "rad"
    if source == "lerobot":
        units = _lerobot_units(root, per_episode, orders, lerobot_units, calibration)

    def to_radians(values: np.ndarray) -> np.ndarray:
        if calibration is not None:
            return calibration.lerobot_to_radians(values, units).astype(np.float32)
        return lerobot_to_radians(values)

    episodes = []
    for row in rows:
        e = int(row["episode_index"])
        ep = per_episode[e]
        state, action = ep["state"], ep["action"]
        if source == "lerobot":
            state = to_radians(state[:, orders[STATE]])
            action = to_radians(action[:, orders[ACTION]])
        row_tasks = row.get("tasks") or []
        task = str(row_tasks[0]) if row_tasks else tasks.get(ep["task_index"], "")
        extras = {k[len("genpol/"):]: v for k, v in row.items() if k.startswith("genpol/")}
        episodes.append(EpisodeFrames(state, action, ep["images"], task=task, extras=extras,
                                      name=f"{e} of {root}"))
    if not episodes:
        raise DataError(f"{root}: the dataset holds no episodes")
    return V3Dataset(root, info, float(info["fps"]), joint_names, episodes, tasks, source,
                     units)


def episodes_to_chunks(episodes: Sequence[EpisodeFrames], horizon: int, fps: float,
                       joint_names: Sequence[str], where: str = "dataset") -> ChunkData:
    """Cut (state_t, action[t:t+H], images_t) samples per episode (never across episodes); steps
    past an episode's end repeat its last action and are marked as padding."""
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise DataError(f"horizon must be a positive integer, got {horizon!r}")
    longest = max(len(ep) for ep in episodes)
    if horizon > longest:
        raise DataError(f"{where}: horizon {horizon} is longer than its longest episode "
                        f"({longest} frames at {fps:g} fps): every chunk would be mostly "
                        "padding; choose a shorter horizon or record longer episodes")
    cams = sorted(episodes[0].images)
    states, actions, pads = [], [], []
    images: dict[str, list[np.ndarray]] = {cam: [] for cam in cams}
    for ep in episodes:
        if sorted(ep.images) != cams:
            raise DataError(f"{where}: episode {ep.name} has cameras {sorted(ep.images)}, the "
                            f"first has {cams}")
        s, a, pad = chunk_episode(ep.state, ep.action, horizon)
        states.append(s)
        actions.append(a)
        pads.append(pad)
        for cam in cams:
            images[cam].append(ep.images[cam])
    return ChunkData(np.concatenate(states), np.concatenate(actions),
                     {cam: np.concatenate(v) for cam, v in images.items()},
                     list(joint_names), float(fps), np.concatenate(pads),
                     np.concatenate([np.arange(len(s)) for s in states]))


def load_v3(path: Path, horizon: int | None = None, lerobot_units: str | None = None,
            calibration: Calibration | None = None) -> ChunkData:
    """The `genpol train --data <dir>` source: a v3 dataset as training chunks."""
    ds = read_dataset(path, lerobot_units, calibration)
    return episodes_to_chunks(ds.episodes, DEFAULT_HORIZON if horizon is None else horizon,
                              ds.fps, ds.joint_names, where=str(path))
