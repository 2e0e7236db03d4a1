"""The simulated SO-101: one robot definition (URDF = MJCF = numpy FK), physics, rendering,
multimodal scripted experts, and the joint_trajectory_controller stand-in. Fast (a few s)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from genpol import description, robot
from genpol.sim import tasks
from genpol.sim.trajectory import TrajectoryFollower

# genpol.sim.scene picks the GL backend before it imports mujoco, so import it first.
pytest.importorskip("genpol.sim.scene", reason="mujoco not installed (pip install mujoco)")
import mujoco  # noqa: E402
from genpol.sim import gl  # noqa: E402
from genpol.sim.arm import ArmSim  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    with ArmSim() as s:
        yield s


def _run(sim: ArmSim, task: str, seed: int, mode: str | None) -> tasks.ExpertPlan:
    inst = sim.reset(seed, task)
    plan = tasks.expert(inst, mode, np.random.default_rng(seed))
    sim.step(plan.duration + 0.3, targets=plan)
    return plan


# ----------------------------------------------------------------------------- description


def test_urdf_file_is_generated_and_has_the_six_joints_with_limits():
    text = description.URDF_PATH.read_text()
    assert text == description.urdf(), "config/so101.urdf is stale: python -m genpol.description"
    root = ET.fromstring(text)
    joints = {j.get("name"): j for j in root.findall("joint") if j.get("type") == "revolute"}
    assert list(joints) == list(robot.JOINT_NAMES)
    for spec in robot.JOINTS:
        limit = joints[spec.name].find("limit")
        assert float(limit.get("lower")) == pytest.approx(spec.lower, abs=1e-5)
        assert float(limit.get("upper")) == pytest.approx(spec.upper, abs=1e-5)
        assert float(limit.get("velocity")) == pytest.approx(spec.max_velocity)
        assert float(limit.get("effort")) == pytest.approx(spec.max_effort)
    control = root.find("ros2_control")
    assert control.find("hardware/plugin").text == "mock_components/GenericSystem"
    for joint in control.findall("joint"):
        assert [c.get("name") for c in joint.findall("command_interface")] == ["position"]
        assert [s.get("name") for s in joint.findall("state_interface")] == ["position",
                                                                             "velocity"]
    assert [j.get("name") for j in control.findall("joint")] == list(robot.JOINT_NAMES)
    other = ET.fromstring(description.urdf(hardware_plugin="my_pkg/Arm",
                                           hardware_params={"port": "/dev/ttyACM0"}))
    assert other.find("ros2_control/hardware/plugin").text == "my_pkg/Arm"
    assert other.find("ros2_control/hardware/param").text == "/dev/ttyACM0"


def test_mjcf_joints_match_robot_py(sim):
    m = mujoco.MjModel.from_xml_string(description.mjcf())
    for model in (m, sim.model):
        for spec in robot.JOINTS:
            assert model.jnt_range[model.joint(spec.name).id] == pytest.approx(
                [spec.lower, spec.upper], abs=1e-5)
            assert model.actuator(spec.name).forcerange[1] == pytest.approx(spec.max_effort)


def test_forward_kinematics_matches_mujoco_site(sim):
    rng = np.random.default_rng(0)
    q = rng.uniform(robot.lower_limits(), robot.upper_limits(), (20, 6))
    fk = robot.forward_kinematics(q)
    assert fk.shape == (20, 3)
    assert robot.forward_kinematics(q.reshape(4, 5, 6)).shape == (4, 5, 3)
    data = mujoco.MjData(sim.model)
    adr = [sim.model.jnt_qposadr[sim.model.joint(n).id] for n in robot.JOINT_NAMES]
    site = sim.model.site(description.TIP_SITE).id
    for qi, expected in zip(q, fk, strict=True):
        data.qpos[adr] = qi
        mujoco.mj_kinematics(sim.model, data)
        np.testing.assert_allclose(data.site_xpos[site], expected, atol=1e-9)


# ----------------------------------------------------------------------------- physics


def test_scene_loads_and_steps(sim):
    assert sim.model.opt.timestep <= 0.002
    sim.reset(0, tasks.REACH_AROUND)
    assert sim.time == 0.0
    sim.step(0.1)
    assert sim.time == pytest.approx(0.1)
    assert sim.joint_positions().shape == sim.joint_velocities().shape == (6,)
    np.testing.assert_allclose(sim.ee_position(), robot.forward_kinematics(
        sim.joint_positions()), atol=1e-9)


def test_position_targets_are_tracked_within_a_second(sim):
    sim.reset(1, tasks.REACH_AROUND)
    target = sim.joint_positions() + np.array([0.4, 0.3, -0.3, 0.3, 0.5, 0.4])
    sim.set_position_targets(target)
    sim.step(0.8)
    np.testing.assert_allclose(sim.joint_positions(), target, atol=0.02)
    assert np.abs(sim.joint_velocities()).max() < 0.05
    with pytest.raises(ValueError):
        sim.set_position_targets(np.full(6, np.nan))


def test_push_displaces_the_joints_then_the_servos_recover(sim):
    sim.reset(1, tasks.REACH_AROUND)
    q0, ctrl = sim.joint_positions(), sim.data.ctrl.copy()
    sim.step(0.2)  # settled at the start pose, holding it
    offset = np.array([0.15, 0.0, -0.1, 0.0, 0.0, 0.0])
    moved = sim.push(offset)
    np.testing.assert_allclose(sim.joint_positions(), q0 + offset, atol=0.01)
    assert np.abs(sim.joint_velocities()).max() == 0.0
    assert moved == pytest.approx(np.linalg.norm(robot.forward_kinematics(q0 + offset)
                                                 - robot.forward_kinematics(q0)), abs=3e-3)
    np.testing.assert_allclose(sim.ee_position(), robot.forward_kinematics(
        sim.joint_positions()), atol=1e-9)  # poses refreshed, not left from before the push
    np.testing.assert_array_equal(sim.data.ctrl, ctrl)  # set points untouched
    sim.step(1.0)
    np.testing.assert_allclose(sim.joint_positions(), q0, atol=0.02)
    # Clipped to the joint limits; a bad offset changes nothing.
    sim.push(np.array([10.0, 0, 0, 0, 0, 0]))
    assert sim.joint_positions()[0] == pytest.approx(robot.upper_limits()[0])
    q = sim.joint_positions()
    for bad in (np.zeros(5), np.array([np.nan, 0, 0, 0, 0, 0])):
        with pytest.raises(ValueError, match="push offset"):
            sim.push(bad)
    np.testing.assert_array_equal(sim.joint_positions(), q)


def test_default_push_moves_the_tip_a_few_cm_mid_reach():
    """sim_arm's default push_offset_rad, at the experts' poses 1 s into reach_around."""
    from genpol.parameters import defaults

    offset = np.array(defaults("sim_arm")["push_offset_rad"])
    moved = []
    for seed in range(1, 11):
        inst = tasks.sample(tasks.REACH_AROUND, seed)
        for mode in tasks.MODES[tasks.REACH_AROUND]:
            q = tasks.expert(inst, mode, np.random.default_rng(seed))(1.0)
            moved.append(np.linalg.norm(robot.forward_kinematics(q + offset)
                                        - robot.forward_kinematics(q)))
    assert min(moved) >= 0.03 and max(moved) <= 0.055, moved


@pytest.mark.skipif(gl.configure() is None, reason=f"no OpenGL backend: {gl.problem}")
@pytest.mark.parametrize("camera", ["front", "wrist"])
def test_cameras_render_images(sim, camera):
    sim.reset(0, tasks.PICK_PLACE)
    img = sim.render(camera, 224, 224)
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert img.std() > 10, "blank image"
    small = sim.render(camera, 96, 64)
    assert small.shape == (64, 96, 3)
    sim.step(0.5, targets=tasks.expert(sim.task, "top"))
    assert not np.array_equal(sim.render(camera, 224, 224), img), "view did not change"


# ----------------------------------------------------------------------------- tasks


def test_sample_is_deterministic_per_seed():
    a, b = tasks.sample(tasks.PICK_PLACE, 3), tasks.sample(tasks.PICK_PLACE, 3)
    np.testing.assert_array_equal(a.q_start, b.q_start)
    np.testing.assert_array_equal(a.cube, b.cube)
    assert not np.allclose(a.cube, tasks.sample(tasks.PICK_PLACE, 4).cube)
    pa = tasks.expert(a, "front", np.random.default_rng(1))
    pb = tasks.expert(b, "front", np.random.default_rng(1))
    np.testing.assert_array_equal(pa.positions, pb.positions)
    np.testing.assert_allclose(np.diff(pa.times), 1 / tasks.RATE_HZ)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_experts_succeed_in_both_modes(sim, task):
    for seed in (0, 1):
        for mode in tasks.MODES[task]:
            plan = _run(sim, task, seed, mode)
            assert tasks.success(sim), (task, seed, mode)
            assert not sim.collided
            assert tasks.mode_of(sim.task, plan.positions) == mode


def test_modes_occur_over_seeds_and_differ():
    for task in tasks.TASKS:
        seen = {tasks.expert(tasks.sample(task, s), None, np.random.default_rng(s)).mode
                for s in range(10)}
        assert seen == set(tasks.MODES[task]), task
    reach = tasks.sample(tasks.REACH_AROUND, 5)
    left, right = (tasks.expert(reach, m, np.random.default_rng(0)) for m in ("left", "right"))
    y_left = robot.forward_kinematics(left.positions)[:, 1].max() - reach.obstacle[1]
    y_right = robot.forward_kinematics(right.positions)[:, 1].min() - reach.obstacle[1]
    assert y_left > 0.08 and y_right < -0.08  # passes well clear on each side
    pick = tasks.sample(tasks.PICK_PLACE, 5)
    top, front = (tasks.expert(pick, m, np.random.default_rng(0)) for m in ("top", "front"))
    assert np.abs(top.positions - front.positions[: len(top.positions)]).max() > 0.5


def test_averaging_the_two_reach_modes_hits_the_obstacle(sim):
    """Why the task exists: the mean of left and right goes through the post."""
    inst = sim.reset(2, tasks.REACH_AROUND)
    plans = [tasks.expert(inst, m, np.random.default_rng(0)) for m in ("left", "right")]
    n = min(len(p.positions) for p in plans)
    mean = tasks.ExpertPlan(plans[0].times[:n],
                            (plans[0].positions[:n] + plans[1].positions[:n]) / 2, "mean")
    assert tasks.mode_of(inst, mean.positions) == "through"
    sim.step(mean.duration, targets=mean)
    assert sim.collided and not tasks.success(sim)
    sim.reset(2, tasks.REACH_AROUND)
    assert not sim.collided and not sim.collisions()


# ----------------------------------------------------------------------------- trajectory


NAMES = list(robot.JOINT_NAMES)


def test_follower_holds_then_interpolates_then_holds_the_end():
    f = TrajectoryFollower(initial=np.zeros(6))
    np.testing.assert_array_equal(f.target(0.0), np.zeros(6))
    shuffled = NAMES[::-1]  # any order: matched by name
    pts = np.array([[1.0] * 6, [3.0] * 6]) * np.arange(1, 7)[::-1]
    assert f.set_trajectory(1.0, shuffled, [1.0, 2.0], pts) == (True, "")
    np.testing.assert_allclose(f.target(0.5), 0.0)  # before the start: hold
    np.testing.assert_allclose(f.target(1.5), 0.5 * np.arange(1, 7))  # ramp from the command
    np.testing.assert_allclose(f.target(2.5), 2.0 * np.arange(1, 7))
    np.testing.assert_allclose(f.target(9.0), 3.0 * np.arange(1, 7))  # after the end: hold
    assert f.end_time == pytest.approx(3.0)


def test_follower_new_trajectory_replaces_the_rest_of_the_current_one():
    f = TrajectoryFollower(initial=np.zeros(6))
    f.set_trajectory(0.0, NAMES, [2.0], [[2.0] * 6])
    assert f.target(0.5)[0] == pytest.approx(0.5)
    assert f.set_trajectory(1.0, NAMES, [1.0], [[-1.0] * 6])[0]
    assert f.target(0.9)[0] == pytest.approx(0.9)  # the old one plays until the new start
    assert f.target(1.0)[0] == pytest.approx(1.0)  # the command at the start anchors the ramp
    assert f.target(1.5)[0] == pytest.approx(0.0)
    assert f.target(2.0)[0] == pytest.approx(-1.0)


def test_follower_refusals_change_nothing():
    f = TrajectoryFollower(initial=np.ones(6))
    cases = {
        "unknown": (NAMES[:5] + ["elbow"], [1.0], [[0.0] * 6]),
        "missing": (NAMES[:5], [1.0], [[0.0] * 5]),
        "duplicate": (NAMES[:5] + ["gripper", "gripper"], [1.0], [[0.0] * 7]),
        "strictly increasing": (NAMES, [1.0, 1.0], [[0.0] * 6] * 2),
        "negative": (NAMES, [-0.1], [[0.0] * 6]),
        "shape": (NAMES, [1.0, 2.0], [[0.0] * 6]),
        "non-finite": (NAMES, [1.0], [[np.nan] * 6]),
        "non-empty": (NAMES, [], np.zeros((0, 6))),
    }
    for word, (names, times, pts) in cases.items():
        ok, reason = f.set_trajectory(0.0, names, times, pts)
        assert not ok and word in reason, (word, reason)
    ok, reason = f.set_trajectory(0.0, NAMES, [1.0], [[0.0] * 6], now=2.0)
    assert not ok and "before now" in reason
    np.testing.assert_array_equal(f.target(5.0), np.ones(6))
    assert f.end_time is None


def test_follower_partial_goals_when_allowed():
    arm = TrajectoryFollower(robot.ARM_JOINTS, initial=np.zeros(5),
                             allow_partial_joints_goal=True)
    assert arm.set_trajectory(0.0, ["elbow_flex"], [1.0], [[1.0]]) == (True, "")
    np.testing.assert_allclose(arm.target(1.0), [0, 0, 1.0, 0, 0])
    assert not arm.set_trajectory(0.0, ["gripper"], [1.0], [[1.0]])[0]  # not this controller's


def test_follower_drives_the_sim(sim):
    sim.reset(0, tasks.REACH_AROUND)
    f = TrajectoryFollower(initial=sim.joint_positions())
    goal = sim.joint_positions() + np.array([0.2, -0.2, -0.2, 0.2, 0.2, 0.2])  # up, clear
    assert f.set_trajectory(sim.time, NAMES, [0.5], [goal])[0]
    sim.step(1.0, targets=f.target)
    np.testing.assert_allclose(sim.joint_positions(), goal, atol=0.02)
