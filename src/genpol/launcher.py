"""`genpol bringup`: the launch graph without ros2 launch, one process per node.

Reads the same genpol.graph as bringup.launch.py. genpol's own nodes run as
`python -m genpol.nodes.<name>`; nodes of other ROS packages (robot_state_publisher,
controller_manager, rviz2) need a sourced ROS 2 distribution and are found with `ros2 pkg prefix`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import yaml

from genpol import graph


def parse_launch_args(items: Sequence[str]) -> dict[str, str]:
    """name:=value pairs, as ros2 launch takes them."""
    args = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep:
            raise ValueError(f"launch arguments look like name:=value, got {item!r}")
        args[name] = value
    return graph.resolve_arguments(args)


def _external_executable(spec: graph.NodeSpec) -> str:
    if not shutil.which("ros2"):
        raise RuntimeError(
            f"node {spec.name!r} comes from the ROS package {spec.package!r}, which needs a "
            "sourced ROS 2 distribution (source /opt/ros/jazzy/setup.bash); without one, run "
            "with sim:=true and rviz:=false")
    prefix = subprocess.run(["ros2", "pkg", "prefix", spec.package], capture_output=True,
                            text=True)
    if prefix.returncode != 0:
        raise RuntimeError(f"ROS package {spec.package!r} is not installed "
                           f"(apt install ros-$ROS_DISTRO-{spec.package.replace('_', '-')})")
    return str(Path(prefix.stdout.strip()) / "lib" / spec.package / spec.executable)


def commands(args: dict[str, str], workdir: Path) -> list[tuple[str, list[str]]]:
    """(node name, argv) for every node of the graph these arguments select."""
    out = []
    for spec in graph.select(args):
        params_file, values = graph.parameters(spec, args)
        out.append((spec.name, node_argv(spec, params_file, values, workdir)))
    return out


def node_argv(spec: graph.NodeSpec, params_file: Path | None, values: dict,
              workdir: Path) -> list[str]:
    """argv that runs one node: its parameter file, then `values` overriding it."""
    if spec.package == graph.PACKAGE:
        argv = [sys.executable, "-m", f"genpol.nodes.{spec.executable}"]
    else:
        argv = [_external_executable(spec)]
    argv += graph.node_arguments(spec)
    argv += ["--ros-args", "-r", f"__node:={spec.name}"]
    if params_file:
        argv += ["--params-file", str(params_file)]
    if values:
        # Overrides go through a file too: `-p name:=` cannot carry an empty string.
        extra = workdir / f"{spec.name}.overrides.yaml"
        extra.write_text(yaml.safe_dump({spec.name: {"ros__parameters": values}}))
        argv += ["--params-file", str(extra)]
    return argv


def bringup(launch_args: Sequence[str], duration: float | None = None) -> int:
    """Start every node; stop them all on Ctrl-C, SIGTERM, `duration` or the first one dying."""
    args = parse_launch_args(launch_args)
    with tempfile.TemporaryDirectory(prefix="genpol-bringup-") as tmp:
        cmds = commands(args, Path(tmp))
        procs: list[tuple[str, subprocess.Popen]] = []
        stopping = False
        code = 0

        def stop(*_):
            nonlocal stopping
            stopping = True

        old_int = signal.signal(signal.SIGINT, stop)
        old_term = signal.signal(signal.SIGTERM, stop)
        try:
            for name, argv in cmds:
                print(f"[bringup] starting {name}: {' '.join(argv)}", flush=True)
                procs.append((name, subprocess.Popen(argv, env=os.environ.copy())))
            deadline = time.monotonic() + duration if duration else None
            while not stopping:
                dead = [(n, p.returncode) for n, p in procs if p.poll() is not None]
                if dead:
                    name, rc = dead[0]
                    print(f"[bringup] {name} exited with code {rc}; stopping the graph",
                          flush=True)
                    code = rc or 1
                    break
                if deadline and time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            _stop_all(procs)
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
    return code


def _stop_all(procs: list[tuple[str, subprocess.Popen]], grace: float = 5.0) -> None:
    for _, p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    end = time.monotonic() + grace
    for name, p in procs:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[bringup] {name} ignored Ctrl-C; killing it", flush=True)
            p.kill()
            p.wait()


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


class NodeProcesses:
    """Node processes started one by one, each logging to <log_dir>/<name>.log; a context
    manager that stops them all (Ctrl-C, then a kill after `grace`) however the block ends."""

    def __init__(self, log_dir: Path, grace: float = 5.0):
        self.log_dir = Path(log_dir)
        self.grace = grace
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._logs: list = []

    def __enter__(self) -> "NodeProcesses":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")
        self._logs.append(log)
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy(), preexec_fn=parent_death_signal())
        self.procs.append((name, proc))
        return proc

    def log_tail(self, name: str, chars: int = 2500) -> str:
        try:
            return (self.log_dir / f"{name}.log").read_text()[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        """RuntimeError with the end of its log if any node has exited."""
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"node {name} exited with code {p.returncode}; the end of "
                                   f"{self.log_dir / (name + '.log')}:\n{self.log_tail(name)}")

    def stop(self) -> None:
        _stop_all(self.procs, self.grace)
        for log in self._logs:
            log.close()
        self._logs.clear()
