"""A checkpoint vetted before it may drive an arm: every file read, a dry run sampled.

load_policy catches what would make loading fail; a policy can still load and be useless or
dangerous (NaN weights, a chunk played at 1000 Hz, actions beyond the joints' limits). vet()
finds those before a swap, reading the safetensors headers as plain JSON first (so a renamed
torch.save pickle or a cut-off copy is named as such, and nothing is ever unpickled), then loads
once and samples from a neutral observation. Each refusal names the file and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from genpol.policies.base import Policy
from genpol.policies.checkpoint import (CONFIG_FILE, MODEL_FILE, STATS_FILE, CheckpointError,
                                        read_config)
from genpol.policies.config import ConfigError
from genpol.policies.families import config_from_dict, families, make_policy
from genpol.policies.normalize import STAT_KEYS

#: chunk rates a real arm can follow (the executor plays point k at k/fps)
FPS_RANGE = (1.0, 200.0)
MAX_HORIZON = 1024
#: samples of the dry run
DRY_RUN_SAMPLES = 2
#: a safetensors header is a few kB; a larger "length" means the file is something else
_MAX_HEADER = 100 * 2**20
_STAT_PREFIX = "normalizer."

#: joint name -> (lower, upper) in the actions' units
Limits = Mapping[str, tuple[float, float]]


def vet(path: str | Path, device: str = "cpu", limits: Limits | None = None,
        tolerance: float = 0.05) -> Policy:
    """The checkpoint at `path`, loaded on `device` and tried once; CheckpointError with the
    reason if any part is unfit. `limits`: a dry-run chunk must keep each named joint inside
    them, give or take `tolerance`."""
    path = Path(path)
    raw = read_config(path)
    raw.pop("_info", None)
    model_shapes, model_meta = read_header(path / MODEL_FILE)
    stats_shapes, _ = read_header(path / STATS_FILE)
    stored, family = model_meta.get("family"), raw.get("family")
    if family is not None and family not in families():
        raise CheckpointError(f"{path / CONFIG_FILE}: unknown policy family {family!r}; choose one "
                              f"of {families()} (the one these weights were trained as)")
    if stored is not None and stored != family:  # before the config's keys: they differ too
        raise CheckpointError(
            f"{path / MODEL_FILE} holds a {stored!r} policy but {path / CONFIG_FILE} says family: "
            f"{family}; put back the config saved with these weights")
    _check_numbers(path / CONFIG_FILE, raw)
    try:
        config = config_from_dict(raw)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: {exc}") from None
    policy = make_policy(config)  # on the CPU, as load_policy builds it; loaded once, below
    expected = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    _check_shapes(path / MODEL_FILE, config.family, model_shapes,
                  {k: s for k, s in expected.items() if not k.startswith(_STAT_PREFIX)})
    _check_shapes(path / STATS_FILE, config.family, stats_shapes,
                  {k: expected[_STAT_PREFIX + k] for k in STAT_KEYS})
    weights, stats = _read(path / MODEL_FILE), _read(path / STATS_FILE)
    _check_stats(path / STATS_FILE, stats)
    _check_finite(path / MODEL_FILE, weights)
    try:
        policy.load_state_dict({**weights, **{_STAT_PREFIX + k: v for k, v in stats.items()}})
        policy = policy.to(device).eval()
    except Exception as exc:  # torch's own complaint, with the checkpoint named
        raise CheckpointError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
    dry_run(policy, path, limits, tolerance)
    return policy


def read_header(file: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """({tensor: shape}, metadata) from a safetensors file's JSON header, checking the file is
    as long as the header says; the tensors themselves are not read."""
    size = file.stat().st_size
    if size == 0:
        raise CheckpointError(f"{file} is empty (0 bytes): the save or the copy was cut off; "
                              "copy the checkpoint again or train it again")
    with file.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 0 or length > min(size - 8, _MAX_HEADER):
            if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
                raise CheckpointError(
                    f"{file} is a pickle (torch.save), not safetensors. genpol never unpickles a "
                    "file (unpickling can run any code): save the tensors with "
                    "safetensors.torch.save_file, or train with genpol train")
            raise CheckpointError(f"{file} is not a safetensors file, or is truncated (cut off "
                                  f"after {size} bytes); copy the checkpoint again")
        text = f.read(length)
    try:
        header = json.loads(text)
        if not isinstance(header, dict):
            raise ValueError("not a mapping")
        meta = header.pop("__metadata__", None) or {}
        shapes, end = {}, 0
        for key, entry in header.items():
            shapes[key] = tuple(int(n) for n in entry["shape"])
            end = max(end, int(entry["data_offsets"][1]))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CheckpointError(f"{file} has no readable safetensors header ({exc}); copy the "
                              "checkpoint again") from None
    if 8 + length + end > size:
        raise CheckpointError(
            f"{file} is truncated: its header promises {8 + length + end} bytes, the file has "
            f"{size}; copy the checkpoint again")
    return shapes, dict(meta)


def neutral_observation(policy: Policy) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """The statistics' mean state and a grey frame per camera: an observation any checkpoint
    can be run on without data (dry runs, warm-up)."""
    cfg = policy.config
    state = policy.normalizer.state_mean.detach().cpu().numpy()
    _, h, w = cfg.image_shape
    images = {cam: np.full((h, w, 3), 128, dtype=np.uint8) for cam in cfg.cameras}
    return state, images or None


def dry_run(policy: Policy, path: Path | str, limits: Limits | None = None,
            tolerance: float = 0.05) -> np.ndarray:
    """Chunks sampled for the statistics' mean state (and grey images): they must be finite,
    of the configured shape and, with `limits`, inside each named joint's limits."""
    cfg = policy.config
    state, images = neutral_observation(policy)
    try:
        chunks = policy.predict_chunks(state, images, DRY_RUN_SAMPLES, seed=0)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} failed a dry run on its mean state: "
                              f"{type(exc).__name__}: {exc}") from None
    if chunks.shape != (DRY_RUN_SAMPLES, cfg.horizon, cfg.action_dim):
        raise CheckpointError(f"checkpoint {str(path)!r} sampled chunks of shape {chunks.shape}, "
                              f"but its config says ({cfg.horizon}, {cfg.action_dim}) each")
    if not np.isfinite(chunks).all():
        raise CheckpointError(
            f"checkpoint {str(path)!r} samples NaN or inf on its own mean state: its weights are "
            f"broken (a diverged training?); use an earlier checkpoint or train again")
    for j, name in enumerate(cfg.joint_names):
        if limits is None or name not in limits:
            continue
        lower, upper = limits[name]
        low, high = float(chunks[..., j].min()), float(chunks[..., j].max())
        if low < lower - tolerance or high > upper + tolerance:
            raise CheckpointError(
                f"checkpoint {str(path)!r} moves {name} to {low:.3f}..{high:.3f} on its own mean "
                f"state, beyond the joint's limits {lower:.3f}..{upper:.3f} (+-{tolerance:g}): "
                "its statistics or joint order do not fit this arm; check stats.safetensors "
                "and joint_names, or train on this arm's data")
    return chunks


