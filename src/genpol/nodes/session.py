"""The one client session for jobs (eval, record, the executor benchmark) that talk to a graph.

A job runs in a plain Python process that also supervises the graph, so its rclpy side must
stay out of the way: a private Context (nothing else in the process shares its shutdown), each
node spinning on a background thread, and no rclpy signal handlers, so Ctrl-C stays Python's
KeyboardInterrupt and the job stops the graph in order. `ClientNode` is what a job's node needs:
service calls with a timeout (Trigger, another node's SetParameters) and topics' latest messages.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.client import Client
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import Trigger

from genpol import topics

N = TypeVar("N", bound=Node)


class Session:
    """rclpy initialised on a private Context; nodes spin on their own background threads."""

    def __init__(self, args: Sequence[str] | None = None):
        self.context = Context()
        rclpy.init(args=list(args) if args else None, context=self.context,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._spinning: dict[Node, tuple[Executor, threading.Thread]] = {}

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def spin(self, node: N, executor: Executor | None = None) -> N:
        """Spin `node` on a background thread (a SingleThreadedExecutor unless given one)."""
        executor = executor or SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        thread = threading.Thread(target=self._spin, args=(executor,),
                                  name=f"{node.get_name()}-spin", daemon=True)
        thread.start()
        self._spinning[node] = (executor, thread)
        return node

    @staticmethod
    def _spin(executor: Executor) -> None:
        with contextlib.suppress(Exception):  # the context shut down under it: nothing to do
            executor.spin()

    def stop(self, node: Node) -> None:
        """Stop spinning `node` and destroy it."""
        executor, thread = self._spinning.pop(node)
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=5.0)
        node.destroy_node()

    def close(self) -> None:
        try:
            for node in list(self._spinning):
                self.stop(node)
        finally:
            rclpy.try_shutdown(context=self.context)


class ClientNode(Node):
    """A job's node: service calls that give up after a timeout, and topics' latest messages."""

    def __init__(self, name: str, context: Context, **kwargs: Any):
        super().__init__(name, context=context, **kwargs)
        self._latest_lock = threading.Lock()
        self._latest: dict[str, Any] = {}
        self._service_clients: dict[str, Client] = {}

    # ---- services ---------------------------------------------------------------------------
    def service(self, srv_type: type, name: str) -> Client:
        """The client of service `name` (created on first use, then kept)."""
        if name not in self._service_clients:
            self._service_clients[name] = self.create_client(srv_type, name)
        return self._service_clients[name]

    def missing_services(self) -> list[str]:
        """Services this node has clients for that have no server yet."""
        return [name for name, c in self._service_clients.items() if not c.service_is_ready()]

    def call(self, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call service `name` (its client made by service()) and wait for the answer;
        RuntimeError if none comes within `timeout` seconds."""
        client = self._service_clients[name]
        future = client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                client.remove_pending_request(future)
                raise RuntimeError(f"{name} did not answer within {timeout:g} s")
            time.sleep(0.002)
        return future.result()

    def trigger(self, name: str, timeout: float = 10.0) -> str:
        """Call the std_srvs/Trigger service `name`; its message, or RuntimeError if it failed."""
        self.service(Trigger, name)
        result = self.call(name, Trigger.Request(), timeout)
        if result is None or not result.success:
            raise RuntimeError(f"{name} failed: {getattr(result, 'message', 'no response')}")
        return result.message

    def set_node_parameters(self, node: str, values: dict[str, Any],
                            timeout: float = 10.0) -> None:
        """Set parameters of another node through its set_parameters service (Node's own
        set_parameters sets this node's); RuntimeError naming every value it refused."""
        name = topics.service(node, "set_parameters")
        self.service(SetParameters, name)
        request = SetParameters.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        result = self.call(name, request, timeout)
        bad = [f"{k}: {r.reason}" for k, r in zip(values, result.results, strict=True)
               if not r.successful]
        if bad:
            raise RuntimeError(f"{node} refused parameters: {bad}")

    # ---- latest messages --------------------------------------------------------------------
    def keep_latest(self, key: str, msg_type: type, topic: str, qos: Any = 10,
                    convert: Callable[[Any], Any] = lambda msg: msg) -> None:
        """Keep the latest message on `topic` (through `convert`; a ValueError from it drops
        the message) under `key`, for latest()."""
        def on_msg(msg: Any) -> None:
            try:
                value = convert(msg)
            except ValueError:
                return
            with self._latest_lock:
                self._latest[key] = value

        self.create_subscription(msg_type, topic, on_msg, qos)

    def latest(self, key: str, default: Any = None) -> Any:
        with self._latest_lock:
            return self._latest.get(key, default)
