"""Repairing the bag a killed recorder leaves: a real recorder process is SIGKILLed mid-episode;
after the repair (by `genpol bag repair`, by the recorder when it starts again, or the function)
rosbags' rosbag2 Reader and the mcap library's indexed reader open the bag and read every message
our tolerant reader recovered, metadata.yaml looks like a stopped episode's, and no more than one
flush period was lost. A file cut inside a record repairs too; a whole bag is left untouched."""

from __future__ import annotations

import array
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bag_helpers import record_joint_states

from genpol.recording import read_episode
from genpol.recording.repair import (FAILED, REPAIRED, SKIPPED, WHOLE, repair_episode,
                                     repair_paths)
from genpol.recording.types import jazzy_typestore

FLUSH_S = 0.5
TOPICS = ["/joint_states", "/camera/image_raw"]


# ---- a real recorder, killed mid-episode (once for the module) ----------------------------------
def _publishing(seconds: float, pubs, sent_ns: list[int]) -> None:
    from sensor_msgs.msg import Image, JointState

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        i = len(sent_ns)
        msg = JointState(name=["shoulder_pan"], position=[0.1 * i])
        msg.header.stamp.sec = 1000 + i
        pubs[0].publish(msg)
        if i % 5 == 0:
            img = Image(height=16, width=16, encoding="rgb8", step=48)
            img.data = array.array("B", bytes([i % 256]) * (16 * 16 * 3))
            img.header.stamp.sec = 1000 + i
            pubs[1].publish(img)
        sent_ns.append(time.time_ns())
        time.sleep(0.01)


@pytest.fixture(scope="module")
def killed(ros_env, tmp_path_factory):
    """A dataset with episode 0 stopped normally and episode 1 cut by SIGKILL after 2 s, what
    our tolerant reader recovers from episode 1, and when the kill happened."""
    import rclpy
    from sensor_msgs.msg import Image, JointState
    from std_srvs.srv import Trigger

    from std_msgs.msg import String

    from ros_helpers import heard_by_server, spinning, wait_for

    root = tmp_path_factory.mktemp("killed")
    dataset = root / "demos"
    log = open(root / "recorder.log", "w+")  # noqa: SIM115  (closed in the finally)
    proc = subprocess.Popen(
        [sys.executable, "-m", "genpol.nodes.recorder", "--ros-args",
         "-p", f"dataset_dir:={dataset}", "-p", f"topics:={TOPICS}".replace(" ", ""),
         "-p", "backend:=mcap", "-p", f"flush_period_s:={FLUSH_S}", "-p", "min_free_mb:=1.0"],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    rclpy.init()
    sent_ns: list[int] = []
    try:
        node = rclpy.create_node("repair_probe")
        pubs = (node.create_publisher(JointState, "/joint_states", 10),
                node.create_publisher(Image, "/camera/image_raw", 10))
        start = node.create_client(Trigger, "/recorder/start_episode")
        stop = node.create_client(Trigger, "/recorder/stop_episode")

        def call(client) -> None:
            assert client.wait_for_service(timeout_sec=20), client.srv_name
            future = client.call_async(Trigger.Request())
            assert wait_for(future.done, timeout=10) and future.result().success, \
                future.result()

        with spinning(node):
            assert wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs),
                            timeout=20), "the recorder never subscribed"
            assert heard_by_server(node, String, "/recorder/status"), "no recorder status"
            call(start)
            _publishing(0.5, pubs, sent_ns)
            call(stop)
            call(start)
            _publishing(2.0, pubs, sent_ns)
            os.kill(proc.pid, signal.SIGKILL)
            kill_ns = time.time_ns()
            proc.wait(timeout=10)
    finally:
        rclpy.try_shutdown()
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        print(log.read()[-3000:])
        log.close()
    episode = read_episode(dataset / "episode_000001", raw=True)
    assert episode.metadata["status"] == "incomplete"
    recovered = {t: (list(d.stamps_ns), d.raw) for t, d in episode.topics.items()}
    assert len(recovered["/joint_states"][0]) > 50 and len(recovered["/camera/image_raw"][0])
    return {"dataset": dataset, "recovered": recovered, "kill_ns": kill_ns}


