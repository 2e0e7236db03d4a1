"""What this machine cannot run (Docker, RViz, ros2_control) is checked as far as it can be:
the files parse, every path they copy exists, every topic RViz shows is one the graph publishes,
and the URDF, the controllers and robot.py agree on the six SO-101 joints."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from genpol import graph, robot

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


# ------------------------------------------------------------------------------------- Docker
def _dockerfile_instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def test_dockerfile_builds_from_ros_jazzy_and_copies_only_existing_paths():
    instructions = _dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("ros:jazzy")
    context = (DOCKER / yaml.safe_load((DOCKER / "compose.yaml").read_text())
               ["services"]["genpol"]["build"]["context"]).resolve()
    assert context == ROOT
    copies = [shlex.split(rest) for word, rest in instructions if word == "COPY"]
    assert copies, "no COPY instructions"
    for args in copies:
        args = [a for a in args if not a.startswith("--")]
        for source in args[:-1]:
            assert (context / source).exists(), f"Dockerfile copies missing path {source}"
    text = (DOCKER / "Dockerfile").read_text()
    assert "colcon build" in text and "TORCH_INDEX_URL" in text
    entry = [rest for word, rest in instructions if word == "ENTRYPOINT"][0]
    assert (ROOT / "docker" / Path(yaml.safe_load(entry)[0]).name).is_file()


def test_compose_runs_bringup_with_gpu_devices_and_host_network():
    service = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["genpol"]
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    assert service["network_mode"] == "host"
    gpus = service["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in gpus)
    assert "/dev:/dev" in service["volumes"]
    rules = " ".join(service["device_cgroup_rules"])
    assert "166:" in rules and "81:" in rules  # ttyACM* and video* device majors
    assert "bringup.launch.py" in service["command"]
    # the arm's speed comes from the environment, slow unless raised; a real arm is calibrated
    assert "GENPOL_VELOCITY_SCALE=${GENPOL_VELOCITY_SCALE:-0.3}" in service["environment"]
    assert "velocity_scale:=$${GENPOL_VELOCITY_SCALE}" in service["command"]
    assert "calibration:=/data/calibration/follower.json" in service["command"]


# ------------------------------------------------------------------------------ ros2_control
# (the URDF itself: test_sim.py::test_urdf_file_is_generated_and_has_the_six_joints_...)
def test_controllers_claim_every_joint_once_with_interfaces_the_urdf_offers():
    cfg = yaml.safe_load((ROOT / "config" / "controllers.yaml").read_text())
    arm = cfg["arm_controller"]["ros__parameters"]
    gripper = cfg["gripper_controller"]["ros__parameters"]
    assert arm["joints"] == list(robot.ARM_JOINTS)
    assert gripper["joints"] == [robot.GRIPPER_JOINT]
    assert arm["command_interfaces"] == gripper["command_interfaces"] == ["position"]
    types = cfg["controller_manager"]["ros__parameters"]
    assert types["arm_controller"]["type"] == \
        "joint_trajectory_controller/JointTrajectoryController"
    assert types["joint_state_broadcaster"]["type"] == \
        "joint_state_broadcaster/JointStateBroadcaster"


# ------------------------------------------------------------------------------------- RViz
def _rviz_topics() -> dict[str, str]:
    cfg = yaml.safe_load((ROOT / "config" / "genpol.rviz").read_text())
    out = {}
    for display in cfg["Visualization Manager"]["Displays"]:
        for key in ("Topic", "Description Topic"):
            if isinstance(display.get(key), dict) and display["Enabled"]:
                out[display["Topic" if key == "Topic" else key]["Value"]] = display["Class"]
    return out


def test_rviz_config_is_launched_and_shows_the_robot_chunks_and_camera():
    topics = _rviz_topics()
    assert {"/robot_description", "/genpol/chunk_markers", "/genpol/executed_path",
            "/camera/image_raw"} <= set(topics)
    rviz = [s for s in graph.NODES if s.name == "rviz2"][0]
    assert "@config/genpol.rviz" in rviz.arguments


def test_every_topic_rviz_shows_is_published_by_the_graph(ros):
    """Our nodes are started here and asked what they publish; robot_state_publisher (a ROS
    package this machine lacks) is started by the graph whenever RViz is, and publishes
    /robot_description and /tf by its documented interface."""
    import rclpy
    from rclpy.parameter import Parameter

    from genpol.nodes.executor import ExecutorNode
    from genpol.nodes.planner import PlannerNode
    from genpol.nodes.sim_arm import SimArmNode
    from ros_helpers import spinning, wait_for

    for sim in ("true", "false"):
        selected = {s.name for s in graph.select(graph.resolve_arguments(
            {"sim": sim, "rviz": "true"}))}
        assert "robot_state_publisher" in selected, f"sim:={sim} rviz:=true lacks it"
    external = {"/robot_description": "robot_state_publisher", "/tf": "robot_state_publisher"}
    nodes = [SimArmNode(parameter_overrides=[Parameter("camera_rate_hz", value=1.0)]),
             PlannerNode(parameter_overrides=[Parameter("cpu_threads", value=0)]),
             ExecutorNode()]
    probe = rclpy.create_node("probe")
    wanted = set(_rviz_topics()) - set(external)
    with spinning(*nodes, probe):
        def published() -> set[str]:
            return {name for name, _ in probe.get_topic_names_and_types()
                    if probe.get_publishers_info_by_topic(name)}
        assert wait_for(lambda: wanted <= published(), timeout=10), wanted - published()


# ------------------------------------------------------------------------- native install
#: the rosdep key (package.xml) or pip requirement (requirements/runtime.txt) behind each
#: third-party module genpol imports
PROVIDERS = {
    "numpy": "python3-numpy", "yaml": "python3-yaml", "cv2": "python3-opencv",
    "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "torch": "torch", "safetensors": "safetensors", "diffusers": "diffusers",
    "mujoco": "mujoco", "OpenGL": "mujoco", "rosbags": "rosbags", "mcap": "mcap", "av": "av",
    "pyarrow": "pyarrow",
}
ROS_RUN_KEYS = ["ros2_control", "hardware_interface", "controller_manager",
                "joint_state_broadcaster", "joint_trajectory_controller", "feetech_ros2_driver",
                "robot_state_publisher", "rviz2", "rosbag2_storage_mcap", "launch", "launch_ros"]


def _package_xml_keys() -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "genpol"
    return [e.text.strip() for e in root if e.tag in ("exec_depend", "depend") and e.text]


def _pip_requirements() -> list[str]:
    import re

    lines = (ROOT / "requirements" / "runtime.txt").read_text().splitlines()
    return [re.split(r"[<>=!~ \[]", line.strip())[0] for line in lines
            if line.strip() and not line.startswith("#")]


def test_package_xml_names_every_run_dependency_by_its_rosdep_key():
    keys = _package_xml_keys()
    assert len(keys) == len(set(keys)), "a key listed twice"
    for key in ROS_RUN_KEYS:
        assert key in keys, key
    # pip-only packages have no rosdep key: listing one would break `rosdep install`
    for pip_only in ("torch", "diffusers", "safetensors", "mujoco", "rosbags", "mcap", "av",
                     "pyarrow", "python3-torch", "python3-av", "python3-pyarrow"):
        assert pip_only not in keys, pip_only


def test_every_module_genpol_imports_comes_from_package_xml_or_the_pip_requirements():
    import ast
    import sys

    keys, pip = set(_package_xml_keys()), set(_pip_requirements())
    found: dict[str, str] = {}
    for path in (ROOT / "src" / "genpol").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 \
                and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top != "genpol" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    assert "torch" in found and "rclpy" in found  # the scan sees imports
    for module, where in sorted(found.items()):
        provider = PROVIDERS.get(module, module)  # ROS packages: module name = rosdep key
        assert provider in keys or provider in pip, \
            f"{where} imports {module}: add {provider} to package.xml or requirements/runtime.txt"
    # setup.py installs exactly the runtime requirements
    setup = (ROOT / "setup.py").read_text()
    assert 'install_requires=_requirements("requirements/runtime.txt")' in setup
