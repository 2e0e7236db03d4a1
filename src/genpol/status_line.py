"""The graph's state in one line, from the planner's and the executor's ~/status (JSON).

    genpol | policy flow rtc n=8 4.6 ch/s p50 180 p99 260 ms | executor continue 230/250 ok
    20 dropped | speed x0.30 limited 12% to x0.05 | sim reach_around ep 3 4.2 s | warn: speed
    limited 412, stale 20

`genpol status` and `genpol bringup` print it once a second: what a user needs to see that the
graph runs, and why the arm does not move, without reading a console of repeated warnings. A
part whose status is missing or has gone silent says so. Plain Python, no rclpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

#: a status older than this (seconds) is reported silent: its node publishes once a second
STALE_S = 3.0
#: warning kinds shown, most frequent first
MAX_WARNING_KINDS = 4

Status = Mapping[str, Any]


def short(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def planner_part(s: Status) -> str:
    if s.get("loading"):
        text = f"policy loading {PurePath(s['loading']).name}"
    elif not s.get("family"):
        text = "policy none"
    else:
        text = f"policy {s['family']} {s.get('chunking', '?')} n={s.get('num_samples', '?')}"
        text += f" {s.get('rate_hz', 0.0):.1f} ch/s"
        latency = s.get("latency_ms") or {}
        if latency.get("p50") is not None:
            text += f" p50 {latency['p50']:.0f} p99 {latency.get('p99', 0.0):.0f} ms"
    if s.get("halted"):
        text += f" HALTED ({short(s['halted'], 50)})"
    if s.get("load_error"):
        text += f" (load failed: {short(s['load_error'], 50)})"
    if s.get("refused"):
        text += f" (refused {short(s['refused'], 50)})"
    return text


def executor_part(s: Status) -> str:
    if s.get("fault"):
        return f"executor FAULT {short(s['fault'], 70)}"
    if s.get("command") == "silent":
        return "executor SILENT (no /joint_states: commanding nothing)"
    received, accepted = s.get("chunks_received", 0), s.get("chunks_accepted", 0)
    return (f"executor {s.get('mode', '?')} {accepted}/{received} ok "
            f"{s.get('chunks_dropped', received - accepted)} dropped")


def speed_part(s: Status) -> str:
    text = f"speed x{s.get('velocity_scale', 1.0):.2f}"
    limited = s.get("speed_limited") or 0.0
    text += f" limited {100 * limited:.0f}%"
    if limited and s.get("speed_scale") is not None:
        text += f" to x{s['speed_scale']:.2f}"
    return text


def sim_part(s: Status) -> str:
    text = f"sim {s.get('task', '?')} ep {s.get('episode', '?')} {s.get('time_s', 0.0):.1f} s"
    if s.get("collided"):
        text += " collided"
    if s.get("success"):
        text += " success"
    return text


def warnings_part(*statuses: Status | None) -> str:
    counts: dict[str, int] = {}
    for s in statuses:
        for kind, n in ((s or {}).get("warnings") or {}).items():
            counts[kind] = counts.get(kind, 0) + int(n)
    if not counts:
        return ""
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_WARNING_KINDS]
    return "warn: " + ", ".join(f"{kind} {n}" for kind, n in top)


def format_line(planner: Status | None, executor: Status | None, sim: Status | None = None,
                ages: Mapping[str, float] | None = None, stale_s: float = STALE_S) -> str:
    """One line from the statuses (None: none received). `ages`: seconds since each
    ("planner", "executor", "sim") arrived; an older one than `stale_s` is shown silent."""
    ages = ages or {}

    def silent(name: str) -> str | None:
        age = ages.get(name)
        return f"{name} silent {age:.0f} s" if age is not None and age > stale_s else None

    parts = ["genpol"]
    if planner is None:
        parts.append("no planner status")
    else:
        parts.append(silent("planner") or planner_part(planner))
    if executor is None:
        parts.append("no executor status")
    else:
        gone = silent("executor")
        parts += [gone] if gone else [executor_part(executor), speed_part(executor)]
    if sim is not None:
        parts.append(silent("sim") or sim_part(sim))
    warned = warnings_part(planner, executor)
    if warned:
        parts.append(warned)
    return " | ".join(parts)
