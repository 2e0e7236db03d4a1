"""Training loop for every family: step-based, seeded, checkpointing, DDP-aware under torchrun.

Under torchrun (WORLD_SIZE > 1) each process draws its own random minibatches (seed + rank) and
DistributedDataParallel averages the gradients, so the effective batch is world_size x batch_size.
Only rank 0 writes checkpoints and shows progress.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from dataclasses import asdict, dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from genpol.data.arrays import ChunkData, DataError, history_rows
from genpol.policies import Policy, PolicyConfig, make_policy, save_policy
from genpol.policies.acceleration import allow_tf32, set_threads
from genpol.policies.action_frame import to_frame
from genpol.policies.config import ConfigError
from genpol.policies.denoising import gaussian_noise
from genpol.policies.normalize import compute_stats


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    warmup_steps: int = 50
    grad_clip: float = 1.0
    #: Exponential moving average of the weights (0 = off); diffusion samples better with it.
    ema_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    checkpoint_every: int = 0  # 0: only the final checkpoint
    progress: bool = True
    #: Leave chunk steps past an episode's end (ChunkData.action_is_pad) out of the loss; False
    #: trains on them as if the demonstrator had held still there.
    mask_padding: bool = True
    #: Images shifted by up to this many pixels each way (edges repeated), anew for every
    #: sample of every batch, as Diffusion Policy crops and DrQ shifts: a small image dataset
    #: is otherwise memorised pixel by pixel. 0: off.
    image_shift: int = 4
    #: Gaussian noise added to every sample's joint-state input, as a fraction of each joint's
    #: standard deviation over the data (a joint that never moves gets none); the action labels
    #: stay. With a few dozen start poses a state-only policy otherwise maps each recorded state
    #: to its own chunk and is unsure between them; noise teaches it the way back to the
    #: demonstrated path from nearby states. 0: off.
    state_noise: float = 0.0
    #: The least state noise any joint gets (state units: rad for the SO-101), still joints
    #: included: differences below the sensor's resolution must not steer the policy. In the
    #: simulator the idle gripper creeps 0.2 mrad/s, a little faster while the arm swings left,
    #: and a flow policy learned that as its cue for the mode: its first chunk went right in 5 %
    #: or 95 % of samples at a gripper reading 0.6 mrad apart (the time the first plan came after
    #: the reset). The SO-101's STS3215 reads 1.5 mrad per count. 0: off.
    state_noise_floor: float = 0.0
    #: torch threads (intra- and inter-op) for this process; 0: torch's default, one per core,
    #: which on a shared or small machine makes processes fight over the cores.
    threads: int = 0
    #: DataLoader worker processes that gather and shift the image minibatches while the model
    #: trains; -1: with images, the cores training leaves free (all but one on CUDA, all but
    #: `threads` on the CPU), at most 4. State-only batches are gathered in memory (fastest).
    num_workers: int = -1
    #: bf16 autocast of the forward pass on CUDA (the weights and the optimiser stay float32);
    #: on the CPU it does nothing.
    amp: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"train {name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"train lr must be > 0, got {self.lr}")
        if not 0.0 <= self.state_noise_floor < math.inf:
            raise ConfigError(f"train state_noise_floor is a noise std in the state's units "
                              f"(rad), >= 0; got {self.state_noise_floor}")
        if not 0.0 <= self.state_noise <= 1.0:
            raise ConfigError(f"train state_noise is a fraction of each joint's spread, in "
                              f"[0, 1]; got {self.state_noise}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.warmup_steps < 0 or self.checkpoint_every < 0 or self.image_shift < 0:
            raise ConfigError("train warmup_steps, checkpoint_every and image_shift must be "
                              ">= 0")
        for name, low in (("threads", 0), ("num_workers", -1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"train {name} must be a whole number >= {low}, got {value!r}")
        if not isinstance(self.amp, bool):
            raise ConfigError(f"train amp must be true or false, got {self.amp!r}")
        resolve_device(self.device)


@dataclass
class TrainResult:
    policy: Policy
    history: list[dict[str, float]]
    seconds: float
    world_size: int
    steps_per_second: float = 0.0
    #: samples per second over all processes (world_size x batch_size per step)
    samples_per_second: float = 0.0
    threads: int = 0  # torch's intra-op threads while training
    num_workers: int = 0
    amp: bool = False

    def summary(self) -> dict[str, Any]:
        """What a run reports beside its loss: speed and the settings it ran with."""
        return {"seconds": round(self.seconds, 3),
                "steps_per_second": round(self.steps_per_second, 3),
                "samples_per_second": round(self.samples_per_second, 1),
                "threads": self.threads, "num_workers": self.num_workers, "amp": self.amp,
                "world_size": self.world_size}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name.startswith("cuda"):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA device is available; "
                              "use device 'cpu' or 'auto'")
        return torch.device(name)
    raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def fit_config(config: PolicyConfig, data: ChunkData) -> ChunkData:
    """Refuse data whose shapes do not match the policy config (before any training); returns
    the data with only the cameras the policy uses (a dataset may record more, e.g. a wrist
    camera a state-only policy ignores)."""
    want = (config.state_dim, config.horizon, config.action_dim)
    have = (data.state.shape[1], data.action.shape[1], data.action.shape[2])
    if want != have:
        raise DataError(f"data has state_dim={have[0]}, horizon={have[1]}, action_dim={have[2]} "
                        f"but the policy config says {want[0]}, {want[1]}, {want[2]}")
    missing = sorted(set(config.cameras) - set(data.images))
    if missing:
        raise DataError(f"the policy config uses cameras {missing} that the data lacks (it has "
                        f"{sorted(data.images) or 'none'}); set `cameras` to a subset of those")
    if sorted(data.images) == sorted(config.cameras):
        return data
    return dataclasses.replace(data, images={c: data.images[c] for c in config.cameras})


def train(config: PolicyConfig, data: ChunkData, tcfg: TrainConfig | None = None,
          out_dir: str | os.PathLike | None = None) -> TrainResult:
    tcfg = tcfg or TrainConfig()
    threads = set_threads(tcfg.threads)
    data = fit_config(config, data)
    world, rank, local_rank = _distributed()
    device = resolve_device(tcfg.device)
    amp = tcfg.amp and device.type == "cuda"
    if amp and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train amp uses bf16, which {torch.cuda.get_device_name(device)} "
                          "lacks; train without amp")
    if device.type == "cuda":
        allow_tf32()
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    torch.manual_seed(tcfg.seed)  # same initial weights on every rank
    policy = make_policy(config)
    # each joint's own spread (not the normaliser's floored one), at least the floor
    noise = np.maximum(data.state.std(0) * tcfg.state_noise, tcfg.state_noise_floor)
    # relative chunks are normalised by the spread of the offsets, not of the targets
    stats = compute_stats(data.state, to_frame(data.action, data.state, config.action_frame))
    policy.set_stats(stats)
    noise_std = torch.from_numpy(noise).float().to(device)
    noisy = bool(noise.any())
    policy.to(device).train()
    model: torch.nn.Module = policy
    if world > 1:
        model = DistributedDataParallel(policy, device_ids=[device.index] if device.type == "cuda"
                                        else None)
    ema = None
    if tcfg.ema_decay > 0:
        ema = AveragedModel(policy, multi_avg_fn=get_ema_multi_avg_fn(tcfg.ema_decay),
                            use_buffers=True)

    opt = torch.optim.AdamW(policy.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, tcfg))
    tensors = _to_tensors(data, device, tcfg.mask_padding)
    if config.n_obs_steps > 1:  # each sample's earlier observations (DataError if unknown)
        tensors["obs_rows"] = torch.from_numpy(history_rows(data, config.n_obs_steps))
    rng = torch.Generator().manual_seed(tcfg.seed * 1000 + rank)
    workers = _workers(tcfg, device, bool(data.images), threads)
    # Image batches are drawn batch by batch from their own seeds, the same whatever the
    # workers; state-only ones from one generator, in memory (the fastest for them).
    draws = _loader(tensors, tcfg, workers, device, rank) if data.images else None
    out = Path(out_dir) if out_dir is not None else None

    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(1, tcfg.steps + 1), disable=not tcfg.progress or rank != 0,
               desc=f"train {config.family}", dynamic_ncols=True)
    for step in bar:
        if draws is None:
            batch = _batch(tensors, tcfg.batch_size, rng, device, tcfg.image_shift)
        else:
            batch = _assemble(tensors, *next(draws), device)
        if noisy:  # relative labels stay offsets from the true state (policies.base)
            batch["frame_state"] = batch["state"]
            batch["state"] = jitter(batch["state"], noise_std, rng)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, info = model(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; "
                                     "lower the learning rate or check the data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), tcfg.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(policy)
        if step % tcfg.log_every == 0 or step == tcfg.steps:
            row = {"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0], **info}
            history.append(row)
            rate = step / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{row['loss']:.4f}", steps_s=f"{rate:.2f}",
                            samples_s=f"{rate * tcfg.batch_size * world:.0f}")
        if out and rank == 0 and tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0 \
                and step != tcfg.steps:
            save_policy(_final(policy, ema), out / "checkpoints" / f"step_{step:07d}",
                        {"step": step})
    seconds = time.perf_counter() - start
    bar.close()
    del draws  # ends the DataLoader's workers
    final = _final(policy, ema).eval()
    rate = tcfg.steps / seconds if seconds > 0 else 0.0
    result = TrainResult(final, history, seconds, world, rate, rate * tcfg.batch_size * world,
                         threads, workers, amp)
    if out and rank == 0:
        save_policy(final, out, {"step": tcfg.steps, "train": asdict(tcfg), "world_size": world,
                                 "samples": len(data), **result.summary()})
    return result


def _final(policy: Policy, ema: AveragedModel | None) -> Policy:
    return policy if ema is None else cast(Policy, ema.module)


def _lr_factor(step: int, tcfg: TrainConfig) -> float:
    if step < tcfg.warmup_steps:
        return (step + 1) / tcfg.warmup_steps
    progress = (step - tcfg.warmup_steps) / max(1, tcfg.steps - tcfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _to_tensors(data: ChunkData, device: torch.device, mask_padding: bool) -> dict[str, Any]:
    # State and actions are small: keep them on the device. Images stay on the host as uint8 and
    # only the minibatch travels.
    tensors = {"state": torch.from_numpy(data.state).to(device),
               "action": torch.from_numpy(data.action).to(device),
               "images": {k: torch.from_numpy(v) for k, v in data.images.items()}}
    if mask_padding and data.action_is_pad.any():
        tensors["action_is_pad"] = torch.from_numpy(data.action_is_pad).to(device)
    return tensors


def random_shift(images: torch.Tensor, pad: int, rng: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) images, each moved by its own random whole-pixel offset in [-pad, pad],
    the border repeated into the gap."""
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images.float(), (pad,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=rng)
    rows = offsets[:, :1] + torch.arange(h)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w)  # (B, W)
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).to(images.dtype)  # indexing put channels last


