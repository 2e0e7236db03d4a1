"""`genpol bench planner`: how long the planner waits for one observation's chunks, and how far
that is from what the hardware could do.

Times the call the planner node makes for every observation, PolicyHolder.sample (joint names ->
state vector, camera frames fitted to the policy, then policy.predict_chunks(state, images,
num_samples)), for every family, for 1 and for 32 samples, on the CPU and on CUDA when torch sees
one. Configs: "state" (our defaults for the SO-101: 6 joints, chunks of 16), "camera96" (one
96x96 camera, default image encoder), "act_resnet18" (ACT's size: one 224x224 camera through
ResNet-18, chunks of 100, the cvae at ACT's widths). The FLOPs of a call are counted with torch's
FlopCounterMode (matmuls and convolutions), so FLOP/s achieved says how busy the hardware was.
The weights are untrained: latency depends on the architecture, not on the values of the weights.

`targets` in results.json: the U-Net against the standard 1D U-Net layout (our own reference in
bench/unet_reference.py, same run); no family slower than an older checkout's code (`--baseline
SRC`, timed in two subprocesses asked in turn, so both see the same load); the GPU latencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genpol import robot
from genpol.bench.common import CpuMeter, latency_stats, run_meta, target, write_results
from genpol.planning import PolicyHolder
from genpol.policies import families as all_families
from genpol.policies import make_config, make_policy

HORIZON = 16
#: config name -> policy config values on top of the SO-101 shapes
CONFIGS: dict[str, dict[str, Any]] = {
    "state": {},
    "camera96": {"cameras": ["front"], "image_shape": [3, 96, 96]},  # default encoder
    "act_resnet18": {"cameras": ["front"], "image_shape": [3, 224, 224],
                     "image_encoder": "resnet18", "horizon": 100},
}
#: config -> family -> values of that family's own: LeRobot ACT's widths for the cvae (40.2 M
#: parameters state-only, as LeRobot's ACT)
FAMILY_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "act_resnet18": {"cvae": {"hidden_dim": 512, "dim_feedforward": 3200}},
}
SAMPLES = (1, 32)
FULL = {"iters": 100, "warmup": 2, "max_seconds": 8.0}
QUICK = {"iters": 3, "warmup": 1, "max_seconds": 1.0}
QUICK_CONFIGS = ["state", "camera96"]
#: --baseline: rounds of (old, new) turns per family; a turn's timed calls: at least `calls`, and
#: more until turn_seconds (a fast family gets hundreds); the rounds stop after max_seconds
BASELINE = {"rounds": 10, "calls": 3, "turn_seconds": 0.3, "max_seconds": 150.0}
BASELINE_QUICK = {"rounds": 2, "calls": 2, "turn_seconds": 0.0, "max_seconds": 20.0}
#: new/old p50 above this counts as slower: timing noise between alternating turns on one host
BASELINE_ALLOWANCE = 1.05
UNET: dict[str, Any] = {"down_dims": (512, 1024, 2048), "horizon": 16, "action_dim": 6,
                       "cond_dim": 256, "threads": 1}
UNET_REPEATS = {"full": 10, "quick": 1}
#: family -> (target name, p50 ms at most on CUDA, act_resnet18, 1 sample, what is timed)
CUDA_TARGETS = {
    "cvae": ("cuda_act_cvae_p50_ms", 3.0, "cvae at ACT size"),
    "diffusion": ("cuda_act_diffusion_ddim10_p50_ms", 10.0, "diffusion, DDIM 10 steps"),
    "flow": ("cuda_act_flow10_p50_ms", 5.0, "flow, 10 Euler steps"),
}
NO_CUDA = "no CUDA device on this host"
#: the yardstick matmul's size per device: on the CPU one that stays in cache (256 measured 3x
#: 512's rate on the 2-core EPYC host), on a GPU one large enough to fill it
MATMUL_N = {"cpu": 256, "cuda": 4096}


def make_holder(family: str, config: str, device: str, seed: int = 0,
                precision: str = "float32", compile: bool = False) -> PolicyHolder:
    """A PolicyHolder holding an untrained `family` policy at `config` for the SO-101, set up
    for its device as the planner sets it up (TF32 on CUDA; `precision`, `compile`: see
    genpol.policies.acceleration). The baseline worker calls make_holder(family, "state", "cpu",
    seed) in every checkout: keep those four first."""
    from genpol.policies.acceleration import accelerate

    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r}; choose from {list(CONFIGS)}")
    torch.manual_seed(seed)
    values = {"horizon": HORIZON, **CONFIGS[config],
              **FAMILY_VALUES.get(config, {}).get(family, {})}
    policy_config = make_config(family, state_dim=len(robot.JOINT_NAMES),
                                action_dim=len(robot.JOINT_NAMES),
                                joint_names=list(robot.JOINT_NAMES), **values)
    holder = PolicyHolder(device)
    holder.policy = accelerate(make_policy(policy_config).to(holder.device).eval(), precision,
                               compile)
    holder.path = f"<untrained {family}>"
    return holder


def devices(wanted: Sequence[str] | None = None) -> list[str]:
    """The CPU, and CUDA when torch sees a device; `wanted` picks among them."""
    have = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if not wanted:
        return have
    missing = [d for d in wanted if d not in have]
    if missing:
        raise ValueError(f"devices {missing} not available here (have {have}); "
                         + (NO_CUDA if "cuda" in missing else "use cpu or cuda"))
    return list(wanted)


def count_flops(call: Callable[[], Any], module: torch.nn.Module | None = None) -> int:
    """FLOPs of one `call` (matmuls and convolutions, 2 per multiply-add), by torch's counter.

    The counter's module tracker breaks on a view of a parameter fed to a module under no_grad
    (the cvae's queries: such a view requires grad but has no grad_fn), so `module`'s parameters
    stop requiring grad while it counts.
    """
    from torch.utils.flop_counter import FlopCounterMode

    params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
    for p in params:
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False) as counter:
            call()
        return int(counter.get_total_flops())
    finally:
        for p in params:
            p.requires_grad_(True)


def matmul_gflop_per_s(device: str, seconds: float = 0.5) -> float:
    """What this device reaches on a large float32 matmul (best of repeated ones): the yardstick
    for the policies' FLOP/s, measured in the same run instead of taken from a data sheet."""
    n = MATMUL_N["cuda" if device.startswith("cuda") else "cpu"]
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t0 = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return round(2 * n**3 / best / 1e9, 1)


def time_calls(call: Callable[[], Any], iters: int, warmup: int, max_seconds: float,
               cuda: bool, first_seconds: float = 0.0) -> list[float]:
    """Milliseconds per call: up to `warmup` untimed calls (fewer when the first call, which took
    `first_seconds`, was slow: it warmed up already), then up to `iters` timed ones (fewer, but
    at least 3, if they take longer than max_seconds in all)."""
    for _ in range(warmup if first_seconds < max_seconds / 4 else 0):
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


def bench_cell(family: str, config: str, device: str, preset: dict[str, Any],
               samples: Sequence[int] = SAMPLES, seed: int = 0, precision: str = "float32",
               compile: bool = False) -> dict[str, Any]:
    """One family x config x device: parameters, and per sample count its latency, FLOPs and
    FLOP/s. The first call is the counted one; it doubles as warm-up (with `compile` the
    counted call runs eager, then the warm-up calls compile)."""
    holder = make_holder(family, config, device, seed, precision)
    policy = holder.policy
    assert policy is not None
    cuda = holder.device.startswith("cuda")
    rng = np.random.default_rng(seed)
    positions = {name: 0.0 for name in robot.JOINT_NAMES}
    _, h, w = policy.config.image_shape
    images = {cam: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for cam in policy.config.cameras} or None
    row: dict[str, Any] = {"family": family, "config": config, "device": holder.device,
                           "parameters": sum(p.numel() for p in policy.parameters()),
                           "horizon": policy.config.horizon, "samples": []}
    calls = {n: (lambda n=n: holder.sample(positions, images, n)) for n in samples}
    counted: dict[int, tuple[int, float]] = {}  # samples -> (FLOPs, seconds of that call)
    for n, call in calls.items():
        t0 = time.perf_counter()
        flops = count_flops(call, policy)
        if cuda:
            torch.cuda.synchronize()
        counted[n] = (flops, time.perf_counter() - t0)
    if compile:
        from genpol.policies.acceleration import compile_policy

        compile_policy(policy)
        counted = {n: (flops, 0.0) for n, (flops, _) in counted.items()}  # warm-ups compile
    for n, call in calls.items():
        flops, first = counted[n]
        times = time_calls(call, int(preset["iters"]), int(preset["warmup"]),
                           float(preset["max_seconds"]), cuda, first)
        stats = latency_stats(times)
        row["samples"].append({
            "num_samples": n, **stats, "calls": len(times), "flops": flops,
            "flops_per_chunk": flops / n,
            "gflop_per_s": round(flops / (stats["p50_ms"] * 1e-3) / 1e9, 3)})
    row["flops_per_chunk"] = row["samples"][0]["flops_per_chunk"]
    return row


# ------------------------------------------------------------------------- old code vs new


class _Worker:
    """A planner_worker.py subprocess running the genpol under `src`."""

    def __init__(self, src: Path, families: list[str], threads: int, seed: int):
        self.src = src
        code = (Path(__file__).parent / "planner_worker.py").read_text()
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
        # a file, not a pipe: a full pipe would block the worker; closed in close()
        self.stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--families", ",".join(families), "--threads",
             str(threads), "--seed", str(seed)],
            cwd=src, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            self.stderr.seek(0)
            err = self.stderr.read()
            raise RuntimeError(f"the bench's worker for {self.src} stopped (exit "
                               f"{self.proc.returncode}): {err.strip()[-2000:]}\n--baseline "
                               "wants the src/ directory of a genpol checkout")
        return json.loads(line)

    def time(self, family: str, calls: int, seconds: float) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{family} {calls} {seconds}\n")
        self.proc.stdin.flush()
        return list(self.read()["ms"])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def compare_baseline(old_src: str | Path, families: list[str], threads: int, quick: bool = False,
                     seed: int = 0) -> dict[str, Any]:
    """Each family's 1-sample call, state only, CPU, in the code under `old_src` and in this
    code, in two subprocesses with `threads` torch threads each, asked in turn (who goes first
    alternates by round) so both see the same load; p50s and new/old ratio per family."""
    import genpol

    old = Path(old_src).resolve()
    new = Path(genpol.__file__).resolve().parents[1]
    if not (old / "genpol" / "__init__.py").is_file():
        raise ValueError(f"--baseline {old_src}: no genpol package there; give a checkout's "
                         "src/ directory (e.g. git worktree add /tmp/old <commit>; "
                         "--baseline /tmp/old/src)")
    preset = BASELINE_QUICK if quick else BASELINE
    workers = {"old": _Worker(old, families, threads, seed),
               "new": _Worker(new, families, threads, seed)}
    try:
        ready = {side: w.read() for side, w in workers.items()}
        for side, src in (("old", old), ("new", new)):
            where = Path(ready[side]["genpol"]).resolve()
            if src not in where.parents:
                raise RuntimeError(f"the {side} worker imported genpol from {where}, not from "
                                   f"{src}; is another genpol installed ahead of PYTHONPATH?")
        missing = {f: why for r in ready.values() for f, why in r.get("missing", {}).items()}
        families = [f for f in families if f not in missing]  # one side lacks them
        ms: dict[str, dict[str, list[float]]] = {s: {f: [] for f in families} for s in workers}
        start = time.perf_counter()
        rounds = 0
        for r in range(int(preset["rounds"])):
            for family in families:
                for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    ms[side][family] += workers[side].time(family, int(preset["calls"]),
                                                           float(preset["turn_seconds"]))
            rounds += 1
            if r >= 2 and time.perf_counter() - start > float(preset["max_seconds"]):
                break
    finally:
        for w in workers.values():
            w.close()
    per_family = {}
    for family in families:
        o, n = (float(np.percentile(ms[s][family], 50)) for s in ("old", "new"))
        per_family[family] = {"old_p50_ms": round(o, 3), "new_p50_ms": round(n, 3),
                              "ratio": round(n / o, 3), "calls_each": len(ms["old"][family])}
    return {"old_src": str(old), "new_src": str(new), "config": "state", "num_samples": 1,
            "device": "cpu", "threads": threads,
            "worker_torch_threads": {s: ready[s]["torch_threads"] for s in ready},
            "not_compared": missing,
            "rounds": rounds, "families": per_family}


