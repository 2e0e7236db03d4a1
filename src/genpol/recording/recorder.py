"""EpisodeRecorder: the recorder node's core, without ROS. Episodes in, bag directories out.

start() opens episode_<n>/ under the dataset directory (refused, with the reason, when the
directory cannot be written or the disk is nearly full), write() appends serialized messages,
flush() hands them to the OS at least every flush_period_s, stop() finishes the bag and writes the
outcome into episode.yaml, discard() marks an episode discarded. A write error (a full disk, a
vanished directory) stops the episode's writing at once: `error` says why, the node reports it,
and stop() answers with it; what was flushed before stays readable. Thread-safe.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

from genpol.recording import episode as ep
from genpol.recording.writer import (BACKENDS, COMPRESSIONS, BagWriter, TopicInfo,
                                     open_writer)


class RecordingError(RuntimeError):
    """A request the recorder cannot carry out; the message is meant for the operator."""


@dataclass
class StopResult:
    index: int
    path: Path
    counts: dict[str, int]
    duration_s: float
    metadata: dict[str, Any]


class EpisodeRecorder:
    def __init__(self, dataset_dir: str | Path, *, backend: str = "auto",
                 flush_period_s: float = 0.5, min_free_mb: float = 100.0,
                 compression: str = "none", clock_ns: Callable[[], int] = time.time_ns):
        if flush_period_s <= 0:
            raise ValueError("flush_period_s must be > 0")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.dataset_dir = Path(dataset_dir).expanduser()
        self.backend = backend
        self.flush_period_s = float(flush_period_s)
        self.min_free_bytes = int(min_free_mb * 1e6)
        self.compression = compression
        self.clock_ns = clock_ns
        self._lock = threading.RLock()
        self._writer: BagWriter | None = None
        self._meta: dict[str, Any] | None = None
        self._last_flush = 0.0
        self._last_finished: tuple[int, Path] | None = None
        self.error: str | None = None  # the open episode's write error, if any

    # ---- state ---------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self._writer is not None

    @property
    def episode_index(self) -> int | None:
        return self._meta["episode_index"] if self._meta else None

    @property
    def episode_dir(self) -> Path | None:
        return self._writer.bag_dir if self._writer else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._writer.counts) if self._writer else {}

    def has_topic(self, topic: str) -> bool:
        with self._lock:
            return self._writer is not None and topic in self._writer.counts

    # ---- episodes ------------------------------------------------------------------------------
    def start(self, *, task: str = "", fps: float = 30.0, joint_names: Sequence[str] = (),
              topics: Sequence[TopicInfo] = ()) -> tuple[int, Path]:
        """Open the next episode and register the topics known so far."""
        with self._lock:
            if self._writer is not None:
                raise RecordingError(f"episode {self.episode_index} is still recording; stop or "
                                     "discard it first")
            reason = ep.check_writable(self.dataset_dir, self.min_free_bytes)
            if reason:
                raise RecordingError(f"not recording: {reason}")
            index = ep.next_index(self.dataset_dir)
            bag_dir = self.dataset_dir / ep.episode_name(index)
            start_ns = self.clock_ns()
            try:
                writer = open_writer(bag_dir, self.backend, self.compression,
                                     {"genpol.task": task})
            except (OSError, RuntimeError) as exc:
                raise RecordingError(f"not recording: cannot create the bag {bag_dir}: "
                                     f"{getattr(exc, 'strerror', None) or exc}") from None
            meta = ep.new_metadata(index, task=task, fps=fps, joint_names=list(joint_names),
                                   topics={t.topic: t.msgtype for t in topics},
                                   start_ns=start_ns, backend=writer.backend,
                                   flush_period_s=self.flush_period_s)
            try:
                for info in topics:
                    writer.add_topic(info)
                writer.flush()
                ep.make_reserve(bag_dir)
                ep.write_metadata(bag_dir, meta)
            except (OSError, KeyError) as exc:
                writer.abort()
                ep.release_reserve(bag_dir)
                raise RecordingError(f"not recording: cannot write {bag_dir}: "
                                     f"{getattr(exc, 'strerror', None) or exc}") from None
            self._writer, self._meta, self.error = writer, meta, None
            self._last_flush = time.monotonic()
            return index, bag_dir

    def add_topic(self, info: TopicInfo) -> str | None:
        """Register a topic whose type became known while the episode is open; the reason if
        it cannot be recorded (its message definition is unknown)."""
        with self._lock:
            if self._writer is None or self.error or info.topic in self._writer.counts:
                return None
            try:
                self._writer.add_topic(info)
            except KeyError as exc:
                return str(exc.args[0] if exc.args else exc)
            except OSError as exc:
                self._fail(exc)
                return None
            if self._meta is not None:
                self._meta["topics"][info.topic] = info.msgtype
            return None

    def write(self, topic: str, stamp_ns: int, data: bytes,
              publish_ns: int | None = None) -> bool:
        """Append one serialized message; False if no episode takes it (or writing failed)."""
        with self._lock:
            if self._writer is None or self.error or topic not in self._writer.counts:
                return False
            try:
                self._writer.write(topic, stamp_ns, data, publish_ns)
                if time.monotonic() - self._last_flush >= self.flush_period_s:
                    self._flush_locked()
            except OSError as exc:
                self._fail(exc)
                return False
            return True

    def flush(self) -> None:
        """Hand everything written so far to the OS (called on a timer, and by write())."""
        with self._lock:
            if self._writer is None or self.error:
                return
            try:
                self._flush_locked()
            except OSError as exc:
                self._fail(exc)

    def _flush_locked(self) -> None:
        assert self._writer is not None  # callers hold the lock with an episode open
        self._writer.flush()
        self._last_flush = time.monotonic()

    def _fail(self, exc: OSError) -> None:
        assert self._writer is not None
        self.error = (f"writing {self._writer.bag_dir} failed: "
                      f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
        self._writer.abort()
        # Say so on disk now (a recorder killed later must not leave "recording"), in the room
        # the reserve kept; stop() writes the final episode.yaml over it.
        ep.release_reserve(self._writer.bag_dir)
        if self._meta is not None:
            with contextlib.suppress(OSError):
                ep.write_metadata(self._writer.bag_dir,
                                  self._meta | {"status": ep.FAILED, "error": self.error})

    def stop(self, *, success: bool | None = None, mode: str | None = None, notes: str = "",
             task: str | None = None, extra: dict[str, Any] | None = None) -> StopResult:
        """Finish the open episode with its outcome. RecordingError if none is open, or if its
        writing failed (the episode is then kept with status "failed")."""
        with self._lock:
            if self._writer is None:
                raise RecordingError("no episode is recording (call start_episode first)")
            writer, meta = self._writer, self._meta
            assert meta is not None  # set together with the writer
            stop_ns = self.clock_ns()
            meta.update(success=success, mode=mode or None, notes=notes or "",
                        stop_time=ep.wall_time(stop_ns), stop_time_ns=stop_ns,
                        message_counts=dict(writer.counts))
            if task is not None:
                meta["task"] = task
            if extra:
                meta["extra"].update(extra)
            error = self.error
            if error is None:
                try:
                    writer.close(ep.bag_custom_data(meta | {"status": ep.COMPLETE}))
                except OSError as exc:
                    error = f"finishing {writer.bag_dir} failed: {exc.strerror or exc}"
                    writer.abort()
            meta["status"] = ep.FAILED if error else ep.COMPLETE
            if error:
                meta["error"] = error
            ep.release_reserve(writer.bag_dir)
            try:
                ep.write_metadata(writer.bag_dir, meta)
            except OSError as exc:
                error = (error + "; " if error else "") + \
                    f"writing {writer.bag_dir / ep.EPISODE_FILE} failed: {exc.strerror or exc}"
            self._writer, self._meta, self.error = None, None, None
            self._last_finished = (meta["episode_index"], writer.bag_dir)
            if error:
                raise RecordingError(f"episode {meta['episode_index']} ({writer.bag_dir}) "
                                     f"failed: {error}. Messages flushed before the failure are "
                                     "kept and readable.")
            return StopResult(meta["episode_index"], writer.bag_dir, dict(writer.counts),
                              (stop_ns - meta["start_time_ns"]) * 1e-9, meta)

    def discard(self) -> str:
        """Discard the open episode, or else the last one this recorder finished: it is marked
        discarded in its episode.yaml (list_episodes skips it; its files stay until removed)."""
        with self._lock:
            if self._writer is not None:
                writer, meta = self._writer, self._meta
                assert meta is not None
                writer.abort()
                ep.release_reserve(writer.bag_dir)
                self._writer, self._meta, self.error = None, None, None
                index, path, what = meta["episode_index"], writer.bag_dir, "recording"
            elif self._last_finished is not None:
                (index, path), what = self._last_finished, "last finished"
                meta = ep.read_metadata(path) or {}
            else:
                raise RecordingError("nothing to discard: no episode is recording and none "
                                     "was finished since the recorder started")
            self._last_finished = None
            meta["status"] = ep.DISCARDED
            try:
                ep.write_metadata(path, meta)
            except OSError as exc:
                raise RecordingError(f"could not mark {path} discarded: "
                                     f"{exc.strerror or exc}") from None
            return f"discarded the {what} episode {index} ({path})"

    def close(self) -> None:
        """Shutting down: finish an open episode as it stands (success unknown)."""
        with self._lock:
            if self._writer is not None:
                with contextlib.suppress(RecordingError):
                    self.stop(notes="recorder shut down while recording")