def jitter(state: torch.Tensor, std: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """state (..., S) plus Gaussian noise of std (S,) per joint, drawn from the host generator
    so that a run draws the same noise on any device."""
    return state + gaussian_noise(tuple(state.shape), rng, state.device) * std


def _batch(t: dict[str, Any], size: int, rng: torch.Generator, device: torch.device,
           shift: int = 0) -> dict:
    return _assemble(t, *_draw(_host(t), size, rng, shift), device)


def _host(t: dict[str, Any]) -> dict[str, Any]:
    """What drawing a minibatch reads, all on the host (a DataLoader worker gets this)."""
    host = {"samples": t["state"].shape[0], "images": t["images"]}
    if "obs_rows" in t:
        host["obs_rows"] = t["obs_rows"]
    return host


def _draw(h: dict[str, Any], size: int, rng: torch.Generator,
          shift: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(sample indices, their images shifted, uint8 on the host): the part of a minibatch that
    can run in a DataLoader worker."""
    idx = torch.randint(0, h["samples"], (size,), generator=rng)
    rows = h["obs_rows"][idx] if "obs_rows" in h else idx  # (B, n_obs_steps) with a history
    images = {k: random_shift(v[rows].flatten(0, -4).permute(0, 3, 1, 2), shift, rng)
              .unflatten(0, rows.shape) for k, v in h["images"].items()}
    return idx, images


def _assemble(t: dict[str, Any], idx: torch.Tensor, images: dict[str, torch.Tensor],
              device: torch.device) -> dict:
    dev_idx = idx.to(device)
    rows = t["obs_rows"][idx] if "obs_rows" in t else idx
    batch = {"state": t["state"][rows.to(device)], "action": t["action"][dev_idx]}
    if "action_is_pad" in t:
        batch["action_is_pad"] = t["action_is_pad"][dev_idx]
    if images:
        batch["images"] = {k: v.to(device, non_blocking=True) for k, v in images.items()}
    return batch


class _Draws(torch.utils.data.IterableDataset):
    """Endless minibatch draws (_draw): worker k of n draws batches k, k + n, ..., batch i from
    its own seed, so the DataLoader (which takes the workers' batches in turn) yields the same
    batches whatever the number of workers."""

    def __init__(self, host: dict[str, Any], size: int, shift: int, seed: int):
        self.host, self.size, self.shift, self.seed = host, size, shift, seed

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        first, every = (worker.id, worker.num_workers) if worker else (0, 1)
        for i in itertools.count(first, every):
            rng = torch.Generator().manual_seed(hash((self.seed, i)) & (2**63 - 1))
            yield _draw(self.host, self.size, rng, self.shift)


def _workers(tcfg: TrainConfig, device: torch.device, images: bool, threads: int) -> int:
    if not images:
        return 0  # state-only batches are gathered in memory
    if tcfg.num_workers >= 0:
        return tcfg.num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = 1 if device.type == "cuda" else threads
    return max(0, min(4, (cores or 1) - busy))


def _loader(t: dict[str, Any], tcfg: TrainConfig, workers: int, device: torch.device,
            rank: int) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Minibatch draws from `workers` processes (0: in this one), pinned for a fast copy to a
    GPU."""
    seed = tcfg.seed * 1000 + rank
    if workers == 0:
        return iter(_Draws(_host(t), tcfg.batch_size, tcfg.image_shift, seed))
    loader = torch.utils.data.DataLoader(
        _Draws(_host(t), tcfg.batch_size, tcfg.image_shift, seed), batch_size=None,
        num_workers=workers, pin_memory=device.type == "cuda")
    return iter(loader)


def config_for_data(family: str, data: ChunkData, **overrides: Any) -> PolicyConfig:
    """A family's config with shapes, cameras, fps and joints taken from the data."""
    from genpol.policies import make_config

    values: dict[str, Any] = {
        "state_dim": int(data.state.shape[1]), "horizon": data.horizon,
        "action_dim": int(data.action.shape[2]), "fps": float(data.fps),
        "cameras": sorted(data.images), "joint_names": list(data.joint_names)}
    if data.images:
        first = next(iter(data.images.values()))
        values["image_shape"] = [3, int(first.shape[1]), int(first.shape[2])]
    values.update(overrides)
    return make_config(family, **values)
