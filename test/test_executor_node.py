"""The executor node over real rclpy: chunks in, 50 Hz multi-point trajectories out."""

from __future__ import annotations

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.srv import DescribeParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from genpol import robot  # noqa: E402
from genpol.nodes.executor import ExecutorNode  # noqa: E402
from genpol.nodes.messages import duration_msg, duration_s, time_msg, trajectory_msg  # noqa: E402
from genpol.parameters import EXECUTOR  # noqa: E402
from ros_helpers import TopicCollector, spinning, wait_for  # noqa: E402

HOME = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])


def _joint_state(node, q):
    msg = JointState(name=list(robot.JOINT_NAMES), position=[float(v) for v in q])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


def _chunk(node, start, end, n=10, fps=10.0, names=robot.JOINT_NAMES, stamp=None):
    positions = np.linspace(start, end, n)
    now = node.get_clock().now().nanoseconds * 1e-9 if stamp is None else stamp
    return trajectory_msg(names, [duration_msg(k / fps) for k in range(n)], positions,
                          stamp=time_msg(now))


def test_executor_holds_then_follows_chunks_and_drops_bad_ones(ros):
    node = ExecutorNode(parameter_overrides=[Parameter("mode", value="latest")])
    probe = rclpy.create_node("probe")
    arm = TopicCollector(probe, JointTrajectory, "/arm_controller/joint_trajectory")
    grip = TopicCollector(probe, JointTrajectory, "/gripper_controller/joint_trajectory")
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)
    chunk_pub = probe.create_publisher(JointTrajectory, "/genpol/action_chunk", 10)
    with spinning(node, probe):
        assert wait_for(lambda: node.ticks >= 10, timeout=5)
        assert len(arm) == 0, "published before any joint state was known"
        # From now on the arm reports at 50 Hz (silent states stop the commands).
        probe.create_timer(0.02, lambda: state_pub.publish(_joint_state(probe, HOME)))
        assert wait_for(lambda: len(arm) >= 5, timeout=5)
        held = arm.messages[-1]
        assert held.joint_names == list(robot.ARM_JOINTS)
        assert grip.messages[-1].joint_names == ["gripper"]
        assert len(held.points) == 5
        times = [duration_s(p.time_from_start) for p in held.points]
        assert np.allclose(times, [0.02, 0.04, 0.06, 0.08, 0.1], atol=1e-6)
        assert np.allclose(held.points[0].positions, HOME[:5])

        # A NaN chunk never reaches the arm: once the executor has seen it, and ticked a while
        # after, it was not accepted and the arm still holds.
        bad = _chunk(probe, HOME, HOME + 0.3)
        bad.points[3].positions[1] = math.nan
        chunk_pub.publish(bad)
        assert wait_for(lambda: node.chunks_received == 1, timeout=5), "the chunk never arrived"
        seen = len(arm)
        assert wait_for(lambda: len(arm) >= seen + 10, timeout=5)
        assert node.chunks_accepted == 0
        assert all(np.allclose(m.points[0].positions, HOME[:5]) for m in arm.messages[seen:])

        # A chunk in another joint order is followed (joints matched by name).
        target = HOME + np.array([0.2, 0.1, -0.1, 0.1, 0.0, 0.0])
        order = list(reversed(robot.JOINT_NAMES))
        good = _chunk(probe, HOME[::-1], target[::-1], names=order)
        n_before = len(arm)
        chunk_pub.publish(good)
        assert wait_for(lambda: len(arm) > n_before + 20, timeout=5)
        assert node.chunks_accepted == 1
        last = np.array(arm.messages[-1].points[0].positions)
        assert np.abs(last - target[:5]).max() < np.abs(HOME[:5] - target[:5]).max()
        # Consecutive commands never jump by more than the speed limit allows.
        firsts = np.array([m.points[0].positions for m in arm.messages[n_before:]])
        steps = np.abs(np.diff(firsts, axis=0))
        assert steps.max() <= robot.velocity_limits()[:5].max() / 50.0 + 1e-6


