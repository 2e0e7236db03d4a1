"""`genpol dataset build`: recorded episode bags -> time-aligned frames -> a LeRobot v3.0 dataset.

Inputs are episode bag directories or dataset directories of them (as the recorder writes); they
are read through the recording API (genpol.recording.bag: list_episodes, read_episode), imported
only here, when a build runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence

from genpol.data.align import ACTION_TOPIC, STATE_TOPIC, align_episode, select_cameras
from genpol.data.arrays import DataError
from genpol.robot import JOINT_NAMES

SKIPPED_STATUSES = {"failed": "the recorder failed", "discarded": "discarded",
                    "recording": "still being recorded"}


@dataclass
class BuildReport:
    out: Path
    episodes: int = 0
    frames: int = 0
    fps: float = 0.0
    cameras: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (bag, reason)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def parse_cameras(text: str | None) -> dict[str, str] | None:
    """'front=/camera/image_raw,wrist=/wrist_camera/image_raw' -> dict; 'none' -> {};
    None -> None (the default cameras that were recorded)."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return {}
    out = {}
    for item in text.split(","):
        name, sep, topic = item.strip().partition("=")
        if not sep or not name or not topic.startswith("/"):
            raise DataError(f"--cameras expects name=/topic pairs separated by commas, got "
                            f"{item!r}")
        out[name] = topic
    return out


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'96x96' (width x height) -> (96, 96)."""
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise DataError(f"--image-size expects WIDTHxHEIGHT, e.g. 96x96, got {text!r}") from None
    return w, h


def _is_bag_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "metadata.yaml").is_file()
                              or (path / "episode.yaml").is_file()
                              or any(path.glob("*.mcap")))


def find_bags(inputs: Sequence[str | Path]) -> list[Path]:
    from genpol.recording.bag import list_episodes

    bags: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise DataError(f"{path} does not exist")
        found = [path] if _is_bag_dir(path) else list_episodes(path)
        if not found and path.is_dir():  # `genpol record --workers N`: one folder per worker
            found = [bag for sub in sorted(p for p in path.iterdir() if p.is_dir())
                     for bag in list_episodes(sub)]
        if not found:
            raise DataError(f"{path} holds no recorded episodes (episode_NNNNNN bag directories, "
                            "or folders of them)")
        bags.extend(found)
    return bags


def build_dataset(inputs: Sequence[str | Path], out: str | Path, *, fps: float | None = None,
                  cameras: Mapping[str, str] | None = None,
                  image_size: tuple[int, int] | None = None, codec: str = "h264",
                  overwrite: bool = False, include_unsuccessful: bool = False,
                  state_topic: str = STATE_TOPIC, action_topic: str = ACTION_TOPIC,
                  task: str | None = None, progress: bool = True,
                  log: Callable[[str], None] = print) -> BuildReport:
    """Align every episode found under `inputs` to `fps` (default: the episodes' recorded fps)
    and write them as one LeRobot v3.0 dataset at `out`. Episodes whose metadata says success:
    false are left out (a failed demonstration teaches the failure) unless include_unsuccessful;
    the report lists each one left out."""
    from tqdm.auto import tqdm

    from genpol.data.lerobot_write import DatasetWriter
    from genpol.recording.bag import read_episode

    start = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"{out} already exists and is not empty; choose another output or "
                        "pass --overwrite")
    bags = find_bags(inputs)
    report = BuildReport(out)
    writer: DatasetWriter | None = None
    try:
        for bag in tqdm(bags, desc="dataset build", unit="episode", disable=not progress):
            episode = read_episode(bag)
            meta = episode.metadata or {}
            status = meta.get("status")
            if status in SKIPPED_STATUSES:
                report.skipped.append((str(bag), SKIPPED_STATUSES[status]))
                continue
            if not include_unsuccessful and meta.get("success") is False:
                report.skipped.append((str(bag), "not successful (--include-unsuccessful "
                                                 "keeps it)"))
                continue
            if status == "incomplete":
                report.notes.append(f"{bag.name}: incomplete recording (recorder stopped "
                                    "early); using what it holds")
            if writer is None:
                rate = fps or meta.get("fps")
                if not rate:
                    raise DataError(f"episode {bag.name} ({bag}): no fps in its metadata; "
                                    "pass --fps")
                report.fps = float(rate)
            elif fps is None and meta.get("fps") and float(meta["fps"]) != report.fps:
                raise DataError(f"episode {bag.name} ({bag}) was recorded for {meta['fps']} fps, "
                                f"earlier ones for {report.fps:g}; pass --fps to choose one")
            frames = align_episode(episode, report.fps, cameras, joint_names=JOINT_NAMES,
                                   state_topic=state_topic, action_topic=action_topic,
                                   image_size=image_size)
            if task is not None and not frames.task:
                frames.task = task
            if writer is None:
                writer = DatasetWriter(out, report.fps, JOINT_NAMES, codec=codec,
                                       overwrite=overwrite, extra_info={
                                           "state": f"follower joint positions ({state_topic})",
                                           "action": f"commanded joint positions "
                                                     f"({action_topic})",
                                           "camera_topics": select_cameras(episode, cameras)})
                report.cameras = sorted(frames.images)
            writer.add(frames)
            report.episodes += 1
            report.frames += len(frames)
        if writer is None:
            raise DataError(f"no usable episodes in {[str(i) for i in inputs]} (skipped: "
                            f"{report.skipped})")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    report.seconds = time.perf_counter() - start
    for note in report.notes:
        log(f"note: {note}")
    return report
