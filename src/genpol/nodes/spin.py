"""One way to run a node process: init, spin, and a clean shutdown on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import time

import rclpy
from rclpy.executors import (Executor, ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)


def make_executor(threads: int = 1, context=None) -> Executor:
    """The rclpy executor a node process spins: one thread, or a pool of `threads`."""
    if threads == 1:
        return SingleThreadedExecutor(context=context)
    return MultiThreadedExecutor(num_threads=threads, context=context)


EXIT_GRACE_S = 5.0
#: how long a RuntimeError out of spin waits for a shutdown in progress to show in the context
SHUTDOWN_SETTLE_S = 0.5


def _exit_watchdog(context, grace: float) -> None:
    """Once the context is shut down (Ctrl-C, SIGTERM, the parent's death), give the node
    `grace` seconds to leave, then end the process: a callback stuck in C must not keep a dead
    node in the graph."""
    while context.ok():
        time.sleep(0.2)
    time.sleep(grace)
    os._exit(128 + signal.SIGTERM)


def run_node(node_cls, args=None, threads: int = 1) -> None:
    """One thread by default: every callback on the main thread (needed where a callback owns a
    thread-bound resource, such as the simulator's OpenGL context). rclpy's MultiThreadedExecutor
    keeps handing a ready subscription to its pool until a worker has taken the message; with
    100 Hz topics on a loaded 2-core machine that loop took a whole core (seen in the recorder and
    sim_leader during `genpol record --sim`), so ask for threads > 1 only where callbacks block."""
    # rclpy's own handlers turn SIGINT and SIGTERM into a context shutdown that wakes the wait
    # set; a Python-level handler would only run once rcl_wait returns, which on an idle node
    # is never.
    rclpy.init(args=args)
    threading.Thread(target=_exit_watchdog, args=(rclpy.get_default_context(), EXIT_GRACE_S),
                     name="exit-watchdog", daemon=True).start()
    node = None
    try:
        node = node_cls()
        executor = make_executor(threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # Ctrl-C shuts the context down under a running spin: a subscription taken in that
        # moment fails inside rclpy ("Unable to convert call argument '0' to Python object").
        # That is the shutdown, not a fault; any other error still surfaces. The signal may
        # land a moment before the context says so: give it that moment.
        context = rclpy.get_default_context()
        deadline = time.monotonic() + SHUTDOWN_SETTLE_S
        while context.ok() and time.monotonic() < deadline:
            time.sleep(0.01)
        if context.ok():
            raise
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
