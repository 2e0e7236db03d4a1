"""A node process leaves the graph on SIGTERM (what `genpol record` children get when their
parent dies): at once when idle, and within the grace period even when a callback never returns.
A lingering node would keep publishing into whatever starts next on the same domain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent("""
    import sys, time
    from rclpy.node import Node
    from genpol.nodes import spin

    spin.EXIT_GRACE_S = 1.0
    stuck = sys.argv[1] == "stuck"

    class Probe(Node):
        def __init__(self):
            super().__init__("spin_probe")
            # Idle: nothing ever arrives, so rcl_wait blocks without a timeout.
            if stuck:
                self.create_timer(0.05, self.block)
            print("ready", flush=True)

        def block(self):
            print("blocking", flush=True)
            time.sleep(3600)

    spin.run_node(Probe)
""")


def _run_and_terminate(mode: str) -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    try:
        expect = "blocking" if mode == "stuck" else "ready"
        for line in proc.stdout:
            if line.strip() == expect:
                break
        time.sleep(0.3)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        return code, time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_idle_node_leaves_at_once_on_sigterm(ros_env):
    code, took = _run_and_terminate("idle")
    assert code == 0
    assert took < 3.0, f"an idle node took {took:.1f} s to leave on SIGTERM"


def test_node_stuck_in_a_callback_is_ended_after_the_grace_period(ros_env):
    code, took = _run_and_terminate("stuck")
    assert code == 128 + signal.SIGTERM
    assert 0.9 < took < 10.0, took