def compare_unet(quick: bool) -> dict[str, Any]:
    """genpol's U-Net against the standard 1D U-Net layout at LeRobot's widths (one forward each,
    CPU, one thread); {"error": ...} if the reference is not available."""
    try:
        from genpol.bench.unet_reference import compare_layouts
    except ImportError as exc:
        return {"error": f"genpol.bench.unet_reference not available ({exc})"}
    threads = torch.get_num_threads()
    try:
        out = dict(compare_layouts(**UNET, repeats=UNET_REPEATS["quick" if quick else "full"]))
    finally:
        torch.set_num_threads(threads)
    return {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in UNET.items()}, **out}


# --------------------------------------------------------------------------------- targets


def _cell(rows: Sequence[dict[str, Any]], family: str, config: str, device: str,
          num_samples: int) -> dict[str, Any] | None:
    for r in rows:
        if (r["family"], r["config"], r["device"].split(":")[0]) == (family, config, device):
            return next((s for s in r["samples"] if s["num_samples"] == num_samples), None)
    return None


def targets(rows: Sequence[dict[str, Any]], unet: dict[str, Any] | None,
            baseline: dict[str, Any] | None, cuda_device: str | None = None) -> dict[str, Any]:
    """One entry per target of issue 14; one not measured has value None, met false and a note
    saying how to measure it."""
    out: dict[str, Any] = {}
    where = "down_dims (512, 1024, 2048), horizon 16, CPU, 1 thread, same run"
    if unet is None or "error" in unet:
        why = (unet or {}).get("error", "not run")
        out["unet_forward_vs_reference"] = target(None, "<= 1.0", False, why)
        out["unet_params_vs_reference"] = target(None, "<= 0.05", False, why)
    else:
        ratio = round(float(unet["ratio"]), 3)
        out["unet_forward_vs_reference"] = target(
            ratio, f"<= 1.0 (genpol U-Net forward ms / standard 1D U-Net layout's; {where})",
            ratio <= 1.0, f"{unet['genpol_ms']:.1f} vs {unet['reference_ms']:.1f} ms"
            + (f"; CPU-time ratio {unet['cpu_ratio']:.3f}" if "cpu_ratio" in unet else ""))
        off = round(abs(float(unet["params_ratio"]) - 1.0), 4)
        out["unet_params_vs_reference"] = target(
            off, "<= 0.05 (abs(genpol parameters / reference's - 1))", off <= 0.05,
            f"{unet['genpol_params']} vs {unet['reference_params']} parameters")
    threshold = (f"<= {BASELINE_ALLOWANCE} (worst family's new/old p50, 1-sample call, state "
                 f"only, CPU; {round((BASELINE_ALLOWANCE - 1) * 100)} % allowance for timing "
                 "noise)")
    if baseline is None or not baseline["families"]:
        out["cpu_state_no_family_slower"] = target(
            None, threshold, False, "not measured: run with --baseline SRC, SRC the src/ of a "
            "checkout of the older code (git worktree add /tmp/old <commit>)" if baseline is None
            else f"no family both sides have: {baseline.get('not_compared')}")
    else:
        fams = baseline["families"]
        worst = max(fams, key=lambda f: fams[f]["ratio"])
        value = fams[worst]["ratio"]
        out["cpu_state_no_family_slower"] = target(
            value, threshold, value <= BASELINE_ALLOWANCE,
            f"worst: {worst}; old code {baseline['old_src']}; per family in baseline.families")
    for family, (name, limit, what) in CUDA_TARGETS.items():
        cell = _cell(rows, family, "act_resnet18", "cuda", 1)
        threshold = f"<= {limit} ({what}, act_resnet18, 1 sample, p50 ms per observation)"
        if cell is None:
            note = NO_CUDA if cuda_device is None else "cell not run (act_resnet18 on cuda)"
            out[name] = target(None, threshold, False, note)
        else:
            out[name] = target(cell["p50_ms"], threshold, cell["p50_ms"] <= limit,
                                f"on {cuda_device}")
    return out


