"""`genpol bench multimodal`: every family on the obstacle problem, rolled out closed-loop.

Shows the product's reason to exist: the point estimate averages the left and right demonstrations
and collides; generative families sample one coherent side and use both.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from genpol import presets
from genpol.bench.common import run_meta, target
from genpol.bench.obstacle import ObstacleTask
from genpol.data.arrays import ChunkData, from_episodes
from genpol.policies import Policy
from genpol.train import TrainConfig, config_for_data, train

FAMILIES = ["mse", "gaussian", "gmm", "binned", "cvae", "diffusion", "flow"]
#: The targets: the MSE baseline averages the modes into the obstacle, the generative families
#: reach the goal both ways; the full run fits in 10 min and the quick one in 2 (2-core CPU).
GENERATIVE = ("cvae", "diffusion", "flow", "gmm", "binned")
MSE_COLLISION_MIN, SUCCESS_MIN, ENTROPY_MIN = 0.9, 0.95, 0.9
WALL_MAX_S = {"full": 600.0, "quick": 120.0}
HORIZON = 16
EXECUTE = 12  # steps executed from each chunk before replanning


PRESET_FILE = Path(__file__).resolve().parents[3] / "config" / "bench_multimodal.yaml"


@dataclass
class Preset:
    demos: int
    rollouts: int
    steps: dict[str, int]
    policy: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_preset(name: str, path: Path | None = None) -> Preset:
    """The `quick` or `full` preset from config/bench_multimodal.yaml, with the per-family
    settings of config/presets.yaml."""
    raw = yaml.safe_load(_preset_text(path))
    if name not in raw:
        raise ValueError(f"benchmark preset {name!r} not found; known: quick, full")
    fams = presets.group()
    return Preset(policy={f: v["policy"] for f, v in fams.items()},
                  train={f: v["train"] for f, v in fams.items()}, **raw[name])


def _preset_text(path: Path | None) -> str:
    if path is not None:
        return Path(path).read_text()
    if PRESET_FILE.is_file():  # source checkout or editable install
        return PRESET_FILE.read_text()
    # Installed (colcon / wheel): the file lives in share/genpol/config.
    import sys

    return (Path(sys.prefix) / "share" / "genpol" / "config" / PRESET_FILE.name).read_text()


def make_data(task: ObstacleTask, demos: int, seed: int) -> ChunkData:
    episodes, _ = task.demonstrations(demos, seed)
    # The expert rests at the goal after its hold steps: the repeated last action is what it does.
    return from_episodes(episodes, HORIZON, holds_at_end=True, fps=10.0)


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
        seed: int = 0, device: str = "cpu", progress: bool = True, jobs: int = 1
        ) -> dict[str, dict[str, float]]:
    """Train and roll out each family; with jobs > 1, families run in parallel processes of one
    torch thread each (on a small CPU that beats one process using every core)."""
    out = Path(out or "bench-results/multimodal")
    out.mkdir(parents=True, exist_ok=True)
    families = families or FAMILIES
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {FAMILIES}")
    wall = time.perf_counter()
    args = [(f, quick, str(out), seed, device, jobs > 1 or not progress) for f in families]
    rows: dict[str, dict[str, float]] = {}
    if jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(run_family, *a): a[0] for a in args}
            bar = tqdm(as_completed(futures), total=len(futures), desc="families",
                       disable=not progress, dynamic_ncols=True)
            for fut in bar:
                rows[futures[fut]] = fut.result()
                if progress:
                    bar.write(format_row(futures[fut], rows[futures[fut]]))
    else:
        for a in args:
            rows[a[0]] = run_family(*a)
            if progress:
                print(format_row(a[0], rows[a[0]]), flush=True)
    results = {f: rows[f] for f in families}
    preset = load_preset("quick" if quick else "full")
    wall_s = round(time.perf_counter() - wall, 1)
    meta = {**run_meta(), "quick": quick, "seed": seed, "device": device, "jobs": jobs,
            "demos": preset.demos, "rollouts": preset.rollouts,
            "torch_threads_per_family": 1 if jobs > 1 else torch.get_num_threads(),
            "wall_seconds": wall_s}
    (out / "results.json").write_text(json.dumps(
        {**results, "targets": targets(results, wall_s, quick), "_meta": meta}, indent=2))
    return results


def targets(results: dict[str, dict[str, float]], wall_s: float,
            quick: bool) -> dict[str, dict[str, Any]]:
    """One {value, threshold, met} per target, for the families that ran."""
    def entry(value: float, threshold: float, at_least: bool = True) -> dict[str, Any]:
        return target(value, threshold, value >= threshold if at_least else value <= threshold)

    out = {}
    if "mse" in results:
        out["mse_collision_rate"] = entry(results["mse"]["collision_rate"], MSE_COLLISION_MIN)
    for family in GENERATIVE:
        if family in results:
            out[f"{family}_success_rate"] = entry(results[family]["success_rate"], SUCCESS_MIN)
            out[f"{family}_mode_entropy"] = entry(results[family]["mode_entropy"], ENTROPY_MIN)
    out["wall_seconds"] = entry(wall_s, WALL_MAX_S["quick" if quick else "full"],
                                at_least=False)
    return out


def run_family(family: str, quick: bool, out: str, seed: int, device: str,
               quiet: bool) -> dict[str, float]:
    """One family end to end: train, roll out, time sampling, plot. Runs in a worker process."""
    if quiet and multiprocessing.current_process().name != "MainProcess":
        torch.set_num_threads(1)
    preset = load_preset("quick" if quick else "full")
    task = ObstacleTask()
    data = make_data(task, preset.demos, seed)
    config = config_for_data(family, data, **preset.policy.get(family, {}))
    tcfg = TrainConfig(steps=preset.steps[family], seed=seed, device=device,
                       progress=not quiet, **preset.train.get(family, {}))
    result = train(config, data, tcfg)
    ev = evaluate(result.policy, task, preset.rollouts, seed + 1)
    row = {k: v for k, v in ev.items() if k not in ("paths", "crashed")}
    row["train_seconds"] = round(result.seconds, 2)
    start = task.sample_starts(1, np.random.default_rng(seed))[0]
    row["sample_ms"] = round(sample_latency_ms(result.policy, start), 3)
    plot(task, family, ev, result.policy, Path(out) / f"{family}.png", seed)
    return row


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
    for p, crashed in zip(ev["paths"], ev["crashed"], strict=True):
        ax.plot(p[:, 0], p[:, 1], color="tab:red" if crashed else "tab:green", lw=0.8, alpha=0.5)
    ax.plot(*task.goal, marker="*", color="gold", markersize=14, markeredgecolor="k")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.6, 1.6)
    ax.set_aspect("equal")
    ax.set_title(f"{family}: success {ev['success_rate']:.2f}, left {ev['left_fraction']:.2f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
