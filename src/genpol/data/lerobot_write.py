"""Writing LeRobotDataset v3.0 directories (layout and units: see genpol.data.lerobot)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections import defaultdict
from pathlib import Path
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from genpol.data.arrays import DataError
from genpol.data.episode import EpisodeFrames
from genpol.data.lerobot import (ACTION, CODEBASE_VERSION, DATA_PATH, EPISODES_PATH,
                                 GENPOL_FORMAT, IMAGE_PREFIX, INFO_PATH, STATE, STATS_PATH,
                                 TASKS_PATH, VIDEO_PATH)
from genpol.data.stats import aggregate_stats, image_stats, vector_stats
from genpol.robot import JOINT_NAMES

_MB = 1024 * 1024


def _number(x: float) -> float | int:
    """Whole numbers as ints, as LeRobot writes fps and sizes."""
    return int(x) if float(x).is_integer() else float(x)


def _next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False) + "\n")


class DatasetWriter:
    """Streams EpisodeFrames into a LeRobot v3.0 directory.

    Everything is written under a hidden temporary directory beside `root` and renamed into
    place by close(), so a failed or interrupted build never leaves a half dataset at `root`.
    """

    def __init__(self, root: str | Path, fps: float, joint_names: Sequence[str], *,
                 robot_type: str = "so101", codec: str = "h264", overwrite: bool = False,
                 chunks_size: int = 1000, data_files_size_in_mb: float = 100,
                 video_files_size_in_mb: float = 200, extra_info: dict | None = None):
        import pyarrow as pa

        from genpol.data.video import resolve_codec

        self.root = Path(root)
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())) \
                and not overwrite:
            raise DataError(f"{self.root} already exists and is not empty; choose another "
                            "output or overwrite it")
        if not fps > 0:
            raise DataError(f"fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.joint_names = [str(j) for j in joint_names]
        self.robot_type = robot_type
        self.codec, _ = resolve_codec(codec)
        self.overwrite = overwrite
        self.chunks_size = int(chunks_size)
        self.data_mb, self.video_mb = float(data_files_size_in_mb), float(video_files_size_in_mb)
        self.extra_info = dict(extra_info or {})
        self.tmp = self.root.parent / f".{self.root.name}.partial-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        dims = len(self.joint_names)
        self._schema = pa.schema([
            (STATE, pa.list_(pa.float32(), dims)), (ACTION, pa.list_(pa.float32(), dims)),
            ("timestamp", pa.float32()), ("frame_index", pa.int64()),
            ("episode_index", pa.int64()), ("index", pa.int64()), ("task_index", pa.int64())])
        self._row_bytes = 2 * dims * 4 + 4 + 4 * 8
        self._data_pos = (0, 0)
        self._data_writer: Any = None  # pyarrow.parquet.ParquetWriter, opened per file
        self._data_rows = 0
        self._cameras: dict[str, tuple[int, int]] | None = None  # camera -> (height, width)
        self._video: dict[str, Any] = {}  # camera -> open VideoWriter
        self._video_pos: dict[str, tuple[int, int]] = {}
        self._video_info: dict[str, dict] = {}
        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []
        self._numeric: dict[str, list[np.ndarray]] = defaultdict(list)
        self._image_stats: dict[str, list[dict]] = defaultdict(list)
        self._frames = 0
        self._closed = False

    # -- episodes ---------------------------------------------------------------------------
    def add(self, ep: EpisodeFrames) -> int:
        """Append one episode; returns its episode_index."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from genpol.data.video import VideoError, VideoWriter

        if self._closed:
            raise RuntimeError("the dataset writer is closed")
        index = len(self._episodes)
        name = ep.name or str(index)
        dims = len(self.joint_names)
        if ep.state.shape[1] != dims or ep.action.shape[1] != dims:
            raise DataError(f"episode {name}: state {ep.state.shape} and action "
                            f"{ep.action.shape} must have {dims} columns ({self.joint_names})")
        cams = {cam: img.shape[1:3] for cam, img in ep.images.items()}
        if self._cameras is None:
            self._cameras = dict(sorted(cams.items()))
        elif cams != self._cameras:
            raise DataError(f"episode {name}: cameras {cams} differ from the first episode's "
                            f"{self._cameras} (name: height x width)")
        t = len(ep)
        task_index = self._tasks.setdefault(ep.task, len(self._tasks))
        timestamps = (np.arange(t) / self.fps).astype(np.float32)
        frame_index = np.arange(t, dtype=np.int64)
        global_index = self._frames + frame_index
        columns = {
            STATE: pa.FixedSizeListArray.from_arrays(pa.array(ep.state.reshape(-1)), dims),
            ACTION: pa.FixedSizeListArray.from_arrays(pa.array(ep.action.reshape(-1)), dims),
            "timestamp": pa.array(timestamps), "frame_index": pa.array(frame_index),
            "episode_index": pa.array(np.full(t, index, np.int64)),
            "index": pa.array(global_index), "task_index": pa.array(np.full(t, task_index,
                                                                             np.int64))}
        if self._data_writer is not None and \
                (self._data_rows + t) * self._row_bytes > self.data_mb * _MB:
            self._data_writer.close()
            self._data_writer = None
            self._data_pos = _next_file(*self._data_pos, self.chunks_size)
        if self._data_writer is None:
            path = self.tmp / DATA_PATH.format(chunk_index=self._data_pos[0],
                                               file_index=self._data_pos[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, self._schema, compression="snappy")
            self._data_rows = 0
        self._data_writer.write_table(pa.table(columns, schema=self._schema))
        self._data_rows += t

        row: dict[str, Any] = {
            "episode_index": index, "tasks": [ep.task], "length": t,
            "data/chunk_index": self._data_pos[0], "data/file_index": self._data_pos[1],
            "dataset_from_index": self._frames, "dataset_to_index": self._frames + t}
        for cam, frames in sorted(ep.images.items()):
            key = IMAGE_PREFIX + cam
            writer = self._video.get(cam)
            if writer is not None and writer.size_bytes() > self.video_mb * _MB:
                writer.close()
                writer = None
                self._video_pos[cam] = _next_file(*self._video_pos[cam], self.chunks_size)
            if writer is None:
                chunk, file = self._video_pos.setdefault(cam, (0, 0))
                path = self.tmp / VIDEO_PATH.format(video_key=key, chunk_index=chunk,
                                                    file_index=file)
                try:
                    writer = VideoWriter(path, self.fps, frames.shape[2], frames.shape[1],
                                         self.codec)
                except VideoError as exc:
                    raise DataError(f"episode {name}: {exc}") from None
                self._video[cam] = writer
                self._video_info[cam] = writer.info.as_feature_info()
            start = writer.frames_written / self.fps
            try:
                writer.write(frames)
            except VideoError as exc:
                raise DataError(f"episode {name}: {exc}") from None
            row[f"videos/{key}/chunk_index"] = self._video_pos[cam][0]
            row[f"videos/{key}/file_index"] = self._video_pos[cam][1]
            row[f"videos/{key}/from_timestamp"] = float(start)
            row[f"videos/{key}/to_timestamp"] = float(start + t / self.fps)

        numeric = {STATE: ep.state, ACTION: ep.action, "timestamp": timestamps,
                   "frame_index": frame_index, "episode_index": np.full(t, index),
                   "index": global_index, "task_index": np.full(t, task_index)}
        for key, values in numeric.items():
            self._numeric[key].append(values)
            for stat, value in vector_stats(values).items():
                row[f"stats/{key}/{stat}"] = value
        for cam, frames in sorted(ep.images.items()):
            stats = image_stats(frames)
            self._image_stats[IMAGE_PREFIX + cam].append(stats)
            for stat, value in stats.items():
                row[f"stats/{IMAGE_PREFIX + cam}/{stat}"] = value
        for key, value in ep.extras.items():
            row[f"genpol/{key}"] = value
        self._episodes.append(row)
        self._frames += t
        return index

    # -- finishing --------------------------------------------------------------------------
    def close(self) -> Path:
        """Write the metadata and move the dataset into place; returns its root."""
        if self._closed:
            return self.root
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        return self.root

    def abort(self) -> None:
        self._closed = True
        # Best effort: the dataset is being thrown away, and the first error is already raised.
        for writer in self._video.values():
            with contextlib.suppress(Exception):
                writer.close()
        if self._data_writer is not None:
            with contextlib.suppress(Exception):
                self._data_writer.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _finish(self) -> None:
        if not self._episodes:
            raise DataError(f"no episodes to write into {self.root}")
        self._closed = True
        if self._data_writer is not None:
            self._data_writer.close()
        for writer in self._video.values():
            writer.close()
        self._write_tasks()
        self._write_episodes()
        stats = {key: vector_stats(np.concatenate(parts)) for key, parts in self._numeric.items()}
        stats.update({key: aggregate_stats(parts) for key, parts in self._image_stats.items()})
        _write_json(self.tmp / STATS_PATH, stats)
        _write_json(self.tmp / INFO_PATH, self._info())
        if self.root.exists():
            if not self.overwrite and (not self.root.is_dir() or any(self.root.iterdir())):
                raise DataError(f"{self.root} appeared while the dataset was being written; "
                                "not replacing it")
            shutil.rmtree(self.root) if self.root.is_dir() else self.root.unlink()
        os.replace(self.tmp, self.root)

    def _info(self) -> dict[str, Any]:
        dims = len(self.joint_names)
        features: dict[str, Any] = {
            STATE: {"dtype": "float32", "shape": [dims], "names": list(self.joint_names)},
            ACTION: {"dtype": "float32", "shape": [dims], "names": list(self.joint_names)}}
        for cam, (height, width) in (self._cameras or {}).items():
            features[IMAGE_PREFIX + cam] = {
                "dtype": "video", "shape": [int(height), int(width), 3],
                "names": ["height", "width", "channels"], "info": self._video_info[cam]}
        features.update({
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            **{k: {"dtype": "int64", "shape": [1], "names": None}
               for k in ("frame_index", "episode_index", "index", "task_index")}})
        return {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": len(self._episodes), "total_frames": self._frames,
            "total_tasks": len(self._tasks), "chunks_size": self.chunks_size,
            "data_files_size_in_mb": _number(self.data_mb),
            "video_files_size_in_mb": _number(self.video_mb), "fps": _number(self.fps),
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if self._cameras else None,
            "features": features,
            "genpol": {"format": GENPOL_FORMAT, "units": "rad",
                       "joint_names": list(self.joint_names), **self.extra_info}}

    def _write_tasks(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(self._tasks)
        # pandas metadata making "task" the index, as LeRobot's DataFrame(index=Index(name="task"))
        pandas_meta = {
            "index_columns": ["task"],
            "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
            "columns": [
                {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                 "numpy_type": "int64", "metadata": None},
                {"name": "task", "field_name": "task", "pandas_type": "unicode",
                 "numpy_type": "object", "metadata": None}],
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.0"}
        schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                           metadata={b"pandas": json.dumps(pandas_meta).encode()})
        table = pa.table({"task_index": pa.array([self._tasks[n] for n in names], pa.int64()),
                          "task": pa.array(names, pa.string())}, schema=schema)
        (self.tmp / TASKS_PATH).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, self.tmp / TASKS_PATH)

    def _write_episodes(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys: list[str] = []
        for row in self._episodes:
            keys.extend(k for k in row if k not in keys)
        for row in self._episodes:
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        keys += ["meta/episodes/chunk_index", "meta/episodes/file_index"]
        columns = {}
        for key in keys:
            values = [row.get(key) for row in self._episodes]
            if key.startswith("genpol/"):
                columns[key] = _extra_column(values)
            else:
                columns[key] = pa.array(values)
        path = self.tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _extra_column(values: list):
    """Per-episode extras as one typed column: bool, int, float, or else text (None = null)."""
    import pyarrow as pa

    present = [v for v in values if v is not None]
    for kind, arrow in ((bool, pa.bool_()), (int, pa.int64()), (float, pa.float64())):
        if present and all(isinstance(v, kind) and (kind is bool or not isinstance(v, bool))
                           for v in present):
            return pa.array(values, arrow)
    return pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v))
                     for v in values], pa.string())


def write_dataset(root: str | Path, episodes: Iterable[EpisodeFrames], fps: float,
                  joint_names: Sequence[str] = JOINT_NAMES, **kwargs) -> Path:
    """Write episodes as a LeRobot v3.0 dataset at root (see DatasetWriter for the options)."""
    with DatasetWriter(root, fps, joint_names, **kwargs) as writer:
        for ep in episodes:
            writer.add(ep)
    return writer.root

