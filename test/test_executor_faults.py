"""The executor when something is wrong: a chunk far too long (refused before it is read), and the
arm no longer where the command is (a driver restarted at its start pose): re-anchoring at the
measured state, within the speed limit, dropping the chunks planned before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genpol import robot
from genpol.control import ChunkExecutor, ExecutorConfig

NAMES = list(robot.JOINT_NAMES)
J = len(NAMES)
HOME = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])
DT = 0.02
SCALE = 0.5
MAX_STEP = robot.velocity_limits() * SCALE / 50.0
JUMP = np.array([0.0, 0.7, 0.0, 0.0, 0.0, 0.0])  # shoulder_lift: a driver back at its start pose


def ramp(ex, stamp, start, end, n=20, fps=10.0):
    return ex.add_chunk(stamp, NAMES, np.arange(n) / fps, np.linspace(start, end, n))


def within_speed_limit(start, positions):
    steps = np.abs(np.diff(np.vstack([start, positions]), axis=0))
    return bool(np.all(steps <= MAX_STEP + 1e-9))


def test_a_state_jump_re_anchors_at_the_measured_state_within_the_speed_limit():
    ex = ChunkExecutor(ExecutorConfig(velocity_scale=SCALE))
    ex.set_measured(HOME, NAMES)
    target = HOME + np.array([0.3, 0.2, -0.2, 0.1, 0.0, 0.0])
    assert ramp(ex, 0.0, HOME, target).accepted
    previous = HOME
    for k in range(25):  # the arm follows the command a tick behind: no re-anchoring
        cmd = ex.tick(k * DT)
        assert cmd.source == "chunk" and within_speed_limit(previous, cmd.positions)
        ex.set_measured(previous, NAMES)
        previous = cmd.positions[0]
    assert ex.reanchored == 0

    # The driver restarts: the arm reads 0.7 rad away. A tick or two of the old command may
    # still go out (one bad reading is not enough), then everything starts from the measured.
    jumped = previous + JUMP
    ex.set_measured(jumped, NAMES)
    for k in range(25, 35):
        cmd = ex.tick(k * DT)
        if ex.reanchored:
            break
        previous = cmd.positions[0]
    assert ex.reanchored == 1 and k <= 26, "the jump was not taken up within 2 ticks"
    assert "shoulder_lift" in ex.last_reanchor and "elbow_flex" not in ex.last_reanchor
    assert any("re-anchored" in w for w in cmd.warnings)
    # the chunk planned before the jump is gone; the arm holds where it is measured
    assert ex.num_chunks == 0 and cmd.source == "hold"
    np.testing.assert_allclose(cmd.positions, np.tile(jumped, (5, 1)))

    # A chunk planned after it is followed from the measured state, never faster than allowed.
    now = (k + 1) * DT
    goal = jumped + np.array([-0.4, -0.5, 0.3, 0.0, 0.2, 0.0])
    there_and_stay = np.vstack([np.linspace(jumped, goal, 5), np.tile(goal, (5, 1))])
    assert ex.add_chunk(now, NAMES, np.arange(10) / 10.0, there_and_stay).accepted
    start, moved = jumped, False
    for k2 in range(k + 1, k + 45):  # 0.9 s: the chunk is not stale yet
        cmd = ex.tick(k2 * DT)
        assert cmd.source == "chunk"
        assert within_speed_limit(start, cmd.positions), f"tick {k2}: a step beyond the limit"
        ex.set_measured(start, NAMES)  # the arm follows a tick behind
        start = cmd.positions[0]
        moved |= not np.allclose(start, jumped)
    assert moved and np.allclose(start, goal, atol=1e-6)
    assert ex.reanchored == 1


def test_the_stale_command_would_have_jumped():
    """What re-anchoring prevents: with it off, the command after the jump starts where the
    old command was, 0.7 rad from the arm; no step between commands sees that distance."""
    ex = ChunkExecutor(ExecutorConfig(velocity_scale=SCALE, divergence_tolerance_rad=0.0))
    ex.set_measured(HOME, NAMES)
    assert ramp(ex, 0.0, HOME, HOME).accepted
    ex.tick(0.0)
    ex.set_measured(HOME + JUMP, NAMES)
    for k in range(1, 6):
        cmd = ex.tick(k * DT)
    assert ex.reanchored == 0 and not within_speed_limit(HOME + JUMP, cmd.positions)


def test_tracking_lag_noise_and_a_blocked_gripper_do_not_re_anchor():
    """At full speed, states 0.3 s late (a starved simulator), one wild reading, and a jaw held
    open by the object it grasps: none of it is the arm leaving its command."""
    ex = ChunkExecutor(ExecutorConfig())
    start = HOME.copy()
    start[5] = 1.0  # the jaw open
    ex.set_measured(start, NAMES)
    far = start + np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])  # the jaw closes
    assert ramp(ex, 0.0, start, far, n=10, fps=20.0).accepted
    commands = [start]
    for k in range(45):
        commands.append(ex.tick(k * DT).positions[0])
        late = commands[max(0, len(commands) - 16)].copy()  # 15 ticks behind
        late[5] = max(late[5], 0.6)  # the object stops the jaw at 0.6 rad
        if k == 20:
            late[1] += 0.8  # one bad reading
        ex.set_measured(late, NAMES)
    assert np.abs(commands[-1] - far).max() < 0.05  # it got there, at the speed limit
    assert ex.reanchored == 0, ex.last_reanchor


def test_silent_joint_states_command_nothing_then_re_anchor_where_the_arm_came_back():
    """The driver is killed (no /joint_states) and restarted at its start pose: nothing is sent
    while it is silent (a restarted driver would chase the last command at any speed), and the
    first state after the gap re-anchors there, so every command after it is within the limit
    from where the arm is."""
    ex = ChunkExecutor(ExecutorConfig(velocity_scale=SCALE, state_timeout_s=0.5))
    ex.set_measured(HOME, NAMES)
    target = HOME + np.array([0.3, 0.2, -0.2, 0.1, 0.0, 0.0])
    assert ramp(ex, 0.0, HOME, target, n=40).accepted
    for k in range(20):
        cmd = ex.tick(k * DT)
        ex.set_measured(cmd.positions[0], NAMES)
    assert cmd.source == "chunk" and ex.reanchored == 0
    last = cmd.positions[0]
    sources, warned = [], []
    for k in range(20, 60):  # 0.8 s without a state
        cmd = ex.tick(k * DT)
        sources.append(cmd.source)
        warned += [w for w in cmd.warnings if "no /joint_states" in w]
        if cmd.source == "silent":
            assert len(cmd.positions) == 0
    assert sources[:20].count("chunk") == 20, "0.4 s of silence is within the timeout"
    assert sources[-10:] == ["silent"] * 10 and len(warned) == 1
    back = HOME + JUMP  # the driver's start pose, 0.7 rad from the last command
    assert np.abs(back - last).max() > 0.5
    ex.set_measured(back, NAMES)
    cmd = ex.tick(60 * DT)
    assert ex.reanchored == 1 and "came back" in ex.last_reanchor
    assert cmd.source == "hold" and np.allclose(cmd.positions, np.tile(back, (5, 1)))
    assert ex.num_chunks == 0  # planned before the gap, from where the arm no longer is
    start = back
    assert ex.add_chunk(61 * DT, NAMES, np.arange(10) / 10.0, np.linspace(back, HOME, 10)).accepted
    for k in range(61, 90):
        cmd = ex.tick(k * DT)
        assert within_speed_limit(start, cmd.positions), f"tick {k}: a step beyond the limit"
        ex.set_measured(start, NAMES)
        start = cmd.positions[0]
    assert not np.allclose(start, back)


def test_a_short_silence_with_the_arm_in_place_goes_on_and_zero_turns_it_off():
    ex = ChunkExecutor(ExecutorConfig(state_timeout_s=0.1))
    ex.set_measured(HOME, NAMES)
    assert ex.tick(0.0).source == "hold"
    assert ex.tick(0.2).source == "silent"
    ex.set_measured(HOME + 0.01, NAMES)
    cmd = ex.tick(0.22)
    assert cmd.source == "hold" and ex.reanchored == 0
    assert np.allclose(cmd.positions[0], HOME)  # the hold it had, not the new reading
    off = ChunkExecutor(ExecutorConfig(state_timeout_s=0.0))
    off.set_measured(HOME, NAMES)
    assert [off.tick(t).source for t in (0.0, 5.0, 50.0)] == ["hold"] * 3
    with pytest.raises(ValueError, match="state_timeout_s"):
        ExecutorConfig(state_timeout_s=-1.0)


def test_a_jump_beyond_the_limits_is_a_fault_until_reset():
    ex = ChunkExecutor(ExecutorConfig())
    ex.set_measured(HOME, NAMES)
    ex.tick(0.0)
    off = HOME + np.array([0.0, 0.0, np.pi, 0.0, 0.0, 0.0])  # elbow_flex half a turn off
    ex.set_measured(off, NAMES)
    sources = [ex.tick(k * DT).source for k in range(1, 5)]
    assert ex.reanchored == 1 and sources[-1] == "fault" and "elbow_flex" in ex.fault
    ex.reset(1.0)
    ex.set_measured(HOME, NAMES)
    assert ex.tick(1.02).source == "hold"


def test_the_core_refuses_an_oversized_chunk():
    ex = ChunkExecutor(ExecutorConfig(max_chunk_points=50))
    assert ramp(ex, 0.0, HOME, HOME, n=50).accepted
    result = ramp(ex, 0.0, HOME, HOME, n=51)
    assert not result.accepted and "oversized: 51 points" in result.reason


def test_the_point_count_is_read_from_the_serialized_bytes():
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message

    from genpol.nodes.chunk_size import trajectory_points
    from genpol.nodes.messages import duration_msg, time_msg, trajectory_msg

    rng = np.random.default_rng(0)
    for _ in range(100):  # every alignment the names, frame id and fields can give
        n, joints = int(rng.integers(0, 30)), int(rng.integers(0, 8))
        names = ["j" * int(rng.integers(0, 9)) + str(i) for i in range(joints)]
        msg = trajectory_msg(names, [duration_msg(k / 10) for k in range(n)],
                             rng.normal(size=(n, joints)),
                             stamp=time_msg(float(rng.uniform(0, 2e9))))
        msg.header.frame_id = "f" * int(rng.integers(0, 7))
        if n:
            msg.points[0].velocities = [1.0] * joints
        raw = serialize_message(msg)
        assert trajectory_points(raw) == n
        assert trajectory_points(raw[:12]) is None
    assert trajectory_points(b"") is None
    assert trajectory_points(b"\x00\x07\x00\x00" + raw[4:]) is None  # not plain CDR


# --- the node, over DDS ---------------------------------------------------------------------


def _node_and_probe(**overrides):
    import rclpy
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from genpol.nodes.executor import ExecutorNode
    from ros_helpers import TopicCollector

    node = ExecutorNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    probe = rclpy.create_node("probe")
    arm = TopicCollector(probe, JointTrajectory, "/arm_controller/joint_trajectory")
    state = {"q": HOME}
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)
    probe.create_timer(0.01, lambda: state["q"] is None or state_pub.publish(
        JointState(name=NAMES, position=[float(v) for v in state["q"]])))
    chunks = probe.create_publisher(JointTrajectory, "/genpol/action_chunk", 10)
    return node, probe, arm, state, chunks


def _chunk(probe, start, end, n):
    from genpol.nodes.messages import duration_msg, time_msg, trajectory_msg

    now = probe.get_clock().now().nanoseconds * 1e-9
    return trajectory_msg(NAMES, [duration_msg(k / 10) for k in range(n)],
                          np.linspace(start, end, n), stamp=time_msg(now))


def test_an_oversized_chunk_is_dropped_unread_and_a_normal_one_still_follows(ros, monkeypatch):
    """10,000 points: counted, warned, in ~/status, and never deserialized; the same publisher's
    next, normal chunk is followed."""
    import genpol.nodes.executor as executor_module
    from ros_helpers import spinning, wait_for

    read = []
    deserialize = executor_module.deserialize_message
    monkeypatch.setattr(executor_module, "deserialize_message",
                        lambda raw, cls: read.append(len(raw)) or deserialize(raw, cls))
    node, probe, arm, state, chunks = _node_and_probe()
    logged = []
    monkeypatch.setattr(node, "_warn", lambda text, kind=None: logged.append(text))
    target = HOME + np.array([0.1, 0.1, -0.1, 0.0, 0.0, 0.0])
    with spinning(node, probe):
        assert wait_for(lambda: len(arm) >= 3, timeout=5)
        chunks.publish(_chunk(probe, HOME, target, 10_000))
        # The receive counter moves before the handler decides, so wait for its decision.
        assert wait_for(lambda: node.chunks_oversized == 1, timeout=10), \
            f"not counted as oversized ({node.chunks_received} received)"
        assert node.chunks_received == 1 and node.chunks_accepted == 0 and read == []
        assert any("oversized: 10000 points" in w for w in logged), logged
        status = json.loads(json.dumps(node.status()))
        assert status["chunks_oversized"] == 1 and status["chunks_dropped"] == 1

        chunks.publish(_chunk(probe, HOME, target, 10))
        assert wait_for(lambda: node.chunks_accepted == 1, timeout=5)
        assert len(read) == 1 and node.chunks_oversized == 1
        assert wait_for(lambda: np.allclose(arm.messages[-1].points[0].positions, target[:5],
                                            atol=0.01), timeout=5), "the chunk was not followed"


def test_the_node_re_anchors_after_a_state_jump(ros):
    from ros_helpers import spinning, wait_for

    node, probe, arm, state, chunks = _node_and_probe(velocity_scale=SCALE)
    with spinning(node, probe):
        assert wait_for(lambda: len(arm) >= 3, timeout=5)
        chunks.publish(_chunk(probe, HOME, HOME, 30))  # hold HOME for 3 s
        assert wait_for(lambda: node.chunks_accepted == 1, timeout=5)
        state["q"] = HOME + JUMP
        assert wait_for(lambda: node.core.reanchored == 1, timeout=5), "no re-anchoring"
        seen = len(arm)
        assert wait_for(lambda: len(arm) >= seen + 5, timeout=5)
        firsts = np.array([m.points[0].positions for m in arm.messages[seen:]])
        np.testing.assert_allclose(firsts, np.tile((HOME + JUMP)[:5], (len(firsts), 1)))
        assert node.core.num_chunks == 0  # planned before the jump: dropped
        status = node.status()
        assert status["reanchored"] == 1 and "shoulder_lift" in status["reanchor"]
        assert status["warnings"].get("re-anchored at the measured state") == 1


def test_the_node_sends_nothing_while_joint_states_are_silent(ros):
    """A killed driver: the state publisher stops; the executor stops commanding, says so in
    ~/status, and after the driver comes back elsewhere re-anchors there."""
    from ros_helpers import spinning, wait_for

    node, probe, arm, state, chunks = _node_and_probe(state_timeout_s=0.3)
    with spinning(node, probe):
        assert wait_for(lambda: len(arm) >= 3, timeout=5)
        state["q"] = None  # the driver is killed
        assert wait_for(lambda: node.last_source == "silent", timeout=5)
        seen = len(arm)
        ticks = node.ticks
        assert wait_for(lambda: node.ticks >= ticks + 25, timeout=5)
        assert len(arm) <= seen + 1 and node.status()["command"] == "silent"
        state["q"] = HOME + JUMP  # back at its start pose
        assert wait_for(lambda: node.core.reanchored == 1, timeout=5), "no re-anchoring"
        assert wait_for(lambda: len(arm) >= seen + 5, timeout=5)
        np.testing.assert_allclose(arm.messages[-1].points[0].positions, (HOME + JUMP)[:5])
