"""Broken copies of a good checkpoint, one per way a checkpoint arrives broken, for the fault
benchmark's swap row (`genpol bench faults`): each must be refused as the planner's policy_path,
with the running policy and the parameter unchanged. Also a tiny untrained policy, instant to
make, for the benchmark's --quick form.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from genpol import robot
from genpol.policies.checkpoint import CONFIG_FILE, MODEL_FILE, STATS_FILE


def _config(d: Path, **changes) -> None:
    cfg = yaml.safe_load((d / CONFIG_FILE).read_text())
    cfg.update(changes)
    (d / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False))


def _tensors(d: Path, name: str, edit: Callable[[dict[str, torch.Tensor]], object]) -> None:
    """Rewrite a safetensors file through `edit`, keeping its metadata (format and family)."""
    with safe_open(str(d / name), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}  # noqa: SIM118
    edit(tensors)
    save_file(tensors, str(d / name), metadata=meta)


def _nan_first_weight(w: dict[str, torch.Tensor]) -> None:
    key = next(k for k, v in w.items() if v.is_floating_point())
    w[key] = torch.full_like(w[key], float("nan"))


def _pickled(d: Path) -> None:
    with safe_open(str(d / MODEL_FILE), framework="pt") as f:
        # copies: the file they may map is rewritten below
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}  # noqa: SIM118
    torch.save(tensors, d / MODEL_FILE)


#: kind -> how a copy of the good checkpoint is broken
BREAKS: dict[str, Callable[[Path], object]] = {
    "truncated": lambda d: (d / MODEL_FILE).write_bytes((d / MODEL_FILE).read_bytes()[:-1000]),
    "zero_length": lambda d: (d / MODEL_FILE).write_bytes(b""),
    "pickled": _pickled,
    "unknown_key": lambda d: _tensors(d, MODEL_FILE,
                                      lambda w: w.update(extra_head=torch.zeros(3))),
    "wrong_family": lambda d: _config(d, family="mse"),
    "unknown_family": lambda d: _config(d, family="wavenet"),
    "nan_stats": lambda d: _tensors(d, STATS_FILE, lambda s: s["state_mean"].fill_(np.nan)),
    "nan_weights": lambda d: _tensors(d, MODEL_FILE, _nan_first_weight),
    "string_horizon": lambda d: _config(d, horizon=str(yaml.safe_load(
        (d / CONFIG_FILE).read_text())["horizon"])),
    "fps_1000": lambda d: _config(d, fps=1000),
}


def make_bad_checkpoints(good: str | Path, out: str | Path) -> dict[str, Path]:
    """One broken copy of `good` per kind in BREAKS, under `out` (replaced if there)."""
    good, out = Path(good), Path(out)
    made = {}
    for kind, breaks in BREAKS.items():
        path = out / kind
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(good, path)
        breaks(path)
        made[kind] = path
    return made


def tiny_policy(path: str | Path, home: np.ndarray | None = None) -> Path:
    """An untrained small flow policy whose statistics sit around `home` (joint positions): it
    plans chunks near there and passes vetting, and takes a second to make (--quick)."""
    from genpol.policies import make_config, make_policy, save_policy
    from genpol.policies.normalize import compute_stats

    home = np.asarray(home if home is not None else [0.0, -0.5, 0.5, 0.2, 0.0, 0.3], float)
    rng = np.random.default_rng(0)
    state = home + 0.05 * rng.standard_normal((64, len(home)))
    action = state[:, None, :] + 0.02 * rng.standard_normal((64, 8, len(home)))
    config = make_config("flow", state_dim=len(home), action_dim=len(home), horizon=8, fps=10.0,
                         hidden_dim=32, down_dims=[16, 32], num_steps=2,
                         joint_names=list(robot.JOINT_NAMES))
    policy = make_policy(config)
    policy.set_stats(compute_stats(state, action))
    return save_policy(policy, path, info={"note": "untrained (genpol bench faults --quick)"})
