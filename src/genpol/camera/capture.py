"""Frames from a camera or a video file through OpenCV, surviving unplugs and missing files.

The camera node calls `Capture.read()` from its timer. `read()` never blocks on a missing source
and never raises for one: it returns None and says why in `status`, then tries to open the source
again with exponential backoff (0.5 s doubling to 8 s by default), so an unplugged camera costs
one stat() per tick instead of a busy loop or a crash loop. Frames resume once the source is back.

Video files play one frame per `read()` (the caller's rate, not the file's). At the end of a file,
`loop_video=True` starts it again; `loop_video=False` plays it once, the way a video player does:
the capture is then `ended` and stays silent (a replay would be a loop in disguise) until it is
restarted. A file that is missing or disappears is retried like an unplugged camera.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from collections.abc import Callable

import cv2
import numpy as np

Source = int | str

STREAMING = "streaming"  # frames are coming
WAITING = "waiting"  # source missing or failing; retrying with backoff
ENDED = "ended"  # a video file played to its end with loop_video off
IDLE = "idle"  # not opened yet


def parse_source(source: Source) -> Source:
    """A device index for digits ("0" -> 0), else the path as given (/dev/videoN or a file)."""
    if isinstance(source, bool):
        raise ValueError(f"source must be a device index or a path, got {source!r}")
    if isinstance(source, int):
        return source
    text = str(source).strip()
    if not text:
        raise ValueError("source is empty; give a device index (0), /dev/videoN or a video file")
    return int(text) if text.isdigit() else text


@dataclass
class CaptureConfig:
    """Where frames come from and the size they are delivered at."""

    source: Source = 0  # device index, "/dev/videoN", or a video file path
    width: int = 640  # frames are resized to width x height
    height: int = 480
    fps: float = 30.0  # asked of a device; the caller's read rate sets a file's playback rate
    loop_video: bool = True  # at the end of a video file: start again, or end
    retry_min_s: float = 0.5  # first reopen delay after a failure; doubles each failure
    retry_max_s: float = 8.0

    def __post_init__(self) -> None:
        self.source = parse_source(self.source)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 0 < self.retry_min_s <= self.retry_max_s:
            raise ValueError(
                f"need 0 < retry_min_s <= retry_max_s, got {self.retry_min_s}, {self.retry_max_s}"
            )

    @property
    def is_device(self) -> bool:
        return isinstance(self.source, int) or str(self.source).startswith("/dev/")


@dataclass(frozen=True)
class CaptureStatus:
    """What the capture is doing and why; callers log when (state, reason) changes."""

    state: str = IDLE
    reason: str = ""
    retry_in_s: float = 0.0  # while waiting: delay before the next open attempt

    def same_as(self, other: CaptureStatus) -> bool:
        return (self.state, self.reason) == (other.state, other.reason)


class Capture:
    """A cv2.VideoCapture that reopens its source with backoff; `read()` gives RGB or None."""

    def __init__(self, config: CaptureConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._cap: cv2.VideoCapture | None = None
        self._status = CaptureStatus()
        self._delay = config.retry_min_s
        self._next_try = -float("inf")
        self.open_attempts = 0
        # The path whose existence tells whether the source is there: a deleted file stays readable
        # through an open handle, and an unplugged camera's node vanishes before reads fail.
        src = config.source
        if isinstance(src, int):
            self._watch = f"/dev/video{src}" if sys.platform.startswith("linux") else None
        else:
            self._watch = src
        self.description = f"device {src}" if isinstance(src, int) else str(src)

    @property
    def status(self) -> CaptureStatus:
        return self._status

    def read(self) -> np.ndarray | None:
        """The next frame, (height, width, 3) uint8 RGB; None while the source is away or ended."""
        if self._status.state == ENDED:
            return None
        if self._cap is None and not self._try_open():
            return None
        assert self._cap is not None  # _try_open() opened it
        if self._watch is not None and not os.path.exists(self._watch):
            self._fail(f"{self._watch} does not exist")
            return None
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if self.config.is_device:
                self._fail(f"reading {self.description} failed")
                return None
            if not self.config.loop_video:
                self._release()
                self._status = CaptureStatus(
                    ENDED, f"end of {self.description} (loop_video is off)")
                return None
            self._release()  # loop: reopening is reliable where seeking is not, for every codec
            if not self._try_open(now=True):
                return None
            assert self._cap is not None
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._fail(f"{self.description} has no readable frames")
                return None
        self._delay = self.config.retry_min_s
        self._status = CaptureStatus(STREAMING, self.description)
        return self._to_rgb(frame)

    def close(self) -> None:
        self._release()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _try_open(self, now: bool = False) -> bool:
        if not now and self._clock() < self._next_try:
            return False
        self.open_attempts += 1
        if self._watch is not None and not os.path.exists(self._watch):
            self._fail(f"{self._watch} does not exist")
            return False
        cap = cv2.VideoCapture(self.config.source)
        if not cap.isOpened():
            cap.release()
            self._fail(f"OpenCV cannot open {self.description}")
            return False
        if self.config.is_device:  # requests; a camera may pick the nearest mode it has
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
            cap.set(cv2.CAP_PROP_FPS, self.config.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a stale queued one
        self._cap = cap
        return True

    def _fail(self, reason: str) -> None:
        """Drop the source and schedule the next open attempt, doubling the delay up to the cap."""
        self._release()
        self._next_try = self._clock() + self._delay
        self._status = CaptureStatus(WAITING, reason, self._delay)
        self._delay = min(self._delay * 2.0, self.config.retry_max_s)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        else:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        h, w = self.config.height, self.config.width
        if frame.shape[:2] != (h, w):
            shrink = frame.shape[0] > h or frame.shape[1] > w
            method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            frame = cv2.resize(frame, (w, h), interpolation=method)
        return frame
