"""Checkpoints as plain directories: config.yaml + model.safetensors + stats.safetensors.

Nothing is ever unpickled, so a checkpoint from anywhere is safe to load; every mismatch is
reported with both sides named, because a wrong policy on a robot arm is worse than none.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genpol.policies.base import Policy
from genpol.policies.config import ConfigError
from genpol.policies.families import config_from_dict, make_policy
from genpol.policies.normalize import STAT_KEYS

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.safetensors"
STATS_FILE = "stats.safetensors"
FORMAT = "genpol-checkpoint-1"
_STAT_PREFIX = "normalizer."
# Fields added after checkpoints were already saved, with the value those checkpoints were built
# with where it differs from a new config's default, per family.
_SAVED_BEFORE = {family: {"unet_layout": "legacy"} for family in ("diffusion", "flow")}


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed, or not the policy the caller needs."""


def save_policy(policy: Policy, path: str | os.PathLike, info: Mapping[str, Any] | None = None
                ) -> Path:
    """Write the checkpoint; each file is replaced atomically so a crash leaves the old one."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    stats = {k[len(_STAT_PREFIX):]: v for k, v in state.items() if k.startswith(_STAT_PREFIX)}
    weights = {k: v for k, v in state.items() if not k.startswith(_STAT_PREFIX)}
    meta = {"format": FORMAT, "family": policy.config.family}
    config = policy.config.to_dict()
    if info:
        config["_info"] = dict(info)
    _atomic(path / MODEL_FILE, lambda tmp: save_file(weights, tmp, metadata=meta))
    _atomic(path / STATS_FILE, lambda tmp: save_file(stats, tmp, metadata=meta))
    _atomic(path / CONFIG_FILE,
            lambda tmp: Path(tmp).write_text(yaml.safe_dump(config, sort_keys=False)))
    return path


def _atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    write(str(tmp))
    os.replace(tmp, target)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's config.yaml as a dict (with 'family'), after checking the directory; a
    field the file predates gets the value its weights were built with (e.g. the legacy U-Net)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a directory; a genpol checkpoint is a directory "
            f"holding {CONFIG_FILE}, {MODEL_FILE} and {STATS_FILE}")
    missing = [f for f in (CONFIG_FILE, MODEL_FILE, STATS_FILE) if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"{str(path)!r} is not a genpol checkpoint: missing {missing}")
    try:
        raw = yaml.safe_load((path / CONFIG_FILE).read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path / CONFIG_FILE} must hold a mapping, got {type(raw).__name__}")
    family = raw.get("family")
    for key, value in (_SAVED_BEFORE.get(family, {}) if isinstance(family, str) else {}).items():
        raw.setdefault(key, value)
    return raw


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu",
                expect: Mapping[str, Any] | None = None) -> Policy:
    """Load a checkpoint; `expect` (e.g. {"family": "flow", "action_dim": 6}) must match its
    config."""
    path = Path(path)
    raw = read_config(path)
    raw.pop("_info", None)
    if expect:
        for key, want in expect.items():
            have = raw.get(key)
            if isinstance(want, tuple):
                want = list(want)
            if have != want:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} has {key}={have!r}, but {want!r} is needed "
                    f"(checkpoint is a {raw.get('family')!r} policy)")
    try:
        config = config_from_dict(raw)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: {exc}") from None
    policy = make_policy(config)
    try:
        weights = load_file(str(path / MODEL_FILE))
        stats = load_file(str(path / STATS_FILE))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read tensors in {str(path)!r}: {exc}") from None
    _check_family(path / MODEL_FILE, config.family)
    state = {**weights, **{_STAT_PREFIX + k: v for k, v in stats.items()}}
    _check_shapes(path, config, policy.state_dict(), state)
    policy.load_state_dict(state)
    return policy.to(device).eval()


def _check_family(file: Path, family: str) -> None:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
    stored = meta.get("family")
    if stored is not None and stored != family:
        raise CheckpointError(
            f"{file} holds weights of a {stored!r} policy but its config says {family!r}")


def _check_shapes(path: Path, config, expected: Mapping[str, torch.Tensor],
                  found: Mapping[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit a {config.family!r} policy with its config: "
            f"missing tensors {missing[:5]}, unexpected tensors {extra[:5]}")
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: tensor {key!r} has shape {tuple(found[key].shape)}, "
                f"but a {config.family!r} policy with its config needs {tuple(tensor.shape)}")
    for key in STAT_KEYS:
        if not torch.isfinite(found[_STAT_PREFIX + key]).all():
            raise CheckpointError(f"checkpoint {str(path)!r}: statistic {key!r} holds NaN or inf")
