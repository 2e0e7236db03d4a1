"""Helpers for tests that run real rclpy over DDS, in-process: spin nodes, collect topics, wait.

Use with the `ros` fixture from conftest.py (rclpy initialised on a private, random
ROS_DOMAIN_ID with LOCALHOST discovery), e.g.

    def test_talks(ros):
        node = MyNode(parameter_overrides=[Parameter("rate_hz", value=50.0)])
        probe = rclpy.create_node("probe")
        images = TopicCollector(probe, Image, "/camera/image_raw")
        with spinning(node, probe):
            assert images.wait(3, timeout=5)
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any
from collections.abc import Callable, Iterator

from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node


@contextlib.contextmanager
def spinning(*nodes: Node, executor: Executor | None = None) -> Iterator[Executor]:
    """Spin `nodes` on a background thread for the `with` block; then stop, `close()` if they have
    it, and destroy them (so a test cannot leak a timer into the next one)."""
    executor = executor or SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:  # not executor.spin: shutdown() while it waits races its guard condition
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, name="ros-spin", daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        stop.set()
        thread.join(timeout=5.0)
        executor.shutdown(timeout_sec=2.0)
        for node in nodes:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds pass; True if it came true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def heard_by_server(node: Node, msg_type: type, latched_topic: str, timeout: float = 20.0) -> bool:
    """Wait until the node serving `latched_topic` (a TRANSIENT_LOCAL topic it publishes) has
    discovered every endpoint `node` created so far; True if it did within `timeout` s.

    Why: Fast DDS's service server waits only 100 ms for the caller's response reader when it
    sends a reply; a client that sees a freshly started server first can lose the reply to its
    first call ("failed to send response (timeout)"). A reader made now is announced after the
    clients' response readers, on the same ordered discovery stream, so the server's latched
    sample reaching it means the server has matched those readers as well. Call it while `node`
    spins."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    got = threading.Event()
    sub = node.create_subscription(msg_type, latched_topic, lambda _msg: got.set(), qos)
    try:
        return got.wait(timeout)
    finally:
        node.destroy_subscription(sub)


class TopicCollector:
    """Subscribes `node` to `topic` and keeps every message received, thread-safely."""

    def __init__(self, node: Node, msg_type: type, topic: str, qos: Any = 10):
        self._lock = threading.Lock()
        self._messages: list[Any] = []
        self.subscription = node.create_subscription(msg_type, topic, self._on_msg, qos)

    def _on_msg(self, msg: Any) -> None:
        with self._lock:
            self._messages.append(msg)

    @property
    def messages(self) -> list[Any]:
        with self._lock:
            return list(self._messages)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait(self, count: int = 1, timeout: float = 5.0) -> bool:
        """True once at least `count` messages have arrived, False after `timeout` seconds."""
        return wait_for(lambda: len(self) >= count, timeout)

