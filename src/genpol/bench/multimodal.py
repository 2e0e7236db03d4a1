"""`genpol bench multimodal`: every family on the obstacle problem, rolled out closed-loop.

Shows the product's reason to exist: the point estimate averages the left and right demonstrations
and collides; generative families sample one coherent side and use both.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genpol.bench.obstacle import ObstacleTask
from genpol.data.arrays import ChunkData, from_episodes
from genpol.policies import Policy
from genpol.train import TrainConfig, config_for_data, train

FAMILIES = ["mse", "gaussian", "gmm", "binned", "cvae", "diffusion", "flow"]
HORIZON = 16
EXECUTE = 8  # steps executed from each chunk before replanning


@dataclass
class Preset:
    demos: int
    rollouts: int
    steps: dict[str, int]
    policy: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, dict[str, Any]] = field(default_factory=dict)


_POLICY = {
    "mse": {"hidden_dim": 256},
    "gaussian": {"hidden_dim": 256},
    "gmm": {"hidden_dim": 256, "num_components": 5},
    "binned": {"hidden_dim": 256, "n_bins": 64},
    "cvae": {"hidden_dim": 128, "latent_dim": 8, "beta": 1.0, "enc_layers": 2, "dec_layers": 2,
             "vae_enc_layers": 2, "dim_feedforward": 256, "dropout": 0.0, "sample_prior": True},
    "diffusion": {"hidden_dim": 128, "down_dims": [64, 128], "num_inference_steps": 10},
    "flow": {"hidden_dim": 128, "down_dims": [64, 128], "num_steps": 10},
}
_TRAIN = {"cvae": {"lr": 5e-4}, "diffusion": {"lr": 1e-3}, "flow": {"lr": 1e-3}}

PRESETS = {
    "full": Preset(demos=200, rollouts=100,
                   steps={"mse": 2000, "gaussian": 2000, "gmm": 2000, "binned": 2000,
                          "cvae": 2500, "diffusion": 3000, "flow": 3000},
                   policy=_POLICY, train=_TRAIN),
    "quick": Preset(demos=100, rollouts=60,
                    steps={"mse": 500, "gaussian": 500, "gmm": 600, "binned": 600,
                           "cvae": 800, "diffusion": 900, "flow": 900},
                    policy=_POLICY, train=_TRAIN),
}


def make_data(task: ObstacleTask, demos: int, seed: int) -> ChunkData:
    episodes, _ = task.demonstrations(demos, seed)
    return from_episodes(episodes, HORIZON, fps=10.0)


def rollout(policy: Policy, task: ObstacleTask, starts: np.ndarray, seed: int,
            max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Closed loop for all starts at once: sample a chunk, execute EXECUTE steps, replan.

    Returns paths (n, T+1, 2) and a crashed flag per rollout; a crashed robot stops where it hit.
    """
    max_steps = max_steps or 2 * task.demo_steps
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    pos = starts.astype(np.float32).copy()
    crashed = np.zeros(len(pos), dtype=bool)
    paths = [pos.copy()]
    while len(paths) <= max_steps:
        chunks = policy.sample({"state": torch.from_numpy(pos)}, 1, gen)[:, 0].cpu().numpy()
        for k in range(min(EXECUTE, chunks.shape[1])):
            new = np.where(crashed[:, None], pos, chunks[:, k])
            hit = ~crashed & (task.segment_distance(pos, new) < task.radius)
            crashed |= hit
            pos = np.where(hit[:, None], pos, new).astype(np.float32)
            paths.append(pos.copy())
    return np.stack(paths, 1), crashed


def evaluate(policy: Policy, task: ObstacleTask, rollouts: int, seed: int) -> dict[str, Any]:
    starts = task.sample_starts(rollouts, np.random.default_rng(seed))
    paths, crashed = rollout(policy, task, starts, seed)
    at_goal = np.linalg.norm(paths[:, -1] - np.asarray(task.goal), axis=1) < task.goal_tolerance
    sides = np.array([task.side_of(p) for p in paths])
    left = float(np.mean(sides < 0))
    return {
        "success_rate": float(np.mean(at_goal & ~crashed)),
        "collision_rate": float(np.mean(crashed)),
        "left_fraction": left,
        "mode_entropy": mode_entropy(left),
        "paths": paths, "crashed": crashed,
    }


