"""The end-effector paths of an evaluation as a PNG: top view (x-y) and side view (x-z), with
the task's objects. matplotlib with the Agg backend: no display needed. No ROS here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genpol.evaluation.metrics import EpisodeOutcome
from genpol.sim import tasks

COLORS = {"success": "tab:green", "collision": "tab:red", "timeout": "tab:orange"}


def _layouts(instances: Sequence[tasks.TaskInstance]) -> list[tasks.TaskInstance]:
    """One instance per distinct object layout (a fixed scene_seed gives exactly one)."""
    seen, out = set(), []
    for inst in instances:
        key = tuple(np.round(np.concatenate([inst.obstacle, inst.target, inst.cube, inst.bin]),
                             4))
        if key not in seen:
            seen.add(key)
            out.append(inst)
    return out


def _draw_objects(ax, inst: tasks.TaskInstance, view: str, alpha: float) -> None:
    import matplotlib.patches as mpatches

    a, b = (0, 1) if view == "top" else (0, 2)
    if inst.name == tasks.REACH_AROUND:
        half = np.array(tasks.OBSTACLE_HALF)
        lo = inst.obstacle.copy()
        lo[:2] -= half[:2]  # the post stands on the table: z from 0 to its full height
        size = 2 * half
        ax.add_patch(mpatches.Rectangle((lo[a], lo[b]), size[a], size[b], color="0.35",
                                        alpha=alpha, label="post"))
        ax.plot(inst.target[a], inst.target[b], marker="*", color="gold", markersize=14,
                markeredgecolor="k", alpha=max(alpha, 0.6), linestyle="none", label="target")
        circle = mpatches.Circle((inst.target[a], inst.target[b]), tasks.REACH_TOLERANCE,
                                 fill=False, edgecolor="goldenrod", linestyle=":", alpha=alpha)
        ax.add_patch(circle)
    else:
        c = tasks.CUBE_HALF
        ax.add_patch(mpatches.Rectangle((inst.cube[a] - c, inst.cube[b] - c), 2 * c, 2 * c,
                                        color="tab:blue", alpha=alpha, label="cube"))
        w = tasks.BIN_INNER_HALF
        lo_b = inst.bin[b] - w if view == "top" else inst.bin[b]
        height = 2 * w if view == "top" else tasks.BIN_WALL_HEIGHT
        ax.add_patch(mpatches.Rectangle((inst.bin[a] - w, lo_b), 2 * w, height, fill=False,
                                        edgecolor="0.3", linewidth=1.5, alpha=alpha,
                                        label="bin"))


def plot_paths(path: str | Path, task: str, episodes: Sequence[EpisodeOutcome],
               tips: Sequence[np.ndarray], title: str = "") -> Path:
    """Write the tip paths (each (T, 3), metres) of `episodes`, coloured by outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(episodes) != len(tips):
        raise ValueError(f"{len(episodes)} episodes but {len(tips)} paths")
    instances = [tasks.sample(task, e.seed, e.scene_seed, e.scene_spread) for e in episodes]
    layouts = _layouts(instances) or [tasks.sample(task, 0)]
    alpha = 0.85 if len(layouts) == 1 else max(0.15, 0.85 / len(layouts))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), dpi=100)
    for ax, view in zip(axes, ("top", "side"), strict=True):
        a, b = (0, 1) if view == "top" else (0, 2)
        for inst in layouts:
            _draw_objects(ax, inst, view, alpha)
        for e, tip in zip(episodes, tips, strict=True):
            tip = np.asarray(tip, float)
            if len(tip) == 0:
                continue
            ax.plot(tip[:, a], tip[:, b], color=COLORS[e.outcome], lw=1.2, alpha=0.75)
            ax.plot(tip[0, a], tip[0, b], marker="o", color="k", markersize=3)
            if e.outcome == "collision":
                ax.plot(tip[-1, a], tip[-1, b], marker="x", color="tab:red", markersize=7)
        ax.set_xlabel("x (m, forward)")
        ax.set_ylabel("y (m, left)" if view == "top" else "z (m, up)")
        ax.set_title("top view" if view == "top" else "side view")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, label=o) for o, c in COLORS.items()]
    handles += [plt.Line2D([], [], color="k", marker="o", linestyle="none", markersize=3,
                           label="start")]
    axes[0].legend(handles=handles, loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
