"""One way to run a node process: init, spin, and a clean shutdown on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


def run_node(node_cls, args=None) -> None:
    rclpy.init(args=args)
    # SIGTERM (from `genpol bringup` or a process manager) shuts down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = None
    try:
        node = node_cls()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
