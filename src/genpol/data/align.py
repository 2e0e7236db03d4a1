"""Time alignment: one recorded episode's topic streams -> frames at a fixed rate.

Pure functions over the recording API's BagEpisode (genpol.recording.bag): `topics` maps a topic to
TopicData(msgtype, stamps_ns, messages) with deserialised ROS messages. No ROS imports here.

For frame times t_k = t_0 + k / fps:
- state  = /joint_states positions, matched to `joint_names` by name in every message (the order
  may differ from message to message, and a message may carry only some joints), linearly
  interpolated in time per joint;
- action = /leader/joint_states (the teleoperation command) the same way, at the same times;
- images = per camera, the latest frame stamped at or before t_k (never one from the future).
t_0 is the first instant at which every stream (each joint of state and action, each camera)
has data: the head of the episode before that is skipped. The last frame is the last t_k at or
before the end of both joint streams (no extrapolation).

A message's time is its header stamp when non-zero, else the recorder's receive time.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from genpol.data.arrays import DataError
from genpol.data.episode import EpisodeFrames
from genpol.robot import JOINT_NAMES

STATE_TOPIC = "/joint_states"
ACTION_TOPIC = "/leader/joint_states"
# The planner's default camera names and topics (config/planner.yaml, camera_topics), so a policy
# trained on a built dataset finds its cameras under the same names at run time.
DEFAULT_CAMERAS: dict[str, str] = {"front": "/camera/image_raw",
                                   "wrist": "/wrist_camera/image_raw"}
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
# Episode metadata kept with each episode in the dataset's episode table.
EXTRA_KEYS = ("success", "mode", "notes", "status", "episode_index")


def message_times_ns(stamps_ns: Sequence[int], messages: Sequence[Any]) -> np.ndarray:
    """int64 ns per message: header.stamp when it is non-zero, else the receive time."""
    out = np.asarray(stamps_ns, dtype=np.int64).copy()
    if len(out) != len(messages):
        raise ValueError(f"{len(out)} receive stamps for {len(messages)} messages")
    for i, msg in enumerate(messages):
        header = getattr(msg, "header", None)
        stamp = getattr(header, "stamp", None)
        if stamp is not None:
            ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
            if ns != 0:
                out[i] = ns
    return out


def _where(episode: Any) -> str:
    path = getattr(episode, "path", None)
    return f"episode {getattr(path, 'name', path)} ({path})" if path is not None else "episode"


def joint_series(topic: Any, joint_names: Sequence[str], where: str, topic_name: str
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per joint: (times_ns sorted, positions) from every message that names it."""
    times = message_times_ns(topic.stamps_ns, topic.messages)
    found: dict[str, tuple[list[int], list[float]]] = {j: ([], []) for j in joint_names}
    for i, msg in enumerate(topic.messages):
        names = list(msg.name)
        positions = np.asarray(msg.position, dtype=np.float64)
        if len(positions) != len(names):
            raise DataError(f"{where}: message {i} on {topic_name} has {len(names)} names but "
                            f"{len(positions)} positions")
        for name, value in zip(names, positions, strict=True):
            if name in found:
                found[name][0].append(int(times[i]))
                found[name][1].append(float(value))
    out = []
    for joint in joint_names:
        t, v = found[joint]
        if not t:
            raise DataError(f"{where}: no message on {topic_name} names joint {joint!r} "
                            f"(joints wanted: {list(joint_names)})")
        t_arr, v_arr = np.asarray(t, np.int64), np.asarray(v, np.float64)
        order = np.argsort(t_arr, kind="stable")
        t_arr, v_arr = t_arr[order], v_arr[order]
        # Repeated stamps: keep the last value, so np.interp sees strictly increasing times.
        keep = np.append(t_arr[1:] != t_arr[:-1], True)
        out.append((t_arr[keep], v_arr[keep]))
    return out


def _interpolate(series: list[tuple[np.ndarray, np.ndarray]], grid_ns: np.ndarray,
                 origin_ns: int) -> np.ndarray:
    q = (grid_ns - origin_ns).astype(np.float64)
    return np.stack([np.interp(q, (t - origin_ns).astype(np.float64), v) for t, v in series],
                    axis=1).astype(np.float32)


