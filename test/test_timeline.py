"""The planner-executor timeline contract (genpol.control.timeline): the soft mask, the takeover
point both sides compute, the planner's prefix, and the executor's `continue` merge, in process
and across two processes over DDS."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from genpol import robot
from genpol.control import ChunkExecutor, ExecutorConfig
from genpol.control.timeline import Prefix, PlannerTimeline, soft_mask, takeover_index

NAMES = list(robot.JOINT_NAMES)
J = len(NAMES)
FAST = [1000.0] * J


def test_soft_mask_is_one_on_the_prefix_and_decays_to_zero_over_the_overlap():
    w = soft_mask(10, 3, 7, "exp")
    assert w.shape == (10,)
    np.testing.assert_array_equal(w[:3], 1.0)
    assert np.all(np.diff(w[3:7]) < 0) and np.all((w[3:7] > 0) & (w[3:7] < 1))
    np.testing.assert_array_equal(w[7:], 0.0)
    lin = soft_mask(10, 3, 7, "linear")
    assert np.all(w[3:7] < lin[3:7])  # eq. 5's exponential leans less than the linear ramp
    np.testing.assert_array_equal(soft_mask(10, 3, 7, "hard"), [1] * 3 + [0] * 7)
    np.testing.assert_array_equal(soft_mask(4, 9, 2), [1, 1, 1, 1])  # clamped to the horizon
    with pytest.raises(ValueError, match="schedule must be one of"):
        soft_mask(10, 3, 7, "cosine")


def test_takeover_is_the_first_point_one_tick_after_arrival():
    assert takeover_index(stamp=1.0, fps=10.0, arrival=1.0, tick_s=0.02) == 1
    assert takeover_index(1.0, 10.0, 1.08, 0.02) == 1   # lands at 1.10: point 1 exactly
    assert takeover_index(1.0, 10.0, 1.081, 0.02) == 2
    assert takeover_index(1.0, 10.0, 0.5, 0.02) == 0


def test_planner_prefix_is_the_last_chunk_on_the_new_steps_up_to_the_takeover():
    tl = PlannerTimeline(tick_s=0.02, margin_s=0.01)
    key = object()
    assert tl.prefix(key, 0.0, 10.0, 8) is None  # nothing playing
    prev = np.stack([np.arange(8) * 0.1, -np.arange(8) * 0.1], axis=1)  # ramps at t = k/10
    tl.published(key, stamp=0.0, fps=10.0, positions=prev, published_at=0.15)
    assert tl.delay_s == pytest.approx(0.15)
    pre = tl.prefix(key, 0.05, 10.0, 8)
    # the new chunk goes on the old one's step grid: observed at 0.05, its step 0 is at 0.1
    # (the nearest step), so its committed steps are the old chunk's own points
    assert pre.stamp == pytest.approx(0.1)
    # lands at 0.05 + 0.15 + 0.01 = 0.21; one tick later 0.23 -> point 2 (0.3) takes over; the
    # takeover point and the next are part of the prefix (the switch interpolates between them)
    assert pre.committed == 4
    assert pre.overlap == 7  # new steps at 0.1 .. 0.7 lie inside the old chunk (ends at 0.7)
    np.testing.assert_array_equal(pre.actions[:7], prev[1:8])
    assert tl.prefix(key, 0.149, 10.0, 8).stamp == pytest.approx(0.1)
    late = tl.prefix(key, 0.151, 10.0, 8)
    assert late.stamp == pytest.approx(0.2) and late.committed == 4  # lands 0.311: 0.4 is k 2
    assert tl.prefix(object(), 0.05, 10.0, 8) is None  # another policy: nothing to continue
    assert tl.prefix(key, 0.9, 10.0, 8) is None        # after the old chunk ended
    tl.reset()
    assert tl.prefix(key, 0.05, 10.0, 8) is None


def test_continuing_a_prefix_plays_it_exactly_where_committed_and_fades_over_the_overlap():
    prefix = Prefix(np.full((8, 2), 1.0), committed=3, overlap=6)
    chunks = np.zeros((2, 8, 2))
    out = prefix.continue_into(chunks)
    np.testing.assert_allclose(out[:, :3], 1.0)               # committed: the prefix itself
    faded = out[0, 3:6, 0]
    assert np.all(np.diff(faded) < 0) and np.all((faded > 0) & (faded < 1))  # fades out
    np.testing.assert_allclose(out[:, 6:], 0.0)                # past the overlap: the chunk
    # departure: the largest weighted gap over the overlap, 0 for a chunk that follows it
    assert prefix.departure(prefix.actions) == 0.0
    assert prefix.departure(chunks[0]) == pytest.approx(1.0)   # committed steps weigh 1
    late = prefix.actions.copy()
    late[5:] += 1.0                                            # leaves it at the last overlap step
    assert 0.0 < prefix.departure(late) < 0.5


def test_a_chunk_plays_from_its_first_point_to_its_last_and_only_for_its_policy():
    tl = PlannerTimeline(tick_s=0.02)
    key = object()
    assert not tl.playing(key, 0.0)
    tl.published(key, stamp=1.0, fps=10.0, positions=np.zeros((8, 2)), published_at=1.1)
    assert tl.playing(key, 1.0) and tl.playing(key, 1.7)
    assert not tl.playing(key, 1.75) and not tl.playing(object(), 1.2)
    tl.reset()
    assert not tl.playing(key, 1.2)


def _continue_executor(start=0.0) -> ChunkExecutor:
    ex = ChunkExecutor(ExecutorConfig(mode="continue", max_velocity=FAST))
    ex.set_measured(np.full(J, start), NAMES)
    return ex


def test_the_planner_notices_the_arm_left_its_chunk_and_stops_continuing_it():
    t = PlannerTimeline()
    chunk = np.linspace(np.zeros(6), np.full(6, 0.8), 16)  # 1.6 s at 10 fps, from stamp 10.0
    t.published("flow", 10.0, 10.0, chunk, 10.1)
    assert not t.lost(chunk[5], 10.5)  # where it should be
    assert not t.lost(chunk[2] + 0.05, 10.5)  # trailing 0.3 s behind, within the window
    assert t.prefix("flow", 10.5, 10.0, 16) is not None
    pushed = chunk[5].copy()
    pushed[0] += 0.5  # shoulder_pan shoved half a radian
    assert t.lost(pushed, 10.5)
    gripper = chunk[5].copy()
    gripper[5] -= 0.6  # a grasp holds the gripper short of its command: not lost
    assert not t.lost(gripper, 10.5)
    assert not t.lost(pushed, 12.5)  # nothing of the chunk in the window: not judged
    # a new chunk that has not taken over yet: the arm still plays the one before
    t.published("flow", 10.5, 10.0, chunk[5:] + 0.4, 10.6)
    assert not t.lost(chunk[6], 10.6)
    assert t.lost(chunk[6] - 0.6, 10.6)


def test_continue_mode_plays_the_old_chunk_until_the_new_one_takes_over():
    ex = _continue_executor()
    times = np.arange(10) / 10.0
    ex.add_chunk(0.0, NAMES, times, np.tile(np.arange(10)[:, None] * 0.01, (1, J)), now=0.0)
    ex.tick(0.10)
    # chunk B (constant 0.5) for the observation at 0.1 lands at 0.17: takes over at its point
    # 0.20 (first at or after 0.17 + 0.02)
    ex.add_chunk(0.1, NAMES, times, np.full((10, J), 0.5), now=0.17)
    cmd = ex.tick(0.12)  # points at 0.14 .. 0.22
    query = 0.12 + np.arange(1, 6) * 0.02
    old = query * 0.1  # chunk A's ramp: 0.01 per 0.1 s
    expect = np.where(query < 0.2 - 1e-9, old, 0.5)
    np.testing.assert_allclose(cmd.positions[:, 0], expect, atol=1e-9)
    # latest would have jumped to B at once; ensemble would have blended from the first point
    latest = ChunkExecutor(ExecutorConfig(mode="latest", max_velocity=FAST))
    latest.set_measured(np.zeros(J), NAMES)
    latest.add_chunk(0.0, NAMES, times, np.tile(np.arange(10)[:, None] * 0.01, (1, J)))
    latest.tick(0.10)
    latest.add_chunk(0.1, NAMES, times, np.full((10, J), 0.5))
    np.testing.assert_allclose(latest.tick(0.12).positions[:, 0], 0.5)


def test_continue_mode_without_a_takeover_yet_plays_the_newest_chunk():
    ex = _continue_executor()
    ex.add_chunk(0.0, NAMES, np.arange(10) / 10.0, np.full((10, J), 0.3), now=0.05)
    # the first chunk of an episode: nothing else covers, so it plays before its takeover
    np.testing.assert_allclose(ex.tick(0.0).positions[:, 0], 0.3)


EXECUTOR_SCRIPT = """
from genpol.nodes.executor import main
main(["executor", "--ros-args", "-p", "mode:=continue", "-p", "tick_priority:=0"])
"""
HOME = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])


def test_the_contract_holds_across_processes(ros):
    """The executor in its own process, the planner's timeline here: a chunk published after a
    measured delay takes over no earlier than it lands and on a step of the prefix that
    PlannerTimeline committed it to, and the old chunk plays untouched until then.

    The executor stamps its trajectories 0 (start on receipt), so a point's time is known only
    to the receipt's latency; the chunks are told apart by value instead: joint 0 ramps, and B
    adds 0.05 on its committed prefix and 0.2 after it, so B's played prefix values give their
    own times exactly."""
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from genpol.nodes.messages import duration_msg, duration_s, stamp_s, time_msg, trajectory_msg
    from ros_helpers import wait_for

    child = subprocess.Popen([sys.executable, "-c", EXECUTOR_SCRIPT], env=dict(os.environ),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = rclpy.create_node("fake_planner")
    received: list[tuple[float, JointTrajectory]] = []
    node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                             lambda m: received.append((now(), m)), 50)
    state_pub = node.create_publisher(JointState, "/joint_states", 10)
    chunk_pub = node.create_publisher(JointTrajectory, "/genpol/action_chunk", 10)
    spinner = SingleThreadedExecutor()
    spinner.add_node(node)
    threading.Thread(target=spinner.spin, daemon=True).start()
    fps, horizon, slope = 10.0, 20, 0.1  # joint 0 ramps at 0.1 rad/s

    def now() -> float:
        return node.get_clock().now().nanoseconds * 1e-9

    def publish_state() -> bool:
        msg = JointState(name=NAMES, position=[float(v) for v in HOME])
        msg.header.stamp = node.get_clock().now().to_msg()
        state_pub.publish(msg)
        return True

    # The arm reports all along (an executor with silent /joint_states commands nothing).
    node.create_timer(0.02, publish_state)
    try:
        assert wait_for(lambda: len(received) > 5, timeout=60), \
            "the executor process never commanded the arm"
        tl = PlannerTimeline(tick_s=0.02, margin_s=0.01)

        def send(stamp: float, positions: np.ndarray) -> None:
            durations = [duration_msg(k / fps) for k in range(horizon)]
            chunk_pub.publish(trajectory_msg(NAMES, durations, positions, stamp=time_msg(stamp)))
            tl.published("policy", stamp, fps, positions, published_at=now())

        a_stamp = now() - 0.1  # A too was planned 0.1 s before it was sent: the delay measured
        a = np.tile(HOME, (horizon, 1))
        a[:, 0] = slope * np.arange(horizon) / fps
        send(a_stamp, a)
        time.sleep(0.2)
        b_stamp = now()
        time.sleep(0.1)  # the inference delay the timeline measures
        pre = tl.prefix("policy", b_stamp, fps, horizon)
        assert pre is not None and pre.committed >= 2
        # B goes on A's step grid, within half a step of its observation
        assert abs(pre.stamp - b_stamp) <= 0.5 / fps + 1e-9
        assert abs((pre.stamp - a_stamp) * fps - round((pre.stamp - a_stamp) * fps)) < 1e-6
        b_stamp = pre.stamp
        b = np.tile(HOME, (horizon, 1))
        ramp_b = slope * (b_stamp - a_stamp + np.arange(horizon) / fps)
        np.testing.assert_allclose(pre.actions[:pre.overlap, 0], ramp_b[:pre.overlap], atol=1e-6)
        b[:, 0] = ramp_b + np.where(np.arange(horizon) < pre.committed, 0.05, 0.2)
        seen = len(received)
        landed = now()
        send(b_stamp, b)
        assert wait_for(lambda: len(received) > seen + 30, timeout=5)
        points = []  # (approximate time, offset from A's ramp)
        for got, msg in received[seen:]:
            assert stamp_s(msg.header.stamp) == 0.0
            for p in msg.points:
                t = got + duration_s(p.time_from_start)
                points.append((t, p.positions[0] - slope * (t - a_stamp)))
        points.sort()
        first_b = next((i for i, (_, off) in enumerate(points) if off > 0.025), None)
        assert first_b is not None, "chunk B never took over"
        # before: A's ramp, unblended (to the receipt latency's error, 0.1 rad/s x 30 ms)
        assert all(abs(off) < 0.003 for _, off in points[:first_b])
        # the switch lands on B's committed prefix, not after it; its time, exact from its value
        t_approx, off = points[first_b]
        assert abs(off - 0.05) < 0.003, f"B took over past its committed prefix (offset {off})"
        value = (off + slope * (t_approx - a_stamp))
        t_switch = a_stamp + (value - 0.05) / slope
        # not before the takeover point, which the executor found as the planner does
        takeover = b_stamp + takeover_index(b_stamp, fps, landed, 0.02) / fps
        assert t_switch >= takeover - 1e-3, "B played before its takeover point"
        assert t_switch <= b_stamp + (pre.committed - 2) / fps + 0.02 + 1e-3
    finally:
        spinner.shutdown(timeout_sec=2)
        node.destroy_node()
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def test_the_planner_timeline_survives_a_reset_from_another_thread():
    """The reset service clears the timeline while the inference thread reads it: before it had
    a lock, `lost` died with "deque mutated during iteration" and planning stopped for good."""
    import sys
    import threading

    tl = PlannerTimeline()
    chunk = np.linspace(np.zeros(6), np.full(6, 0.5), 16)
    stop = threading.Event()
    errors: list[BaseException] = []

    def planning() -> None:
        try:
            k = 0
            while not stop.is_set():
                k += 1
                stamp = 10.0 + 0.01 * (k % 50)
                tl.published("flow", stamp, 10.0, chunk, stamp + 0.1)
                tl.published("flow", stamp + 0.05, 10.0, chunk, stamp + 0.15)
                tl.lost(chunk[3], stamp + 0.3)
                tl.prefix("flow", stamp + 0.2, 10.0, 16)
                tl.playing("flow", stamp + 0.2)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        worker = threading.Thread(target=planning)
        worker.start()
        end = time.monotonic() + 1.0
        while time.monotonic() < end and worker.is_alive():
            tl.reset()
        stop.set()
        worker.join(timeout=10)
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
