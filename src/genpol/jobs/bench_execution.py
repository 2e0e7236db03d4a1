"""`genpol bench execution`: record once, train one policy per family, then evaluate every
execution strategy closed-loop through the real graph (genpol eval), with injected delay and a
push. The cells and targets are genpol.bench.execution's; this module runs them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from genpol.bench import execution as bench
from genpol.bench.common import cpu_seconds, run_meta, write_results

FAMILIES = ("flow", "diffusion", "cvae", "binned")
ALL_STRATEGIES = tuple(s.name for s in bench.STRATEGIES)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"[bench execution] {text}", flush=True)


def _dataset(out: Path, preset: dict, episodes: int, progress: bool) -> Path:
    from genpol.jobs import demo
    from genpol.jobs.record import record_sim

    bags, dataset = out / "recordings", out / "dataset"
    if (dataset / "meta" / "info.json").is_file():
        _say(progress, f"reusing the dataset in {dataset}")
        return dataset
    if bags.exists():
        shutil.rmtree(bags)
    _say(progress, f"recording {episodes} scripted {preset['task']} demonstrations")
    record_sim(demo.record_settings(preset, bags, progress, episodes))
    demo.build(preset, bags, dataset, progress)
    return dataset


def _policy(out: Path, family: str, dataset: Path, steps: int, preset: dict,
            progress: bool) -> Path:
    from genpol.jobs import demo
    from genpol.planning import check_checkpoint

    path = out / f"policy_{family}"
    if path.is_dir() and not check_checkpoint(str(path)):
        _say(progress, f"reusing the {family} policy in {path}")
        return path
    _say(progress, f"training {family} for {steps} steps")
    demo.train_policy(preset, family, dataset, path, progress, steps)
    return path


def sampling_latency(policy_dir: Path, num_samples: int, steps: int = 0,
                     iters: int = 20) -> dict[str, float]:
    """p50/p90 seconds of one planner call (with a prefix where the family continues one: the
    guided call is the slower), one torch thread as the planner runs it."""
    import torch

    from genpol.control.timeline import Prefix
    from genpol.parameters import defaults
    from genpol.policies.checkpoint import load_policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = load_policy(str(policy_dir), device="cpu")
        cfg = policy.config
        state = np.zeros(cfg.state_dim, np.float32)
        prefix = None
        if policy.prefix_method is not None:
            first = policy.predict_chunks(state, None, 1, seed=0)[0]
            prefix = Prefix(first, committed=3, overlap=cfg.horizon - 2,
                            max_guidance=defaults("planner")["rtc_max_guidance"])
        times = []
        for i in range(iters + 2):
            t0 = time.perf_counter()
            policy.predict_chunks(state, None, num_samples, seed=i, prefix=prefix,
                                  steps=steps if steps and policy.takes_noise else None)
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return {"p50_s": float(np.percentile(times, 50)), "p90_s": float(np.percentile(times, 90))}


def run(families: list[str] | None = None, quick: bool = False, out: str | Path = "",
        episodes: int | None = None, delays: list[float] | None = None,
        strategies: list[str] | None = None, policies: dict[str, str] | None = None,
        record_episodes: int | None = None, train_steps: int | None = None,
        push: bool = True, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    from genpol.jobs.demo import load_preset
    from genpol.jobs.eval import EvalSettings
    from genpol.jobs.eval import run as evaluate

    families = list(families or (["flow"] if quick else FAMILIES))
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"--families: no execution benchmark for {unknown}; choose from "
                         f"{list(FAMILIES)}")
    strategies = list(strategies or ALL_STRATEGIES)
    bad = sorted(set(strategies) - set(bench.BY_NAME))
    if bad:
        raise ValueError(f"--strategies: unknown {bad}; choose from {list(bench.BY_NAME)}")
    delays = list(delays if delays is not None else ((0.0, 0.3) if quick else bench.DELAYS_S))
    if any(not 0.0 <= d <= 10.0 for d in delays):
        raise ValueError(f"--delays are seconds in [0, 10] (0.3 for 300 ms), got {delays}")
    episodes = episodes or (1 if quick else 20)
    preset = load_preset()
    out = Path(out or "bench-results/execution")
    out.mkdir(parents=True, exist_ok=True)
    meta = run_meta(command)
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    policies = dict(policies or {})
    dataset = None
    if any(f not in policies for f in families):
        dataset = _dataset(out, preset, record_episodes or preset["record"]["episodes"],
                           progress)
    rows: list[dict[str, Any]] = []
    seams: dict[str, dict[str, tuple]] = {}
    rates: dict[str, dict[str, Any]] = {}
    for family in families:
        if family in policies:
            policy_dir = Path(policies[family])
        else:
            assert dataset is not None
            policy_dir = _policy(out, family, dataset, train_steps or preset["train"]["steps"],
                                 preset, progress)
        rates[family] = {}
        for n, k in sorted({(bench.BY_NAME[s].num_samples, bench.BY_NAME[s].sampling_steps)
                            for s in strategies}):
            lat = sampling_latency(policy_dir, n, k)
            rates[family][f"{n}_samples_{k or 'default'}_steps"] = {
                key: round(v, 4) for key, v in lat.items()}
            _say(progress, f"{family}: one planner call ({n} samples, {k or 'default'} steps, "
                           f"with a prefix where the family continues one) takes p50 "
                           f"{lat['p50_s'] * 1000:.0f} ms, p90 {lat['p90_s'] * 1000:.0f} ms")
        cells = [(s, d, False) for s in strategies for d in delays]
        if push:
            cells += [(s, 0.0, True) for s in strategies]
        if quick:  # every strategy once; delay and push only for rtc
            cells = [c for c in cells if c[0] == "rtc@max" or (c[1] == 0.0 and not c[2])]
        for name, delay, pushed in cells:
            s = bench.BY_NAME[name]
            cell = bench.cell_name(name, delay, pushed)
            cell_dir = out / family / cell.replace(" ", "_").replace("@", "_at_").replace(
                "+", "plus")
            planner = {"num_samples": s.num_samples, "inference_rate_hz": s.rate_hz,
                       "sampling_steps": s.sampling_steps,
                       "chunking": s.chunking, "added_delay_s": delay}
            t0, c0 = time.perf_counter(), cpu_seconds()
            res = evaluate(EvalSettings(
                policy=str(policy_dir), task=preset["task"], episodes=episodes,
                out=str(cell_dir), seed=preset["eval"]["seed"], scene_seed=preset["scene_seed"],
                executor_mode=s.executor_mode, videos=0, push_at_s=bench.PUSH_AT_S if pushed
                else 0.0, progress=False, params={"planner": planner}))
            row = {"family": family, "cell": cell, "strategy": name,
                   "rate_hz": s.rate_hz, "num_samples": s.num_samples,
                   "sampling_steps": s.sampling_steps, "chunking": s.chunking,
                   "executor_mode": s.executor_mode,
                   "delay_s": delay, "push": pushed, "episodes": episodes,
                   "figures": res["figures"], "wall_s": round(time.perf_counter() - t0, 1),
                   "cpu_s": round(cpu_seconds() - c0, 1), "dir": str(cell_dir)}
            rows.append(row)
            f = res["figures"]
            _say(progress, f"{family} {cell}: {f['chunk_rate_hz'] or 0:.1f} chunks/s, success "
                           f"{f['success_rate']:.2f}, entropy {f['mode_entropy']:.2f}, switches "
                           f"{f['mode_switch_rate']:.2f}, seam jerk {f['seam_jerk_rms']}")
            if delay == 0.0 and not pushed:
                seam = _seam(cell_dir / "commands.npz")
                if seam is not None:
                    seams.setdefault(family, {})[name] = seam
    files = {"success_vs_delay_png": str(bench.plot_success_vs_delay(
        out / "success_vs_delay.png", rows))}
    for family, by_strategy in seams.items():
        files[f"seam_{family}_png"] = str(bench.plot_seams(out / f"seam_{family}.png",
                                                           by_strategy, family))
    meta.update({"benchmark": "execution", "quick": quick, "families": families,
                 "strategies": strategies, "delays_s": delays, "episodes_per_cell": episodes,
                 "sampling_latency": rates, "push_at_s": bench.PUSH_AT_S,
                 "task": preset["task"], "scene_seed": preset["scene_seed"],
                 "wall_seconds": round(time.perf_counter() - wall0, 1),
                 "cpu_seconds": round(cpu_seconds() - cpu0, 1)})
    results = {"_meta": meta, "targets": (bench.targets(rows, families[0]) if quick
                                             else bench.all_targets(rows, families)),
               "results": rows, "files": files}
    write_results(out, results)
    return results


def _seam(path: Path) -> tuple | None:
    """The first episode's commanded trajectory around a switch, from an eval's commands.npz."""
    if not path.is_file():
        return None
    with np.load(path) as z:
        for i in range(len(z.files) // 3):
            trace = {k: z[f"{k}_{i}"] for k in ("times", "positions", "switches")}
            window = bench.seam_window(trace)
            if window is not None:
                return window
    return None