def _copy(killed, tmp_path: Path) -> Path:
    dataset = tmp_path / "demos"
    shutil.copytree(killed["dataset"], dataset)
    return dataset


def _standard_readers_refuse(bag: Path) -> None:
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader

    with pytest.raises(Exception):  # noqa: B017,PT011  (rosbags: no metadata.yaml)
        Reader(bag).open()
    with open(next(bag.glob("*.mcap")), "rb") as f, pytest.raises(Exception):  # noqa: B017,PT011
        make_reader(f).get_summary()  # no footer: the library raises on what it finds instead


def _keys(value):
    """The shape of a YAML document: its keys at every level, not its values."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(v) for v in value[:1]]
    return type(value).__name__


def _check_repaired(bag: Path, killed) -> None:
    """Standard readers read every recovered message; metadata.yaml as a stopped episode's."""
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader

    recovered = killed["recovered"]
    counts = {t: len(s) for t, (s, _) in recovered.items()}
    with Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == counts
        got: dict[str, list] = {t: [] for t in counts}
        for conn, stamp, raw in reader.messages():
            got[conn.topic].append((stamp, bytes(raw)))
    for topic, (stamps, raws) in recovered.items():
        assert got[topic] == list(zip(stamps, raws, strict=True)), topic

    mcap_file = next(bag.glob("*.mcap"))
    with open(mcap_file, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.chunk_indexes and reader.get_header().profile == \
            "ros2"
        assert summary.statistics.message_count == sum(counts.values())
        seen = [(c.topic, m.log_time, m.data) for _, c, m in reader.iter_messages()]
        assert sorted(seen) == sorted((t, s, r) for t, (ss, rr) in recovered.items()
                                      for s, r in zip(ss, rr, strict=True))
        assert "rosbag2" in {m.name for m in reader.iter_metadata()}

    info = yaml.safe_load((bag / "metadata.yaml").read_text())
    stopped = yaml.safe_load((bag.parent / "episode_000000" / "metadata.yaml").read_text())
    assert _keys(info) == _keys(stopped)  # the same document a stopped episode has
    info, stopped = info["rosbag2_bagfile_information"], stopped["rosbag2_bagfile_information"]
    assert info["version"] == stopped["version"] == 8
    assert info["relative_file_paths"] == [mcap_file.name]
    assert info["message_count"] == info["files"][0]["message_count"] == sum(counts.values())
    every = sorted(s for ss, _ in recovered.values() for s in ss)
    assert info["starting_time"]["nanoseconds_since_epoch"] == every[0]
    assert info["duration"]["nanoseconds"] == every[-1] - every[0]
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert {t: d["message_count"] for t, d in topics.items()} == counts
    for t in stopped["topics_with_message_count"]:  # same publishers: same types, QoS, hashes
        assert topics[t["topic_metadata"]["name"]]["topic_metadata"] == t["topic_metadata"]
    assert info["custom_data"]["genpol.status"] == "incomplete"

    meta = yaml.safe_load((bag / "episode.yaml").read_text())
    assert meta["status"] == "incomplete" and meta["message_counts"] == counts
    assert meta["repaired"]["messages"] == sum(counts.values())
    assert meta["repaired"]["last_time_ns"] == every[-1]
    episode = read_episode(bag)  # our reader: the same, now with its metadata checked
    assert episode.metadata["status"] == "incomplete"
    from genpol.data.build import SKIPPED_STATUSES  # the dataset builder uses it, as before

    assert episode.metadata["status"] not in SKIPPED_STATUSES
    # At most one flush period (plus the scheduling of the flush) was lost to the kill.
    lost_s = (killed["kill_ns"] - every[-1]) / 1e9
    print(f"repaired: {sum(counts.values())} messages kept, the last received {lost_s:.2f} s "
          "before the kill")
    assert lost_s <= FLUSH_S + 0.25, f"{lost_s:.2f} s lost, want <= {FLUSH_S} s + 0.25 s"


# ---- the tests -----------------------------------------------------------------------------------
def test_repair_makes_a_killed_episode_whole_for_ros2_bag_rosbags_and_mcap(killed, tmp_path):
    bag = _copy(killed, tmp_path) / "episode_000001"
    _standard_readers_refuse(bag)
    result = repair_episode(bag)
    assert result.action == REPAIRED and result.lost is None  # no count survived the kill
    assert result.counts == {t: len(s) for t, (s, _) in killed["recovered"].items()}
    _check_repaired(bag, killed)
    assert [p.name for p in bag.iterdir() if not p.name.endswith(".yaml")] == \
        ["episode_000001_0.mcap"]  # replaced: no torn copy, no temporary file left


def test_genpol_bag_repair_prints_what_it_kept_and_a_second_run_changes_nothing(
        killed, tmp_path, capsys):
    from genpol.cli import main

    dataset = _copy(killed, tmp_path)
    original = (dataset / "episode_000001" / "episode_000001_0.mcap").read_bytes()
    assert main(["bag", "repair", str(dataset), "--keep-torn"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("episode_000000") and "whole" in lines[0]
    total = sum(len(s) for s, _ in killed["recovered"].values())
    assert lines[1].startswith("episode_000001") and f"repaired: kept {total} messages" in lines[1]
    last = max(max(stamps) for stamps, _ in killed["recovered"].values())
    from genpol.recording.episode import wall_time

    assert f"the last at {wall_time(last)}" in lines[1], lines[1]
    bag = dataset / "episode_000001"
    assert (bag / "episode_000001_0.mcap.torn").read_bytes() == original
    _check_repaired(bag, killed)
    capsys.readouterr()

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in dataset.rglob("*")
              if p.is_file()}
    assert main(["bag", "repair", str(bag), str(dataset / "episode_000000")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all("whole: nothing to do" in line for line in out), out
    assert before == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in dataset.rglob("*")
                      if p.is_file()}
    assert main(["bag", "repair", str(tmp_path / "nowhere")]) == 1
    assert "no such directory" in capsys.readouterr().out


def test_the_recorder_repairs_torn_episodes_before_it_records(killed, ros, tmp_path, capfd):
    from rclpy.parameter import Parameter

    from genpol.nodes.recorder import RecorderNode

    dataset = _copy(killed, tmp_path)
    node = RecorderNode(parameter_overrides=[
        Parameter("dataset_dir", value=str(dataset)), Parameter("topics", value=TOPICS),
        Parameter("backend", value="mcap"), Parameter("min_free_mb", value=1.0)])
    try:
        # Repaired by the time the node exists, so before it can take a start_episode.
        _check_repaired(dataset / "episode_000001", killed)
        index, _ = node.core.start(task="next")
        assert index == 2
        node.core.stop()
    finally:
        node.close()
        node.destroy_node()
    total = sum(len(s) for s, _ in killed["recovered"].values())
    out = capfd.readouterr()
    logged = [line for line in (out.out + out.err).splitlines() if "episode_0000" in line]
    assert len(logged) == 1 and f"episode_000001 ({dataset / 'episode_000001'}): repaired: " \
        f"kept {total} messages" in logged[0], logged


def _record(dataset: Path, n: int, compression: str = "none") -> Path:
    """A whole episode of n JointStates, flushed every 10 (chunks), stopped normally."""
    return record_joint_states(dataset, n, compression=compression)


def _record_offsets(data: bytes) -> list[tuple[int, int]]:
    """(opcode, offset) of each top-level MCAP record, framed independently of our reader."""
    out, pos = [], 8
    while pos + 9 <= len(data):
        opcode, length = struct.unpack_from("<BQ", data, pos)
        out.append((opcode, pos))
        pos += 9 + length
        if opcode == 2:  # the footer
            break
    return out


def test_a_file_cut_inside_a_record_repairs_to_its_last_whole_record(tmp_path):
    from rosbags.rosbag2 import Reader

    good = _record(tmp_path / "src", 45)
    data = (good / "episode_000000_0.mcap").read_bytes()
    chunks = [pos for op, pos in _record_offsets(data) if op == 6]
    assert len(chunks) >= 4
    cuts = {"inside the 3rd chunk": (chunks[2] + 40, 20),
            "inside a record's length": (chunks[3] + 4, 30),
            "on a record boundary": (chunks[3], 30),
            "inside the header record": (12, 0),
            "inside the magic": (5, 0)}
    for what, (cut, kept) in cuts.items():
        for finished in (False, True):  # killed (no metadata.yaml) / a stopped bag cut short
            bag = tmp_path / f"cut{cut}_{finished}" / "episode_000000"
            shutil.copytree(good, bag)
            (bag / "episode_000000_0.mcap").write_bytes(data[:cut])
            meta = yaml.safe_load((bag / "episode.yaml").read_text())
            if not finished:
                (bag / "metadata.yaml").unlink()
                meta.update(status="recording", message_counts={})
                meta["recorder"]["pid"] = _dead_pid()
                (bag / "episode.yaml").write_text(yaml.safe_dump(meta))
            result = repair_episode(bag)
            assert result.action == REPAIRED, (what, result)
            assert sum(result.counts.values()) == kept, (what, result.counts)
            assert result.lost == (45 - kept if finished else None), (what, result.lost)
            episode = read_episode(bag)
            assert episode.metadata["status"] == "incomplete", what
            got = episode.topics.get("/joint_states")
            assert [m.header.stamp.sec for m in (got.messages if got else [])] == \
                list(range(kept)), what
            with Reader(bag) as reader:
                assert sum(c.msgcount for c in reader.connections) == kept, what
            assert repair_episode(bag).action == WHOLE, what

    # A compressed bag stays compressed as it was.
    from mcap.reader import make_reader

    bag = _record(tmp_path / "zstd", 25, compression="zstd")
    mcap = bag / "episode_000000_0.mcap"
    data = mcap.read_bytes()
    mcap.write_bytes(data[:[pos for op, pos in _record_offsets(data) if op == 6][2] + 20])
    assert sum(repair_episode(bag).counts.values()) == 20
    with open(mcap, "rb") as f:
        assert {c.compression for c in make_reader(f).get_summary().chunk_indexes} == {"zstd"}


def _dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def test_a_whole_bag_and_one_being_recorded_are_left_untouched(tmp_path):
    from genpol.recording.recorder import EpisodeRecorder
    from genpol.recording.writer import TopicInfo

    dataset = tmp_path / "demos"
    _record(dataset, 25)
    rec = EpisodeRecorder(dataset, backend="mcap", min_free_mb=1.0)  # episode 1, still open
    rec.start(task="t", topics=[TopicInfo("/chatter", "std_msgs/msg/String")])
    rec.write("/chatter", 5, jazzy_typestore().serialize_cdr(
        jazzy_typestore().types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    rec.flush()

    def snapshot():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
                for p in sorted(dataset.rglob("*")) if p.is_file()}

    before = snapshot()
    results = list(repair_paths([dataset]))
    assert [(r.path.name, r.action) for r in results] == [("episode_000000", WHOLE),
                                                          ("episode_000001", SKIPPED)]
    assert f"pid {os.getpid()}" in results[1].detail
    assert snapshot() == before
    rec.stop()
    assert [r.action for r in repair_paths([dataset])] == [WHOLE, WHOLE]
    assert next(iter(repair_paths([tmp_path]))).action == FAILED  # neither kind of directory
