"""recorder: configured topics -> one rosbag2 (MCAP) bag per episode, from raw subscriptions.

Messages are stored as the exact CDR bytes that arrived (raw subscriptions), stamped with the
receive time on this node's clock, as rosbag2 does. All file work lives in
genpol.recording.EpisodeRecorder; this node subscribes, keeps time and answers services:

  ~/start_episode    std_srvs/Trigger: open <dataset_dir>/episode_<n>/ (refused, with the reason,
                     if the directory is not writable or the disk is nearly full)
  ~/stop_episode     std_srvs/Trigger: finish the bag; write the outcome into episode.yaml
  ~/discard_episode  std_srvs/Trigger: discard the open episode, or else the last finished one
  ~/status           std_msgs/String (JSON, latched): recording?, episode, counts, error

The outcome reaches the metadata through parameters read at stop_episode and cleared after it:
episode_success (true/false; "" = unknown), episode_notes, episode_mode (overrides the mode
topic), episode_extra (a JSON object merged into `extra`); `task` is read at start and at stop.
The demonstration's mode otherwise comes from `mode_topic` (std_msgs/String, latched; the leader
or the simulator's expert publishes "left", "right", ...): the latest value at stop_episode.

On start, before its services exist, it repairs the episodes a killed recorder left torn under
dataset_dir (genpol.recording.repair: the MCAP rewritten up to its last whole record, with its
summary, and metadata.yaml written) and logs one line per episode, with what was kept.

Topic types come from the ROS graph, or from `topic_types` ("topic:pkg/msg/Type") so that
subscriptions exist before any publisher does; topics not known yet are looked up again every
discovery_period_s, and subscription QoS follows the publishers (best effort if any of them is).
"""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from genpol.nodes import params
from genpol.nodes.qos import LATCHED
from genpol.nodes.spin import run_node
from genpol.parameters import EPISODE_PARAMS, RECORDER
from genpol.recording.recorder import EpisodeRecorder, RecordingError
from genpol.recording.repair import FAILED, SKIPPED, repair_dataset
from genpol.recording.writer import INFINITE, TopicInfo



def _duration(d) -> dict[str, int]:
    ns = int(d.nanoseconds)
    if ns <= 0:
        return {"sec": 0, "nsec": 0}
    sec, nsec = divmod(ns, 1_000_000_000)
    return dict(INFINITE) if sec >= INFINITE["sec"] else {"sec": sec, "nsec": nsec}


def qos_dict(q: QoSProfile) -> dict:
    """A publisher's QoS as rosbag2 stores it in offered_qos_profiles (metadata version 8)."""
    return {"history": int(q.history.value), "depth": int(q.depth),
            "reliability": int(q.reliability.value), "durability": int(q.durability.value),
            "deadline": _duration(q.deadline), "lifespan": _duration(q.lifespan),
            "liveliness": int(q.liveliness.value),
            "liveliness_lease_duration": _duration(q.liveliness_lease_duration),
            "avoid_ros_namespace_conventions": bool(q.avoid_ros_namespace_conventions)}


def message_class(msgtype: str):
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def parse_success(value) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "unknown", "none", "null"):
        return None
    if text in ("true", "yes", "1", "success"):
        return True
    if text in ("false", "no", "0", "failure"):
        return False
    raise ValueError(f"episode_success must be true, false or empty, got {value!r}")


def _check(p: Parameter) -> str:
    """The recorder's own checks of a new value: empty if fine, else why not."""
    try:
        if p.name == "episode_success":
            parse_success(p.value)
        elif p.name == "episode_extra" and p.value not in ("", None):
            if not isinstance(json.loads(p.value), dict):
                raise ValueError("episode_extra must be a JSON object")
        elif p.name == "topic_types":
            for entry in p.value:
                _, sep, msgtype = entry.partition(":")
                if not sep or msgtype.count("/") != 2:
                    raise ValueError(f"topic_types entries look like '/topic:pkg/msg/Type', "
                                     f"got {entry!r}")
    except (ValueError, TypeError) as exc:  # json errors are ValueErrors
        return str(exc)
    return ""


class _Subscribed:
    def __init__(self, info: TopicInfo, subscription, request: tuple[bool, bool]):
        self.info, self.subscription, self.request = info, subscription, request
        self.received = 0

    @property
    def best_effort(self) -> bool:
        return self.request[0]


class RecorderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        params.declare(self, RECORDER, _check)
        p = params.values(self, RECORDER)
        self.topics = [t for t in p["topics"] if t]
        self.fallback_types = {topic: msgtype for topic, _, msgtype in
                               (entry.partition(":") for entry in p["topic_types"])}
        self.core = EpisodeRecorder(p["dataset_dir"], backend=p["backend"],
                                    flush_period_s=p["flush_period_s"],
                                    min_free_mb=p["min_free_mb"], compression=p["compression"])
        self._repair_episodes()
        self.queue_depth = p["queue_depth"]
        self._subs: dict[str, _Subscribed] = {}
        self._warned: set[str] = set()
        self._reported_error: str | None = None
        self.mode: str | None = None

        self.status_pub = self.create_publisher(String, "~/status", LATCHED)
        self.create_subscription(String, p["mode_topic"], self._on_mode, LATCHED)
        self.create_service(Trigger, "~/start_episode", self._on_start)
        self.create_service(Trigger, "~/stop_episode", self._on_stop)
        self.create_service(Trigger, "~/discard_episode", self._on_discard)
        self._discover()
        self.create_timer(p["discovery_period_s"], self._discover)
        self.create_timer(p["flush_period_s"], self.core.flush)
        self.create_timer(p["status_period_s"], self._publish_status)
        self._publish_status()
        self.get_logger().info(
            f"recorder: {len(self.topics)} topics into {self.core.dataset_dir} "
            f"(flush every {self.core.flush_period_s:g} s); call ~/start_episode to record")

    def _repair_episodes(self) -> None:
        """Episodes a killed recorder left torn, made whole for ros2 bag and Foxglove before
        any new episode starts (one line each)."""
        log = self.get_logger()
        for result in repair_dataset(self.core.dataset_dir):
            if result.changed:
                log.info(result.describe())
            elif result.action in (FAILED, SKIPPED):
                log.warning(f"not repaired: {result.describe()}")

    # ---- topics --------------------------------------------------------------------------------
    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def _discover(self) -> None:
        graph = dict(self.get_topic_names_and_types())
        for topic in self.topics:
            types = graph.get(topic, [])
            pubs = self.get_publishers_info_by_topic(topic) if types else []
            sub = self._subs.get(topic)
            if sub is None:
                msgtype = types[0] if types else self.fallback_types.get(topic)
                if not msgtype:
                    self._warn_once(f"wait:{topic}", f"{topic}: no publisher yet and no type in "
                                                     "topic_types; waiting for it to appear")
                    continue
                if len(types) > 1:
                    self._warn_once(f"types:{topic}", f"{topic} has several types {types}; "
                                                      f"recording {msgtype}")
                self._subscribe(topic, msgtype, pubs)
                continue
            if types and sub.info.msgtype not in types:
                self._warn_once(f"mismatch:{topic}", f"{topic} is published as {types}, but "
                                f"recorded as {sub.info.msgtype} (topic_types): fix the "
                                "configuration")
                continue
            if pubs:
                sub.info.qos_profiles = [qos_dict(p.qos_profile) for p in pubs]
                sub.info.type_hash = sub.info.type_hash or _type_hash(pubs)
                if _request(pubs) != sub.request:  # e.g. reliable would miss best-effort ones
                    self.destroy_subscription(sub.subscription)
                    del self._subs[topic]
                    self._subscribe(topic, sub.info.msgtype, pubs, sub.received)

    def _subscribe(self, topic: str, msgtype: str, pubs, received: int = 0) -> None:
        try:
            cls = message_class(msgtype)
        except (ImportError, AttributeError, ValueError) as exc:
            self._warn_once(f"import:{topic}", f"{topic}: cannot record {msgtype}: its Python "
                                               f"message package is missing ({exc})")
            return
        best_effort, latched = request = _request(pubs)
        qos = QoSProfile(depth=self.queue_depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=(ReliabilityPolicy.BEST_EFFORT if best_effort
                                      else ReliabilityPolicy.RELIABLE),
                         durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                                     else DurabilityPolicy.VOLATILE))
        info = TopicInfo(topic, msgtype, [qos_dict(p.qos_profile) for p in pubs],
                         _type_hash(pubs))

        def on_message(data: bytes, msg_info: dict, t: str = topic) -> None:
            self._on_message(t, data, msg_info)

        # rclpy passes the MessageInfo to a two-argument callback; its stub names only one.
        subscription = self.create_subscription(cls, topic, on_message, qos,  # type: ignore[arg-type]
                                                raw=True)
        self._subs[topic] = _Subscribed(info, subscription, request)
        self._subs[topic].received = received
        if self.core.recording:
            self.core.add_topic(info)
        self.get_logger().info(f"subscribed to {topic} ({msgtype}, "
                               f"{'best effort' if best_effort else 'reliable'})")

    def _on_message(self, topic: str, data: bytes, msg_info: dict) -> None:
        stamp = self.get_clock().now().nanoseconds
        sub = self._subs.get(topic)
        if sub is None:
            return
        sub.received += 1
        if not self.core.recording:
            return
        if not self.core.has_topic(topic):
            problem = self.core.add_topic(sub.info)
            if problem:
                self._warn_once(f"def:{topic}", f"{topic} is not recorded: {problem}")
                return
        source = msg_info.get("source_timestamp") if isinstance(msg_info, dict) else None
        if (not self.core.write(topic, stamp, data, source) and self.core.error
                and self.core.error != self._reported_error):
            self._reported_error = self.core.error
            self.get_logger().error(f"episode {self.core.episode_index}: "
                                    f"{self.core.error}; recording stopped")
            self._publish_status()

    def _on_mode(self, msg: String) -> None:
        self.mode = msg.data.strip() or None

    # ---- services ------------------------------------------------------------------------------
    def _on_start(self, request, response):
        get = lambda n: self.get_parameter(n).value  # noqa: E731
        self._discover()  # the publishers' QoS as of now goes into the bag's topic metadata
        infos = [s.info for s in self._subs.values()]
        try:
            index, path = self.core.start(task=str(get("task")), fps=float(get("fps")),
                                          joint_names=list(get("joint_names")), topics=infos)
        except RecordingError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().error(response.message)
            return response
        self._reported_error = None
        missing = [t for t in self.topics if t not in self._subs]
        response.success = True
        response.message = (f"recording episode {index} to {path}"
                            + (f"; not seen yet (recorded once they appear): {missing}"
                               if missing else ""))
        self.get_logger().info(response.message)
        self._publish_status()
        return response

    def _on_stop(self, request, response):
        get = lambda n: self.get_parameter(n).value  # noqa: E731
        was_recording = self.core.recording
        try:
            success = parse_success(get("episode_success"))
            extra = json.loads(get("episode_extra") or "{}")
        except ValueError as exc:
            success, extra = None, {}
            self.get_logger().warning(f"ignoring a bad episode parameter: {exc}")
        mode = str(get("episode_mode") or "") or self.mode
        try:
            result = self.core.stop(success=success, mode=mode, notes=str(get("episode_notes")),
                                    task=str(get("task")), extra=extra)
        except RecordingError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().error(response.message)
        else:
            counts = ", ".join(f"{t} {n}" for t, n in result.counts.items())
            empty = [t for t, n in result.counts.items() if n == 0]
            outcome = {True: "success", False: "failure", None: "outcome unknown"}[success]
            response.success = True
            response.message = (f"episode {result.index} saved to {result.path}: "
                                f"{result.duration_s:.1f} s, {counts}; {outcome}, mode "
                                f"{mode or 'unknown'}"
                                + (f"; WARNING no messages on {empty}" if empty else ""))
            self.get_logger().info(response.message)
        if was_recording:
            self._clear_episode_params()
        self._publish_status()
        return response

    def _on_discard(self, request, response):
        try:
            response.message = self.core.discard()
            response.success = True
        except RecordingError as exc:
            response.success, response.message = False, str(exc)
        self._clear_episode_params()
        self.get_logger().info(response.message)
        self._publish_status()
        return response

    def _clear_episode_params(self) -> None:
        self.set_parameters([Parameter(n, Parameter.Type.STRING, "") for n in EPISODE_PARAMS])

    def _publish_status(self) -> None:
        status = {"recording": self.core.recording, "episode": self.core.episode_index,
                  "path": str(self.core.episode_dir) if self.core.episode_dir else None,
                  "counts": self.core.counts(), "error": self.core.error,
                  "dataset_dir": str(self.core.dataset_dir), "mode": self.mode,
                  "received": {t: s.received for t, s in self._subs.items()},
                  "time": time.time()}
        self.status_pub.publish(String(data=json.dumps(status)))

    def close(self) -> None:
        self.core.close()


def _request(pubs) -> tuple[bool, bool]:
    """(best effort?, transient local?) for a subscription that matches every publisher, as
    rosbag2 adapts it: reliable only if all offer it, transient local only if all do."""
    best_effort = any(p.qos_profile.reliability != ReliabilityPolicy.RELIABLE for p in pubs)
    latched = bool(pubs) and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                                 for p in pubs)
    return best_effort, latched


def _type_hash(pubs) -> str:
    for p in pubs:
        h = getattr(p, "topic_type_hash", None)
        if h is not None and getattr(h, "version", -1) > 0:
            return f"RIHS{h.version:02d}_{bytes(h.value).hex()}"
    return ""


def main(args=None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
