"""The recorder node over real rclpy/DDS: episodes recorded into rosbag2 MCAP bags read back
identically (messages, counts, raw CDR bytes); the bags satisfy independent readers (rosbags'
rosbag2 Reader, the mcap library's indexed reader); a SIGKILLed recorder leaves finished
episodes intact and the open one readable up to its last flush; refusals and discards."""

from __future__ import annotations

import array
import dataclasses
import json
import os
import signal
import threading
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from genpol.nodes.recorder import RecorderNode  # noqa: E402
from genpol.recording import BagError, list_episodes, read_episode  # noqa: E402
from genpol.recording.types import jazzy_typestore  # noqa: E402
from ros_helpers import TopicCollector, heard_by_server, spinning, wait_for  # noqa: E402

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
TOPICS = ["/camera/image_raw", "/joint_states", "/leader/joint_states"]


def _call(node, client, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout), client.srv_name
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done, timeout=timeout), f"{client.srv_name} did not answer"
    return future.result()


def _joint_state(i: int, velocity: bool = True) -> JointState:
    msg = JointState(name=["shoulder_pan", "gripper"], position=[0.1 * i, -0.5])
    if velocity:
        msg.velocity = [1.0, float(i)]
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + i, 7 * i
    msg.header.frame_id = "base_link"
    return msg


def _image(i: int) -> Image:
    rgb = (np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3) + i).astype(np.uint8)
    msg = Image(height=6, width=4, encoding="rgb8", step=12, is_bigendian=0)
    msg.data = array.array("B", rgb.tobytes())
    msg.header.stamp.sec = 2000 + i
    msg.header.frame_id = "front_camera"
    return msg


class _RawCollector(TopicCollector):
    """Keeps the serialized bytes exactly as they arrived over DDS."""

    def __init__(self, node, msg_type, topic):
        self._lock = threading.Lock()
        self._messages = []
        self.subscription = node.create_subscription(msg_type, topic, self._on_msg, 10, raw=True)


class _Probe:
    """Publishers for the recorded topics, raw subscribers that see what went over the wire,
    and clients of the recorder's services."""

    def __init__(self, node_name: str = "probe"):
        self.node = rclpy.create_node(node_name)
        n = self.node
        self.image = n.create_publisher(Image, "/camera/image_raw", 10)
        self.state = n.create_publisher(JointState, "/joint_states", 10)
        self.leader = n.create_publisher(JointState, "/leader/joint_states", 10)
        self.mode = n.create_publisher(String, "/leader/mode", LATCHED)
        self.wire = {t: _RawCollector(n, cls, t) for t, cls in
                     (("/camera/image_raw", Image), ("/joint_states", JointState),
                      ("/leader/joint_states", JointState))}
        self.status = TopicCollector(n, String, "/recorder/status", LATCHED)
        self.start = n.create_client(Trigger, "/recorder/start_episode")
        self.stop = n.create_client(Trigger, "/recorder/stop_episode")
        self.discard = n.create_client(Trigger, "/recorder/discard_episode")

    def last_status(self) -> dict:
        return json.loads(self.status.messages[-1].data) if len(self.status) else {}


def _fields(value):
    """A decoded (rosbags) message as plain nested values, to compare field by field."""
    if dataclasses.is_dataclass(value):
        return {f.name: _fields(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.tolist())
    if isinstance(value, list):
        return [_fields(v) for v in value]
    return value


def _same_message(store, msgtype: str, a: bytes, b: bytes) -> bool:
    """Two CDR serializations hold the same message (padding bytes may differ)."""
    return _fields(store.deserialize_cdr(a, msgtype)) == _fields(store.deserialize_cdr(b, msgtype))


def test_messages_are_compared_by_their_fields_not_their_padding():
    """The same JointState with other bytes in its CDR alignment padding (as a DDS
    implementation may send it) is the same message; a changed value is not."""
    store, msgtype = jazzy_typestore(), "sensor_msgs/msg/JointState"
    msg = store.types[msgtype](
        header=store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=3, nanosec=5), frame_id="ab"),
        name=["shoulder_pan"], position=np.array([0.5]), velocity=np.zeros(0),
        effort=np.zeros(0))
    raw = store.serialize_cdr(msg, msgtype)
    padded = bytearray(raw)
    padding = []
    for i in range(4, len(raw)):  # after the encapsulation header
        padded[i] ^= 0xA5
        try:
            same = _fields(store.deserialize_cdr(bytes(padded), msgtype)) == _fields(msg)
        except Exception:  # a length or a string terminator
            same = False
        if same:
            padding.append(i)
        else:
            padded[i] ^= 0xA5
    assert padding, "this layout has alignment padding"
    assert bytes(padded) != raw and _same_message(store, msgtype, bytes(padded), raw)
    msg.position[0] = 0.25
    assert not _same_message(store, msgtype, store.serialize_cdr(msg, msgtype), raw)


