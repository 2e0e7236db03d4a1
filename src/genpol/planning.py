"""The planner's core, free of ROS: which policy runs, and turning an observation into chunks.

A policy swap is checked cheaply and synchronously (so a bad path is refused in the parameter
result), loaded off the caller's thread, and switched in with one reference assignment, so a
chunk is always sampled by exactly one policy; of overlapping swaps the last request wins.
Which sampled chunk runs is genpol.control.selection's choice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from genpol import robot
from genpol.control.timeline import Prefix
from genpol.policies.checkpoint import CheckpointError, read_config

if TYPE_CHECKING:
    from genpol.policies.base import Policy


def check_checkpoint(path: str) -> str:
    """Empty string if `path` holds a policy for the SO-101, else the reason it does not."""
    if not path:
        return "policy_path is empty; give a checkpoint directory"
    try:
        raw = read_config(path)
    except CheckpointError as exc:
        return str(exc)
    joints = list(raw.get("joint_names") or [])
    if sorted(joints) != sorted(robot.JOINT_NAMES):
        return (f"checkpoint {path!r} is for joints {joints or 'unnamed'}, but this robot has "
                f"{list(robot.JOINT_NAMES)}")
    if raw.get("state_dim") != len(joints):
        return (f"checkpoint {path!r} expects a state of {raw.get('state_dim')} values; the "
                f"planner feeds the {len(joints)} joint positions")
    return ""


SUPERSEDED = "superseded by a later request"


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class PolicyHolder:
    """Holds the running policy and samples chunks for one observation at a time.

    Loads may overlap (two quick swaps); each request is numbered and a finished load switches
    in only if no later request was made meanwhile, so the last request wins however long each
    load takes.
    """

    def __init__(self, device: str = "auto", cpu_threads: int = 0):
        self.device = resolve_device(device)
        if self.device == "cpu" and cpu_threads > 0:
            import torch

            # Beside the simulator and the executor on a small CPU, torch's default (one thread
            # per core) makes the processes fight; the small policies gain little from more.
            torch.set_num_threads(cpu_threads)
        self.policy: Policy | None = None
        self.path = ""
        self._lock = threading.Lock()
        self._latest = 0  # number of the latest load request

    def load(self, path: str) -> None:
        """Load now (on this thread) and switch to it; raises CheckpointError on failure."""
        self._load(path, self._new_request())

    def load_in_background(self, path: str, done: Callable[[str, str], None]) -> None:
        """Load on a worker thread; `done(path, error)` is called after: error empty once the
        policy runs, else why not (a failure, or a later request that superseded this one)."""
        request = self._new_request()

        def work() -> None:
            try:
                switched = self._load(path, request)
            except Exception as exc:  # reported to the node, the old policy keeps running
                done(path, f"{type(exc).__name__}: {exc}")
            else:
                done(path, "" if switched else SUPERSEDED)

        threading.Thread(target=work, name="policy-loader", daemon=True).start()

    def _new_request(self) -> int:
        with self._lock:
            self._latest += 1
            return self._latest

    def _load(self, path: str, request: int) -> bool:
        """Load `path`; switch to it unless a later request was made. True if switched."""
        from genpol.policies import load_policy

        reason = check_checkpoint(path)
        if reason:
            raise CheckpointError(reason)
        policy = load_policy(path, device=self.device)
        with self._lock:
            if request != self._latest:
                return False
            self.policy, self.path = policy, path  # one assignment: the swap is atomic
        return True

    def sample(self, positions_by_name: Mapping[str, float],
               images: Mapping[str, np.ndarray] | None, num_samples: int,
               prefix_for: Callable[[Policy], Prefix | None] | None = None,
               steps: int | Callable[[Policy], int] = 0):
        """(policy, chunks (N, H, A), prefix) for one observation; positions are matched by
        joint name.

        Returns the policy used so the caller labels the chunk with that policy's fps and
        joints even if a swap lands meanwhile; `prefix_for(policy)` gives the prefix to continue
        for that same policy (returned: the caller chooses a chunk, then continues the prefix
        into it, Prefix.continue_into); `steps` > 0 (or `steps(policy)`) sets a denoising family's
        sampling steps (the others have none).
        """
        policy = self.policy
        if policy is None:
            raise RuntimeError("no policy loaded")
        names = policy.config.joint_names
        missing = [n for n in names if n not in positions_by_name]
        if missing:
            raise ValueError(f"joint state lacks {missing}")
        state = np.array([positions_by_name[n] for n in names], dtype=np.float32)
        cams = {}
        for cam in policy.config.cameras:
            if images is None or cam not in images:
                raise ValueError(f"no image yet from camera {cam!r}")
            cams[cam] = _fit(images[cam], policy.config.image_shape)
        prefix = prefix_for(policy) if prefix_for is not None else None
        if callable(steps):
            steps = steps(policy)
        chunks = policy.predict_chunks(state, cams or None, num_samples, prefix=prefix,
                                       steps=steps if steps and policy.takes_noise else None)
        return policy, chunks, prefix


def _fit(img: np.ndarray, shape) -> np.ndarray:
    """Resize an (H, W, 3) frame to the policy's image size when the camera differs."""
    _, h, w = shape
    if img.shape[:2] == (h, w):
        return img
    import cv2

    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
