"""`genpol bench faults`: the fault matrix as a benchmark, each fault injected into the real graph.

The rows (one per fault, with what must hold), the malformed chunks, the measurements made from
what the graph published (commands, joint states, tick times), the issue's targets and the
markdown table. Pure: numpy only. The graph run is genpol.jobs.bench_faults's (its in-process
node: genpol.nodes.fault_probe). A row passes when every one of its checks holds; a row that
could not run says why and does not pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from genpol import robot
from genpol.bench.common import target


@dataclass(frozen=True)
class Row:
    name: str
    fault: str
    must_hold: str


ROWS: tuple[Row, ...] = (
    Row("planner_kill", "planner kill -9, then restarted",
        "the executor holds within 100 ms of the last chunk's end, never jumps (consecutive "
        "commands within the speed limit per tick), and follows chunks again after the restart"),
    Row("sim_arm_kill", "sim_arm kill -9, restarted at its start pose",
        "measured joint speed never above max_velocity * velocity_scale (+10 %); the executor "
        "re-anchors (its ~/status counts it) and never jumps"),
    Row("camera_unplug", "the camera's video file renamed away and back",
        "no frames while it is away, the camera process backs off (low CPU), frames resume"),
    Row("recorder_kill", "recorder kill -9 mid-episode",
        "closed episodes unchanged; the open one repaired (at the recorder's restart and by "
        "`genpol bag repair`), read by rosbags and the mcap indexed reader; lost <= one flush "
        "period"),
    Row("disk_full", "the disk fills while recording",
        "the episode is marked failed, earlier episodes unchanged, the recorder records again "
        "once space is freed"),
    Row("malformed_chunks", "malformed action chunks and a NaN flood at 300 Hz",
        "every one refused (an out-of-limit one clamped), 50 Hz kept, no command outside the "
        "limits or over the speed limit"),
    Row("bad_checkpoints", "every kind of broken checkpoint set as the planner's policy_path",
        "refused, the parameter unchanged, the old policy still publishing"),
    Row("cpu_hogs", "two busy processes per core while the executor ticks",
        "period error p99 <= 1 ms and no missed tick"),
)
BY_NAME = {r.name: r for r in ROWS}
#: the rows of --quick (the test suite's short form)
QUICK_ROWS = ("malformed_chunks", "recorder_kill", "bad_checkpoints")
#: the order rows run in: the policy-graph rows first (the planner live), then those that kill
#: its processes, then the recorder and camera rows
RUN_ORDER = ("bad_checkpoints", "cpu_hogs", "malformed_chunks", "planner_kill", "sim_arm_kill",
             "recorder_kill", "disk_full", "camera_unplug")

# Targets of the issue.
HOLD_MS_MAX = 100.0
HOG_P99_MS_MAX = 1.0
OVERSIZED_DELAY_MS_MAX = 5.0
WALL_S_MAX = 15 * 60.0
QUICK_WALL_S_MAX = 180.0
#: measured joint speed may exceed the commanded limit by this fraction (the simulated servo's
#: tracking overshoot)
SPEED_TOLERANCE = 0.10
#: a recorder killed between flushes loses what came after the last one; the scheduling of the
#: flush timer on a busy CPU adds to it (as test_bag_repair allows)
FLUSH_SLACK_S = 0.25
#: the camera process while its source is away, in % of one core
CAMERA_IDLE_CPU_MAX = 5.0


def check(what: str, value: Any, threshold: Any, ok: bool) -> dict[str, Any]:
    """One thing a row requires: what was measured, against what, and whether it holds."""
    return {"what": what, "value": _plain(value), "threshold": threshold, "ok": bool(ok)}


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float):
        return round(value, 4) if np.isfinite(value) else None
    return value


def row_result(name: str, checks: Sequence[dict[str, Any]], details: dict[str, Any] | None = None,
               error: str = "", wall_s: float = 0.0) -> dict[str, Any]:
    """A row's entry in results.json: it passes only if it ran (no error) and every check
    holds; a row without checks did not run."""
    row = BY_NAME[name]
    failed = [c["what"] for c in checks if not c["ok"]]
    if not error and not checks:
        error = "nothing was measured"
    return {"row": name, "number": ROWS.index(row) + 1, "fault": row.fault,
            "must_hold": row.must_hold, "passed": not error and not failed,
            "error": error, "failed_checks": failed, "checks": list(checks),
            "details": details or {}, "wall_s": round(wall_s, 1)}


def check_rows(names: Sequence[str]) -> list[str]:
    """The rows asked for, in RUN_ORDER; ValueError naming the unknown ones."""
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise ValueError(f"--rows: unknown {unknown}; choose from {list(BY_NAME)}")
    if not names:
        raise ValueError(f"--rows: give at least one of {list(BY_NAME)}")
    return [n for n in RUN_ORDER if n in names]


# --------------------------------------------------------------------------- malformed chunks


@dataclass(frozen=True)
class Malformed:
    """One chunk as it goes on the wire: positions are lists, so a ragged chunk is possible."""

    kind: str
    stamp: float
    joint_names: list[str]
    times: list[float]
    positions: list[list[float]]
    expect: str  # "refused" or "clamped" (accepted, with the out-of-limit values clamped)


#: the kinds, in the order they are sent; the oversized one and the flood are built apart
MALFORMED_KINDS = ("nan", "wrong_joint_names", "out_of_limits", "stale_stamp", "future_stamp",
                   "empty", "ragged", "non_monotonic_times", "oversized")
OVERSIZED_POINTS = 10_000
FLOOD_HZ = 300.0
#: how far off a stamp is in the stale and future kinds (max_chunk_age_s is 1 s)
STAMP_OFFSET_S = 5.0


def malformed_chunk(kind: str, now: float, at: np.ndarray, fps: float = 10.0,
                    points: int = 10) -> Malformed:
    """Chunk `kind` planned at `now` from joint positions `at` (robot.JOINT_NAMES order); apart
    from its fault, a plan that stays where the arm is."""
    names = list(robot.JOINT_NAMES)
    if kind == "oversized":
        points = OVERSIZED_POINTS
    times = [k / fps for k in range(points)]
    pos = np.tile(np.asarray(at, float), (points, 1))
    stamp, expect = now, "refused"
    if kind == "nan":
        pos[3, 1] = np.nan
    elif kind == "wrong_joint_names":
        names[2] = "elbow"
    elif kind == "out_of_limits":
        # wrist_roll well past its upper limit halfway through: clamped, and the rest followed
        j = names.index("wrist_roll")
        pos[points // 2:, j] = robot.upper_limits()[j] + 1.0
        expect = "clamped"
    elif kind == "stale_stamp":
        stamp = now - STAMP_OFFSET_S
    elif kind == "future_stamp":
        stamp = now + STAMP_OFFSET_S
    elif kind == "empty":
        times, pos = [], pos[:0]
    elif kind == "non_monotonic_times":
        times[4], times[5] = times[5], times[4]
    elif kind not in ("ragged", "oversized"):
        raise ValueError(f"unknown malformed chunk {kind!r}; known: {MALFORMED_KINDS}")
    rows = [list(map(float, p)) for p in pos]
    if kind == "ragged":
        rows[2] = rows[2][:-1]
    return Malformed(kind, stamp, names, times, rows, expect)


def nan_chunk(now: float, at: np.ndarray) -> Malformed:
    """The chunk of the NaN flood: every position NaN."""
    chunk = malformed_chunk("nan", now, at)
    return Malformed("nan_flood", chunk.stamp, chunk.joint_names, chunk.times,
                     [[float("nan")] * len(p) for p in chunk.positions], "refused")


def outcome(received: int, accepted: int) -> str:
    """What the executor did with chunks it received: refused (none accepted), accepted, or
    lost (it never saw them)."""
    if received == 0:
        return "lost"
    return "refused" if accepted == 0 else "accepted"


# --------------------------------------------------------------------------------- measures


def arm_limits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, max_velocity) of the arm controller's joints, in its order."""
    idx = [robot.JOINT_NAMES.index(j) for j in robot.CONTROLLERS["arm_controller"]]
    return robot.lower_limits()[idx], robot.upper_limits()[idx], robot.velocity_limits()[idx]


