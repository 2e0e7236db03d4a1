"""`genpol record --sim --workers N`: N recording graphs at once, each a `genpol record --sim`
child process on its own private ROS domain, recording whole start poses into OUT/worker-K.

Why: a scripted episode plays in real time and one graph keeps well under a core busy, so on a
2-core machine two graphs record about twice as many episodes per minute. Worker K gets the
start poses after those of workers 0..K-1 (its --seed is the global seed plus their starts), so
the episodes are those one graph would have recorded; `genpol dataset build OUT` reads every
worker's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from genpol import rosenv
from genpol.recording import episode as ep

if TYPE_CHECKING:
    from genpol.jobs.record import RecordSettings

STOP_GRACE_S = 15.0  # a stopped worker discards its open episode and stops its nodes


def split(episodes: int, workers: int, per_start: int) -> list[tuple[int, int]]:
    """(start poses before it, episodes) per worker: whole start poses each, as even as they go;
    never more workers than start poses."""
    starts = -(-episodes // per_start)
    workers = max(1, min(workers, starts))
    base, extra = divmod(starts, workers)
    out, first, left = [], 0, episodes
    for w in range(workers):
        n_starts = base + (1 if w < extra else 0)
        n = min(n_starts * per_start, left)
        out.append((first, n))
        first, left = first + n_starts, left - n
    return out


def worker_dir(out: Path, k: int) -> Path:
    return Path(out) / f"worker-{k}"


def worker_command(settings: RecordSettings, k: int, first_start: int, episodes: int
                   ) -> list[str]:
    s = settings
    cmd = [sys.executable, "-m", "genpol", "record", "--sim", "--task", s.task,
           "--episodes", str(episodes), "--out", str(worker_dir(Path(s.out), k)),
           "--seed", str(s.seed + first_start), "--scene-seed", str(s.scene_seed),
           "--scene-spread", repr(s.scene_spread), "--mode", s.mode,
           "--episodes-per-start", str(s.episodes_per_start), "--settle-s", repr(s.settle_s),
           "--backend", s.backend]
    return cmd + (["--no-cameras"] if not s.cameras else []) + (
        ["--keep-logs"] if s.keep_logs else [])


class _Worker:
    """One child `genpol record --sim`; its output lines, prefixed, and the last few kept."""

    def __init__(self, k: int, cmd: list[str], env: dict[str, str], show: bool):
        self.k = k
        self.tail: deque[str] = deque(maxlen=20)
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, args=(show,), daemon=True)
        self.reader.start()

    def _read(self, show: bool) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            if show:
                print(f"[worker {self.k}] {line}", flush=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # like Ctrl-C: discard the open episode

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(timeout=2.0)
        return code


def record_parallel(settings: RecordSettings) -> list[Path]:
    """Record settings.episodes over settings.workers children; returns the new episode bags.
    A worker that fails stops the others (each discards only its open episode) and raises."""
    if rosenv.domain_is_users():
        raise ValueError(f"--workers {settings.workers} starts {settings.workers} graphs, each on "
                         f"its own private ROS domain, but ROS_DOMAIN_ID="
                         f"{os.environ.get('ROS_DOMAIN_ID')} is set: unset it, or record with "
                         "--workers 1 to share that domain")
    out = Path(settings.out).expanduser().resolve()
    parts = split(settings.episodes, settings.workers, settings.episodes_per_start)
    before: dict[int, set[Path]] = {}
    for k in range(len(parts)):
        reason = ep.check_writable(worker_dir(out, k), 0)
        if reason:
            raise RuntimeError(reason)
        before[k] = {p for _, p in ep.episode_dirs(worker_dir(out, k))}
    env = {key: v for key, v in os.environ.items() if key != "ROS_DOMAIN_ID"}
    if settings.progress:
        print(f"[record] {len(parts)} workers: "
              + ", ".join(f"worker-{k} {n} episodes (seed {settings.seed + first})"
                          for k, (first, n) in enumerate(parts)), flush=True)
    workers: list[_Worker] = []
    try:
        for k, (first, n) in enumerate(parts):
            workers.append(_Worker(k, worker_command(settings, k, first, n), env,
                                   settings.progress))
        _watch(workers)
    except BaseException:
        for w in workers:
            w.stop()
        for w in workers:
            w.wait(STOP_GRACE_S)
        raise
    from genpol.recording.bag import list_episodes

    return [p for k in range(len(parts)) for p in list_episodes(worker_dir(out, k))
            if p not in before[k]]


def _watch(workers: list[_Worker]) -> None:
    """Until every worker ends; the first that fails raises with its last lines."""
    while True:
        codes = [w.proc.poll() for w in workers]
        for w, code in zip(workers, codes, strict=True):
            if code not in (None, 0):
                w.reader.join(timeout=2.0)
                last = "\n  ".join(list(w.tail)[-8:])
                raise RuntimeError(f"recording worker {w.k} exited with {code}; its last "
                                   f"lines:\n  {last}")
        if all(code == 0 for code in codes):
            for w in workers:
                w.reader.join(timeout=2.0)
            return
        time.sleep(0.2)
