"""What every benchmark's results.json records about the run, and small statistics helpers."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_meta(command: str | None = None) -> dict[str, Any]:
    """Command line, host, software versions and date (UTC) of this run."""
    import torch

    return {
        "command": command or shlex.join(sys.argv),
        "host_cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (the graph's node processes)."""
    import resource

    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean, min and max of a list of durations in milliseconds."""
    a = np.asarray(ms, dtype=float)
    if a.size == 0:
        return {k: float("nan") for k in ("p50_ms", "p99_ms", "mean_ms", "min_ms", "max_ms")}
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3),
            "min_ms": round(float(a.min()), 3), "max_ms": round(float(a.max()), 3)}


def target(value: Any, threshold: Any, met: bool, note: str = "") -> dict[str, Any]:
    """One entry of a results.json `targets` object: value, threshold, met (DEVELOPERS.md),
    and why, where a note helps."""
    out = {"value": value, "threshold": threshold, "met": bool(met)}
    if note:
        out["note"] = note
    return out


def write_results(out: Path, results: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


class CpuMeter:
    """CPU use between start() and stop(), in percent of one core (as top shows it): of each
    named process, of the whole machine, and of everything else running on it."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self._tick = os.sysconf("SC_CLK_TCK")

    def _machine(self) -> tuple[float, float]:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def _proc(self, pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (float(fields[11]) + float(fields[12])) / self._tick
        except (OSError, IndexError):
            return float("nan")

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._m0 = self._machine()
        self._p0 = {name: self._proc(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        busy, total = (b - a for a, b in zip(self._m0, self._machine(), strict=True))
        cores = os.cpu_count() or 1
        machine = 100.0 * cores * busy / total if total else float("nan")
        out = {"machine_percent": round(machine, 1), "cores": cores}
        ours = 0.0
        for name, pid in self.pids.items():
            out[f"{name}_percent"] = round(100.0 * (self._proc(pid) - self._p0[name]) / wall, 1)
            ours += out[f"{name}_percent"]
        out["other_processes_percent"] = round(max(0.0, machine - ours), 1)
        return out