def _check_numbers(file: Path, raw: Mapping[str, Any]) -> None:
    """fps and horizon typed and plausible: YAML makes '8' a string and 1000 a valid number."""
    for key in ("horizon", "state_dim", "action_dim"):
        value = raw.get(key)
        if key in raw and (not isinstance(value, int) or isinstance(value, bool)):
            raise CheckpointError(f"{file}: {key} is {value!r} ({type(value).__name__}); write a "
                                  f"whole number without quotes, e.g. {key}: 16")
    horizon = raw.get("horizon")
    if isinstance(horizon, int) and not 1 <= horizon <= MAX_HORIZON:
        raise CheckpointError(f"{file}: horizon {horizon} is outside 1..{MAX_HORIZON} steps; "
                              "set the chunk length the policy was trained with")
    if "fps" in raw:
        fps = raw["fps"]
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps):
            raise CheckpointError(f"{file}: fps is {fps!r} ({type(fps).__name__}); write the "
                                  "demonstrations' rate as a number, e.g. fps: 10")
        low, high = FPS_RANGE
        if not low <= fps <= high:
            raise CheckpointError(
                f"{file}: fps {fps:g} is outside {low:g}..{high:g} Hz (the executor plays point "
                "k at k/fps); set the rate the demonstrations were recorded at, e.g. fps: 10")


def _check_shapes(file: Path, family: str, found: Mapping[str, tuple[int, ...]],
                   expected: Mapping[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{file} does not fit the {family!r} policy its config.yaml describes: missing "
            f"tensors {missing[:5]}, unexpected tensors {extra[:5]}; use the config.yaml saved "
            "with these weights")
    for key, shape in expected.items():
        if found[key] != shape:
            raise CheckpointError(
                f"{file}: tensor {key!r} has shape {found[key]}, but the {family!r} policy its "
                f"config.yaml describes needs {shape}; use the config.yaml saved with these "
                "weights")


def _read(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {file}: {exc}; copy the checkpoint again") from None


def _check_stats(file: Path, stats: Mapping[str, torch.Tensor]) -> None:
    for key in STAT_KEYS:
        bad = int((~torch.isfinite(stats[key])).sum())
        if bad:
            raise CheckpointError(f"{file}: statistic {key!r} holds {bad} NaN or inf values; "
                                  "recompute the statistics from the dataset (genpol train)")
    if bool((stats["action_min"] > stats["action_max"]).any()) or bool(
            (stats["state_std"] < 0).any()):
        raise CheckpointError(f"{file}: action_min exceeds action_max or state_std is negative; "
                              "recompute the statistics from the dataset (genpol train)")


def _check_finite(file: Path, weights: Mapping[str, torch.Tensor]) -> None:
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{file}: tensor {key!r} holds {bad} NaN or inf values: the training diverged; "
                "use an earlier checkpoint or train again")