def test_a_calibration_fault_at_start_up_commands_nothing_until_a_reset(ros):
    """The first joint state half a turn off (a missing driver offset): the executor never
    publishes, not even a hold, and says why; after the fix and ~/reset it holds as usual."""
    from std_srvs.srv import Trigger

    node = ExecutorNode()
    probe = rclpy.create_node("probe")
    arm = TopicCollector(probe, JointTrajectory, "/arm_controller/joint_trajectory")
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)
    chunk_pub = probe.create_publisher(JointTrajectory, "/genpol/action_chunk", 10)
    reset = probe.create_client(Trigger, "/executor/reset")
    off = HOME + np.array([0.0, 0.0, math.pi, 0.0, 0.0, 0.0])  # elbow_flex half a turn off
    with spinning(node, probe):
        assert wait_for(lambda: node.ticks >= 5, timeout=5)
        for _ in range(5):
            state_pub.publish(_joint_state(probe, off))
            chunk_pub.publish(_chunk(probe, off, off))
        # the state arrived and was judged: the fault names the joint
        assert wait_for(lambda: node.core.fault is not None, timeout=5), "no state arrived"
        assert "elbow_flex" in node.core.fault and node.chunks_received >= 1
        ticks = node.ticks
        assert wait_for(lambda: node.ticks >= ticks + 25, timeout=5)
        assert len(arm) == 0 and node.last_source == "fault"
        assert reset.wait_for_service(timeout_sec=5)
        future = reset.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=5) and future.result().success
        for _ in range(3):
            state_pub.publish(_joint_state(probe, HOME))
        assert wait_for(lambda: len(arm) >= 5, timeout=5)
        assert node.core.fault is None
        assert np.allclose(arm.messages[-1].points[0].positions, HOME[:5])
    probe.destroy_node()
    node.destroy_node()


def test_executor_tick_sources_and_their_parameters(ros):
    """Both tick sources tick at rate_hz; a bad tick_source or spin is refused at start-up."""
    for source in ("thread", "timer"):
        node = ExecutorNode(parameter_overrides=[Parameter("tick_source", value=source),
                                                 Parameter("tick_spin_s", value=0.0005)])
        times = node.record_tick_times()
        with spinning(node):
            assert wait_for(lambda t=times: len(t) >= 11, timeout=5)
        assert node.tick_source == source
        periods = np.diff(list(times)[:11])
        assert abs(periods.mean() - 0.02) < 0.005, (source, periods)
    with pytest.raises(ValueError, match="tick_source"):
        ExecutorNode(parameter_overrides=[Parameter("tick_source", value="interrupt")])
    with pytest.raises(ValueError, match="tick_spin_s"):
        ExecutorNode(parameter_overrides=[Parameter("tick_spin_s", value=0.5)])


def _call(node, client, request):
    assert client.wait_for_service(timeout_sec=5), client.srv_name
    future = client.call_async(request)
    assert wait_for(future.done, timeout=5), f"{client.srv_name} did not answer"
    return future.result()


def test_parameters_are_described_and_read_only(ros):
    """What `ros2 param describe /executor ...` shows comes from the table; a read-only
    parameter is refused at run time and keeps its value."""
    node = ExecutorNode()
    assert (node.tick_priority, node.tick_spin_s) == (50, 0.0005)  # config/executor.yaml's
    probe = rclpy.create_node("probe")
    describe = probe.create_client(DescribeParameters, "/executor/describe_parameters")
    setter = probe.create_client(SetParameters, "/executor/set_parameters")
    with spinning(node, probe):
        names = [p.name for p in EXECUTOR]
        got = _call(probe, describe, DescribeParameters.Request(names=names)).descriptors
        assert [d.name for d in got] == names
        for param, d in zip(EXECUTOR, got, strict=True):
            assert d.description == param.description and d.read_only, d
        by_name = {d.name: d for d in got}
        assert (by_name["rate_hz"].floating_point_range[0].from_value,
                by_name["rate_hz"].floating_point_range[0].to_value) == (1.0, 1000.0)
        assert by_name["lookahead_points"].integer_range[0].from_value == 1
        assert by_name["mode"].additional_constraints == ("one of: ensemble, latest, average, "
                                                         "continue")
        request = SetParameters.Request(parameters=[Parameter("mode", value="latest")
                                                    .to_parameter_msg()])
        result = _call(probe, setter, request).results[0]
        assert not result.successful and "read-only" in result.reason
        assert node.get_parameter("mode").value == "continue" == node.config.mode


def test_time_and_duration_messages_carry_into_the_seconds():
    """A fraction that rounds to a whole second carries: 12.9999999998 s is 13 s 0 ns (it was
    12 s 0 ns, a stamp one second early)."""
    for make in (time_msg, duration_msg):
        msg = make(12.9999999998)
        assert (msg.sec, msg.nanosec) == (13, 0), make
        msg = make(1.25)
        assert (msg.sec, msg.nanosec) == (1, 250_000_000), make
    msg = duration_msg(-0.5)
    assert (msg.sec, msg.nanosec) == (-1, 500_000_000)