def decode_image(msgtype: str, msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs Image or CompressedImage."""
    if msgtype.endswith("CompressedImage"):
        import cv2

        buf = np.frombuffer(np.asarray(msg.data, dtype=np.uint8).tobytes(), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot decode a {msg.format!r} compressed image")
        return np.ascontiguousarray(img[..., ::-1])
    from genpol.camera.image import from_image_fields

    return from_image_fields(int(msg.height), int(msg.width), str(msg.encoding), int(msg.step),
                             np.asarray(msg.data, dtype=np.uint8).tobytes())


def _resize(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (img.shape[1], img.shape[0]) == tuple(size):
        return img
    import cv2

    return cv2.resize(img, tuple(int(s) for s in size), interpolation=cv2.INTER_AREA)


def select_cameras(episode: Any, cameras: Mapping[str, str] | None) -> dict[str, str]:
    """cameras given: all must be recorded. None: DEFAULT_CAMERAS that the episode holds."""
    topics = episode.topics
    if cameras is None:
        return {cam: topic for cam, topic in DEFAULT_CAMERAS.items()
                if topic in topics and topics[topic].msgtype in IMAGE_TYPES}
    for cam, topic in cameras.items():
        if topic not in topics:
            raise DataError(f"{_where(episode)}: camera {cam!r} topic {topic} was not recorded "
                            f"(topics: {sorted(topics)})")
        if topics[topic].msgtype not in IMAGE_TYPES:
            raise DataError(f"{_where(episode)}: camera {cam!r} topic {topic} holds "
                            f"{topics[topic].msgtype}, not images")
    return dict(cameras)


def align_episode(episode: Any, fps: float, cameras: Mapping[str, str] | None = None, *,
                  joint_names: Sequence[str] = JOINT_NAMES, state_topic: str = STATE_TOPIC,
                  action_topic: str = ACTION_TOPIC,
                  image_size: tuple[int, int] | None = None) -> EpisodeFrames:
    """Resample one recorded episode to `fps` (see the module docstring).

    cameras: {camera name: image topic}; None takes DEFAULT_CAMERAS that were recorded, {} none.
    image_size: (width, height) to resize frames to (area interpolation), None keeps them.
    Raises DataError naming the episode when a stream or joint is missing, or the streams never
    overlap in time.
    """
    where = _where(episode)
    if not fps > 0:
        raise DataError(f"{where}: fps must be > 0, got {fps}")
    for topic in (state_topic, action_topic):
        if topic not in episode.topics or not episode.topics[topic].messages:
            raise DataError(f"{where}: no messages on {topic} (recorded topics: "
                            f"{sorted(episode.topics)})")
    cams = select_cameras(episode, cameras)
    state = joint_series(episode.topics[state_topic], joint_names, where, state_topic)
    action = joint_series(episode.topics[action_topic], joint_names, where, action_topic)
    cam_times = {}
    for cam, topic in cams.items():
        data = episode.topics[topic]
        if not data.messages:
            raise DataError(f"{where}: camera {cam!r} ({topic}) has no frames")
        cam_times[cam] = message_times_ns(data.stamps_ns, data.messages)

    start = max([int(t[0]) for t, _ in state + action]
                + [int(t.min()) for t in cam_times.values()])
    end = min(int(t[-1]) for t, _ in state + action)
    if end < start:
        raise DataError(f"{where}: the streams never overlap in time (every stream has data "
                        f"from {start} ns, but {state_topic} or {action_topic} ends at {end} ns)")
    period_ns = 1e9 / float(fps)
    count = int(np.floor((end - start) / period_ns + 1e-9)) + 1
    grid = start + np.round(np.arange(count) * period_ns).astype(np.int64)

    images = {}
    for cam, topic in cams.items():
        data = episode.topics[topic]
        times = cam_times[cam]
        order = np.argsort(times, kind="stable")
        # latest frame at or before each grid time (ties: the one received last)
        pick = order[np.searchsorted(times[order], grid, side="right") - 1]
        decoded: dict[int, np.ndarray] = {}
        frames = []
        for i in pick:
            i = int(i)
            if i not in decoded:
                try:
                    decoded[i] = _resize(decode_image(data.msgtype, data.messages[i]), image_size)
                except (ValueError, AttributeError) as exc:
                    raise DataError(f"{where}: frame {i} on {topic}: {exc}") from None
            frames.append(decoded[i])
        shapes = {f.shape for f in decoded.values()}
        if len(shapes) > 1:
            raise DataError(f"{where}: camera {cam!r} ({topic}) changes image size within the "
                            f"episode {sorted(shapes)}; pass an image size to resize to")
        images[cam] = np.stack(frames)

    meta = dict(getattr(episode, "metadata", None) or {})
    extras = {key: meta.get(key) for key in EXTRA_KEYS if key in meta}
    extras["source"] = str(getattr(episode, "path", ""))
    extras["start_time_ns"] = int(start)
    return EpisodeFrames(_interpolate(state, grid, start), _interpolate(action, grid, start),
                         images, task=str(meta.get("task") or ""), extras=extras,
                         name=str(getattr(getattr(episode, "path", None), "name", "") or ""))
