"""`genpol bench planner`: how long the planner waits for one observation's chunks.

Times the call the planner node makes for every observation, PolicyHolder.sample (joint names ->
state vector, camera frames fitted to the policy, then policy.predict_chunks(state, images,
num_samples)), for every family at its default config sized for the SO-101: 6 joints, chunks of
16 steps, num_samples from config/planner.yaml. Settings: state only; one 224x224 camera through
the default image encoder; the same camera through the ResNet-18 encoder. The weights are
untrained: latency depends on the architecture, not on the values of the weights.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import torch

from genpol import parameters, robot
from genpol.bench.common import CpuMeter, latency_stats, run_meta, write_results
from genpol.planning import PolicyHolder
from genpol.policies import families as all_families
from genpol.policies import make_config, make_policy

HORIZON = 16
IMAGE_SHAPE = [3, 224, 224]
#: setting name -> policy config values on top of the SO-101 shapes
SETTINGS: dict[str, dict[str, Any]] = {
    "state": {},
    "camera": {"cameras": ["front"], "image_shape": IMAGE_SHAPE},  # default encoder (small CNN)
    "camera_resnet18": {"cameras": ["front"], "image_shape": IMAGE_SHAPE,
                        "image_encoder": "resnet18"},
}
FULL = {"iters": 50, "warmup": 5, "max_seconds": 20.0}
QUICK = {"iters": 10, "warmup": 2, "max_seconds": 5.0}


def make_holder(family: str, setting: str, device: str, seed: int = 0) -> PolicyHolder:
    """A PolicyHolder holding an untrained `family` policy at its defaults for the SO-101."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose from {list(SETTINGS)}")
    torch.manual_seed(seed)
    config = make_config(family, state_dim=len(robot.JOINT_NAMES),
                         action_dim=len(robot.JOINT_NAMES), horizon=HORIZON,
                         joint_names=list(robot.JOINT_NAMES), **SETTINGS[setting])
    holder = PolicyHolder(device)
    holder.policy = make_policy(config).to(holder.device).eval()
    holder.path = f"<untrained {family}>"
    return holder


def time_calls(call: Callable[[], Any], iters: int, warmup: int, max_seconds: float,
               cuda: bool) -> list[float]:
    """Milliseconds per call: `warmup` untimed calls, then up to `iters` timed ones (fewer, but at
    least 3, if they take longer than max_seconds in all)."""
    for _ in range(warmup):
        call()
    if cuda:
        torch.cuda.synchronize()
    times: list[float] = []
    start = time.perf_counter()
    for i in range(iters):
        t0 = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()  # the work is done only once the device says so
        times.append((time.perf_counter() - t0) * 1e3)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return times


def bench_one(family: str, setting: str, device: str, num_samples: int, iters: int, warmup: int,
              max_seconds: float, seed: int = 0) -> dict[str, Any]:
    runner = make_holder(family, setting, device, seed)
    policy = runner.policy
    assert policy is not None
    rng = np.random.default_rng(seed)
    positions = {name: 0.0 for name in robot.JOINT_NAMES}
    images = {cam: rng.integers(0, 256, (IMAGE_SHAPE[1], IMAGE_SHAPE[2], 3), dtype=np.uint8)
              for cam in policy.config.cameras} or None
    times = time_calls(lambda: runner.sample(positions, images, num_samples), iters, warmup,
                       max_seconds, cuda=runner.device.startswith("cuda"))
    return {"family": family, "setting": setting, "device": runner.device,
            **latency_stats(times), "calls": len(times),
            "parameters": sum(p.numel() for p in policy.parameters())}


def run(families: list[str] | None = None, settings: list[str] | None = None,
        quick: bool = False, out: str | Path | None = None, seed: int = 0,
        iters: int | None = None, threads: int | None = None, progress: bool = True,
        command: str | None = None) -> dict[str, Any]:
    """Time every family x setting on the CPU, and on CUDA too when there is one."""
    known = all_families()
    families = families or known
    settings = settings or list(SETTINGS)
    unknown = sorted(set(families) - set(known)) + sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown families or settings {unknown}; families: {known}, "
                         f"settings: {list(SETTINGS)}")
    if threads:
        torch.set_num_threads(threads)
    preset = dict(QUICK if quick else FULL)
    if iters:
        preset["iters"] = iters
    num_samples = int(parameters.defaults("planner")["num_samples"])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    meta = run_meta(command)
    meta.update({
        "benchmark": "planner", "quick": quick, "seed": seed, "devices": devices,
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "num_samples": num_samples, "horizon": HORIZON,
        "joint_names": list(robot.JOINT_NAMES), "image_shape": IMAGE_SHAPE,
        "settings": {k: v or "state only" for k, v in SETTINGS.items() if k in settings},
        "weights": "untrained (random initialisation): latency does not depend on the weights' "
                   "values",
        "measured": "PolicyHolder.sample(positions, images, num_samples), as the planner node "
                    "calls it per observation, after warm-up calls; torch.cuda.synchronize() "
                    "before each reading on CUDA",
        **preset,
    })
    rows = []
    wall = time.perf_counter()
    meter = CpuMeter({"bench": os.getpid()})
    meter.start()
    if progress:
        print(table_head(), flush=True)
    for device in devices:
        for setting in settings:
            for family in families:
                row = bench_one(family, setting, device, num_samples, int(preset["iters"]),
                                int(preset["warmup"]), preset["max_seconds"], seed)
                rows.append(row)
                if progress:
                    print(format_row(row), flush=True)
    meta["wall_seconds"] = round(time.perf_counter() - wall, 1)
    meta["cpu"] = meter.stop()  # other_processes_percent > 0: something else shared the CPU
    results = {"_meta": meta, "results": rows}
    write_results(Path(out or "bench-results/planner"), results)
    return results


def table_head() -> str:
    return (f"{'family':<10} {'setting':<16} {'device':<6} {'p50_ms':>9} {'p99_ms':>9} "
            f"{'mean_ms':>9} {'calls':>6}")


def format_row(r: dict[str, Any]) -> str:
    return (f"{r['family']:<10} {r['setting']:<16} {r['device']:<6} {r['p50_ms']:>9.2f} "
            f"{r['p99_ms']:>9.2f} {r['mean_ms']:>9.2f} {r['calls']:>6}")


def format_table(results: dict[str, Any]) -> str:
    head = table_head()
    return "\n".join([head, "-" * len(head)] + [format_row(r) for r in results["results"]])
