"""The one supervisor for node processes: `genpol bringup`, the jobs, the benchmarks, the tests.

`Supervisor` starts each node of `graph.resolve()` as its own process (genpol's nodes as
`python -m genpol.nodes.<name>`; nodes of other ROS packages, which need a sourced ROS 2
distribution, from `ros2 pkg prefix`), watches them, and stops them all one way: SIGINT (a clean
rclpy shutdown), then SIGTERM, then SIGKILL, each after a grace period. Children also get
SIGTERM from Linux if this process dies without stopping them (the parent-death signal), so no
node outlives its supervisor and keeps publishing into whatever starts next.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genpol import graph

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def _pairs(items: Sequence[str]) -> dict[str, str]:
    args = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep:
            raise ValueError(f"launch arguments look like name:=value, got {item!r}")
        args[name] = value
    return args


def parse_launch_args(items: Sequence[str]) -> dict[str, str]:
    """name:=value pairs, as ros2 launch takes them."""
    return graph.resolve_arguments(_pairs(items))


def parse_bringup_args(items: Sequence[str]) -> tuple[dict[str, str],
                                                      dict[str, dict[str, Any]]]:
    """name:=value pairs: (launch arguments, {node: {parameter: value}} from NODE.PARAM:=VALUE),
    as graph.resolve takes them; the launch file splits them the same way."""
    args, overrides = graph.split_arguments(_pairs(items))
    return graph.resolve_arguments(args), overrides


def _external_executable(node: graph.ResolvedNode) -> str:
    if not shutil.which("ros2"):
        raise RuntimeError(
            f"node {node.name!r} comes from the ROS package {node.package!r}, which needs a "
            "sourced ROS 2 distribution (source /opt/ros/jazzy/setup.bash); without one, run "
            "with sim:=true and rviz:=false")
    prefix = subprocess.run(["ros2", "pkg", "prefix", node.package], capture_output=True,
                            text=True)
    if prefix.returncode != 0:
        raise RuntimeError(f"ROS package {node.package!r} is not installed "
                           f"(apt install ros-$ROS_DISTRO-{node.package.replace('_', '-')})")
    return str(Path(prefix.stdout.strip()) / "lib" / node.package / node.executable)


def node_argv(node: graph.ResolvedNode, workdir: Path) -> list[str]:
    """argv that runs one resolved node: its parameter files, then its parameter values
    (written to <workdir>/<name>.overrides.yaml) overriding them."""
    if node.own:
        argv = [sys.executable, "-m", f"genpol.nodes.{node.executable}"]
    else:
        argv = [_external_executable(node)]
    argv += list(node.arguments)
    argv += ["--ros-args", "-r", f"__node:={node.name}"]
    if node.namespace:
        argv += ["-r", f"__ns:=/{node.namespace}"]
    for path in node.params_files:
        argv += ["--params-file", str(path)]
    if node.params:
        # Values go through a file too: `-p name:=` cannot carry an empty string. Keyed by the
        # full name: a namespaced node does not match its bare name.
        extra = workdir / f"{process_name(node)}.overrides.yaml"
        extra.write_text(yaml.safe_dump({node.full_name: {"ros__parameters": node.params}}))
        argv += ["--params-file", str(extra)]
    return argv


def process_name(node: graph.ResolvedNode) -> str:
    """The supervisor's (and the log file's) name for a node: unique across namespaces."""
    return f"{node.namespace}.{node.name}" if node.namespace else node.name


def parent_death_signal():
    """preexec_fn asking Linux to SIGTERM a child if its parent dies without cleaning up."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@dataclass(frozen=True)
class Exited:
    """A process that ended on its own: its name, exit code and the end of its log."""

    name: str
    code: int
    log: Path | None
    tail: str

    def message(self) -> str:
        if self.log is None:
            return f"node {self.name} exited with code {self.code}"
        return (f"node {self.name} exited with code {self.code}; the end of "
                f"{self.log}:\n{self.tail}")


