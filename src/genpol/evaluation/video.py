"""Rollout videos: camera frames of a few episodes, captioned, for one MP4 (encoded by
genpol.data.video.write_mp4, the one MP4 encoder). No ROS here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Clip:
    """One episode's frames (each (H, W, 3) uint8 RGB) and the captions drawn on them."""

    frames: list[np.ndarray]
    caption: str           # shown on every frame, e.g. "episode 0, seed 1"
    outcome: str = ""      # shown on the closing frames, e.g. "success (left) 4.2 s"
    stamps: list[float] = field(default_factory=list)  # capture times (s), if known
    #: per frame, the sampled chunks' end-effector paths in that frame's pixels ((H, 2) (u, v)
    #: each, the executed one first), drawn over it; empty: none
    paths: list[list[np.ndarray]] = field(default_factory=list)


def paths_at(stamps: Sequence[float], path_sets: Sequence[tuple[float, list[np.ndarray]]]
             ) -> list[list[np.ndarray]]:
    """For each frame stamp the latest path set (time, paths) received by then (none before the
    first)."""
    times = np.array([t for t, _ in path_sets])
    out: list[list[np.ndarray]] = []
    for stamp in stamps:
        k = int(np.searchsorted(times, stamp, side="right")) - 1
        out.append(path_sets[k][1] if k >= 0 else [])
    return out


def draw_paths(frame: np.ndarray, paths: Sequence[np.ndarray], scale: int) -> np.ndarray:
    """The sampled chunks over the (already scaled) frame: thin coloured lines, the executed one
    thick green on top, as RViz draws /genpol/chunk_markers."""
    import colorsys

    import cv2

    out = frame.copy()
    n = len(paths)
    order = list(range(1, n)) + ([0] if n else [])
    for i in order:
        uv = np.asarray(paths[i], float) * scale
        uv = uv[np.isfinite(uv).all(axis=1)]
        if len(uv) < 2:
            continue
        pts = np.round(uv).astype(np.int32).reshape(-1, 1, 2)
        if i == 0:
            color, width = (30, 255, 50), 2
        else:
            r, g, b = colorsys.hsv_to_rgb((i / max(n, 2)) % 1.0, 0.7, 1.0)
            color, width = (int(r * 255), int(g * 255), int(b * 255)), 1
        cv2.polylines(out, [pts], False, color, width, cv2.LINE_AA)
    return out


def _scaled(frame: np.ndarray, scale: int) -> np.ndarray:
    import cv2

    if scale == 1:
        return frame
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)


def _caption(frame: np.ndarray, text: str, bottom: bool = False,
             color=(255, 255, 255)) -> np.ndarray:
    import cv2

    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, w / 700)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y0 = h - th - base - 6 if bottom else 0
    out[y0:y0 + th + base + 6, :] //= 3  # darken a band so the text reads on any background
    cv2.putText(out, text, (4, y0 + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1,
                cv2.LINE_AA)
    return out


def render_clips(clips: Sequence[Clip], scale: int = 3, fps: float = 10.0,
                 outcome_hold_s: float = 1.0) -> list[np.ndarray]:
    """The video's frames: each clip captioned, its last frame held with the outcome."""
    frames = []
    for clip in clips:
        for k, f in enumerate(clip.frames):
            img = _scaled(np.asarray(f, np.uint8), scale)
            if k < len(clip.paths) and clip.paths[k]:
                img = draw_paths(img, clip.paths[k], scale)
            frames.append(_caption(img, clip.caption))
        if clip.frames and clip.outcome:
            last = _caption(_scaled(np.asarray(clip.frames[-1], np.uint8), scale), clip.caption)
            good = clip.outcome.startswith("success")
            last = _caption(last, clip.outcome, bottom=True,
                            color=(120, 255, 120) if good else (255, 120, 120))
            frames += [last] * max(1, int(round(outcome_hold_s * fps)))
    return frames
