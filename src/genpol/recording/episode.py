"""Episodes on disk: one rosbag2 bag directory per episode, plus its episode.yaml.

    <dataset_dir>/
      episode_000000/                 a rosbag2 bag (ros2 bag info / play, Foxglove)
        metadata.yaml                 rosbag2's, written when the episode is stopped
        episode_000000_0.mcap         the messages (MCAP, rosbag2's conventions)
        episode.yaml                  genpol's episode metadata (below), rewritten atomically
      episode_000001/ ...

episode.yaml holds: format, episode_index, task, fps, joint_names, success (true/false/null),
mode (null when unknown), notes, status (recording | complete | failed | discarded |
incomplete), start_time / stop_time (ISO 8601, UTC) with start_time_ns / stop_time_ns, topics
{topic: type}, message_counts {topic: n} (at stop), extra {...} (anything else the operator or a
script adds), error (when status is failed) and recorder {backend, host, pid, flush_period_s}.
A recording whose recorder was killed still says "recording" (readers report it "incomplete");
repair.repair_episode makes its bag whole, sets status "incomplete" and adds repaired {time,
messages, last_time_ns, torn_bytes, lost_messages, mcap_rewritten, torn_file}.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import yaml

FORMAT = "genpol-episode/1"
EPISODE_FILE = "episode.yaml"
EPISODE_RE = re.compile(r"^episode_(\d{6,})$")

#: libyaml's safe loader where PyYAML has it (a dataset's episodes are read at every start)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

RECORDING, COMPLETE, FAILED, DISCARDED, INCOMPLETE = (
    "recording", "complete", "failed", "discarded", "incomplete")


def episode_name(index: int) -> str:
    return f"episode_{index:06d}"


def episode_dirs(dataset_dir: Path) -> list[tuple[int, Path]]:
    """(index, path) of every episode directory, discarded ones included, by index."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        return []
    found = []
    for child in dataset_dir.iterdir():
        match = EPISODE_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def next_index(dataset_dir: Path) -> int:
    """One past the highest episode on disk: numbers are never reused, discarded ones included."""
    dirs = episode_dirs(dataset_dir)
    return dirs[-1][0] + 1 if dirs else 0


def wall_time(ns: int) -> str:
    utc = _dt.timezone.utc  # noqa: UP017  (datetime.UTC is 3.11; setup.py allows 3.10)
    return _dt.datetime.fromtimestamp(ns / 1e9, utc).isoformat(timespec="milliseconds")


def new_metadata(index: int, *, task: str, fps: float, joint_names: list[str],
                 topics: dict[str, str], start_ns: int, backend: str,
                 flush_period_s: float) -> dict[str, Any]:
    return {
        "format": FORMAT, "episode_index": index, "task": task, "fps": float(fps),
        "joint_names": list(joint_names), "success": None, "mode": None, "notes": "",
        "status": RECORDING, "start_time": wall_time(start_ns), "start_time_ns": int(start_ns),
        "stop_time": None, "stop_time_ns": None, "topics": dict(topics), "message_counts": {},
        "extra": {},
        "recorder": {"backend": backend, "host": socket.gethostname(), "pid": os.getpid(),
                     "flush_period_s": float(flush_period_s)},
    }


def write_metadata(bag_dir: Path, metadata: dict[str, Any]) -> None:
    """episode.yaml, atomically: a temporary file beside it, fsync'd, then renamed over it."""
    text = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(prefix=".episode.", suffix=".tmp", dir=bag_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, bag_dir / EPISODE_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(bag_dir)


def read_metadata(bag_dir: Path) -> dict[str, Any] | None:
    """episode.yaml as a dict, None if there is none; ValueError if it is not a YAML mapping."""
    path = Path(bag_dir) / EPISODE_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.load(path.read_text(), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of episode metadata")
    return data


def process_alive(metadata: dict[str, Any]) -> bool:
    """Whether the recorder process that wrote this (still-recording) episode is running."""
    rec = metadata.get("recorder") or {}
    if rec.get("host") != socket.gethostname() or not isinstance(rec.get("pid"), int):
        return False
    try:
        os.kill(rec["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def bag_custom_data(metadata: dict[str, Any]) -> dict[str, str]:
    """rosbag2's custom_data (string values) for an episode: its metadata, for tools that see
    only metadata.yaml (ros2 bag info)."""
    keys = ("task", "mode", "success", "fps", "notes", "status")
    out = {f"genpol.{k}": "" if metadata.get(k) is None else
           (str(metadata[k]).lower() if isinstance(metadata[k], bool) else str(metadata[k]))
           for k in keys}
    out["genpol.episode"] = yaml.safe_dump(metadata, sort_keys=False)
    return out


def check_writable(dataset_dir: Path, min_free_bytes: int) -> str | None:
    """None if episodes can be written under dataset_dir, else the reason, for a person."""
    dataset_dir = Path(dataset_dir)
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the dataset directory {dataset_dir}: {exc.strerror or exc}"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=dataset_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"the dataset directory {dataset_dir} is not writable: {exc.strerror or exc}"
    free = shutil.disk_usage(dataset_dir).free
    if free < min_free_bytes:
        return (f"only {free / 1e6:.0f} MB free under {dataset_dir}, below the "
                f"{min_free_bytes / 1e6:.0f} MB minimum (min_free_mb); free some space or "
                "record elsewhere")
    return None


#: room kept in every open episode's directory (a file of zeros) for its last episode.yaml:
#: when the disk fills, the reserve is freed and the episode can still say it failed
RESERVE_FILE, RESERVE_BYTES = ".space-reserve", 256 * 1024


def make_reserve(bag_dir: Path, size: int = RESERVE_BYTES) -> None:
    """Allocate the reserve for real (zeros written and synced: a sparse file frees nothing)."""
    with open(Path(bag_dir) / RESERVE_FILE, "wb") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())


def release_reserve(bag_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(bag_dir) / RESERVE_FILE)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
