"""An evaluation's files: results.json, the path plot and the rollout video. No ROS here."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from genpol.data.video import write_mp4
from genpol.evaluation.metrics import EpisodeOutcome, summarize
from genpol.evaluation.plots import plot_paths
from genpol.evaluation.video import Clip, render_clips
from genpol.sim import tasks

RESULTS = "results.json"
PATHS_PNG = "paths.png"
VIDEO = "rollouts.mp4"


def versions() -> dict[str, str]:
    out = {"genpol": _version("genpol"), "python": platform.python_version()}
    for dist in ("numpy", "torch", "mujoco", "av", "matplotlib", "rclpy"):
        out[dist] = _version(dist)
    out["ros_distro"] = os.environ.get("ROS_DISTRO", "") or "none (PyPI wheels)"
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if dist == "genpol":
            from genpol import __version__

            return __version__
        return "not installed"


def write(out: str | Path, task: str, episodes: Sequence[EpisodeOutcome],
          tips: Sequence[np.ndarray], clips: Sequence[Clip], settings: dict[str, Any],
          policy: dict[str, Any], wall_seconds: float, video_fps: float = 10.0,
          interrupted: bool = False, command: str | None = None) -> dict[str, Any]:
    """Write the plot, the video (if any clip has frames) and results.json; return the results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = summarize(episodes, tasks.MODES[task])
    title = (f"{task}, {policy.get('family', '?')} policy: success {figures['success_rate']:.2f}, "
             f"collision {figures['collision_rate']:.2f}, entropy {figures['mode_entropy']:.2f}")
    files = {"paths_png": str(plot_paths(out / PATHS_PNG, task, episodes, tips, title))}
    frames = render_clips([c for c in clips if c.frames], fps=video_fps)
    if frames:
        files["video_mp4"] = str(write_mp4(out / VIDEO, frames, video_fps))
    files["results_json"] = str(out / RESULTS)
    results = {
        "task": task,
        "modes": list(tasks.MODES[task]),
        "figures": figures,
        "episodes": [e.row() for e in episodes],
        "interrupted": interrupted,
        "policy": policy,
        "settings": settings,
        "files": files,
        "wall_seconds": round(wall_seconds, 1),
        "command": command if command is not None else " ".join(sys.argv),
        "versions": versions(),
        # timezone.utc, not datetime.UTC: genpol still runs on Python 3.10
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(  # noqa: UP017
            timespec="seconds"),
    }
    (out / RESULTS).write_text(json.dumps(results, indent=2))
    return results
