"""Training data as arrays: the format every on-disk source is turned into.

A sample is (state (S,), action chunk (H, A), images {camera: (H, W, 3) uint8}), and per chunk
step whether it is padding past the episode's end. Checks happen here, once, before any training
starts. A policy that sees a history (n_obs_steps > 1) takes each sample's earlier observations
from the rows before it in its episode (`history_rows`), so no frame is stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np


class DataError(ValueError):
    """Training data that cannot be trained on; the message names the sample or array."""


@dataclass
class ChunkData:
    state: np.ndarray  # (N, S) float32
    action: np.ndarray  # (N, H, A) float32
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (N, H, W, 3) uint8
    joint_names: list[str] = field(default_factory=list)
    fps: float = 10.0
    #: (N, H) bool, True where a step lies past its episode's end (the last action repeated, as
    #: LeRobot's action_is_pad); training leaves those steps out. None: no step is padded.
    action_is_pad: np.ndarray = None  # type: ignore[assignment]
    #: (N,) int: each sample's step in its episode (0 at its start; the rows of an episode
    #: follow each other 1/fps apart), as LeRobot's frame_index. None: unknown, and then no
    #: observation history can be cut from the data.
    frame_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.state = np.asarray(self.state, dtype=np.float32)
        self.action = np.asarray(self.action, dtype=np.float32)
        if self.action_is_pad is None and self.action.ndim == 3:
            self.action_is_pad = np.zeros(self.action.shape[:2], dtype=bool)
        if self.frame_index is not None:
            self.frame_index = np.asarray(self.frame_index)
        validate(self)

    def __len__(self) -> int:
        return self.state.shape[0]

    @property
    def horizon(self) -> int:
        return self.action.shape[1]


def validate(data: ChunkData) -> None:
    if data.state.ndim != 2:
        raise DataError(f"state must be (N, state_dim), got shape {data.state.shape}")
    if data.action.ndim != 3:
        raise DataError(f"action must be (N, horizon, action_dim), got shape {data.action.shape}")
    n = data.state.shape[0]
    if n == 0:
        raise DataError("training data is empty: no samples; record or load some demonstrations")
    if data.action.shape[0] != n:
        raise DataError(f"state has {n} samples but action has {data.action.shape[0]}")
    for name, arr in (("state", data.state), ("action", data.action)):
        bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise DataError(
                f"{name} holds NaN or inf in sample {idx[0]} ({len(idx)} bad samples in all, "
                f"first ones {idx[:5].tolist()}); clean or drop them before training")
    pad = data.action_is_pad
    if not isinstance(pad, np.ndarray) or pad.dtype != bool or pad.shape != data.action.shape[:2]:
        raise DataError(f"action_is_pad must be a bool array of shape {data.action.shape[:2]} "
                        f"(samples, horizon), got {getattr(pad, 'dtype', type(pad).__name__)} "
                        f"of shape {getattr(pad, 'shape', None)}")
    if data.frame_index is not None:
        _check_frame_index(data.frame_index, n)
    for cam, img in data.images.items():
        if img.ndim != 4 or img.shape[0] != n or img.shape[-1] != 3:
            raise DataError(f"images[{cam!r}] must be (N={n}, H, W, 3), got shape {img.shape}")
        if img.dtype != np.uint8:
            raise DataError(f"images[{cam!r}] must be uint8 RGB, got {img.dtype}")


def _check_frame_index(index: np.ndarray, n: int) -> None:
    if index.shape != (n,) or not np.issubdtype(index.dtype, np.integer):
        raise DataError(f"frame_index must be {n} integers (one per sample), got "
                        f"{index.dtype} of shape {index.shape}")
    if n and (index.min() < 0 or index[0] != 0):
        raise DataError("frame_index must start at 0 and never be negative (the step of each "
                        "sample in its episode)")
    bad = np.flatnonzero((index[1:] > 0) & (index[1:] != index[:-1] + 1))
    if bad.size:
        i = int(bad[0]) + 1
        raise DataError(f"frame_index of sample {i} is {index[i]} but the sample before is step "
                        f"{index[i - 1]}: an episode's samples must follow each other in order")


def history_rows(data: ChunkData, n_obs_steps: int) -> np.ndarray:
    """(N, n_obs_steps) rows of each sample's observations, the oldest first and the sample's own
    last: the steps 1/fps apart before it in its episode, the episode's first repeated where the
    episode began later (as Diffusion Policy and LeRobot pad)."""
    n = len(data)
    if n_obs_steps == 1:
        return np.arange(n)[:, None]
    if data.frame_index is None:
        raise DataError(f"n_obs_steps is {n_obs_steps} but the data does not say where its "
                        "episodes start (no frame_index): train on a LeRobot dataset or data "
                        "cut with from_episodes, or set n_obs_steps: 1")
    back = np.arange(n_obs_steps - 1, -1, -1)[None, :]  # (1, T): T-1 ... 0 steps back
    return np.arange(n)[:, None] - np.minimum(back, data.frame_index[:, None])


def chunk_episode(states: np.ndarray, actions: np.ndarray, horizon: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step episode arrays -> (state_t, action[t:t+H], is_pad) per step t; past the end the
    last action repeats and is marked as padding, so every step of the episode is a sample."""
    states = np.asarray(states, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.float32)
    if len(states) != len(actions) or len(states) == 0:
        raise DataError(f"episode has {len(states)} states and {len(actions)} actions; "
                        "need the same non-zero number")
    t = len(actions)
    idx = np.arange(t)[:, None] + np.arange(horizon)[None, :]
    return states, actions[np.minimum(idx, t - 1)], idx > t - 1


def from_episodes(episodes: Sequence[tuple[np.ndarray, np.ndarray]], horizon: int,
                  holds_at_end: bool = False, **kwargs) -> ChunkData:
    """Chunk each (states, actions) episode and stack them.

    holds_at_end: the demonstrator is known to hold still after its last step (a scripted expert
    resting at its goal), so the repeated last action is its real continuation, not padding.
    """
    if not episodes:
        raise DataError("no episodes given; record or load some demonstrations")
    parts = [chunk_episode(s, a, horizon) for s, a in episodes]
    is_pad = np.concatenate([p[2] for p in parts])
    return ChunkData(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                     action_is_pad=is_pad & (not holds_at_end),
                     frame_index=np.concatenate([np.arange(len(p[0])) for p in parts]), **kwargs)
