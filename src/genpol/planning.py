"""The planner's core, free of ROS: which policy runs, and turning an observation into chunks.

A policy swap is vetted in full before it is accepted (genpol.policies.vetting: every file, a
dry run inside the joint limits), so a bad path is refused in the parameter result and the
running policy stays; the vetted policy is then switched in with one reference assignment, so
a chunk is always sampled by exactly one policy. Requests are numbered and an older one never
replaces a newer one. A policy that samples NaN or inf is halted: nothing is planned from it
until another is installed. Which sampled chunk runs is genpol.control.selection's choice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from genpol import robot
from genpol.control.timeline import Prefix
from genpol.observation_history import Observation, ObservationHistory
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
#: observations kept beyond the oldest a policy's history needs (s)
HISTORY_MARGIN_S = 1.0
#: how far past a joint limit a dry-run chunk may reach (rad)
LIMIT_TOLERANCE_RAD = 0.05


def vet_policy(path: str, device: str = "cpu") -> Policy:
    """The policy at `path`, loaded and tried once for this arm; CheckpointError if unfit."""
    from genpol.policies.vetting import vet

    reason = check_checkpoint(path)
    if reason:
        raise CheckpointError(reason)
    limits = {j.name: (j.lower, j.upper) for j in robot.JOINTS}
    return vet(path, device, limits, LIMIT_TOLERANCE_RAD)


class PolicyHalted(RuntimeError):
    """The running policy sampled a non-finite chunk; nothing is planned from it any more."""


@dataclass(frozen=True)
class Candidate:
    """A vetted policy waiting to be installed; `request` orders it among swap requests."""

    request: int
    path: str
    policy: Policy


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class PolicyHolder:
    """Holds the running policy and samples chunks for one observation at a time.

    Loads may overlap (two quick swaps); each request is numbered, and a policy is installed
    only if no later request has been installed, so an older load that ends last never replaces
    a newer one.
    """

    def __init__(self, device: str = "auto", cpu_threads: int = 0,
                 warm_samples: int | Callable[[], int] = 0, precision: str = "float32",
                 compile: bool = False):
        """warm_samples: the planner's samples per observation (or where to read them), drawn
        once at every install so the first chunk of an episode is not the slow one (0: no
        warm-up); precision, compile: see genpol.policies.acceleration (refused here, before
        any load, where the device cannot)."""
        from genpol.policies.acceleration import autocast_dtype, check_compile, set_threads

        self.device = resolve_device(device)
        if cpu_threads > 0:
            # Beside the simulator and the executor on a small CPU, torch's default (one thread
            # per core) makes the processes fight; the small policies gain little from more. On
            # CUDA too: the CPU still runs the small ops between the kernels.
            set_threads(cpu_threads)
        autocast_dtype(precision, self.device)
        if compile:
            check_compile(self.device)
        self.warm_samples = warm_samples
        self.precision, self.compile = precision, compile
        self.policy: Policy | None = None
        self.path = ""
        self.loaded_at = ""  # ISO time the running policy was installed
        self._lock = threading.Lock()
        self._latest = 0  # number of the latest load request
        self._installed = 0  # number of the request that runs
        self._halted: tuple[Policy, str] | None = None
        #: recent observations, for a policy that sees a history (n_obs_steps > 1); they are
        #: the world's, not a policy's, so a swap keeps them and a new episode (reset) drops them
        self.history = ObservationHistory()

    def observe(self, stamp: float, positions_by_name: Mapping[str, float],
                images: Mapping[str, np.ndarray] | None) -> None:
        """Keep an observation as it arrives, so a history is 1/fps apart whatever the rate
        chunks are planned at. Only while the running policy sees a history: at 100 Hz of joint
        states the copies would otherwise be kept for nothing (a policy swapped in that needs
        one starts as an episode does, its first observation repeated)."""
        policy = self.policy
        if policy is not None and policy.config.n_obs_steps > 1:
            self.history.add(stamp, positions_by_name, images)

    def load(self, path: str) -> None:
        """Vet now (on this thread) and switch to it; raises CheckpointError if unfit."""
        self.install(self.prepare(path))

    def prepare(self, path: str) -> Candidate:
        """Number a swap request and vet its checkpoint (CheckpointError if unfit)."""
        request = self._new_request()
        return Candidate(request, path, self._ready(vet_policy(path, self.device), vetted=True))

    def superseded(self, candidate: Candidate) -> bool:
        """True if a later request was made while `candidate` was vetted."""
        with self._lock:
            return candidate.request != self._latest

    def install(self, candidate: Candidate, latest_only: bool = False) -> bool:
        """Run `candidate` unless a later request runs already (with `latest_only`: unless any
        later request was made); True if it runs now."""
        with self._lock:
            if candidate.request <= self._installed or (
                    latest_only and candidate.request != self._latest):
                return False
            self._installed = candidate.request
            # one assignment each: sample() reads self.policy once, so the swap is atomic
            self.policy, self.path = candidate.policy, candidate.path
            self.loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._halted = None
        return True

    @property
    def halted(self) -> str:
        """Why the running policy was halted, empty if it plans."""
        halted = self._halted
        return halted[1] if halted is not None and halted[0] is self.policy else ""

    def load_in_background(self, path: str, done: Callable[[str, str], None]) -> None:
        """Load on a worker thread, without vetting's dry run (the planner vets synchronously
        instead: prepare, then install); `done(path, error)` is called after: error empty once
        the policy runs, else why not (a failure, or a later request that superseded this one)."""
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
        policy = self._ready(load_policy(path, device=self.device), vetted=False)
        return self.install(Candidate(request, path, policy), latest_only=True)

    def _ready(self, policy: Policy, vetted: bool) -> Policy:
        """`policy` set up for this device (precision, compile) and warmed up: one call at the
        planner's samples per observation (skipped when vetting's dry run drew as many), and
        for a family that continues a prefix by guidance one guided call (autograd's first
        backward), before it is installed. The first call at a new shape sets up kernels (on
        CUDA: cuDNN's search, a compile), which would otherwise delay the first chunks."""
        from genpol.policies.acceleration import accelerate
        from genpol.policies.vetting import DRY_RUN_SAMPLES, neutral_observation

        accelerate(policy, self.precision, self.compile)
        n = self.warm_samples() if callable(self.warm_samples) else self.warm_samples
        if n <= 0:
            return policy
        cfg = policy.config
        state, images = neutral_observation(policy)
        if self.compile or not vetted or n != DRY_RUN_SAMPLES:
            policy.predict_chunks(state, images, n, seed=0)
        if policy.prefix_method == "guidance":
            norm = policy.normalizer  # a prefix holding the middle of the action range
            middle = ((norm.action_min + norm.action_max) / 2).detach().cpu().numpy()
            prefix = Prefix(np.tile(middle, (cfg.horizon, 1)), committed=1,
                            overlap=max(1, cfg.horizon // 2))
            policy.predict_chunks(state, images, n, seed=0, prefix=prefix)
        return policy

    def sample(self, positions_by_name: Mapping[str, float],
               images: Mapping[str, np.ndarray] | None,
               num_samples: int | Callable[[Policy], int],
               prefix_for: Callable[[Policy], Prefix | None] | None = None,
               steps: int | Callable[[Policy], int] = 0, stamp: float | None = None):
        """(policy, chunks (N, H, A), prefix) for one observation; positions are matched by
        joint name. A policy that sees a history gets the observations `observe`d (and this one)
        nearest to stamp, stamp - 1/fps, ...; without a stamp, this one repeated.

        Returns the policy used so the caller labels the chunk with that policy's fps and
        joints even if a swap lands meanwhile; `prefix_for(policy)` gives the prefix to continue
        for that same policy (returned: the caller chooses a chunk, then continues the prefix
        into it, Prefix.continue_into); `steps` > 0 (or `steps(policy)`) sets a denoising family's
        sampling steps (the others have none); `num_samples` may also be a function of it.
        """
        policy = self.policy
        if policy is None:
            raise RuntimeError("no policy loaded")
        if self.halted:
            raise PolicyHalted(self.halted)
        names = policy.config.joint_names
        missing = [n for n in names if n not in positions_by_name]
        if missing:
            raise ValueError(f"joint state lacks {missing}")
        cfg = policy.config
        for cam in cfg.cameras:
            if images is None or cam not in images:
                raise ValueError(f"no image yet from camera {cam!r}")
        now = Observation(stamp or 0.0, positions_by_name, images or {})
        seen = [now]
        if cfg.n_obs_steps > 1 and stamp is not None:
            self.history.span_s = (cfg.n_obs_steps - 1) / cfg.fps + HISTORY_MARGIN_S
            self.history.add(stamp, positions_by_name, images)
            seen = self.history.pick(stamp, cfg.n_obs_steps, 1.0 / cfg.fps, cfg.cameras,
                                     names)[:-1] + [now]
        state = np.array([[o.positions[n] for n in names] for o in seen], dtype=np.float32)
        cams = {cam: np.stack([_fit(o.images[cam], cfg.image_shape) for o in seen])
                for cam in cfg.cameras}
        if len(seen) == 1:  # one observation (a policy that sees a history repeats it)
            state, cams = state[0], {cam: frames[0] for cam, frames in cams.items()}
        prefix = prefix_for(policy) if prefix_for is not None else None
        if callable(steps):
            steps = steps(policy)
        if callable(num_samples):
            num_samples = num_samples(policy)
        chunks = policy.predict_chunks(state, cams or None, num_samples, prefix=prefix,
                                       steps=steps if steps and policy.takes_noise else None)
        if not np.isfinite(chunks).all():
            self._halt(policy, int((~np.isfinite(chunks)).sum()), chunks.size)
        return policy, chunks, prefix

    def _halt(self, policy: Policy, bad: int, size: int) -> None:
        """Stop planning from `policy`; PolicyHalted, or ValueError if it was replaced while it
        sampled (its chunk is dropped, the new policy plans on)."""
        with self._lock:
            if policy is not self.policy:
                raise ValueError("a replaced policy sampled NaN or inf; its chunk is dropped")
            reason = (f"policy {self.path} sampled a non-finite chunk ({bad} of {size} values NaN "
                      "or inf); nothing is planned from it: set policy_path to a checkpoint "
                      "(the same one reloads it) to plan again")
            self._halted = (policy, reason)
        raise PolicyHalted(reason)


def _fit(img: np.ndarray, shape) -> np.ndarray:
    """Resize an (H, W, 3) frame to the policy's image size when the camera differs."""
    _, h, w = shape
    if img.shape[:2] == (h, w):
        return img
    import cv2

    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
