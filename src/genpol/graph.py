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


ARGUMENTS: tuple[Argument, ...] = (
    Argument("sim", "true", "true: MuJoCo sim_arm stands in for the arm; false: the real arm "
                            "through ros2_control"),
    Argument("policy_path", "", "checkpoint directory for the planner (empty: set it later)"),
    Argument("executor_mode", "ensemble", "executor chunk merging: ensemble, latest or average"),
    Argument("rviz", "false", "start RViz with config/genpol.rviz"),
    Argument("use_mock_hardware", "true", "sim:=false only: mock_components/GenericSystem "
                                          "instead of the real servo driver"),
)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    package: str = PACKAGE
    params_file: str | None = None  # in config/
    when: str = "always"  # always | sim | real | rviz
    #: parameter name <- launch argument name
    overrides: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    extra_params: dict[str, Any] = field(default_factory=dict)


def _real(name: str, executable: str, package: str, **kw: Any) -> NodeSpec:
    return NodeSpec(name, executable, package, when="real", **kw)


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("sim_arm", "sim_arm", params_file="sim_arm.yaml", when="sim"),
    NodeSpec("camera", "camera", params_file="camera.yaml", when="real"),
    NodeSpec("planner", "planner", params_file="planner.yaml",
             overrides=(("policy_path", "policy_path"),)),
    NodeSpec("executor", "executor", params_file="executor.yaml",
             overrides=(("mode", "executor_mode"),)),
    _real("robot_state_publisher", "robot_state_publisher", "robot_state_publisher",
          extra_params={"robot_description": "@urdf"}),
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
    return args


def select(args: dict[str, str]) -> list[NodeSpec]:
    sim = args["sim"] == "true"
    keep = {"always", "sim" if sim else "real"} | ({"rviz"} if args["rviz"] == "true" else set())
    return [spec for spec in NODES if spec.when in keep]


def parameters(spec: NodeSpec, args: dict[str, str]) -> tuple[Path | None, dict[str, Any]]:
    """(parameter file or None, parameter values overriding it) for one node."""
    cfg = config_dir()
    values: dict[str, Any] = {param: args[arg] for param, arg in spec.overrides}
    for key, value in spec.extra_params.items():
        values[key] = robot_description(args) if value == "@urdf" else value
    return (cfg / spec.params_file if spec.params_file else None), values


def node_arguments(spec: NodeSpec) -> list[str]:
    return [str(config_dir() / a[len("@config/"):]) if a.startswith("@config/") else a
            for a in spec.arguments]


def robot_description(args: dict[str, str]) -> str:
    from genpol.description import urdf

    plugin = ("mock_components/GenericSystem" if args.get("use_mock_hardware", "true") == "true"
              else "feetech_ros2_driver/FeetechHardwareInterface")
    return urdf(hardware_plugin=plugin)
