"""Rollout videos: camera frames of a few episodes, captioned, into one MP4 (PyAV, H.264 where
the FFmpeg build has an encoder for it, else MPEG-4 part 2). No ROS here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class Clip:
    """One episode's frames (each (H, W, 3) uint8 RGB) and the captions drawn on them."""

    frames: list[np.ndarray]
    caption: str           # shown on every frame, e.g. "episode 0, seed 1"
    outcome: str = ""      # shown on the closing frames, e.g. "success (left) 4.2 s"
    stamps: list[float] = field(default_factory=list)  # capture times (s), if known


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
        for f in clip.frames:
            frames.append(_caption(_scaled(np.asarray(f, np.uint8), scale), clip.caption))
        if clip.frames and clip.outcome:
            last = _caption(_scaled(np.asarray(clip.frames[-1], np.uint8), scale), clip.caption)
            good = clip.outcome.startswith("success")
            last = _caption(last, clip.outcome, bottom=True,
                            color=(120, 255, 120) if good else (255, 120, 120))
            frames += [last] * max(1, int(round(outcome_hold_s * fps)))
    return frames


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Encode RGB frames (all the same size) to an MP4 at `fps`; returns the path."""
    import av
    from fractions import Fraction

    if not frames:
        raise ValueError("no frames to write")
    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2  # yuv420p needs even sizes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "20", "preset": "veryfast"}
        for img in frames:
            img = np.ascontiguousarray(np.asarray(img, np.uint8)[:h2, :w2])
            if img.shape != (h2, w2, 3):
                raise ValueError(f"frames differ in size: {img.shape} after {(h2, w2, 3)}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