def command_jumps(times: ArrayLike, positions: np.ndarray, max_step: np.ndarray,
                  period: float) -> dict[str, Any]:
    """Consecutive commands' first points against the speed limit: each may move max_step per
    tick between them (ticks counted from the arrival gap, at least one, so a command lost on
    the way is not a jump). ratio <= 1 holds."""
    t = np.asarray(times, float)
    q = np.asarray(positions, float).reshape(len(t), -1)
    if len(t) < 2:
        return {"commands": int(len(t)), "worst_step_ratio": None, "worst_joint": None}
    ticks = np.maximum(1.0, np.round(np.diff(t) / period))
    ratio = np.abs(np.diff(q, axis=0)) / (np.asarray(max_step, float)[None, :] * ticks[:, None])
    k, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return {"commands": int(len(t)), "worst_step_ratio": float(ratio[k, j]),
            "worst_joint": robot.CONTROLLERS["arm_controller"][j] if q.shape[1] == 5 else int(j)}


def outside_limits(positions: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   tol: float = 1e-6) -> int:
    """How many commanded values lie outside the joint limits."""
    q = np.asarray(positions, float)
    if q.size == 0:
        return 0
    return int(np.sum((q < lower - tol) | (q > upper + tol)))


def settled_at(times: ArrayLike, positions: np.ndarray, tol: float = 1e-6) -> float | None:
    """The time of the first command from which every later one equals the last (the executor
    holds); None without commands."""
    t = np.asarray(times, float)
    if len(t) == 0:
        return None
    q = np.asarray(positions, float).reshape(len(t), -1)
    moving = np.flatnonzero(np.any(np.abs(q - q[-1]) > tol, axis=1))  # never the last one
    return float(t[0] if moving.size == 0 else t[moving[-1] + 1])


