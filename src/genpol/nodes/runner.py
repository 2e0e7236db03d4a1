"""One way to run a node process: init, spin, and a clean shutdown on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal

import rclpy
from rclpy.executors import (Executor, ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)


def make_executor(threads: int = 2, context=None) -> Executor:
    """The rclpy executor a node process spins: one thread, or a pool of `threads`."""
    if threads == 1:
        return SingleThreadedExecutor(context=context)
    return MultiThreadedExecutor(num_threads=threads, context=context)


def run_node(node_cls, args=None, threads: int = 2) -> None:
    """threads=1 runs every callback on the main thread (needed where a callback owns a thread-
    bound resource, such as the simulator's OpenGL context)."""
    rclpy.init(args=args)
    # SIGTERM (from `genpol bringup` or a process manager) shuts down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = None
    try:
        node = node_cls()
        executor = make_executor(threads)
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
