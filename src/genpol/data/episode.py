"""One demonstration as aligned per-frame arrays: what alignment produces and datasets hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genpol.data.arrays import DataError


@dataclass
class EpisodeFrames:
    """Frame k of every array belongs to the same instant, k / fps after the episode's start.

    state (T, S) and action (T, A) float32 (radians for the SO-101), images {camera: (T, H, W, 3)
    uint8 RGB}, the task text, and extras (success, mode, notes, source, ...) kept with the
    episode in the dataset's episode table.
    """

    state: np.ndarray
    action: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    task: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # for messages: the bag or dataset episode it came from

    def __post_init__(self) -> None:
        self.state = np.asarray(self.state, dtype=np.float32)
        self.action = np.asarray(self.action, dtype=np.float32)
        where = f"episode {self.name}: " if self.name else ""
        if self.state.ndim != 2 or self.action.ndim != 2:
            raise DataError(f"{where}state and action must be (T, dims), got "
                            f"{self.state.shape} and {self.action.shape}")
        t = len(self.state)
        if t == 0 or len(self.action) != t:
            raise DataError(f"{where}has {t} states and {len(self.action)} actions; need the "
                            "same non-zero number")
        for cam, img in self.images.items():
            if img.ndim != 4 or img.shape[0] != t or img.shape[-1] != 3 or img.dtype != np.uint8:
                raise DataError(f"{where}images[{cam!r}] must be ({t}, H, W, 3) uint8, got "
                                f"{img.shape} {img.dtype}")
        for what, arr in (("state", self.state), ("action", self.action)):
            if not np.isfinite(arr).all():
                bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
                raise DataError(f"{where}{what} holds NaN or inf at frame {bad}")

    def __len__(self) -> int:
        return len(self.state)
