"""The sim_arm node over real rclpy: it behaves like the arm behind ros2_control's
joint_trajectory_controller, and publishes joint states and camera frames."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from genpol import robot  # noqa: E402
from genpol.camera.image import from_image_fields  # noqa: E402
from genpol.nodes.messages import duration_msg, trajectory_msg  # noqa: E402
from genpol.nodes.sim_arm import SimArmNode  # noqa: E402
from genpol.sim import gl  # noqa: E402
from ros_helpers import TopicCollector, spinning, wait_for  # noqa: E402


def _positions(msg: JointState) -> dict[str, float]:
    return dict(zip(msg.name, msg.position, strict=True))


def _latest_positions(states: TopicCollector) -> dict[str, float]:
    return _positions(states.messages[-1])


def test_sim_arm_tracks_trajectories_by_name_and_rejects_bad_ones(ros):
    node = SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0)])
    probe = rclpy.create_node("probe")
    states = TopicCollector(probe, JointState, "/joint_states")
    arm_pub = probe.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", 10)
    with spinning(node, probe):
        assert states.wait(20, timeout=10)
        t0 = time.monotonic()
        assert states.wait(len(states) + 100, timeout=5)
        rate = 100 / (time.monotonic() - t0)
        assert 70 < rate < 130, f"joint states at {rate:.0f} Hz, want about 100"
        msg = states.messages[-1]
        assert list(msg.name) == list(robot.JOINT_NAMES) and len(msg.velocity) == 6
        start = _latest_positions(states)

        # Joints in reversed order: matched by name, not position in the message.
        goal = {"shoulder_pan": 0.3, "shoulder_lift": -1.2, "elbow_flex": 0.9,
                "wrist_flex": 0.3, "wrist_roll": -0.5}  # tip well above the table
        names = list(reversed(robot.ARM_JOINTS))
        arm_pub.publish(trajectory_msg(names, [duration_msg(0.5)],
                                       np.array([[goal[n] for n in names]])))
        assert wait_for(lambda: all(abs(_latest_positions(states)[j] - v) < 0.03
                                    for j, v in goal.items()), timeout=5), \
            (_latest_positions(states), goal)

        # Unknown joints, non-increasing times and ragged points are refused: the arm stays.
        bad = [trajectory_msg(names[:-1] + ["elbow"], [duration_msg(0.5)], np.zeros((1, 5))),
               trajectory_msg(names, [duration_msg(0.5), duration_msg(0.5)], np.zeros((2, 5))),
               trajectory_msg(names, [duration_msg(0.2), duration_msg(0.4)], np.zeros((2, 5)))]
        bad[2].points[1].positions = [0.0, 0.0]
        for msg in bad:
            arm_pub.publish(msg)
        assert wait_for(lambda: node.rejected == 3, timeout=3), node.rejected
        time.sleep(0.5)
        held = _latest_positions(states)
        assert all(abs(held[j] - v) < 0.03 for j, v in goal.items()), held
        assert abs(held["gripper"] - start["gripper"]) < 0.05  # its own controller, untouched


@pytest.mark.parametrize("scene_seed", [-1, 7])
def test_sim_arm_reset_service_redraws_the_scene(ros, scene_seed):
    node = SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0),
                                           Parameter("seed", value=3),
                                           Parameter("scene_seed", value=scene_seed)])
    probe = rclpy.create_node("probe")
    client = probe.create_client(Trigger, "/sim_arm/reset")
    status = TopicCollector(probe, String, "/sim_arm/episode")
    with spinning(node, probe):
        assert client.wait_for_service(timeout_sec=5)
        before = node.sim.task
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=5)
        assert future.result().success and "seed 4" in future.result().message
        after = node.sim.task
        assert not np.allclose(after.q_start, before.q_start)
        # A fixed scene_seed keeps the layout and varies only the start.
        assert np.allclose(after.target, before.target) == (scene_seed >= 0)
        assert wait_for(lambda: any(json.loads(m.data)["episode"] == 1
                                    for m in status.messages), timeout=3)
        last = json.loads(status.messages[-1].data)
        assert last["seed"] == 4 and last["success"] is False and last["collided"] is False
        assert last["scene_spread"] == 1.0
        assert np.allclose(last["target"], after.target, atol=1e-4)


def test_sim_arm_episodes_per_start_repeats_each_start_pose(ros):
    node = SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0),
                                           Parameter("seed", value=3),
                                           Parameter("episodes_per_start", value=2)])
    probe = rclpy.create_node("probe")
    client = probe.create_client(Trigger, "/sim_arm/reset")
    seeds = []
    with spinning(node, probe):
        assert client.wait_for_service(timeout_sec=5)
        for _ in range(3):
            future = client.call_async(Trigger.Request())
            assert wait_for(future.done, timeout=5) and future.result().success
            seeds.append(node.sim.task.seed)
    assert seeds == [4, 4, 5]


def test_sim_arm_refuses_episodes_per_start_below_one(ros):
    with pytest.raises(ValueError, match="episodes_per_start"):
        SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0),
                                        Parameter("episodes_per_start", value=0)])


@pytest.mark.skipif(gl.configure() is None, reason=f"no offscreen GL: {gl.problem}")
def test_sim_arm_publishes_both_cameras(ros):
    node = SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=10.0),
                                           Parameter("camera_width", value=64),
                                           Parameter("camera_height", value=48)])
    probe = rclpy.create_node("probe")
    front = TopicCollector(probe, Image, "/camera/image_raw")
    wrist = TopicCollector(probe, Image, "/wrist_camera/image_raw")
    info = TopicCollector(probe, CameraInfo, "/camera/camera_info")
    with spinning(node, probe):
        assert front.wait(5, timeout=10) and wrist.wait(5, timeout=10) and info.wait(1)
        for msg, frame in ((front.messages[-1], "front_camera"),
                           (wrist.messages[-1], "wrist_camera")):
            img = from_image_fields(msg.height, msg.width, msg.encoding, msg.step, msg.data)
            assert img.shape == (48, 64, 3) and msg.encoding == "rgb8"
            assert msg.header.frame_id == frame
            assert img.std() > 5, "a blank frame"
        k = info.messages[-1].k
        assert info.messages[-1].width == 64 and k[2] == pytest.approx(31.5)


def test_sim_arm_refuses_an_unknown_task(ros):
    with pytest.raises(ValueError, match="task must be one of"):
        SimArmNode(parameter_overrides=[Parameter("task", value="juggle")])


def test_sim_arm_ignores_commands_planned_before_a_reset(ros):
    """After ~/reset, a trajectory that starts far from the new start pose (one computed for
    the old episode) is ignored for reset_guard_s; one that starts at the new pose is followed
    and ends the guard."""
    node = SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0),
                                           Parameter("reset_guard_s", value=5.0)])
    probe = rclpy.create_node("probe")
    client = probe.create_client(Trigger, "/sim_arm/reset")
    states = TopicCollector(probe, JointState, "/joint_states")
    arm_pub = probe.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", 10)
    names = list(robot.ARM_JOINTS)
    with spinning(node, probe):
        assert client.wait_for_service(timeout_sec=5) and states.wait(5, timeout=5)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=5) and future.result().success
        start = node.sim.task.q_start[:5]
        stale = start + np.array([0.5, 0.0, 0.0, 0.0, 0.0])
        arm_pub.publish(trajectory_msg(names, [duration_msg(0.1)], stale[None]))
        assert wait_for(lambda: node.ignored_after_reset == 1, timeout=3)
        time.sleep(0.3)
        assert abs(_latest_positions(states)["shoulder_pan"] - start[0]) < 0.02
        moved = start + np.array([0.1, 0.0, 0.0, 0.0, 0.0])
        arm_pub.publish(trajectory_msg(names, [duration_msg(0.02), duration_msg(0.3)],
                                       np.stack([start, moved])))
        assert wait_for(lambda: abs(_latest_positions(states)["shoulder_pan"] - moved[0])
                        < 0.02, timeout=3)
        # The guard is over: a far target is followed again.
        arm_pub.publish(trajectory_msg(names, [duration_msg(0.5)], stale[None]))
        assert wait_for(lambda: abs(_latest_positions(states)["shoulder_pan"] - stale[0])
                        < 0.03, timeout=3)
        assert node.ignored_after_reset == 1


def test_sim_arm_push_displaces_the_arm_then_it_tracks_the_command_again(ros):
    """~/push shoves the shoulder/elbow joints by push_offset_rad; the episode status counts
    it; the controllers then bring the arm back onto the commanded trajectory."""
    offset = [0.2, 0.0, -0.1, 0.0, 0.0, 0.0]
    node = SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0),
                                           Parameter("push_offset_rad", value=offset)])
    probe = rclpy.create_node("probe")
    push = probe.create_client(Trigger, "/sim_arm/push")
    reset = probe.create_client(Trigger, "/sim_arm/reset")
    states = TopicCollector(probe, JointState, "/joint_states")
    status = TopicCollector(probe, String, "/sim_arm/episode")
    arm_pub = probe.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", 10)
    names = list(robot.ARM_JOINTS)
    with spinning(node, probe):
        assert push.wait_for_service(timeout_sec=5) and states.wait(5, timeout=5)
        assert status.wait(1, timeout=3) and json.loads(status.messages[-1].data)["pushes"] == 0
        start = node.sim.task.q_start[:5]
        goal = start + np.array([-0.3, 0.0, 0.0, 0.0, 0.0])
        arm_pub.publish(trajectory_msg(names, [duration_msg(1.5)], goal[None]))
        time.sleep(0.5)  # moving towards the goal
        seen = len(states)
        future = push.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=5) and future.result().success
        message = future.result().message
        assert "shoulder_pan +0.200, elbow_flex -0.100 rad" in message, message
        cm = float(message.split("tip moved ")[1].split(" cm")[0])
        assert 3.0 < cm < 6.0, message

        # The next joint states show the arm well off the path it was on ...
        assert states.wait(seen + 3, timeout=3)
        pans = [_positions(m)["shoulder_pan"] for m in states.messages[seen - 1:]]
        assert max(np.diff(pans)) > 0.05, pans  # moving right (pan falling) until kicked left
        # ... counted in the episode status with its sim time ...
        assert wait_for(lambda: json.loads(status.messages[-1].data)["pushes"] == 1, timeout=3)
        last = json.loads(status.messages[-1].data)
        assert 0.4 < last["pushed_at_s"] <= last["time_s"]
        assert f"pushed at {last['pushed_at_s']:.2f} s" in message
        # ... and then it follows the commanded trajectory to its goal again.
        assert wait_for(lambda: all(abs(_latest_positions(states)[j] - g) < 0.03 for j, g in
                                    zip(names, goal, strict=True)), timeout=3), \
            (_latest_positions(states), goal)

        # A reset starts the count again.
        future = reset.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=5) and future.result().success
        assert wait_for(lambda: json.loads(status.messages[-1].data)["episode"] == 1, timeout=3)
        last = json.loads(status.messages[-1].data)
        assert last["pushes"] == 0 and last["pushed_at_s"] is None


@pytest.mark.parametrize("offset", [[0.1, 0.0, -0.1], [0.1, float("nan"), 0.0, 0.0, 0.0, 0.0]])
def test_sim_arm_refuses_a_bad_push_offset(ros, offset):
    with pytest.raises(ValueError, match="push_offset_rad must be 6 finite values"):
        SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=0.0),
                                        Parameter("push_offset_rad", value=offset)])
