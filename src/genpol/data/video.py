"""MP4 video through PyAV: many episodes' frames appended to one file, and read back whole.

The one MP4 encoder of genpol: datasets (VideoWriter) and evaluation rollouts (write_mp4).
A LeRobot v3 video file holds several episodes one after the other; an episode's frames are found
by time (its `from_timestamp` plus each frame's `timestamp`). We write frame k of a file at
pts = k with time base 1/fps, no B-frames, so decode order is display order and every frame's
time is exactly k / fps.

Codecs (`CODECS`): h264 (libx264, the default: fast, and every ffmpeg-based reader has it),
av1 (libsvtav1, what LeRobot writes by default), mpeg4 (ffmpeg's own encoder, the fallback when
libx264 is missing). Reading takes whatever the file holds (LeRobot's AV1 decodes through
libdav1d). Errors are VideoError (an OSError) carrying the file's path; callers add the episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# codec name as recorded in info.json (ffprobe's name) -> (encoders to try, options)
CODECS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "h264": (("libx264",), {"crf": "18", "g": "2", "bf": "0", "preset": "veryfast"}),
    "av1": (("libsvtav1",), {"crf": "30", "g": "2", "preset": "10",
                             "svtav1-params": "log-level=1"}),
    "mpeg4": (("mpeg4",), {"qscale": "2", "g": "2", "bf": "0"}),
}
DEFAULT_CODEC = "h264"


class VideoError(OSError):
    """A video that cannot be written or read; the message names the file."""


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - av is an install requirement
        raise VideoError("PyAV is not installed: pip install av") from None
    return av


def resolve_codec(name: str = DEFAULT_CODEC) -> tuple[str, str]:
    """(codec name for info.json, PyAV encoder) for a requested codec; h264 falls back to mpeg4
    when this ffmpeg build lacks libx264."""
    av = _av()
    if name not in CODECS:
        raise ValueError(f"unknown video codec {name!r}; choose one of {sorted(CODECS)}")
    order = [name] + (["mpeg4"] if name == "h264" else [])
    for codec in order:
        for encoder in CODECS[codec][0]:
            try:
                av.codec.Codec(encoder, "w")
            except Exception:
                continue
            return codec, encoder
    raise VideoError(f"no encoder for {name!r} in this PyAV/ffmpeg build "
                     f"(tried {[e for c in order for e in CODECS[c][0]]})")


@dataclass
class VideoInfo:
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float

    def as_feature_info(self) -> dict:
        """The `info` block LeRobot keeps for a video feature in info.json."""
        fps = int(self.fps) if self.fps.is_integer() else self.fps
        return {"video.height": self.height, "video.width": self.width,
                "video.codec": self.codec, "video.pix_fmt": self.pix_fmt,
                "video.is_depth_map": False, "video.fps": fps, "video.channels": 3,
                "has_audio": False}


class VideoWriter:
    """Appends (H, W, 3) uint8 RGB frames to one MP4; `frames_written` / fps is the time at
    which the next frame will sit (an episode's from_timestamp)."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int,
                 codec: str = DEFAULT_CODEC):
        from fractions import Fraction

        av = _av()
        self.path = Path(path)
        self.fps = float(fps)
        self.codec, encoder = resolve_codec(codec)
        # 4:2:0 needs even sizes; odd ones keep full chroma rather than being cropped.
        pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        if pix_fmt == "yuv444p" and self.codec != "h264":
            raise VideoError(f"{self.path}: {self.codec} needs even image sizes, got "
                             f"{width}x{height}; use codec h264")
        self.info = VideoInfo(self.codec, pix_fmt, int(width), int(height), self.fps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rate = Fraction(self.fps).limit_denominator(1001)
        try:
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream(encoder, rate=rate,
                                                      options=dict(CODECS[self.codec][1]))
            self._stream.width, self._stream.height = int(width), int(height)
            self._stream.pix_fmt = pix_fmt
            self._stream.time_base = Fraction(1) / rate
        except Exception as exc:
            raise VideoError(f"{self.path}: cannot open for writing ({exc})") from None
        self.frames_written = 0
        self._bytes = 0  # encoded so far (the muxer may hold the file back until close)

    def write(self, frames: np.ndarray) -> None:
        av = _av()
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        want = (self.info.height, self.info.width, 3)
        if frames.dtype != np.uint8 or frames.shape[1:] != want:
            raise VideoError(f"{self.path}: frames must be (N, {want[0]}, {want[1]}, 3) uint8, "
                             f"got {frames.shape} {frames.dtype}")
        try:
            for img in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts = self.frames_written
                for packet in self._stream.encode(frame):
                    self._bytes += packet.size
                    self._container.mux(packet)
                self.frames_written += 1
        except Exception as exc:
            raise VideoError(f"{self.path}: encoding failed ({exc})") from None

    def size_bytes(self) -> int:
        """Bytes of video encoded so far (a few frames may still sit in the encoder)."""
        return self._bytes

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except Exception as exc:
            raise VideoError(f"{self.path}: finishing the file failed ({exc})") from None
        finally:
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0,
              codec: str = DEFAULT_CODEC) -> Path:
    """One MP4 of RGB frames (all the same size) at `fps`, e.g. evaluation rollouts; odd sizes
    lose their last row or column, so every player gets 4:2:0. Returns the path."""
    if len(frames) == 0:
        raise ValueError("no frames to write")
    h, w = np.asarray(frames[0]).shape[:2]
    h, w = h - h % 2, w - w % 2
    with VideoWriter(path, fps, w, h, codec) as writer:
        for img in frames:
            writer.write(np.asarray(img, np.uint8)[:h, :w])
    return writer.path


def read_video(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of an MP4's first video stream: (frames (N, H, W, 3) uint8 RGB,
    times (N,) float64 seconds), in display order."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file is missing")
    frames, times = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise VideoError(f"{path}: a frame without a timestamp")
                times.append(float(frame.pts * stream.time_base))
                frames.append(frame.to_ndarray(format="rgb24"))
    except VideoError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, EOFError, ...), MemoryError
        raise VideoError(f"{path}: cannot decode ({type(exc).__name__}: {exc}); the file is "
                         "truncated or damaged") from None
    if not frames:
        raise VideoError(f"{path}: holds no decodable frames; the file is truncated or damaged")
    order = np.argsort(np.asarray(times), kind="stable")
    return np.stack(frames)[order], np.asarray(times, dtype=np.float64)[order]


def cache_dir() -> Path:
    """Where decoded frames are kept: $GENPOL_CACHE_DIR, else $XDG_CACHE_HOME/genpol/frames."""
    import os

    explicit = os.environ.get("GENPOL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "genpol" / "frames"


def read_video_cached(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """read_video, decoded once: the frames are kept in cache_dir() (uncompressed, keyed by
    the file's path, size and modification time), so every later training run, the blind
    control among them, loads them instead of decoding the video again. A cache that cannot be
    written is skipped."""
    import hashlib
    import os
    import tempfile

    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return read_video(path)  # read_video names the missing file
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    cached = cache_dir() / f"{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                return z["frames"], z["times"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry: decode again and replace it
    frames, times = read_video(path)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, frames=frames, times=times)
        os.replace(tmp, cached)  # whole or not at all, even with two readers at once
    except OSError:
        pass
    return frames, times
