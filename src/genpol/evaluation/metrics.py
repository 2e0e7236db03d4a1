"""Episode outcomes and the figures computed from them. numpy, no ROS.

An episode ends in one of three outcomes: "success" (the task's success held for the hold time),
"collision" (the arm touched the obstacle) or "timeout". Its mode is what tasks.mode_of named for
its path: one of the task's modes (left / right, top / front), or "through" / "none" when the
path took neither. An episode may also have been pushed (sim_arm's ~/push, `genpol eval
--push-at`): success among those measures how a policy recovers from a disturbance.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

OUTCOMES = ("success", "collision", "timeout")


@dataclass
class EpisodeOutcome:
    """How one evaluated episode ended, and what its path looked like."""

    index: int              # 0-based, in the order run
    seed: int               # the start pose's seed (tasks.sample)
    scene_seed: int | None  # the layout's seed, None when the layout came from `seed`
    outcome: str            # success | collision | timeout
    duration_s: float       # sim time to the outcome: success reached, contact, or the timeout
    mode: str               # tasks.mode_of on the joint path
    final_distance_m: float | None = None  # reach_around: tip to target at the end
    min_distance_m: float | None = None    # reach_around: closest the tip came to the target
    start_offset_m: float | None = None    # tip at the first state after reset vs the task's start
    samples: int = 0        # joint states recorded
    pushed_at_s: float | None = None  # sim time sim_arm was pushed; None: never (or not asked)
    mode_switched: bool = False  # reach_around: clearly on one side of the post, then the other
    # The commanded trajectory's jerk (rad/s^3, over the arm joints), split by closeness to a
    # chunk switch (see seam_jerk): sums of squares and tick counts, pooled over episodes.
    seam_jerk_sq: float = 0.0
    seam_ticks: int = 0
    free_jerk_sq: float = 0.0
    free_ticks: int = 0
    chunk_rate_hz: float | None = None  # chunks the planner published per second of episode
    scene_spread: float = 1.0  # the layout's spread (tasks.sample)
    #: per chunk received: its observation's stamp to its arrival (ms), what the arm waits for
    #: a plan (inference, any queueing and injected delay)
    chunk_latency_ms: list[float] = field(default_factory=list)
    #: per plan: the observation it was planned on to its markers' arrival (ms), the planner's
    #: observation-to-chunk latency (a continuation chunk's stamp, above, is on the playing
    #: chunk's step grid, up to half a step from its observation)
    planner_latency_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    @property
    def success(self) -> bool:
        return self.outcome == "success"

    @property
    def collided(self) -> bool:
        return self.outcome == "collision"

    def row(self) -> dict[str, Any]:
        """The episode as a results.json row (success/collided spelled out)."""
        return {**asdict(self), "success": self.success, "collided": self.collided}


def mode_fractions(modes: Iterable[str], task_modes: Sequence[str]) -> dict[str, float]:
    """Fraction of episodes per mode: every task mode (0 if unused), then any other label seen
    ("through", "none"), so the fractions always sum to 1 over all episodes."""
    counts = Counter(modes)
    total = sum(counts.values())
    labels = list(task_modes) + sorted(set(counts) - set(task_modes))
    return {m: (counts[m] / total if total else 0.0) for m in labels}


def mode_entropy(counts: Mapping[str, float], task_modes: Sequence[str]) -> float:
    """Entropy of the split between the task's modes, divided by log(number of modes).

    1 = every mode used equally, 0 = one mode only (or none). Only episodes that took one of the
    task's modes count: a path that went through the post or nowhere is no mode, and is already
    a failure in the success rate. Two modes with fractions p, 1 - p give the binary entropy in
    bits, as bench/multimodal's mode_entropy does.
    """
    if len(task_modes) < 2:
        return 0.0
    values = [float(counts.get(m, 0.0)) for m in task_modes]
    total = sum(values)
    if total <= 0:
        return 0.0
    h = -sum(v / total * math.log(v / total) for v in values if v > 0)
    return float(h / math.log(len(task_modes))) + 0.0  # + 0.0: never print -0.00


def first_push(statuses: Iterable[Mapping[str, Any]]) -> float | None:
    """Sim time of an episode's first push, from sim_arm's statuses ("pushes", "pushed_at_s");
    None if none of them reports one."""
    for s in statuses:
        if s.get("pushes") and s.get("pushed_at_s") is not None:
            return float(s["pushed_at_s"])
    return None


def seam_jerk(times: np.ndarray, positions: np.ndarray, switches: Sequence[float],
              window_s: float = 0.1, lead_s: float = 0.04) -> tuple[float, int, float, int]:
    """(sum of squared jerk, samples) within window_s after a chunk switch, then the same
    elsewhere, of a commanded trajectory: positions (T, J) at tick times (T,). Jerk is the third
    difference over the median tick spacing, its norm over joints, placed at the middle of its
    four ticks, so a step at a switch shows from lead_s (two 50 Hz ticks) before it. Switches
    are when the executor starts playing a new chunk (genpol.control.timeline.switch_time)."""
    times = np.asarray(times, float)
    if len(times) < 4:  # an episode decided before its first switch: nothing to measure
        return 0.0, 0, 0.0, 0
    positions = np.asarray(positions, float).reshape(len(times), -1)
    dt = float(np.median(np.diff(times)))
    jerk = np.linalg.norm(np.diff(positions, n=3, axis=0), axis=1) / dt ** 3
    at = (times[1:-2] + times[2:-1]) / 2
    sw = np.sort(np.asarray(switches, float))
    near = np.zeros(len(at), bool)
    if len(sw):
        i = np.searchsorted(sw, at + lead_s, side="right") - 1  # the last switch by at + lead
        gap = at - sw[np.clip(i, 0, None)]
        near = (i >= 0) & (gap >= -lead_s - 1e-9) & (gap <= window_s + 1e-9)
    sq = jerk ** 2
    return float(sq[near].sum()), int(near.sum()), float(sq[~near].sum()), int((~near).sum())


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(max(values)),
            "count": len(values)}


def summarize(episodes: Sequence[EpisodeOutcome], task_modes: Sequence[str]) -> dict[str, Any]:
    """The figures of an evaluation; rates are over all episodes."""
    n = len(episodes)
    if n == 0:
        raise ValueError("no episodes to summarize")
    counts = Counter(e.mode for e in episodes)
    distances = [e.final_distance_m for e in episodes if e.final_distance_m is not None]
    pushed = [e for e in episodes if e.pushed_at_s is not None]
    return {
        "episodes": n,
        "success_rate": sum(e.success for e in episodes) / n,
        "collision_rate": sum(e.collided for e in episodes) / n,
        "timeout_rate": sum(e.outcome == "timeout" for e in episodes) / n,
        "mode_fractions": mode_fractions([e.mode for e in episodes], task_modes),
        "mode_entropy": mode_entropy(counts, task_modes),
        "mean_episode_s": _mean([e.duration_s for e in episodes]),
        "mean_success_s": _mean([e.duration_s for e in episodes if e.success]),
        "mean_final_distance_m": _mean(distances),
        "pushed_episodes": len(pushed),
        # None when no episode was pushed (none asked for, or all ended before the push)
        "success_after_push": _mean([float(e.success) for e in pushed]),
        # how long a pushed arm took from the push to the target: where both recover (the
        # servos pull a shoved arm back toward its set points), the speed of the recovery is
        # what replanning buys
        "recovery_after_push_s": _mean([e.duration_s - e.pushed_at_s for e in pushed
                                        if e.success and e.pushed_at_s is not None]),
        "mode_switch_rate": sum(e.mode_switched for e in episodes) / n,
        "chunk_rate_hz": _mean([e.chunk_rate_hz for e in episodes
                                if e.chunk_rate_hz is not None]),
        "chunk_latency_ms": _percentiles([v for e in episodes for v in e.chunk_latency_ms]),
        "planner_latency_ms": _percentiles([v for e in episodes for v in e.planner_latency_ms]),
        **jerk_figures(episodes),
    }


def jerk_figures(episodes: Sequence[EpisodeOutcome]) -> dict[str, float | None]:
    """RMS jerk of the commanded trajectory near chunk switches and elsewhere, and their ratio
    (None where a part has no ticks: a strategy that switches every <= 100 ms has no
    elsewhere). The share of ticks that are "elsewhere" says how much the ratio can mean: at
    10 switches a second the windows cover nearly everything."""
    near_n = sum(e.seam_ticks for e in episodes)
    free_n = sum(e.free_ticks for e in episodes)
    near = math.sqrt(sum(e.seam_jerk_sq for e in episodes) / near_n) if near_n else None
    free = math.sqrt(sum(e.free_jerk_sq for e in episodes) / free_n) if free_n else None
    return {"seam_jerk_rms": near, "free_jerk_rms": free,
            "seam_jerk_ratio": near / free if near is not None and free else None,
            "free_tick_share": free_n / (near_n + free_n) if near_n + free_n else None}


def format_table(figures: Mapping[str, Any], episodes: Sequence[EpisodeOutcome]
                 ) -> str:
    """Per-episode rows, then the summary, as plain text for the terminal."""
    head = (f"{'ep':>3} {'seed':>5} {'outcome':<9} {'mode':<7} {'time_s':>6} "
            f"{'final_cm':>8}")
    lines = [head, "-" * len(head)]
    for e in episodes:
        dist = "" if e.final_distance_m is None else f"{e.final_distance_m * 100:.1f}"
        lines.append(f"{e.index:>3} {e.seed:>5} {e.outcome:<9} {e.mode:<7} "
                     f"{e.duration_s:>6.1f} {dist:>8}")
    lines.append("-" * len(head))
    modes = ", ".join(f"{m} {f:.2f}" for m, f in figures["mode_fractions"].items())
    mean_s = figures["mean_episode_s"]
    lines += [
        f"success rate     {figures['success_rate']:.2f} ({figures['episodes']} episodes)",
        f"collision rate   {figures['collision_rate']:.2f}",
        f"timeout rate     {figures['timeout_rate']:.2f}",
        f"modes            {modes}",
        f"mode entropy     {figures['mode_entropy']:.2f} (normalised; 1 = modes used equally)",
        f"mean episode     {mean_s:.1f} s" + (
            f" (successes {figures['mean_success_s']:.1f} s)"
            if figures["mean_success_s"] is not None else ""),
    ]
    lines.append(f"mode switches    {figures.get('mode_switch_rate', 0.0):.2f} of episodes "
                 "(one side of the post, then the other)")
    if figures.get("seam_jerk_rms") is not None:
        ratio = figures.get("seam_jerk_ratio")
        lines.append(f"jerk at seams    {figures['seam_jerk_rms']:.0f} rad/s^3 RMS within 100 ms "
                     f"of a chunk switch" + (f", {ratio:.2f}x elsewhere" if ratio else ""))
    if figures.get("pushed_episodes"):
        recovery = figures.get("recovery_after_push_s")
        lines.append(f"success after push {figures['success_after_push']:.2f} "
                     f"({figures['pushed_episodes']} pushed episodes)" + (
                         f", {recovery:.2f} s from the push to the target"
                         if recovery is not None else ""))
    return "\n".join(lines)


def judge(statuses: Sequence[Mapping[str, Any]], timeout_s: float,
          hold_s: float = 0.5) -> tuple[str, float] | None:
    """An episode's outcome from sim_arm's status messages (time_s, success, collided), in order:
    ("collision", time of the first status reporting contact), ("success", time the success
    began) once success has held for hold_s, ("timeout", timeout_s) once time_s reaches
    timeout_s with no success under way, else None (not decided yet). A success that began
    before the timeout may finish its hold after it."""
    streak = None
    for s in statuses:
        t = float(s["time_s"])
        if s["collided"]:
            return "collision", t
        if s["success"]:
            streak = t if streak is None else streak
            if t - streak >= hold_s - 1e-9:
                return "success", streak
        else:
            streak = None
        if t >= timeout_s and streak is None:
            return "timeout", float(timeout_s)
    return None
