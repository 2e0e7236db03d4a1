"""`genpol record --sim --workers N`: N recording graphs at once, each a `genpol record --sim`
child process on its own private ROS domain, recording whole start poses into OUT/worker-K.

Why: a scripted episode plays in real time and one graph keeps well under a core busy, so on a
2-core machine two graphs record about twice as many episodes per minute. Worker K gets the
start poses after those of workers 0..K-1 (its --seed is the global seed plus their starts), so
the start poses and layouts are those one graph would have recorded (and with --mode alternate
or a fixed mode, the modes too; --mode random draws from each worker's seed); `genpol dataset
build OUT` reads every worker's folder. The workers run in their own sessions: Ctrl-C reaches
them once, as the supervisor's SIGINT, and each discards its open episode.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from genpol import rosenv
from genpol.launcher import Supervisor
from genpol.recording import episode as ep
from genpol.recording import list_episodes

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


class _Lines:
    """New whole lines of each worker's log, printed with its name (the workers' progress)."""

    def __init__(self, procs: Supervisor):
        self.procs = procs
        self.offsets: dict[str, int] = {}

    def flush(self) -> None:
        assert self.procs.log_dir is not None  # the workers write logs
        for name in self.procs.procs:
            try:
                with open(self.procs.log_dir / f"{name}.log", "rb") as f:
                    f.seek(self.offsets.get(name, 0))
                    data = f.read()
            except OSError:
                continue
            whole = data[:data.rfind(b"\n") + 1]
            self.offsets[name] = self.offsets.get(name, 0) + len(whole)
            for line in whole.decode(errors="replace").splitlines():
                if not line.startswith("$ "):  # the command line the log starts with
                    print(f"[{name}] {line}", flush=True)


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
        before[k] = set(list_episodes(worker_dir(out, k)))
    env = {key: v for key, v in os.environ.items() if key != "ROS_DOMAIN_ID"}
    if settings.progress:
        print(f"[record] {len(parts)} workers: "
              + ", ".join(f"worker-{k} {n} episodes (seed {settings.seed + first})"
                          for k, (first, n) in enumerate(parts)), flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="genpol-record-workers-"))
    # SIGINT first: a worker stopped like Ctrl-C discards its open episode, then stops its nodes
    with Supervisor(log_dir, grace=STOP_GRACE_S, tag="record") as procs:
        for k, (first, n) in enumerate(parts):
            procs.start(f"worker-{k}", worker_command(settings, k, first, n), env,
                        own_session=True)
        watch(procs, _Lines(procs) if settings.progress else None)
    if not settings.keep_logs:  # (a failure leaves them: its message names the folder)
        shutil.rmtree(log_dir, ignore_errors=True)
    return [p for k in range(len(parts)) for p in list_episodes(worker_dir(out, k))
            if p not in before[k]]


def watch(procs: Supervisor, lines: _Lines | None = None) -> None:
    """Until every worker has ended well; the first that fails raises with the end of its log
    (leaving the `with` block of the supervisor then stops the others)."""
    while True:
        if lines is not None:
            lines.flush()
        codes = {name: p.poll() for name, p in procs.procs.items()}
        for name, code in codes.items():
            if code not in (None, 0):
                raise RuntimeError(f"recording {name} exited with {code}; the end of its log "
                                   f"({procs.log_dir}/{name}.log):\n{procs.log_tail(name, 1500)}")
        if all(code == 0 for code in codes.values()):
            if lines is not None:
                lines.flush()
            return
        time.sleep(0.2)