class Supervisor:
    """Node processes of one graph, stopped on leaving the `with` block however it ends.

    log_dir None: the nodes print to this console (bringup); else each writes
    <log_dir>/<name>.log (jobs, benchmarks, tests), whose end a failure quotes.
    """

    def __init__(self, log_dir: str | Path | None = None, grace: float = 5.0,
                 tag: str = "bringup"):
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.grace = grace
        self.tag = tag
        self.procs: dict[str, subprocess.Popen] = {}
        self.argv: dict[str, list[str]] = {}  # each process's command line, for reports
        self._workdir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Supervisor:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _say(self, text: str) -> None:
        if self.log_dir is None:
            print(f"[{self.tag}] {text}", flush=True)

    # ---- starting --------------------------------------------------------------------------
    def start_graph(self, nodes: Iterable[graph.ResolvedNode], own_session: bool = False
                    ) -> None:
        """Start every node; all argv are built first, so a node that cannot run (a ROS package
        missing) is refused before any starts. own_session: as for `start`."""
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix=f"genpol-{self.tag}-")
        workdir = Path(self._workdir.name)
        argvs = [(process_name(node), node_argv(node, workdir)) for node in nodes]
        for name, argv in argvs:
            self.start(name, argv, own_session=own_session)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              own_session: bool = False) -> subprocess.Popen:
        """Start one process under this supervisor (env: instead of this process's).
        own_session: out of the terminal's process group, so Ctrl-C reaches it only as the
        supervisor's one SIGINT (a job that cleans up on SIGINT is not interrupted twice)."""
        if name in self.procs:
            raise ValueError(f"a process named {name!r} is already running here")
        self._say(f"starting {name}: {' '.join(argv)}")
        self.argv[name] = list(argv)
        env = os.environ.copy() if env is None else dict(env)
        if self.log_dir is None:
            proc = self._popen(argv, None, env, own_session)
        else:
            # The child writes on through its own copy of the file; ours closes at once.
            with open(self.log_dir / f"{name}.log", "w") as log:
                log.write("$ " + " ".join(argv) + "\n")
                log.flush()
                proc = self._popen(argv, log, env, own_session)
        self.procs[name] = proc
        return proc

    @staticmethod
    def _popen(argv: list[str], log, env: dict[str, str], own_session: bool
               ) -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT if log else None,
                                env=env, preexec_fn=parent_death_signal(),
                                start_new_session=own_session)

    # ---- watching --------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def log_tail(self, name: str, chars: int = 2500) -> str:
        if self.log_dir is None:
            return ""
        try:
            return (self.log_dir / f"{name}.log").read_text()[-chars:]
        except OSError:
            return ""

    def exited(self) -> Exited | None:
        """The first process that has ended, or None while all run."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                log = self.log_dir / f"{name}.log" if self.log_dir is not None else None
                return Exited(name, p.returncode, log, self.log_tail(name))
        return None

    def check(self) -> None:
        """RuntimeError naming the process that has ended (with the end of its log), if any."""
        gone = self.exited()
        if gone is not None:
            raise RuntimeError(gone.message())

    def watch(self, duration: float | None = None,
              stop: threading.Event | None = None) -> int:
        """Wait until `stop` is set (0), `duration` seconds pass (0) or a process ends (its exit
        code, 1 if that was 0)."""
        deadline = time.monotonic() + duration if duration else None
        while not (stop is not None and stop.is_set()):
            gone = self.exited()
            if gone is not None:
                self._say(f"{gone.name} exited with code {gone.code}; stopping the graph")
                return gone.code or 1
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return 0

    # ---- stopping --------------------------------------------------------------------------
    def stop(self) -> dict[str, int]:
        """SIGINT, then SIGTERM, then SIGKILL to whatever is still running, `grace` seconds
        apart; returns every process's exit code."""
        for sig in STOP_SIGNALS:
            alive = {n: p for n, p in self.procs.items() if p.poll() is None}
            if not alive:
                break
            if sig != STOP_SIGNALS[0]:
                self._say(f"{', '.join(alive)} still running; sending {sig.name}")
            for p in alive.values():
                p.send_signal(sig)
            end = time.monotonic() + self.grace
            for p in alive.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(max(0.1, end - time.monotonic()))
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return {name: p.returncode for name, p in self.procs.items()}


def status_line(enabled: bool = True) -> contextlib.AbstractContextManager:
    """The graph's status line on stdout once a second for the `with` block
    (genpol.nodes.status_client); nothing where it is off or rclpy is missing."""
    if not enabled:
        return contextlib.nullcontext()
    try:
        from genpol.nodes import status_client
    except ImportError:
        return contextlib.nullcontext()
    return status_client.printing()


def bringup(launch_args: Sequence[str], duration: float | None = None,
            status: bool = True) -> int:
    """Start every node; stop them all on Ctrl-C, SIGTERM, `duration` or the first one dying.
    `status`: print the graph's status line once a second meanwhile."""
    nodes = graph.resolve(*parse_bringup_args(launch_args))
    stop = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: stop.set())
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Supervisor() as supervisor:
            supervisor.start_graph(nodes)
            with status_line(status):  # stopped before the graph, so it never reports it gone
                return supervisor.watch(duration, stop)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
