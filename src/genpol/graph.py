"""The one graph definition: which nodes make up a bringup, with which parameters.

`resolve(args)` turns launch arguments into finished node specs (ResolvedNode). The launch file
(`launch/bringup.launch.py`: launch_ros Nodes) and the supervisor (`genpol.launcher`: argv) each
translate those once, so `ros2 launch` and `genpol bringup` cannot drift apart; jobs (eval,
record) pass their own parameter values through `resolve` too, and both bringups take any
node's parameter as NODE.PARAM:=VALUE (`split_arguments`). No rclpy here: this is plain data.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genpol import description, param_values, parameters

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
    Argument("calibration", "", "sim:=false use_mock_hardware:=false: the arm's LeRobot "
                                "calibration JSON (lerobot-calibrate); required there"),
    Argument("velocity_scale", "", "the executor's fraction of the joint speed limits; empty: "
                                   "0.3 on a real arm (use_mock_hardware:=false), else 1.0",
             kind="float"),
    Argument("leader", "false", "sim:=false only: record with a leader arm: its own driver "
                                "(torque off, publishing /leader/joint_states), teleop and the "
                                "recorder instead of the planner and executor"),
    Argument("leader_usb_port", "/dev/ttyACM1", "leader:=true: the leader arm's bus adapter"),
    Argument("leader_calibration", "", "leader:=true use_mock_hardware:=false: the leader arm's "
                                       "LeRobot calibration JSON; required there"),
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
    #: always | sim | real | rviz | leader | policy (unless leader), or alternatives joined by "|"
    when: str = "always"
    #: parameter name <- launch argument name
    overrides: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    extra_params: dict[str, Any] = field(default_factory=dict)
    namespace: str = ""  # "" = the root namespace


def _real(name: str, executable: str, package: str, **kw: Any) -> NodeSpec:
    return NodeSpec(name, executable, package, when="real", **kw)


SIM_ARM = NodeSpec("sim_arm", "sim_arm", params_file="sim_arm.yaml", when="sim",
                   overrides=(("task", "task"), ("seed", "seed"), ("scene_seed", "scene_seed"),
                              ("scene_spread", "scene_spread")))

NODES: tuple[NodeSpec, ...] = (
    SIM_ARM,
    NodeSpec("camera", "camera", params_file="camera.yaml", when="real"),
    # the policy's side; leader:=true replaces it by teleop (one source of commands)
    NodeSpec("planner", "planner", params_file="planner.yaml", when="policy",
             overrides=(("policy_path", "policy_path"),)),
    NodeSpec("executor", "executor", params_file="executor.yaml", when="policy",
             overrides=(("mode", "executor_mode"), ("velocity_scale", "velocity_scale"))),
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
    # leader:=true: the leader arm through a second driver instance in namespace /leader (state
    # interfaces only, so the driver leaves its torque off); its joint_state_broadcaster
    # publishes /leader/joint_states, which teleop follows and the recorder records.
    NodeSpec("robot_state_publisher", "robot_state_publisher", "robot_state_publisher",
             when="leader", namespace="leader",
             extra_params={"robot_description": "@leader_urdf", "frame_prefix": "leader/"}),
    NodeSpec("controller_manager", "ros2_control_node", "controller_manager", when="leader",
             namespace="leader", params_file="leader_controllers.yaml"),
    NodeSpec("spawner_joint_state_broadcaster", "spawner", "controller_manager", when="leader",
             namespace="leader", arguments=("joint_state_broadcaster", "--controller-manager",
                                            "/leader/controller_manager")),
    NodeSpec("teleop", "teleop", params_file="teleop.yaml", when="leader"),
    NodeSpec("recorder", "recorder", params_file="recorder.yaml", when="leader"),
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
    namespace: str = ""

    @property
    def full_name(self) -> str:
        """/namespace/name, as ROS names the node (and parameter files must key it)."""
        return f"/{self.namespace}/{self.name}" if self.namespace else f"/{self.name}"

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
    for name in ("sim", "rviz", "use_mock_hardware", "leader"):
        if args[name].lower() not in ("true", "false"):
            raise ValueError(f"launch argument {name} must be true or false, got {args[name]!r}")
        args[name] = args[name].lower()
    _check_hardware(args)
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
#: the executor's velocity_scale when the launch argument is empty: a real arm starts slow
REAL_ARM_VELOCITY_SCALE = 0.3


def real_arm(args: Mapping[str, str]) -> bool:
    return args["sim"] == "false" and args["use_mock_hardware"] == "false"


def _check_hardware(args: dict[str, str]) -> None:
    """A real arm needs its calibration (checked now, not when the driver reads a wrong zero);
    velocity_scale defaults to a slow start there; leader:=true needs real or mock hardware."""
    from genpol import calibration

    if args["velocity_scale"] == "":
        args["velocity_scale"] = str(REAL_ARM_VELOCITY_SCALE if real_arm(args) else 1.0)
    try:
        scale = float(args["velocity_scale"])
    except ValueError:
        scale = float("nan")
    if not 0 < scale <= 1:
        raise ValueError(f"launch argument velocity_scale must be a number in (0, 1], got "
                         f"{args['velocity_scale']!r}; start a real arm at 0.3")
    if args["leader"] == "true" and args["sim"] == "true":
        raise ValueError("leader:=true needs sim:=false (a leader arm on its driver); in "
                         "simulation `genpol record --sim` plays the leader")
    if real_arm(args):
        for arg, what in (("calibration", "arm"), ("leader_calibration", "leader arm")):
            if arg == "leader_calibration" and args["leader"] != "true":
                continue
            if not args[arg]:
                raise ValueError(f"use_mock_hardware:=false needs {arg}:=<the {what}'s LeRobot "
                                 "calibration JSON>: without it every joint reads about pi "
                                 "rad off its true angle. To make one: "
                                 f"{calibration.HOW_TO_CALIBRATE}")
            calibration.load(args[arg]).driver_joint_params()  # refused now, with the reason


def typed(name: str, value: str) -> Any:
    """A launch argument's value as its parameters take it (int and float arguments become
    numbers)."""
    kind = next(a.kind for a in ARGUMENTS if a.name == name)
    return _TYPES[kind](value) if kind in _TYPES else value


def split_arguments(given: Mapping[str, str]) -> tuple[dict[str, str],
                                                       dict[str, dict[str, Any]]]:
    """name:=value pairs -> (launch arguments, {node: {parameter: value}}) for resolve().

    A name NODE.PARAM sets parameter PARAM of node NODE over its config file (e.g.
    planner.inference_rate_hz:=1.0), its value typed as `genpol param set` types it
    (param_values). The node and the parameter must be in genpol.parameters' tables and the
    value of the parameter's type, range and choices, so a typo is refused before anything
    starts. Other names are launch arguments, left for resolve_arguments.
    """
    args: dict[str, str] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for name, text in given.items():
        node, dot, param = name.partition(".")
        if not dot:
            args[name] = text
            continue
        table = parameters.TABLES.get(node)
        if table is None:
            raise ValueError(f"{name}:={text}: no node {node!r} with parameters; known nodes: "
                             f"{sorted(parameters.TABLES)}")
        spec = next((p for p in table if p.name == param), None)
        if spec is None:
            raise ValueError(f"{name}:={text}: {node} has no parameter {param!r}; its "
                             f"parameters: {[p.name for p in table]}")
        want = "" if spec.dynamic_typing else param_values.type_name(spec.default)
        value = param_values.typed(text, want)
        got = param_values.type_name(value)
        if want and got != want and not (value == [] and want.endswith(" array")):
            raise ValueError(f"{name}:={text}: {param} takes type {want}, got {value!r}"
                             + (f" ({got})" if got else ""))
        reason = spec.check(value)
        if reason:
            raise ValueError(f"{name}:={text}: {reason}")
        overrides.setdefault(node, {})[param] = value
    return args, overrides


def select(args: Mapping[str, str], nodes: Sequence[NodeSpec] = NODES) -> list[NodeSpec]:
    """The nodes these (resolved) launch arguments start."""
    sim = args["sim"] == "true"
    keep = {"always", "sim" if sim else "real"} | ({"rviz"} if args["rviz"] == "true" else set())
    keep |= {"leader"} if args.get("leader") == "true" else {"policy"}
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
            made = _GENERATED.get(value) if isinstance(value, str) else None
            params[key] = made(args) if made else value
        params.update(overrides.get(spec.name) or {})
        arguments = tuple(str(cfg / a[len("@config/"):]) if a.startswith("@config/") else a
                          for a in spec.arguments)
        out.append(ResolvedNode(
            name=spec.name, package=spec.package, executable=spec.executable,
            params_files=(cfg / spec.params_file,) if spec.params_file else (),
            params=params, arguments=arguments, namespace=spec.namespace))
    return out


def robot_description(args: Mapping[str, str]) -> str:
    """The URDF for robot_state_publisher and controller_manager: mock hardware, or the real
    servo driver `hardware_plugin` (the Feetech driver gets its port, and each servo's id and
    offset from the arm's calibration)."""
    return _description(args, args.get("usb_port", "/dev/ttyACM0"), args.get("calibration", ""))


def leader_description(args: Mapping[str, str]) -> str:
    """The leader arm's URDF: the same arm, state interfaces only (read-only, torque off)."""
    return _description(args, args.get("leader_usb_port", "/dev/ttyACM1"),
                        args.get("leader_calibration", ""), commands=False)


def _description(args: Mapping[str, str], port: str, calibration_file: str,
                 commands: bool = True) -> str:
    if args.get("use_mock_hardware", "true") == "true":
        return description.urdf(hardware_plugin=description.DEFAULT_PLUGIN, commands=commands)
    from genpol import calibration

    plugin = args.get("hardware_plugin") or description.FEETECH_PLUGIN
    hardware, joints = description.feetech_params(port, calibration.load(calibration_file)) \
        if plugin == description.FEETECH_PLUGIN else ({}, {})
    return description.urdf(hardware_plugin=plugin, hardware_params=hardware,
                            joint_params=joints, commands=commands)


#: extra_params values the graph generates from the launch arguments
_GENERATED = {"@urdf": robot_description, "@leader_urdf": leader_description}