def mode_entropy(p: float) -> float:
    """Entropy of a two-way split, divided by log 2: 1 = both modes used equally, 0 = one."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return float(-(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2))


def sample_latency_ms(policy: Policy, state: np.ndarray, repeats: int = 20) -> float:
    obs = {"state": torch.as_tensor(state[None], dtype=torch.float32)}
    policy.sample(obs, 1)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        policy.sample(obs, 1)
        if policy.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def run(families: list[str] | None = None, quick: bool = False, out: str | Path | None = None,
        seed: int = 0, device: str = "cpu", progress: bool = True) -> dict[str, dict[str, float]]:
    preset = PRESETS["quick" if quick else "full"]
    task = ObstacleTask()
    data = make_data(task, preset.demos, seed)
    out = Path(out or "bench-results/multimodal")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    wall = time.perf_counter()
    for family in families or FAMILIES:
        config = config_for_data(family, data, **preset.policy.get(family, {}))
        tcfg = TrainConfig(steps=preset.steps[family], seed=seed, device=device,
                           progress=progress, **preset.train.get(family, {}))
        result = train(config, data, tcfg)
        ev = evaluate(result.policy, task, preset.rollouts, seed + 1)
        row = {k: v for k, v in ev.items() if k not in ("paths", "crashed")}
        row["train_seconds"] = round(result.seconds, 2)
        row["sample_ms"] = round(sample_latency_ms(result.policy, task.sample_starts(
            1, np.random.default_rng(seed))[0]), 3)
        results[family] = row
        plot(task, family, ev, result.policy, out / f"{family}.png", seed)
        if progress:
            print(format_row(family, row), flush=True)
    meta = {"quick": quick, "seed": seed, "device": device, "demos": preset.demos,
            "rollouts": preset.rollouts, "wall_seconds": round(time.perf_counter() - wall, 1)}
    (out / "results.json").write_text(json.dumps({**results, "_meta": meta}, indent=2))
    return results


def format_row(family: str, r: dict[str, float]) -> str:
    return (f"{family:<10} {r['success_rate']:>8.2f} {r['collision_rate']:>9.2f} "
            f"{r['left_fraction']:>6.2f} {r['mode_entropy']:>8.2f} {r['train_seconds']:>8.1f} "
            f"{r['sample_ms']:>9.2f}")


def format_table(results: dict[str, dict[str, float]]) -> str:
    head = (f"{'family':<10} {'success':>8} {'collision':>9} {'left':>6} {'entropy':>8} "
            f"{'train_s':>8} {'sample_ms':>9}")
    return "\n".join([head, "-" * len(head)] +
                     [format_row(f, r) for f, r in results.items() if not f.startswith("_")])


def plot(task: ObstacleTask, family: str, ev: dict[str, Any], policy: Policy, path: Path,
         seed: int) -> None:
    """Rollouts (green success, red collision) and 20 chunks sampled at one start (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 5), dpi=100)
    ax.add_patch(plt.Circle(task.obstacle, task.radius, color="0.3", alpha=0.8))
    start = np.array([0.0, float(np.mean(task.start_y))], dtype=np.float32)
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    chunks = policy.sample({"state": torch.from_numpy(start[None])}, 20, gen)[0].cpu().numpy()
    for c in chunks:
        ax.plot(*np.vstack([start, c]).T, color="0.6", lw=1, alpha=0.8)
    for p, crashed in zip(ev["paths"], ev["crashed"]):
        ax.plot(p[:, 0], p[:, 1], color="tab:red" if crashed else "tab:green", lw=0.8, alpha=0.5)
    ax.plot(*task.goal, marker="*", color="gold", markersize=14, markeredgecolor="k")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.6, 1.6)
    ax.set_aspect("equal")
    ax.set_title(f"{family}: success {ev['success_rate']:.2f}, left {ev['left_fraction']:.2f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