def _recorder(dataset: Path, **params) -> RecorderNode:
    values = {"dataset_dir": str(dataset), "topics": TOPICS, "task": "reach around the post",
              "backend": "mcap", "min_free_mb": 1.0, "flush_period_s": 0.2, **params}
    return RecorderNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def test_recorded_episode_reads_back_identically(ros, tmp_path):
    dataset = tmp_path / "demos"
    node = _recorder(dataset)
    probe = _Probe()
    p = probe
    with spinning(node, probe.node):
        # Discovery: the recorder subscribed from topic_types; wait until our publishers match.
        assert wait_for(lambda: all(pub.get_subscription_count() >= 2 for pub in
                                    (p.image, p.state, p.leader)), timeout=10)
        p.mode.publish(String(data="left"))
        started = _call(p.node, p.start)
        assert started.success, started.message
        assert "episode 0" in started.message
        sent = {"/camera/image_raw": [], "/joint_states": [], "/leader/joint_states": []}
        for i in range(20):
            js = _joint_state(i)
            leader = _joint_state(i, velocity=False)  # empty velocity: a float64[] of length 0
            p.state.publish(js)
            p.leader.publish(leader)
            sent["/joint_states"].append(js)
            sent["/leader/joint_states"].append(leader)
            if i % 4 == 0:
                img = _image(i)
                p.image.publish(img)
                sent["/camera/image_raw"].append(img)
            time.sleep(0.01)
        counts = {t: len(v) for t, v in sent.items()}
        assert wait_for(lambda: all(len(p.wire[t]) >= n for t, n in counts.items()), timeout=5)
        assert wait_for(lambda: p.last_status().get("counts") == counts, timeout=5), \
            p.last_status()
        # The outcome, as an operator gives it: parameters read at stop.
        node.set_parameters([Parameter("episode_success", value=True),
                             Parameter("episode_notes", value="clean run"),
                             Parameter("episode_extra", value='{"operator": "test"}')])
        stopped = _call(p.node, p.stop)
        assert stopped.success, stopped.message
        assert "success" in stopped.message and "mode left" in stopped.message
        # The parameters are cleared for the next episode.
        assert node.get_parameter("episode_success").value == ""

    bags = list_episodes(dataset)
    assert [b.name for b in bags] == ["episode_000000"]
    episode = read_episode(bags[0], raw=True)
    meta = episode.metadata
    assert meta["status"] == "complete" and meta["success"] is True and meta["mode"] == "left"
    assert meta["task"] == "reach around the post" and meta["notes"] == "clean run"
    assert meta["extra"] == {"operator": "test"} and meta["fps"] == 30.0
    assert meta["joint_names"][0] == "shoulder_pan" and meta["message_counts"] == counts
    assert meta["stop_time_ns"] > meta["start_time_ns"]
    assert set(episode.topics) == set(TOPICS)

    store = jazzy_typestore()
    for topic, msgs in sent.items():
        data = episode.topics[topic]
        assert len(data.messages) == len(msgs) == len(data.stamps_ns) == len(data.raw)
        assert data.stamps_ns.dtype == np.int64 and np.all(np.diff(data.stamps_ns) >= 0)
        assert data.stamps_ns[0] >= meta["start_time_ns"]
        # What went over DDS is what the bag holds (decoded: the CDR alignment padding is not
        # part of the message, and a DDS implementation may leave it uninitialised) ...
        wire = [bytes(b) for b in p.wire[topic].messages]
        assert len(wire) == len(data.raw)
        for raw, sent_raw in zip(data.raw, wire, strict=True):
            assert _same_message(store, data.msgtype, raw, sent_raw)
        for sent_msg, got, raw in zip(msgs, data.messages, data.raw, strict=True):
            # ... and they decode to the message that was published, field by field ...
            assert got.header.stamp.sec == sent_msg.header.stamp.sec
            assert got.header.stamp.nanosec == sent_msg.header.stamp.nanosec
            assert got.header.frame_id == sent_msg.header.frame_id
            if data.msgtype == "sensor_msgs/msg/Image":
                assert (got.height, got.width, got.encoding, got.step) == (6, 4, "rgb8", 12)
                assert got.data.dtype == np.uint8
                assert got.data.tobytes() == bytes(sent_msg.data)
            else:
                assert data.msgtype == "sensor_msgs/msg/JointState"
                assert list(got.name) == list(sent_msg.name)
                np.testing.assert_array_equal(got.position, sent_msg.position)
                np.testing.assert_array_equal(got.velocity, np.asarray(sent_msg.velocity,
                                                                       dtype=float))
                assert len(got.effort) == 0
            # ... and encode back to the same message.
            assert _same_message(store, data.msgtype, store.serialize_cdr(got, data.msgtype), raw)
    assert len(episode.topics["/leader/joint_states"].messages[0].velocity) == 0

    # Independent readers accept the bag: rosbags' rosbag2 Reader (metadata.yaml + MCAP) and
    # the mcap library's indexed reader (summary, chunk indexes).
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader

    with Reader(bags[0]) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == counts
        assert all(c.msgdef.data and c.digest.startswith("RIHS01_") for c in reader.connections)
    info = yaml.safe_load((bags[0] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8 and info["storage_identifier"] == "mcap"
    assert info["custom_data"]["genpol.mode"] == "left"
    mcap_file = bags[0] / info["relative_file_paths"][0]
    with open(mcap_file, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert reader.get_header().profile == "ros2"
        assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
        for channel in summary.channels.values():
            assert channel.message_encoding == "cdr"
            assert set(channel.metadata) == {"offered_qos_profiles", "topic_type_hash"}
            qos = yaml.safe_load(channel.metadata["offered_qos_profiles"])
            assert qos and qos[0]["reliability"] == 1  # our reliable publishers' QoS
        assert summary.statistics.message_count == sum(counts.values())
        assert "rosbag2" in {m.name for m in reader.iter_metadata()}


def test_unwritable_dataset_dir_is_refused_with_the_reason(ros, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    node = _recorder(blocker / "demos")
    probe = rclpy.create_node("probe")
    start = probe.create_client(Trigger, "/recorder/start_episode")
    stop = probe.create_client(Trigger, "/recorder/stop_episode")
    with spinning(node, probe):
        result = _call(probe, start)
        assert not result.success
        assert "cannot create the dataset directory" in result.message
        assert str(blocker / "demos") in result.message
        result = _call(probe, stop)
        assert not result.success and "no episode is recording" in result.message

    # Not enough free space: refused before anything is written.
    node = _recorder(tmp_path / "demos", min_free_mb=1e12)
    probe = rclpy.create_node("probe2")
    start = probe.create_client(Trigger, "/recorder/start_episode")
    with spinning(node, probe):
        result = _call(probe, start)
        assert not result.success and "MB free" in result.message
    assert list_episodes(tmp_path / "demos") == []


def test_discard_open_and_last_finished_episodes(ros, tmp_path):
    dataset = tmp_path / "demos"
    node = _recorder(dataset)
    probe = rclpy.create_node("probe")
    clients = {n: probe.create_client(Trigger, f"/recorder/{n}_episode")
               for n in ("start", "stop", "discard")}
    with spinning(node, probe):
        assert not _call(probe, clients["discard"]).success  # nothing yet
        assert _call(probe, clients["start"]).success
        assert _call(probe, clients["stop"]).success        # episode 0 kept
        assert _call(probe, clients["start"]).success
        result = _call(probe, clients["discard"])             # episode 1, while recording
        assert result.success and "recording episode 1" in result.message
        assert _call(probe, clients["start"]).success        # episode 2: numbers not reused
        assert _call(probe, clients["stop"]).success
        result = _call(probe, clients["discard"])             # episode 2, after it finished
        assert result.success and "last finished episode 2" in result.message
    assert [b.name for b in list_episodes(dataset)] == ["episode_000000"]
    assert read_episode(dataset / "episode_000001").metadata["status"] == "discarded"


def test_sigkill_mid_episode_keeps_finished_episodes_and_the_flushed_part(ros, tmp_path):
    dataset = tmp_path / "demos"
    log = open(tmp_path / "recorder.log", "w+")  # noqa: SIM115  (closed in the finally)
    proc = subprocess.Popen(
        [sys.executable, "-m", "genpol.nodes.recorder", "--ros-args",
         "-p", f"dataset_dir:={dataset}", "-p", "topics:=['/joint_states']",
         "-p", "backend:=mcap", "-p", "flush_period_s:=0.5", "-p", "min_free_mb:=1.0"],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    p = _Probe("sigkill_probe")
    sent_ns: list[int] = []
    i = 0

    def publish_for(seconds: float) -> None:
        nonlocal i
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = _joint_state(i)
            p.state.publish(msg)
            sent_ns.append(time.time_ns())
            i += 1
            time.sleep(0.01)

    try:
        with spinning(p.node):
            assert wait_for(lambda: p.state.get_subscription_count() >= 2, timeout=20), \
                "the recorder never subscribed"
            assert heard_by_server(p.node, String, "/recorder/status"), "no recorder status"
            assert _call(p.node, p.start, timeout=20).success
            first = i
            publish_for(1.0)
            stopped = _call(p.node, p.stop)
            assert stopped.success, stopped.message
            finished = (first, i)
            assert _call(p.node, p.start).success
            second = i
            publish_for(2.0)
            os.kill(proc.pid, signal.SIGKILL)
            kill_ns = time.time_ns()
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        print(log.read()[-3000:])
        log.close()

    done = read_episode(dataset / "episode_000000")
    assert done.metadata["status"] == "complete"
    stamps = [m.header.stamp.sec - 1000 for m in done.topics["/joint_states"].messages]
    assert stamps == list(range(*finished)), "the finished episode lost or gained messages"

    open_one = read_episode(dataset / "episode_000001")
    assert open_one.metadata["status"] == "incomplete"
    assert not (dataset / "episode_000001" / "metadata.yaml").exists()
    got = [m.header.stamp.sec - 1000 for m in open_one.topics["/joint_states"].messages]
    assert got and got == list(range(second, second + len(got))), "not a clean prefix"
    last_sent_ns = sent_ns[got[-1]]  # when the last message that survived was published
    lost_s = (kill_ns - last_sent_ns) / 1e9
    print(f"SIGKILL: {len(got)} messages kept, {lost_s:.2f} s before the kill lost")
    assert lost_s <= 1.0, f"{lost_s:.2f} s of data lost, want <= 1 s"
    assert list_episodes(dataset) == [dataset / "episode_000000", dataset / "episode_000001"]


def test_damaged_bags_raise_bag_error_naming_episode_and_file(tmp_path):
    from bag_helpers import record_joint_states

    def record(dataset: Path, n: int, stop: bool = True) -> Path:
        return record_joint_states(dataset, n, stop=stop, success=False)

    # A finished bag cut short: metadata.yaml promises more than the file holds.
    path = record(tmp_path / "a", 50)
    mcap = next(path.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match=r"episode_000000.*truncated or damaged"):
        read_episode(path)

    # Bytes flipped inside a chunk: the chunk's CRC catches it.
    path = record(tmp_path / "b", 50)
    mcap = next(path.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    data[200:210] = b"\xff" * 10
    mcap.write_bytes(bytes(data))
    with pytest.raises(BagError, match=r"episode_000000.*\.mcap"):
        read_episode(path)

    # Not an MCAP at all.
    mcap.write_bytes(b"hello, world, this is not a bag")
    with pytest.raises(BagError, match="not an MCAP file"):
        read_episode(path)

    # A crashed recording (no metadata.yaml) with a half-written last record: read up to it.
    path = record(tmp_path / "c", 35, stop=False)  # flushed after 10, 20 and 30 messages
    mcap = next(path.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:-7])
    assert read_episode(path).metadata["status"] == "recording"  # its writer is alive (here)
    gone = subprocess.Popen(["true"])
    gone.wait()
    meta = yaml.safe_load((path / "episode.yaml").read_text())
    meta["recorder"]["pid"] = gone.pid  # as if the recorder had been killed
    (path / "episode.yaml").write_text(yaml.safe_dump(meta))
    episode = read_episode(path)
    assert episode.metadata["status"] == "incomplete"
    got = [m.header.stamp.sec for m in episode.topics["/joint_states"].messages]
    assert got == list(range(len(got))) and 20 <= len(got) <= 30


def test_a_full_disk_fails_the_episode_loudly_and_keeps_what_was_flushed(tmp_path):
    import errno

    from genpol.recording.recorder import EpisodeRecorder, RecordingError
    from genpol.recording.writer import TopicInfo

    store = jazzy_typestore()
    string = store.types["std_msgs/msg/String"]
    rec = EpisodeRecorder(tmp_path / "demos", backend="mcap", min_free_mb=1.0)
    _, path = rec.start(task="t", topics=[TopicInfo("/chatter", "std_msgs/msg/String")])
    for k in range(5):
        assert rec.write("/chatter", 10 + k, store.serialize_cdr(string(data=f"m{k}"),
                                                                 "std_msgs/msg/String"))
    rec.flush()

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    rec._writer.write = full  # the disk fills up
    assert not rec.write("/chatter", 20, store.serialize_cdr(string(data="lost"),
                                                             "std_msgs/msg/String"))
    assert rec.error and "No space left on device" in rec.error
    assert not rec.write("/chatter", 21, b"")  # nothing more is taken
    with pytest.raises(RecordingError, match=r"episode 0 .* failed: .*No space left on device"):
        rec.stop(success=True)
    episode = read_episode(path)
    assert episode.metadata["status"] == "failed"
    assert "No space left" in episode.metadata["error"]
    assert [m.data for m in episode.topics["/chatter"].messages] == [f"m{k}" for k in range(5)]
    # The recorder is ready for the next episode.
    index, _ = rec.start(task="t", topics=[TopicInfo("/chatter", "std_msgs/msg/String")])
    assert index == 1
    rec.stop()


def test_topics_found_in_the_graph_and_best_effort_publishers(ros, tmp_path):
    """A topic with no configured type is subscribed once a publisher appears; a best-effort
    publisher makes the recorder resubscribe best effort (a reliable subscription would miss
    it); the publishers' QoS goes into the bag."""
    from rclpy.qos import qos_profile_sensor_data

    dataset = tmp_path / "demos"
    node = _recorder(dataset, topics=["/chatter", "/joint_states"], discovery_period_s=0.2)
    probe = rclpy.create_node("probe")
    start = probe.create_client(Trigger, "/recorder/start_episode")
    stop = probe.create_client(Trigger, "/recorder/stop_episode")
    with spinning(node, probe):
        assert "/chatter" not in node._subs and "/joint_states" in node._subs
        chatter = probe.create_publisher(String, "/chatter", 10)
        states = probe.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        assert wait_for(lambda: chatter.get_subscription_count() == 1
                        and states.get_subscription_count() == 1, timeout=10)
        assert wait_for(lambda: node._subs["/joint_states"].best_effort, timeout=5)
        assert _call(probe, start).success
        for i in range(10):
            chatter.publish(String(data=f"hello {i}"))
            states.publish(_joint_state(i))
            time.sleep(0.02)
        assert wait_for(lambda: node.core.counts() == {"/chatter": 10, "/joint_states": 10},
                        timeout=5), node.core.counts()
        assert _call(probe, stop).success
    episode = read_episode(dataset / "episode_000000")
    assert [m.data for m in episode.topics["/chatter"].messages] == [f"hello {i}"
                                                                     for i in range(10)]
    info = yaml.safe_load((dataset / "episode_000000" / "metadata.yaml").read_text())
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]
              for t in info["rosbag2_bagfile_information"]["topics_with_message_count"]}
    qos = yaml.safe_load(topics["/joint_states"]["offered_qos_profiles"])
    assert qos[0]["reliability"] == 2  # best effort, as offered
    assert topics["/chatter"]["type"] == "std_msgs/msg/String"
    assert topics["/chatter"]["type_description_hash"].startswith("RIHS01_")


def test_message_definitions_of_types_rosbags_does_not_know(tmp_path, monkeypatch):
    """A custom message type (here one that uses another custom type and a std_msgs/Header) is
    defined from the .msg files under an ament prefix's share/, as rosbag2 would."""
    from genpol.recording import types

    msg_dir = tmp_path / "share" / "genpol_test_msgs" / "msg"
    msg_dir.mkdir(parents=True)
    (msg_dir / "Inner.msg").write_text("float64[] values  # a comment\nstring label\n")
    (msg_dir / "Outer.msg").write_text("# demo\nstd_msgs/Header header\nInner[] items\n"
                                       "genpol_test_msgs/Inner best\nuint8 MODE_A=1\n")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    text, type_hash = types.definition("genpol_test_msgs/msg/Outer")
    assert type_hash.startswith("RIHS01_")
    assert "MSG: genpol_test_msgs/Inner" in text and "MSG: std_msgs/Header" in text
    store = types.typestore_for({"genpol_test_msgs/msg/Outer": ("ros2msg", text)})
    outer = store.types["genpol_test_msgs/msg/Outer"]
    inner = store.types["genpol_test_msgs/msg/Inner"]
    header = store.types["std_msgs/msg/Header"]
    stamp = store.types["builtin_interfaces/msg/Time"]
    msg = outer(header=header(stamp=stamp(sec=1, nanosec=2), frame_id="x"),
                items=[inner(values=np.array([1.0, 2.0]), label="a")],
                best=inner(values=np.array([]), label="b"))
    data = store.serialize_cdr(msg, "genpol_test_msgs/msg/Outer")
    back = store.deserialize_cdr(data, "genpol_test_msgs/msg/Outer")
    assert back.items[0].label == "a" and list(back.items[0].values) == [1.0, 2.0]
    with pytest.raises(KeyError, match="genpol_test_msgs/msg/Nope"):
        types.definition("genpol_test_msgs/msg/Nope")


def test_a_really_full_disk_still_marks_the_episode_failed_on_disk(tmp_path):
    """On a file system that really fills (a 2 MB tmpfs), the episode.yaml rewrite needs room
    too: the reserve kept in the episode's directory gives it, so the episode says "failed" on
    disk at once (a recorder killed later leaves no "recording"), and again after stop."""
    import shutil
    import subprocess

    from genpol.recording import episode as ep
    from genpol.recording.recorder import EpisodeRecorder, RecordingError
    from genpol.recording.writer import TopicInfo

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        with open(mnt / "filler", "wb") as f:
            f.write(b"\0" * (shutil.disk_usage(mnt).free - 600_000))
        store = jazzy_typestore()
        string = store.types["std_msgs/msg/String"]
        rec = EpisodeRecorder(mnt / "demos", backend="mcap", min_free_mb=0.1)
        _, path = rec.start(task="t", topics=[TopicInfo("/chatter", "std_msgs/msg/String")])
        assert (path / ep.RESERVE_FILE).stat().st_size == ep.RESERVE_BYTES
        blob = store.serialize_cdr(string(data="x" * 20_000), "std_msgs/msg/String")
        written = 0
        while rec.write("/chatter", 10 + written, blob):
            rec.flush()
            written += 1
            assert written < 100, "the disk never filled"
        assert written >= 5 and "No space left on device" in (rec.error or "")
        assert ep.read_metadata(path)["status"] == "failed"  # before stop: already on disk
        with pytest.raises(RecordingError, match="No space left on device"):
            rec.stop(success=True)
        meta = ep.read_metadata(path)
        assert meta["status"] == "failed" and "No space left" in meta["error"]
        assert meta["message_counts"]["/chatter"] >= 5
        assert not (path / ep.RESERVE_FILE).exists()
    finally:
        # lazy: detached even if something still holds a file there (pytest removes tmp_path)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