# ------------------------------------------------------------------------------------- run


def run(families: list[str] | None = None, configs: list[str] | None = None,
        quick: bool = False, out: str | Path | None = None, seed: int = 0,
        iters: int | None = None, threads: int = 1, progress: bool = True,
        command: str | None = None, baseline: str | Path | None = None,
        device_names: Sequence[str] | None = None, unet: bool = True,
        precision: str = "float32", compile: bool = False) -> dict[str, Any]:
    """Time every family x config x device; then the U-Net reference and the baseline."""
    known = all_families()
    families = families or known
    configs = configs or (QUICK_CONFIGS if quick else list(CONFIGS))
    unknown = sorted(set(families) - set(known)) + sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise ValueError(f"unknown families or configs {unknown}; families: {known}, "
                         f"configs: {list(CONFIGS)}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    used = devices(device_names)
    if compile:
        from genpol.policies.acceleration import check_compile

        for device in used:
            check_compile(device)
    before = torch.get_num_threads()  # given back at the end: a test suite runs on after this
    torch.set_num_threads(threads)
    try:
        preset = dict(QUICK if quick else FULL)
        if iters:
            preset["iters"] = iters
        cuda_device = torch.cuda.get_device_name() if "cuda" in used else None
        meta = run_meta(command)
        meta.update({
            "benchmark": "planner", "quick": quick, "seed": seed, "devices": used,
            "cuda_device": cuda_device, "samples": list(SAMPLES), "precision": precision,
            "compile": compile,
            "threads": threads,
            "threads_note": "torch threads for every CPU cell (default 1, so that figures compare "
                            "across runs and hosts; the planner node's cpu_threads is 1 too)",
            "joint_names": list(robot.JOINT_NAMES),
            "configs": {k: {**v, "per_family": FAMILY_VALUES.get(k, {})} if v else "state only"
                        for k, v in CONFIGS.items() if k in configs},
            "weights": "untrained (random initialisation): latency does not depend on the weights' "
                       "values",
            "measured": "PolicyHolder.sample(positions, images, num_samples), as the planner node "
                        "calls it per observation, after warm-up; torch.cuda.synchronize() before "
                        "each reading on CUDA",
            "flops": "torch.utils.flop_counter.FlopCounterMode around one call (matmuls, "
                     "convolutions, attention; 2 per multiply-add; elementwise ops not counted); "
                     "gflop_per_s = flops of the call / p50",
            **preset,
        })
        rows = []
        wall = time.perf_counter()
        meter = CpuMeter({"bench": os.getpid()})
        meter.start()
        meta["matmul_gflop_per_s"] = {d: matmul_gflop_per_s(d) for d in used}
        meta["matmul_note"] = (f"best of repeated n x n float32 matmuls for 0.5 s, n {MATMUL_N}: "
                               "about what the device reaches at this thread count")
        if progress:
            print(table_head(), flush=True)
        for device in used:
            for config in configs:
                for family in families:
                    row = bench_cell(family, config, device, preset, seed=seed,
                                     precision=precision, compile=compile)
                    rows.append(row)
                    if progress:
                        print(format_row(row), flush=True)
        unet_result = None
        if unet:
            if progress:
                print("U-Net against the standard layout at (512, 1024, 2048) ...", flush=True)
            unet_result = compare_unet(quick)
        base = None
        if baseline:
            if progress:
                print(f"old ({baseline}) vs new code, state only, CPU ...", flush=True)
            base = compare_baseline(baseline, families, threads, quick, seed)
        meta["wall_seconds"] = round(time.perf_counter() - wall, 1)
        meta["cpu"] = meter.stop()  # other_processes_percent > 0: something else shared the CPU
        meta["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        results = {"_meta": meta, "targets": targets(rows, unet_result, base, cuda_device),
                   "results": rows, "unet_reference": unet_result, "baseline": base}
        path = write_results(Path(out or "bench-results/planner"), results)
        (path.parent / "results.md").write_text(markdown_table(results) + "\n")
        return results
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------- tables


def _ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _by_samples(row: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {s["num_samples"]: s for s in row["samples"]}


def table_head() -> str:
    return (f"{'family':<10} {'config':<13} {'device':<6} {'params':>8} {'MFLOP/ch':>9} "
            f"{'1: p50':>8} {'p99':>8} {'GFLOP/s':>8} {'32: p50':>8} {'p99':>8} {'GFLOP/s':>8} "
            f"{'calls':>7}")


def format_row(r: dict[str, Any]) -> str:
    s = _by_samples(r)
    cols = []
    for n in SAMPLES:
        c = s.get(n)
        cols += ([f"{c['p50_ms']:>8.2f}", f"{c['p99_ms']:>8.2f}", f"{c['gflop_per_s']:>8.2f}"]
                 if c else [f"{'-':>8}"] * 3)
    calls = "/".join(str(s[n]["calls"]) for n in SAMPLES if n in s)
    return (f"{r['family']:<10} {r['config']:<13} {r['device']:<6} "
            f"{r['parameters'] / 1e6:>7.2f}M {r['flops_per_chunk'] / 1e6:>9.1f} "
            + " ".join(cols) + f" {calls:>7}")


def format_table(results: dict[str, Any]) -> str:
    head = table_head()
    lines = [head, "-" * len(head)] + [format_row(r) for r in results["results"]]
    lines.append("(ms per observation; MFLOP/ch: per chunk, 1-sample call; GFLOP/s achieved at "
                 "p50; calls: timed calls for 1/32 samples)")
    peak = results["_meta"].get("matmul_gflop_per_s")
    if peak:
        lines.append("a large float32 matmul reaches " + ", ".join(
            f"{v} GFLOP/s on {d}" for d, v in peak.items()) + " (the hardware's yardstick)")
    base = results.get("baseline")
    if base:
        lines += ["", f"old ({base['old_src']}) vs new, state, CPU, 1 sample, "
                      f"{base['threads']} thread(s), {base['rounds']} rounds:"]
        for family, f in base["families"].items():
            lines.append(f"  {family:<10} old {f['old_p50_ms']:>9.2f} ms  new "
                         f"{f['new_p50_ms']:>9.2f} ms  new/old {f['ratio']:.3f}")
    lines.append("")
    for name, t in results.get("targets", {}).items():
        lines.append(f"{name:<34} {t['value']!s:<8} {'met' if t['met'] else 'NOT met':<8} "
                     f"{t['threshold']}" + (f" [{t['note']}]" if t.get("note") else ""))
    return "\n".join(lines)


def markdown_table(results: dict[str, Any]) -> str:
    """The figures as README-ready markdown: one row per family x config x device, then the
    old-vs-new ratios and the targets."""
    lines = ["| family | config | device | parameters | MFLOP / chunk | 1 sample p50 / p99 (ms) "
             "| GFLOP/s | 32 samples p50 / p99 (ms) | GFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["results"]:
        s = _by_samples(r)
        cells = []
        for n in SAMPLES:
            c = s.get(n)
            cells += ([f"{_ms(c['p50_ms'])} / {_ms(c['p99_ms'])}", f"{c['gflop_per_s']:.2f}"]
                      if c else ["-", "-"])
        lines.append(f"| {r['family']} | {r['config']} | {r['device']} | "
                     f"{r['parameters'] / 1e6:.2f} M | {r['flops_per_chunk'] / 1e6:.1f} | "
                     + " | ".join(cells) + " |")
    peak = results["_meta"].get("matmul_gflop_per_s")
    if peak:
        lines += ["", "A large float32 matmul reaches " + ", ".join(
            f"{v} GFLOP/s on {d}" for d, v in peak.items()) + " in the same run."]
    base = results.get("baseline")
    if base:
        lines += ["", "| family | old p50 (ms) | new p50 (ms) | new / old |", "|---|---|---|---|"]
        for family, f in base["families"].items():
            lines.append(f"| {family} | {_ms(f['old_p50_ms'])} | {_ms(f['new_p50_ms'])} | "
                         f"{f['ratio']:.3f} |")
    lines += ["", "| target | value | threshold | met |", "|---|---|---|---|"]
    for name, t in results.get("targets", {}).items():
        value = "-" if t["value"] is None else t["value"]
        lines.append(f"| {name} | {value} | {t['threshold']} | "
                     f"{'yes' if t['met'] else 'no'}" + (f" ({t['note']})" if t.get("note")
                                                         else "") + " |")
    return "\n".join(lines)
