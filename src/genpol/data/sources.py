"""Pluggable on-disk sources for training: each recognises a path and turns it into ChunkData.

Today: `.npz` archives (keys state, action, optional action_is_pad, frame_index and
image.<camera>) and
LeRobotDataset v3.0 directories (data/lerobot.py). Later formats register themselves here so
`genpol train` needs no change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from genpol.data.arrays import ChunkData, DataError

#: (path, horizon, **options): options a format does not use are ignored (lerobot_units and
#: calibration are LeRobot's)
Loader = Callable[..., ChunkData]
_SOURCES: list[tuple[str, Callable[[Path], bool], Loader]] = []


def register_source(name: str, recognises: Callable[[Path], bool], loader: Loader) -> None:
    _SOURCES.append((name, recognises, loader))


def load_chunks(path: str | Path, horizon: int | None = None, **options: Any) -> ChunkData:
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset {str(path)!r} does not exist")
    for _, recognises, loader in _SOURCES:
        if recognises(path):
            return loader(path, horizon, **options)
    raise DataError(f"{str(path)!r} is not a dataset genpol can read; known formats: "
                    f"{[name for name, _, _ in _SOURCES]}")


def save_npz(data: ChunkData, path: str | Path) -> Path:
    path = Path(path)
    arrays: dict[str, Any] = {
        "state": data.state, "action": data.action, "fps": np.float32(data.fps),
        "joint_names": np.array(data.joint_names, dtype=str)}
    if data.action_is_pad.any():
        arrays["action_is_pad"] = data.action_is_pad
    if data.frame_index is not None:
        arrays["frame_index"] = data.frame_index
    arrays.update({f"image.{cam}": img for cam, img in data.images.items()})
    np.savez_compressed(path, **arrays)
    return path


def _load_npz(path: Path, horizon: int | None, **_: Any) -> ChunkData:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "state" not in z or "action" not in z:
                raise DataError(f"{path} lacks 'state' or 'action' arrays (has {list(z.keys())})")
            images = {k[len("image."):]: z[k] for k in z if k.startswith("image.")}
            data = ChunkData(z["state"], z["action"], images,
                             [str(j) for j in z["joint_names"]] if "joint_names" in z else [],
                             float(z["fps"]) if "fps" in z else 10.0,
                             z.get("action_is_pad"), z.get("frame_index"))
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read {path}: {exc}") from None
    if horizon is not None and horizon != data.horizon:
        raise DataError(f"{path} holds chunks of {data.horizon} steps, but horizon {horizon} "
                        "was asked for")
    return data


register_source("npz", lambda p: p.is_file() and p.suffix == ".npz", _load_npz)


def _load_lerobot_v3(path: Path, horizon: int | None, lerobot_units: str | None = None,
                     calibration: Any = None) -> ChunkData:
    from genpol.data.lerobot import load_v3  # pyarrow and PyAV load only when used

    return load_v3(path, horizon, lerobot_units, calibration)


def _is_lerobot_v3(path: Path) -> bool:
    from genpol.data.lerobot import is_v3_dataset

    return is_v3_dataset(path)


# LeRobotDataset v3.0 directories (ours, and SO-101 ones recorded with LeRobot): data/lerobot.py
register_source("lerobot-v3", _is_lerobot_v3, _load_lerobot_v3)