def measured_speed(stamps: ArrayLike, positions: np.ndarray, limit: np.ndarray,
                   breaks: Sequence[float] = ()) -> dict[str, Any]:
    """The fastest measured joint speed (finite differences of /joint_states) as a fraction of
    `limit`; pairs of states across a break (a restarted process) are not compared."""
    t = np.asarray(stamps, float)
    q = np.asarray(positions, float).reshape(len(t), -1)
    if len(t) < 2:
        return {"states": int(len(t)), "worst_speed_ratio": None, "worst_joint": None}
    dt = np.diff(t)
    keep = dt > 1e-4
    for b in breaks:
        keep &= ~((t[:-1] < b) & (t[1:] >= b))
    if not keep.any():
        return {"states": int(len(t)), "worst_speed_ratio": None, "worst_joint": None}
    speed = np.abs(np.diff(q, axis=0))[keep] / dt[keep][:, None]
    ratio = speed / np.asarray(limit, float)[None, :]
    k, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return {"states": int(len(t)), "worst_speed_ratio": float(ratio[k, j]),
            "worst_speed_rad_s": float(speed[k, j]), "worst_joint": robot.JOINT_NAMES[j]
            if q.shape[1] == len(robot.JOINT_NAMES) else int(j)}


def tick_delay_ms(tick_times: ArrayLike, start: float, end: float,
                  period: float) -> float | None:
    """The most a tick started late (gap beyond one period) among ticks in [start, end]."""
    t = np.asarray(tick_times, float)
    if len(t) < 2:
        return None
    gaps = np.diff(t)
    inside = (t[1:] >= start) & (t[1:] <= end)
    if not inside.any():
        return None
    return float(max(0.0, (gaps[inside] - period).max()) * 1e3)


def rate_hz(tick_times: ArrayLike) -> float | None:
    t = np.asarray(tick_times, float)
    return None if len(t) < 2 or t[-1] <= t[0] else float((len(t) - 1) / (t[-1] - t[0]))


# --------------------------------------------------------------------------------- targets


def _target(value: Any, threshold: Any, met: bool, note: str = "") -> dict[str, Any]:
    return target(_plain(value), threshold, met, note)


def _detail(rows: Sequence[dict[str, Any]], row: str, key: str) -> Any:
    r = next((r for r in rows if r["row"] == row), None)
    return None if r is None else r["details"].get(key)


def targets(rows: Sequence[dict[str, Any]], wall_s: float, quick: bool,
            flush_period_s: float) -> dict[str, Any]:
    """The issue's targets; one whose row was not run has value None and is not met."""
    ran = {r["row"] for r in rows}
    failed = [r["row"] for r in rows if not r["passed"]]
    out = {"every_row_passes": _target(
        f"{len(rows) - len(failed)} of {len(rows)} passed"
        + (f" (not: {', '.join(failed)})" if failed else ""), "every row run passes",
        bool(rows) and not failed)}

    def measured(key: str, row: str, threshold: Any, ok) -> None:
        value = _detail(rows, row, key)
        note = "" if row in ran else f"row {row} not run"
        out[key] = _target(value, threshold, value is not None and ok(value), note)

    measured("hog_period_error_p99_ms", "cpu_hogs", f"<= {HOG_P99_MS_MAX} ms",
             lambda v: v <= HOG_P99_MS_MAX)
    measured("hog_missed_ticks", "cpu_hogs", "0", lambda v: v == 0)
    measured("oversized_chunk_tick_delay_ms", "malformed_chunks",
             f"<= {OVERSIZED_DELAY_MS_MAX} ms", lambda v: v <= OVERSIZED_DELAY_MS_MAX)
    measured("repaired_read_by_rosbags_and_mcap", "recorder_kill", "true", lambda v: v is True)
    limit = flush_period_s + FLUSH_SLACK_S
    measured("recorder_lost_s", "recorder_kill",
             f"<= one flush period ({flush_period_s:g} s) + {FLUSH_SLACK_S:g} s scheduling",
             lambda v: v <= limit)
    cap = QUICK_WALL_S_MAX if quick else WALL_S_MAX
    out["wall_s"] = _target(round(wall_s, 1), f"<= {cap:g} s", wall_s <= cap)
    return out


# --------------------------------------------------------------------------------- the table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "/")


def format_table(results: dict[str, Any]) -> str:
    """results.md: one line per row (its checks, failed ones marked), then the targets."""
    lines = ["| # | fault | passed | measured (threshold) |", "|---|---|---|---|"]
    for r in sorted(results["results"], key=lambda r: r["number"]):
        checks = "; ".join(f"{'' if c['ok'] else '**NOT** '}{c['what']} {_cell(c['value'])} "
                           f"({c['threshold']})" for c in r["checks"])
        if r["error"]:
            checks = f"did not run: {r['error']}" + (f"; {checks}" if checks else "")
        lines.append(f"| {r['number']} | {r['fault']} | {'yes' if r['passed'] else '**no**'} "
                     f"| {checks.replace('|', '/')} |")
    lines += ["", "| target | value | threshold | met |", "|---|---|---|---|"]
    for name, t in results.get("targets", {}).items():
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {name} | {_cell(t['value'])}{note} | {t['threshold']} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines)
