"""Recording demonstrations in simulation, end to end: `genpol record --sim` starts sim_arm,
sim_leader, teleop and recorder as node processes and yields one bag per episode, each with its
mode in its metadata, and the arm really went the way the metadata says. Also the teleop node's
follower bridge, and the recording nodes' place in the graph definition."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points

import numpy as np
import pytest
import yaml

from genpol import graph, robot

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_recording_nodes_are_console_scripts_with_their_parameter_files():
    from test_graph import _declared, _node_params

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    for spec in graph.RECORD_NODES:
        assert scripts.get(spec.executable) == f"genpol.nodes.{spec.executable}:main"
        assert callable(importlib.import_module(f"genpol.nodes.{spec.executable}").main)
        data = yaml.safe_load((ROOT / "config" / spec.params_file).read_text())
        assert list(data) == [spec.name]
        assert _node_params(spec) <= _declared(spec), spec.name


def test_genpol_record_sim_two_episodes(ros_env, tmp_path):
    from genpol.recording import list_episodes, read_episode
    from genpol.sim import gl, tasks

    cameras = gl.configure() is not None
    out = tmp_path / "demos"
    cmd = [sys.executable, "-m", "genpol.cli", "record", "--sim", "--task", "reach_around",
           "--episodes", "2", "--out", str(out), "--mode", "alternate", "--seed", "3",
           "--episodes-per-start", "2", "--backend", "mcap"] + ([] if cameras else ["--no-cameras"])
    start = time.monotonic()
    # Its own session, so a timeout ends the node processes too, not only the CLI: leftovers
    # would publish into the next test's graph.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy(), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"genpol record --sim took over 150 s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    elapsed = time.monotonic() - start
    print(stdout[-3000:], stderr[-3000:])
    assert proc.returncode == 0, stderr[-3000:]
    assert "episode 2/2" in stdout and "recorded 2 episodes" in stdout
    print(f"genpol record --sim: 2 episodes in {elapsed:.1f} s")

    bags = list_episodes(out)
    assert [b.name for b in bags] == ["episode_000000", "episode_000001"]
    modes, seeds = [], []
    for bag in bags:
        episode = read_episode(bag)
        meta = episode.metadata
        assert meta["status"] == "complete"
        assert meta["mode"] in ("left", "right")
        assert isinstance(meta["success"], bool)
        assert meta["task"].startswith("reach the target")
        assert meta["joint_names"] == list(robot.JOINT_NAMES)
        sim = meta["extra"]["sim"]
        assert sim["expert_mode"] == meta["mode"]
        modes.append(meta["mode"])
        seeds.append(sim["seed"])
        topics = {"/joint_states", "/leader/joint_states"} | (
            {"/camera/image_raw", "/wrist_camera/image_raw"} if cameras else set())
        assert set(episode.topics) == topics
        for topic in topics:
            assert len(episode.topics[topic].messages) > 5, topic
        # The follower went the way the metadata says, and ended where the leader did.
        def joints(msgs):
            return np.array([[dict(zip(m.name, m.position, strict=True))[j]
                              for j in robot.JOINT_NAMES] for m in msgs])

        follower = joints(episode.topics["/joint_states"].messages)
        leader = joints(episode.topics["/leader/joint_states"].messages)
        inst = tasks.sample(sim["task"], sim["seed"], sim["scene_seed"])
        assert tasks.mode_of(inst, follower) == meta["mode"]
        assert np.abs(follower[-1] - leader[-1]).max() < 0.05
        assert len(episode.topics["/leader/joint_states"].messages[0].velocity) == 0
    assert sorted(modes) == ["left", "right"]  # --mode alternate
    assert seeds == [4, 4]  # --episodes-per-start 2: one start pose, shown both ways


def test_teleop_follows_the_leader_by_name_and_refuses_nan(ros):
    rclpy = pytest.importorskip("rclpy")
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from genpol.nodes.messages import duration_s
    from genpol.nodes.teleop import TeleopNode
    from ros_helpers import TopicCollector, spinning, wait_for

    node = TeleopNode()
    probe = rclpy.create_node("probe")
    leader = probe.create_publisher(JointState, "/leader/joint_states", 10)
    arm = TopicCollector(probe, JointTrajectory, "/arm_controller/joint_trajectory")
    gripper = TopicCollector(probe, JointTrajectory, "/gripper_controller/joint_trajectory")
    names = list(reversed(robot.JOINT_NAMES))  # any order: matched by name
    pose = {"shoulder_pan": 0.2, "shoulder_lift": -0.3, "elbow_flex": 0.4, "wrist_flex": 0.1,
            "wrist_roll": 9.0, "gripper": 0.5}  # wrist_roll beyond its limit: clamped
    with spinning(node, probe):
        assert wait_for(lambda: leader.get_subscription_count() >= 1, timeout=5)
        leader.publish(JointState(name=names, position=[pose[n] for n in names]))
        assert arm.wait(1) and gripper.wait(1)
        traj = arm.messages[-1]
        assert list(traj.joint_names) == list(robot.ARM_JOINTS)
        q = dict(zip(traj.joint_names, traj.points[0].positions, strict=True))
        assert q["shoulder_pan"] == pytest.approx(0.2) and q["elbow_flex"] == pytest.approx(0.4)
        assert q["wrist_roll"] == pytest.approx(robot.upper_limits()[4])
        assert traj.header.stamp.sec == 0 and len(traj.points) == 1
        assert list(gripper.messages[-1].points[0].positions) == pytest.approx([0.5])
        # A jump far beyond what the joints can do in lead_time_s: the time is stretched.
        pose["shoulder_pan"] = -1.3
        leader.publish(JointState(name=names, position=[pose[n] for n in names]))
        assert arm.wait(2)
        assert duration_s(arm.messages[-1].points[0].time_from_start) == pytest.approx(
            1.5 / robot.velocity_limits()[0], rel=0.01)
        # NaN: refused, nothing published.
        before = len(arm)
        bad = [pose[n] for n in names]
        bad[0] = float("nan")  # the gripper
        bad[-1] = float("nan")  # shoulder_pan
        leader.publish(JointState(name=names, position=bad))
        assert wait_for(lambda: node.refused >= 1, timeout=3)
        time.sleep(0.2)
        assert len(arm) == before


def test_genpol_record_sim_two_workers_record_the_same_episodes_in_their_own_folders(
        ros_env, tmp_path):
    """--workers 2: two graphs at once, each on its own private domain; together they hold the
    start poses one graph would have recorded, and `genpol dataset build` finds them all."""
    from genpol.data.build import find_bags
    from genpol.recording import read_episode

    out = tmp_path / "demos"
    cmd = [sys.executable, "-m", "genpol.cli", "record", "--sim", "--task", "reach_around",
           "--episodes", "2", "--out", str(out), "--mode", "alternate", "--seed", "3",
           "--backend", "mcap", "--no-cameras", "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}  # a private one each
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    print(stdout[-3000:], stderr[-3000:])
    assert proc.returncode == 0, stderr[-3000:]
    domains = {int(m) for m in __import__("re").findall(
        r"\[worker-\d\] \[genpol record\] ROS domain (\d+) \(private", stdout)}
    assert len(domains) == 2  # each worker announced its own domain
    assert "recorded 2 episodes" in stdout

    bags = find_bags([out])
    assert [(b.parent.name, b.name) for b in bags] == [("worker-0", "episode_000000"),
                                                       ("worker-1", "episode_000000")]
    metas = [read_episode(b).metadata for b in bags]
    # one graph with --seed 3 starts episode i from pose 3 + i (1-based), modes alternating
    assert [m["extra"]["sim"]["seed"] for m in metas] == [4, 5]
    assert all(m["status"] == "complete" for m in metas)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_every_process_and_discards_the_open_episodes(ros_env, tmp_path, workers):
    """Ctrl-C on `genpol record --sim` (SIGINT to the terminal's process group): every worker
    and node process ends, and each episode open at the interrupt is discarded (not kept by the
    recorder's own shutdown, nor left open): each one on disk was finished before or discarded."""
    from genpol.recording import episode as ep

    out = tmp_path / "demos"
    cmd = [sys.executable, "-m", "genpol.cli", "record", "--sim", "--task", "reach_around",
           "--episodes", "8", "--out", str(out), "--mode", "alternate", "--seed", "3",
           "--backend", "mcap", "--no-cameras", "--workers", str(workers)]
    folders = [out / f"worker-{k}" for k in range(workers)] if workers > 1 else [out]
    env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)  # its own group, as a terminal's
    try:
        opened = [folder / "episode_000000" for folder in folders]
        deadline = time.monotonic() + 90
        while not all(p.exists() for p in opened) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            time.sleep(0.1)
        assert all(p.exists() for p in opened), "the workers never opened an episode"
        time.sleep(1.0)  # mid-episode
        os.killpg(proc.pid, signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    print(stdout[-3000:])
    assert proc.returncode == 130, stdout[-3000:]
    statuses = [(ep.read_metadata(p) or {}).get("status")
                for folder in folders for _, p in ep.episode_dirs(folder)]
    assert statuses and set(statuses) <= {"complete", ep.DISCARDED}, statuses
    assert ep.DISCARDED in statuses  # the episodes open at the interrupt were discarded
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    assert not left.strip(), f"processes still running: {left}"
