"""`genpol demo`: the whole learning loop on any Linux machine, in simulation.

record (scripted experts as a leader arm -> teleop -> recorder, rosbag2 MCAP) -> dataset (LeRobot
v3.0) -> train -> evaluate closed-loop through the same graph `genpol bringup` starts. Every stage
is the real command a user would run; this module only chains them and sums up.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PRESET = Path(__file__).resolve().parents[3] / "config" / "demo.yaml"


def load_preset(path: Path | None = None) -> dict[str, Any]:
    if path is None:
        path = PRESET
        if not path.is_file():  # an installed package: share/genpol/config
            from genpol.graph import config_dir

            path = config_dir() / "demo.yaml"
    return yaml.safe_load(Path(path).read_text())


@dataclass
class Stage:
    name: str
    seconds: float = 0.0


def record_settings(p: dict[str, Any], bags: Path, progress: bool,
                    episodes: int | None = None):
    """The preset's recording of scripted demonstrations (`genpol record --sim`) into `bags`."""
    from genpol.jobs.record import RecordSettings

    rec = p["record"]
    return RecordSettings(task=p["task"], episodes=episodes or rec["episodes"], out=bags,
                          seed=rec["seed"], scene_seed=p["scene_seed"], mode=rec["mode"],
                          episodes_per_start=rec.get("episodes_per_start", 1), progress=progress)


def build(p: dict[str, Any], bags: Path, dataset: Path, progress: bool):
    """The preset's LeRobot dataset from the recorded bags (`genpol dataset build`)."""
    from genpol.data.build import build_dataset, parse_size

    ds = p["dataset"]
    return build_dataset([bags], dataset, fps=ds["fps"],
                         image_size=parse_size(ds.get("image_size")), overwrite=True,
                         progress=progress)


def train_policy(p: dict[str, Any], family: str, dataset: Path, out_dir: Path, progress: bool,
                 steps: int | None = None):
    """A joint-state `family` policy with the preset's training settings (`genpol train`)."""
    from genpol import presets
    from genpol.data.sources import load_chunks
    from genpol.train import TrainConfig, config_for_data, train

    tr = p["train"]
    data = load_chunks(dataset)
    config = config_for_data(family, data, cameras=[], **presets.policy(family))
    tcfg = TrainConfig(steps=steps or tr["steps"], batch_size=tr["batch_size"], lr=tr["lr"],
                       device="auto", progress=progress)
    return train(config, data, tcfg, out_dir=out_dir)


def _banner(index: int, total: int, text: str) -> None:
    print(f"\n=== [demo {index}/{total}] {text}", flush=True)


def run(family: str = "flow", out: str | Path = "demo-output", preset: dict | None = None,
        progress: bool = True) -> dict[str, Any]:
    """Run every stage into `out`; returns the summary also written to out/results.json."""
    from genpol import presets
    from genpol.jobs.eval import EvalSettings
    from genpol.jobs.eval import run as evaluate
    from genpol.jobs.record import record_sim

    p = preset or load_preset()
    if family not in presets.families():
        raise ValueError(f"FAMILY={family!r} has no demo settings; choose from "
                         f"{sorted(presets.families())}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bags, dataset, policy_dir, eval_dir = (out / "recordings", out / "dataset",
                                           out / f"policy_{family}", out / "eval")
    stages: list[Stage] = []
    start = time.perf_counter()

    def timed(stage: Stage, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        stage.seconds = time.perf_counter() - t0
        stages.append(stage)
        return result

    rec = p["record"]
    _banner(1, 4, f"record {rec['episodes']} scripted {p['task']} demonstrations through the "
                  "recorder (rosbag2 MCAP, one bag per episode)")
    if bags.exists():
        import shutil

        shutil.rmtree(bags)  # a fresh recording: episodes of an earlier run would mix in
    timed(Stage("record"), record_sim, record_settings(p, bags, progress))

    _banner(2, 4, f"build a LeRobot v3.0 dataset at {p['dataset']['fps']:g} fps")
    report = timed(Stage("dataset"), build, p, bags, dataset, progress)

    _banner(3, 4, f"train a {family} policy for {p['train']['steps']} steps on {report.frames} "
                  "frames")
    timed(Stage("train"), train_policy, p, family, dataset, policy_dir, progress)

    ev = p["eval"]
    _banner(4, 4, f"evaluate closed-loop: {ev['episodes']} episodes through the bringup graph "
                  f"(sim_arm + planner + executor, {ev['executor_mode']})")
    results = timed(Stage("eval"), evaluate, EvalSettings(
        policy=str(policy_dir), task=p["task"], episodes=ev["episodes"], out=str(eval_dir),
        seed=ev["seed"], scene_seed=p["scene_seed"], executor_mode=ev["executor_mode"],
        videos=ev["videos"], progress=progress, params=ev.get("params") or {}))

    summary = {
        "family": family, "task": p["task"], "figures": results["figures"],
        "stages_s": {s.name: round(s.seconds, 1) for s in stages},
        "wall_seconds": round(time.perf_counter() - start, 1),
        "dataset": {"episodes": report.episodes, "frames": report.frames, "path": str(dataset)},
        "files": {**results["files"], "policy": str(policy_dir), "recordings": str(bags)},
        "preset": p,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print()
    print(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    f = s["figures"]
    modes = ", ".join(f"{m} {v:.2f}" for m, v in f.get("mode_fractions", {}).items())
    lines = [
        f"genpol demo: {s['family']} policy on {s['task']}",
        "",
        f"  success rate      {f['success_rate']:.2f}",
        f"  collision rate    {f['collision_rate']:.2f}",
        f"  modes             {modes}",
        f"  mode entropy      {f['mode_entropy']:.2f}  (1 = both ways equally, 0 = one way)",
        f"  mean episode      {f.get('mean_episode_s') or float('nan'):.1f} s",
        "",
        "  stages            " + ", ".join(f"{k} {v:.0f} s" for k, v in s["stages_s"].items()),
        f"  wall time         {s['wall_seconds']:.0f} s",
        "",
    ]
    for key, path in s["files"].items():
        lines.append(f"  {key:<17} {path}")
    return "\n".join(lines)
