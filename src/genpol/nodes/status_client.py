"""The node `genpol status` and `genpol bringup` read the graph's one-line status through.

It keeps the latest planner and executor ~/status (latched: a client that joins late gets them
at once) and sim_arm's episode status, each with the time it arrived, so a node that has gone
quiet shows as silent rather than as its last words; genpol.status_line formats them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rclpy.context import Context
from std_msgs.msg import String

from genpol import topics
from genpol.nodes.qos import LATCHED
from genpol.nodes.session import ClientNode, Session
from genpol.status_line import format_line

#: (key, topic, QoS) of each status the line is made of
STATUSES = (("planner", topics.PLANNER_STATUS, LATCHED),
            ("executor", topics.EXECUTOR_STATUS, LATCHED),
            ("sim", topics.SIM_EPISODE, 10))
#: --once: after the first status, how long to wait for the others the graph publishes
SETTLE_S = 1.0


def _stamped(msg: String) -> tuple[float, dict]:
    status = json.loads(msg.data)  # a ValueError drops the message
    if not isinstance(status, dict):
        raise ValueError("a status is a JSON object")
    return time.monotonic(), status


def no_graph_message(timeout: float) -> str:
    network = f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID') or '0 (unset)'}"
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        network += f", ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}"
    return (f"no genpol graph found: is it running, with the same ROS_DOMAIN_ID? No status on "
            f"{topics.PLANNER_STATUS} or {topics.EXECUTOR_STATUS} within {timeout:g} s "
            f"(here: {network})")


class StatusClient(ClientNode):
    def __init__(self, context: Context):
        super().__init__(f"genpol_status_{os.getpid()}", context,
                         start_parameter_services=False)
        for key, topic, qos in STATUSES:
            self.keep_latest(key, String, topic, qos, _stamped)

    def received(self) -> list[str]:
        return [key for key, _, _ in STATUSES if self.latest(key) is not None]

    def complete(self) -> bool:
        """Every status whose topic has a publisher has arrived."""
        return all(self.latest(key) is not None or self.count_publishers(topic) == 0
                   for key, topic, _ in STATUSES)

    def line(self) -> str | None:
        """The status line; None until a planner or executor status has arrived."""
        got: dict[str, Any] = {key: self.latest(key) for key, _, _ in STATUSES}
        if got["planner"] is None and got["executor"] is None:
            return None
        now = time.monotonic()
        ages = {key: now - v[0] for key, v in got.items() if v is not None}
        status = {key: v[1] if v is not None else None for key, v in got.items()}
        return format_line(status["planner"], status["executor"], status["sim"], ages)


def wait_line(client: StatusClient, timeout: float) -> str | None:
    """The line once every status the graph publishes has arrived (at most SETTLE_S after the
    first), or whatever arrived within `timeout`; None if nothing did."""
    end = time.monotonic() + timeout
    first: float | None = None
    while time.monotonic() < end:
        if client.line() is not None:
            first = first or time.monotonic()
            if client.complete() or time.monotonic() - first > SETTLE_S:
                break
        time.sleep(0.05)
    return client.line()


def run(once: bool = False, timeout: float = 5.0, period_s: float = 1.0) -> int:
    """`genpol status`: print the line (once, or every `period_s` until Ctrl-C); 1 if no
    status arrives within `timeout` seconds."""
    with Session() as session:
        client = session.spin(StatusClient(session.context))
        line = wait_line(client, timeout)
        if line is None:
            print(f"genpol status: {no_graph_message(timeout)}", file=sys.stderr)
            return 1
        print(line, flush=True)
        while not once:
            time.sleep(period_s)
            print(client.line(), flush=True)
    return 0


def _print_every(client: StatusClient, period_s: float, stop: threading.Event,
                 out: Callable[[str], None]) -> None:
    while not stop.wait(period_s):
        line = client.line()
        if line is not None:
            out(line)


@contextlib.contextmanager
def printing(period_s: float = 1.0,
             out: Callable[[str], None] = lambda line: print(line, flush=True)) -> Iterator[None]:
    """For the `with` block, `out` the line every `period_s` seconds once a status arrived
    (`genpol bringup`). A ROS that cannot start here costs the line, never the block."""
    session: Session | None = None
    try:
        session = Session()
        client = session.spin(StatusClient(session.context))
    except Exception as exc:  # the graph runs without a status line
        if session is not None:
            session.close()
        print(f"[bringup] no status line: {type(exc).__name__}: {exc}", file=sys.stderr)
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_print_every, args=(client, period_s, stop, out),
                              name="status-line", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2.0)
        session.close()
