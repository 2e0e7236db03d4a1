"""The one graph definition: which nodes make up a bringup, with which parameters.

`resolve(args)` turns launch arguments into finished node specs (ResolvedNode). The launch file
(`launch/bringup.launch.py`: launch_ros Nodes) and the supervisor (`genpol.launcher`: argv) each
translate those once, so `ros2 launch` and `genpol bringup` cannot drift apart; jobs (eval,
record) pass their own parameter values through `resolve` too. No rclpy here: this is plain data.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genpol import description

PACKAGE = "genpol"


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    #: "string", "int" or "float": the type the parameters it sets get (launch arguments are
    #: strings)
    kind: str = "string"


ARGUMENTS: tuple[Argument, ...] = (
    Argument("sim", "true", "true: MuJoCo sim_arm stands in for the arm; false: the real arm "
                            "through ros2_control"),
    Argument("policy_path", "", "checkpoint directory for the planner (empty: set it later)"),
    Argument("executor_mode", "continue", "executor chunk merging: ensemble, latest, average "
                                          "or continue"),
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
    Argument("scene_spread", "1.0", "sim:=true only: how far reach_around's layouts range "
                                    "sideways (3: wide enough that only a policy that sees "
                                    "the scene succeeds)", kind="float"),
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


SIM_ARM = NodeSpec("sim_arm", "sim_arm", params_file="sim_arm.yaml", when="sim",
                   overrides=(("task", "task"), ("seed", "seed"), ("scene_seed", "scene_seed"),
                              ("scene_spread", "scene_spread")))

NODES: tuple[NodeSpec, ...] = (
    SIM_ARM,
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
#: The graph `genpol record --sim` runs: the simulated arm and the recording nodes.
RECORDING: tuple[NodeSpec, ...] = (SIM_ARM, *RECORD_NODES)


@dataclass(frozen=True)
class ResolvedNode:
    """One node as it will run: what the launch file gives launch_ros's Node, and what the
    supervisor turns into argv. `params` override the files, in order."""

    name: str
    package: str
    executable: str
    params_files: tuple[Path, ...]
    params: dict[str, Any]
    arguments: tuple[str, ...]

    @property
    def own(self) -> bool:
        """True for genpol's nodes (run as `python -m genpol.nodes.<executable>`)."""
        return self.package == PACKAGE


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
        if a.kind in _TYPES:
            try:
                _TYPES[a.kind](args[a.name])
            except ValueError:
                what = "an integer" if a.kind == "int" else "a number"
                raise ValueError(f"launch argument {a.name} must be {what}, "
                                 f"got {args[a.name]!r}") from None
    return args


_TYPES: dict[str, Any] = {"int": int, "float": float}


def typed(name: str, value: str) -> Any:
    """A launch argument's value as its parameters take it (int and float arguments become
    numbers)."""
    kind = next(a.kind for a in ARGUMENTS if a.name == name)
    return _TYPES[kind](value) if kind in _TYPES else value


def select(args: Mapping[str, str], nodes: Sequence[NodeSpec] = NODES) -> list[NodeSpec]:
    """The nodes these (resolved) launch arguments start."""
    sim = args["sim"] == "true"
    keep = {"always", "sim" if sim else "real"} | ({"rviz"} if args["rviz"] == "true" else set())
    return [spec for spec in nodes if keep & set(spec.when.split("|"))]


def resolve(args: Mapping[str, str], overrides: Mapping[str, Mapping[str, Any]] | None = None,
            nodes: Sequence[NodeSpec] = NODES) -> list[ResolvedNode]:
    """Finished node specs for launch arguments `args` (defaults filled in, checked).

    Each node's parameters: its config/ file, then the launch arguments it takes, the URDF where
    it needs one, then `overrides[node]` (a job's own values: eval's --param, record's settings).
    An override for a node these arguments do not start is refused.
    """
    args = resolve_arguments(dict(args))
    selected = select(args, nodes)
    overrides = overrides or {}
    unknown = sorted(set(overrides) - {spec.name for spec in selected})
    if unknown:
        raise ValueError(f"parameters given for {unknown}, which this graph does not start; its "
                         f"nodes: {[spec.name for spec in selected]}")
    cfg = config_dir()
    out = []
    for spec in selected:
        params: dict[str, Any] = {param: typed(arg, args[arg]) for param, arg in spec.overrides}
        for key, value in spec.extra_params.items():
            params[key] = robot_description(args) if value == "@urdf" else value
        params.update(overrides.get(spec.name) or {})
        arguments = tuple(str(cfg / a[len("@config/"):]) if a.startswith("@config/") else a
                          for a in spec.arguments)
        out.append(ResolvedNode(
            name=spec.name, package=spec.package, executable=spec.executable,
            params_files=(cfg / spec.params_file,) if spec.params_file else (),
            params=params, arguments=arguments))
    return out


def robot_description(args: Mapping[str, str]) -> str:
    """The URDF for robot_state_publisher and controller_manager: mock hardware, or the real
    servo driver `hardware_plugin` (the Feetech driver gets its port and servo IDs)."""
    if args.get("use_mock_hardware", "true") == "true":
        return description.urdf(hardware_plugin=description.DEFAULT_PLUGIN)
    plugin = args.get("hardware_plugin") or description.FEETECH_PLUGIN
    hardware, joints = description.feetech_params(args.get("usb_port", "/dev/ttyACM0")) \
        if plugin == description.FEETECH_PLUGIN else ({}, {})
    return description.urdf(hardware_plugin=plugin, hardware_params=hardware,
                            joint_params=joints)
