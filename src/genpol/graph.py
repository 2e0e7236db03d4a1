"""The one graph definition: which nodes make up a bringup, with which parameters.

`launch/bringup.launch.py` (ros2 launch) and `genpol bringup` (no ROS distribution needed) both
read this, so the two cannot drift apart. No rclpy here: this is plain data.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "genpol"


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    #: "string" or "int": the type the parameters it sets get (launch arguments are strings)
    kind: str = "string"


ARGUMENTS: tuple[Argument, ...] = (
    Argument("sim", "true", "true: MuJoCo sim_arm stands in for the arm; false: the real arm "
                            "through ros2_control"),
    Argument("policy_path", "", "checkpoint directory for the planner (empty: set it later)"),
    Argument("executor_mode", "ensemble", "executor chunk merging: ensemble, latest or average"),
    Argument("rviz", "false", "start RViz with config/genpol.rviz"),
    Argument("use_mock_hardware", "true", "sim:=false only: mock_components/GenericSystem "
                                          "instead of the real servo driver"),
    Argument("hardware_plugin", "feetech_ros2_driver/FeetechHardwareInterface",
             "sim:=false use_mock_hardware:=false: the ros2_control driver of the servos"),
    Argument("usb_port", "/dev/ttyACM0", "the servo bus adapter, for the Feetech driver"),
    Argument("task", "reach_around", "sim:=true only: the simulated task, reach_around or "
                                     "pick_place"),
    Argument("seed", "0", "sim:=true only: seed of the first start pose (each ~/reset of sim_arm "
                          "draws the next)", kind="int"),
    Argument("scene_seed", "-1", "sim:=true only: >= 0 keeps one object layout for every "
                                 "episode; -1 draws a layout per episode", kind="int"),
)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    package: str = PACKAGE
    params_file: str | None = None  # in config/
    when: str = "always"  # always | sim | real | rviz, or alternatives joined by "|"
    #: parameter name <- launch argument name
    overrides: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    extra_params: dict[str, Any] = field(default_factory=dict)


def _real(name: str, executable: str, package: str, **kw: Any) -> NodeSpec:
    return NodeSpec(name, executable, package, when="real", **kw)


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("sim_arm", "sim_arm", params_file="sim_arm.yaml", when="sim",
             overrides=(("task", "task"), ("seed", "seed"), ("scene_seed", "scene_seed"))),
    NodeSpec("camera", "camera", params_file="camera.yaml", when="real"),
    NodeSpec("planner", "planner", params_file="planner.yaml",
             overrides=(("policy_path", "policy_path"),)),
    NodeSpec("executor", "executor", params_file="executor.yaml",
             overrides=(("mode", "executor_mode"),)),
    # RViz draws the robot from robot_state_publisher's /robot_description and /tf, in sim too.
    NodeSpec("robot_state_publisher", "robot_state_publisher", "robot_state_publisher",
             when="real|rviz", extra_params={"robot_description": "@urdf"}),
    _real("controller_manager", "ros2_control_node", "controller_manager",
          params_file="controllers.yaml"),
    _real("spawner_joint_state_broadcaster", "spawner", "controller_manager",
          arguments=("joint_state_broadcaster",)),
    _real("spawner_arm_controller", "spawner", "controller_manager",
          arguments=("arm_controller",)),
    _real("spawner_gripper_controller", "spawner", "controller_manager",
          arguments=("gripper_controller",)),
    NodeSpec("rviz2", "rviz2", "rviz2", when="rviz", arguments=("-d", "@config/genpol.rviz")),
)

#: Recording demonstrations in simulation (`genpol record --sim`): these run beside sim_arm.
#: sim_leader plays the scripted experts as a leader arm, teleop makes the arm follow it, the
#: recorder writes one bag per episode. On a real arm, teleop and recorder run the same way
#: with a leader arm's driver publishing /leader/joint_states.
RECORD_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("sim_leader", "sim_leader", params_file="sim_leader.yaml", when="sim"),
    NodeSpec("teleop", "teleop", params_file="teleop.yaml"),
    NodeSpec("recorder", "recorder", params_file="recorder.yaml"),
)


def config_dir() -> Path:
    """config/ of a source checkout, else share/genpol/config of an install."""
    here = Path(__file__).resolve().parents[2] / "config"
    if (here / "planner.yaml").is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except Exception:  # no ament index: a pip install
        return Path(sys.prefix) / "share" / PACKAGE / "config"


def resolve_arguments(given: dict[str, str]) -> dict[str, str]:
    """Launch arguments with defaults filled in; unknown names and bad booleans are refused."""
    known = {a.name: a.default for a in ARGUMENTS}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown launch arguments {unknown}; known: {sorted(known)}")
    args = {**known, **given}
    for name in ("sim", "rviz", "use_mock_hardware"):
        if args[name].lower() not in ("true", "false"):
            raise ValueError(f"launch argument {name} must be true or false, got {args[name]!r}")
        args[name] = args[name].lower()
    for a in ARGUMENTS:
        if a.kind == "int":
            try:
                int(args[a.name])
            except ValueError:
                raise ValueError(f"launch argument {a.name} must be an integer, "
                                 f"got {args[a.name]!r}") from None
    return args


def typed(name: str, value: str) -> Any:
    """A launch argument's value as its parameters take it (int arguments become ints)."""
    kind = next(a.kind for a in ARGUMENTS if a.name == name)
    return int(value) if kind == "int" else value


def select(args: dict[str, str]) -> list[NodeSpec]:
    sim = args["sim"] == "true"
    keep = {"always", "sim" if sim else "real"} | ({"rviz"} if args["rviz"] == "true" else set())
    return [spec for spec in NODES if keep & set(spec.when.split("|"))]


def parameters(spec: NodeSpec, args: dict[str, str]) -> tuple[Path | None, dict[str, Any]]:
    """(parameter file or None, parameter values overriding it) for one node."""
    cfg = config_dir()
    values: dict[str, Any] = {param: typed(arg, args[arg]) for param, arg in spec.overrides}
    for key, value in spec.extra_params.items():
        values[key] = robot_description(args) if value == "@urdf" else value
    return (cfg / spec.params_file if spec.params_file else None), values


def node_arguments(spec: NodeSpec) -> list[str]:
    return [str(config_dir() / a[len("@config/"):]) if a.startswith("@config/") else a
            for a in spec.arguments]


def robot_description(args: dict[str, str]) -> str:
    """The URDF for robot_state_publisher and controller_manager: mock hardware, or the real
    servo driver `hardware_plugin` (the Feetech driver gets its port and servo IDs)."""
    from genpol.description import DEFAULT_PLUGIN, FEETECH_PLUGIN, feetech_params, urdf

    if args.get("use_mock_hardware", "true") == "true":
        return urdf(hardware_plugin=DEFAULT_PLUGIN)
    plugin = args.get("hardware_plugin") or FEETECH_PLUGIN
    hardware, joints = feetech_params(args.get("usb_port", "/dev/ttyACM0")) \
        if plugin == FEETECH_PLUGIN else ({}, {})
    return urdf(hardware_plugin=plugin, hardware_params=hardware, joint_params=joints)
