"""The executor node measured in the benchmark's own process (`genpol bench executor`).

It is the node its process runs (ExecutorNode, config/executor.yaml under the variant's
overrides, spun by the rclpy executor its main() uses), with the start time of every tick
recorded, so the benchmark times exactly what a bringup runs. The ROS side of
genpol.jobs.bench_executor, which stays free of rclpy.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from rclpy.parameter import Parameter

from genpol.nodes.executor import SPIN_THREADS, ExecutorNode
from genpol.nodes.spin import make_executor
from genpol.nodes.session import Session


def session(params_file: str | Path) -> Session:
    """A client session whose nodes read `params_file` (as the node process's --params-file)."""
    return Session(args=["--ros-args", "--params-file", str(params_file)])


class TickProbe:
    """One ExecutorNode spinning in `session` until close()."""

    def __init__(self, session: Session, overrides: dict[str, Any], threads: int | None = None):
        self.session = session
        self.threads = threads or SPIN_THREADS
        self.node = ExecutorNode(context=session.context, parameter_overrides=[
            Parameter(name, value=value) for name, value in overrides.items()])
        self.executor = make_executor(self.threads, context=session.context)  # as run_node
        try:
            session.spin(self.node, self.executor)
        except BaseException:
            self.node.destroy_node()
            raise

    def counts(self) -> tuple[int, int, int]:
        """(chunks received, chunks accepted, commands published) so far."""
        n = self.node
        return n.chunks_received, n.chunks_accepted, n.commands_published

    def record_ticks(self) -> collections.deque[float]:
        """Keep the monotonic start time of every tick from now on."""
        return self.node.record_tick_times()

    def stop_recording(self) -> None:
        self.node.tick_times = None

    def describe(self) -> dict[str, Any]:
        """How the node ticks and spins, as the benchmark's results row reports it."""
        n = self.node
        thread = n.tick_source == "thread"
        return {"tick_source": n.tick_source,
                "tick_priority": n.tick_priority if thread else 0,
                "tick_spin_s": n.tick_spin_s if thread else 0.0,
                "tick_realtime": n.tick_realtime,
                "spin_executor": type(self.executor).__name__, "spin_threads": self.threads,
                "rate_hz": n.config.rate_hz}

    def close(self) -> None:
        self.session.stop(self.node)
