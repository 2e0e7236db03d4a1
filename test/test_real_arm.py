"""Bringing up a real SO-101 (and its leader arm), checked as far as parsing allows here: no
physical arm, ros2_control or Feetech driver runs on this machine."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml
from test_calibration import FOLLOWER

from genpol import graph, launcher, robot

REAL = {"sim": "false", "use_mock_hardware": "false"}


def _cal(tmp_path, name="follower.json", data=FOLLOWER):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _joint_params(urdf: str) -> dict[str, dict[str, str]]:
    root = ET.fromstring(urdf)
    system = root.find("ros2_control")
    return {j.get("name"): {p.get("name"): p.text for p in j.findall("param")}
            for j in system.findall("joint")}


def test_a_real_arm_without_calibration_is_refused_with_how_to_make_one():
    with pytest.raises(ValueError, match=r"needs calibration:=<the arm's LeRobot calibration "
                                         r"JSON>.*lerobot-calibrate --robot.type=so101_follower"):
        graph.resolve(REAL)
    graph.resolve({"sim": "false"})  # mock hardware needs none


def test_the_driver_gets_each_servos_id_and_offset_from_the_calibration(tmp_path):
    nodes = {n.full_name: n for n in graph.resolve({**REAL, "calibration": _cal(tmp_path)})}
    urdf = nodes["/robot_state_publisher"].params["robot_description"]
    root = ET.fromstring(urdf)
    assert root.find("ros2_control/hardware/plugin").text == \
        "feetech_ros2_driver/FeetechHardwareInterface"
    joints = _joint_params(urdf)
    assert list(joints) == list(robot.JOINT_NAMES)
    assert joints["shoulder_pan"] == {"id": "1", "offset": "2047"}
    assert joints["gripper"]["id"] == "6"
    # the follower keeps its command interfaces (the trajectory controllers claim them)
    assert len(root.findall("ros2_control/joint/command_interface")) == 6


def test_velocity_scale_starts_slow_on_a_real_arm_unless_asked(tmp_path):
    def scale(args):
        nodes = {n.name: n for n in graph.resolve(args)}
        return nodes["executor"].params["velocity_scale"]

    cal = _cal(tmp_path)
    assert scale({**REAL, "calibration": cal}) == 0.3
    assert scale({**REAL, "calibration": cal, "velocity_scale": "0.8"}) == 0.8
    assert scale({"sim": "false"}) == 1.0 and scale({}) == 1.0
    with pytest.raises(ValueError, match=r"velocity_scale must be a number in \(0, 1\]"):
        graph.resolve({"velocity_scale": "2"})


def test_a_calibration_the_driver_cannot_follow_is_refused_before_anything_starts(tmp_path):
    data = json.loads(json.dumps(FOLLOWER))
    data["wrist_flex"]["drive_mode"] = 1
    with pytest.raises(ValueError, match=r"drive_mode 1 for \['wrist_flex'\]"):
        graph.resolve({**REAL, "calibration": _cal(tmp_path, data=data)})
    with pytest.raises(ValueError, match="not found"):
        graph.resolve({**REAL, "calibration": str(tmp_path / "missing.json")})


def test_leader_arm_runs_its_own_read_only_driver_teleop_and_recorder(tmp_path):
    args = {**REAL, "calibration": _cal(tmp_path), "leader": "true",
            "leader_usb_port": "/dev/ttyACM7"}
    with pytest.raises(ValueError, match="needs leader_calibration:="):
        graph.resolve(args)
    leader = dict(FOLLOWER, shoulder_pan={**FOLLOWER["shoulder_pan"], "range_min": 1000})
    nodes = {n.full_name: n for n in graph.resolve(
        {**args, "leader_calibration": _cal(tmp_path, "leader.json", leader)})}
    for name in ("/leader/robot_state_publisher", "/leader/controller_manager",
                 "/leader/spawner_joint_state_broadcaster", "/teleop", "/recorder",
                 "/controller_manager", "/camera"):
        assert name in nodes, name
    # teleop commands the follower: no executor (or planner) to fight it
    assert "/executor" not in nodes and "/planner" not in nodes
    urdf = nodes["/leader/robot_state_publisher"].params["robot_description"]
    root = ET.fromstring(urdf)
    assert root.find("ros2_control/hardware/param").text == "/dev/ttyACM7"
    assert not root.findall("ros2_control/joint/command_interface")  # driver: torque off
    assert _joint_params(urdf)["shoulder_pan"]["offset"] == str(round((1000 + 3347) / 2))
    assert nodes["/leader/robot_state_publisher"].params["frame_prefix"] == "leader/"
    # the leader's controller_manager finds its parameters under its full name
    cm = nodes["/leader/controller_manager"]
    keys = yaml.safe_load(cm.params_files[0].read_text())
    assert "joint_state_broadcaster" in keys[cm.full_name]["ros__parameters"]
    spawner = nodes["/leader/spawner_joint_state_broadcaster"]
    assert spawner.arguments[-2:] == ("--controller-manager", "/leader/controller_manager")
    # genpol bringup: namespaced processes, distinct names and override files
    names = [launcher.process_name(n) for n in nodes.values()]
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match="leader:=true needs sim:=false"):
        graph.resolve({"leader": "true"})


def test_namespaced_nodes_get_their_namespace_and_full_name_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "_external_executable", lambda node: f"/opt/{node.executable}")
    nodes = {n.full_name: n for n in graph.resolve({"sim": "false", "leader": "true"})}
    rsp = nodes["/leader/robot_state_publisher"]
    argv = launcher.node_argv(rsp, tmp_path)
    assert argv[argv.index("--ros-args"):][:5] == ["--ros-args", "-r",
                                                   "__node:=robot_state_publisher", "-r",
                                                   "__ns:=/leader"]
    extra = yaml.safe_load((tmp_path / "leader.robot_state_publisher.overrides.yaml").read_text())
    assert list(extra) == ["/leader/robot_state_publisher"]
    # mock hardware for both arms: no calibration needed, the leader still state-only
    assert "command_interface" not in rsp.params["robot_description"]
    assert "command_interface" in nodes["/robot_state_publisher"].params["robot_description"]
