"""The graph definition, the launch file and the supervisor: `ros2 launch` and `genpol bringup`
start the same resolved nodes, which name only executables and parameters that exist; the
supervisor's stop policy; and the import rules around them."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from genpol import graph, launcher, parameters

ROOT = Path(__file__).resolve().parents[1]
OWN = [s for s in graph.NODES if s.package == graph.PACKAGE]


def test_every_own_executable_is_a_console_script_with_main():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    for spec in OWN:
        assert scripts.get(spec.executable) == f"genpol.nodes.{spec.executable}:main", spec.name
        module = importlib.import_module(f"genpol.nodes.{spec.executable}")
        assert callable(module.main)


def test_parameter_files_belong_to_their_nodes():
    for spec in graph.NODES:
        if spec.params_file:
            path = ROOT / "config" / spec.params_file
            assert path.is_file(), path
            if spec.package == graph.PACKAGE:
                data = yaml.safe_load(path.read_text())
                assert list(data) == [spec.name], path
                assert isinstance(data[spec.name]["ros__parameters"], dict)


def _node_params(spec) -> set[str]:
    data = yaml.safe_load((ROOT / "config" / spec.params_file).read_text())
    return set(data[spec.name]["ros__parameters"])


def _declared(spec) -> set[str]:
    """Parameters the node declares: its table in genpol.parameters (nodes/params.declare)."""
    return {p.name for p in parameters.TABLES[spec.name]}


def test_overrides_and_config_values_name_declared_parameters():
    for spec in OWN:
        declared = _declared(spec)
        in_file = _node_params(spec)
        assert in_file <= declared, (spec.name, sorted(in_file - declared))
        for param, arg in spec.overrides:
            assert param in declared, (spec.name, param)
            assert arg in {a.name for a in graph.ARGUMENTS}


class _Recorded:
    """Stands in for a launch / launch_ros class: keeps the arguments it was made with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorded):
    def perform(self, context) -> str:
        return context.launch_configurations[self.args[0]]


def _load_launch_file(monkeypatch):
    """launch/bringup.launch.py imported against stub launch and launch_ros modules."""
    stubs = {
        "launch": {"LaunchDescription": _Recorded},
        "launch.actions": {"DeclareLaunchArgument": _Recorded, "OpaqueFunction": _Recorded},
        "launch.substitutions": {"LaunchConfiguration": _LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Recorded},
    }
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("bringup_launch",
                                                  ROOT / "launch" / "bringup.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("given", [
    {"policy_path": "/tmp/p", "executor_mode": "latest", "seed": "7"},
    {"sim": "false", "rviz": "true"},
    {"sim": "false", "use_mock_hardware": "false", "usb_port": "/dev/ttyUSB3",
     "calibration": str(ROOT / "test" / "data" / "so101_follower.json")},
])
def test_launch_file_only_translates_resolve(monkeypatch, given):
    """ros2 launch starts exactly the nodes graph.resolve gives, with the same parameters."""
    launch_file = _load_launch_file(monkeypatch)
    description = launch_file.generate_launch_description()
    (actions,) = description.args
    declared = {a.args[0]: a.kwargs["default_value"] for a in actions
                if "default_value" in a.kwargs}
    assert declared == {a.name: a.default for a in graph.ARGUMENTS}
    (opaque,) = [a for a in actions if "function" in a.kwargs]
    context = types.SimpleNamespace(launch_configurations={**declared, **given})
    nodes = opaque.kwargs["function"](context)
    expected = graph.resolve(given)
    assert [n.kwargs["name"] for n in nodes] == [r.name for r in expected]
    for node, want in zip(nodes, expected, strict=True):
        assert node.kwargs["package"] == want.package
        assert node.kwargs["executable"] == want.executable
        assert node.kwargs["parameters"] == [str(p) for p in want.params_files] + (
            [want.params] if want.params else [])
        assert node.kwargs["arguments"] == list(want.arguments)


def test_resolve_gives_finished_node_specs():
    nodes = {n.name: n for n in graph.resolve({"policy_path": "/tmp/p", "seed": "7"})}
    assert list(nodes) == ["sim_arm", "planner", "executor"]
    assert nodes["planner"].params_files == (ROOT / "config" / "planner.yaml",)
    assert nodes["planner"].params == {"policy_path": "/tmp/p"}
    assert nodes["sim_arm"].params == {"task": "reach_around", "seed": 7, "scene_seed": -1,
                                       "scene_spread": 1.0}
    assert all(n.own and n.arguments == () for n in nodes.values())
    real = {n.name: n for n in graph.resolve({"sim": "false", "rviz": "true"})}
    urdf = real["robot_state_publisher"].params["robot_description"]
    assert "<ros2_control" in urdf and "mock_components/GenericSystem" in urdf
    assert real["robot_state_publisher"].params_files == ()
    assert real["rviz2"].arguments == ("-d", str(ROOT / "config" / "genpol.rviz"))
    assert real["spawner_arm_controller"].arguments == ("arm_controller",)
    feetech = {n.name: n for n in graph.resolve({
        "sim": "false", "use_mock_hardware": "false",
        "calibration": str(ROOT / "test" / "data" / "so101_follower.json")})}
    assert "FeetechHardwareInterface" in feetech["robot_state_publisher"].params[
        "robot_description"]


def test_resolve_puts_a_jobs_values_last_and_refuses_nodes_it_does_not_start():
    nodes = {n.name: n for n in graph.resolve(
        {"executor_mode": "latest", "task": "pick_place"},
        {"executor": {"mode": "average", "rate_hz": 25.0}, "sim_arm": {"camera_rate_hz": 0.0}})}
    assert nodes["executor"].params == {"mode": "average", "rate_hz": 25.0, "velocity_scale": 1.0}
    assert nodes["sim_arm"].params == {"task": "pick_place", "seed": 0, "scene_seed": -1,
                                       "scene_spread": 1.0, "camera_rate_hz": 0.0}
    with pytest.raises(ValueError, match=r"\['recorder'\], which this graph does not start"):
        graph.resolve({}, {"recorder": {"task": "x"}})
    recording = [n.name for n in graph.resolve({}, {"recorder": {"task": "x"}},
                                               graph.RECORDING)]
    assert recording == ["sim_arm", "sim_leader", "teleop", "recorder"]


# ------------------------------------------------------------------------------ import graph


def _genpol_imports(path: Path) -> set[str]:
    """Every genpol module and third-party top-level package a file imports, at any depth
    (function-local imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            if node.module == "genpol":
                out |= {f"genpol.{a.name}" for a in node.names}
    return out


SRC = ROOT / "src" / "genpol"


def test_no_import_cycle_between_graph_launcher_and_description():
    trio = ("graph", "launcher", "description")
    edges = {m: {i.split(".")[1] for i in _genpol_imports(SRC / f"{m}.py")
                 if i.startswith("genpol.") and i.split(".")[1] in trio} for m in trio}
    assert edges == {"launcher": {"graph"}, "graph": {"description"}, "description": set()}


def test_nodes_never_import_graph_or_launcher_and_rclpy_stays_in_nodes():
    ros = ("rclpy", "rcl_interfaces", "std_msgs", "std_srvs", "sensor_msgs",
           "trajectory_msgs", "visualization_msgs", "builtin_interfaces")
    for path in SRC.rglob("*.py"):
        imports = _genpol_imports(path)
        rel = path.relative_to(SRC)
        if rel.parts[0] == "nodes":
            assert not imports & {"genpol.graph", "genpol.launcher"}, rel
            assert not {i for i in imports if i.startswith("genpol.jobs")}, rel
        else:
            assert not {i for i in imports if i.split(".")[0] in ros}, rel


def test_launch_arguments_are_checked():
    assert graph.resolve_arguments({})["sim"] == "true"
    with pytest.raises(ValueError, match="unknown launch arguments.*'simulate'"):
        graph.resolve_arguments({"simulate": "true"})
    with pytest.raises(ValueError, match="sim must be true or false"):
        graph.resolve_arguments({"sim": "yes"})
    with pytest.raises(ValueError, match="name:=value"):
        launcher.parse_launch_args(["sim=true"])
    with pytest.raises(ValueError, match="seed must be an integer, got 'one'"):
        graph.resolve_arguments({"seed": "one"})
    with pytest.raises(ValueError, match="scene_spread must be a number, got 'wide'"):
        graph.resolve_arguments({"scene_spread": "wide"})


def test_overrides_have_the_type_of_the_parameter_they_set():
    """Launch arguments are strings; a parameter declared as an int must still get an int (rclpy
    refuses a string for it), so the value in the node's parameter file sets the type."""
    resolved = {n.name: n for n in graph.resolve({})}
    for spec in OWN:
        in_file = yaml.safe_load((ROOT / "config" / spec.params_file).read_text())
        in_file = in_file[spec.name]["ros__parameters"]
        if spec.name not in resolved:
            continue
        values = resolved[spec.name].params
        for param, _arg in spec.overrides:
            if param in in_file:
                assert type(values[param]) is type(in_file[param]), (spec.name, param)


def test_bringup_commands_for_the_simulated_graph(tmp_path):
    args = launcher.parse_launch_args(["policy_path:=/tmp/p", "executor_mode:=latest"])
    cmds = {n.name: launcher.node_argv(n, tmp_path) for n in graph.resolve(args)}
    assert sorted(cmds) == ["executor", "planner", "sim_arm"]
    planner = cmds["planner"]
    assert planner[1:3] == ["-m", "genpol.nodes.planner"]
    assert planner[planner.index("--ros-args"):][:3] == ["--ros-args", "-r", "__node:=planner"]
    files = [planner[i + 1] for i, a in enumerate(planner) if a == "--params-file"]
    assert files[0].endswith("config/planner.yaml")
    assert yaml.safe_load(Path(files[1]).read_text()) == {
        "/planner": {"ros__parameters": {"policy_path": "/tmp/p"}}}
    overrides = yaml.safe_load((tmp_path / "executor.overrides.yaml").read_text())
    assert overrides["/executor"]["ros__parameters"] == {"mode": "latest",
                                                            "velocity_scale": 1.0}


def test_sim_arguments_reach_sim_arm_typed(tmp_path):
    args = launcher.parse_launch_args(["task:=pick_place", "seed:=7", "scene_seed:=-1",
                                       "scene_spread:=3"])
    for node in graph.resolve(args):
        launcher.node_argv(node, tmp_path)
    overrides = yaml.safe_load((tmp_path / "sim_arm.overrides.yaml").read_text())
    assert overrides["/sim_arm"]["ros__parameters"] == {"task": "pick_place", "seed": 7,
                                                       "scene_seed": -1, "scene_spread": 3.0}


def test_real_robot_graph_needs_a_ros_distribution(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ros2 on PATH
    nodes = graph.resolve(launcher.parse_launch_args(["sim:=false"]))
    assert "robot_state_publisher" in [n.name for n in nodes]
    with launcher.Supervisor(tmp_path / "logs") as supervisor:
        with pytest.raises(RuntimeError, match="needs a sourced ROS 2 distribution"):
            supervisor.start_graph(nodes)
        assert supervisor.procs == {}  # refused before the camera node (genpol's own) started


# ------------------------------------------------------------------------------ supervisor

#: a child that leaves with code 0 on SIGINT, unless told to ignore signals (argv[1])
CHILD = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    for name in filter(None, sys.argv[1].split(",")):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(60)
""")


def _python(*args: str) -> list[str]:
    return [sys.executable, "-c", CHILD, *args]


def _wait_ready(supervisor, names):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = [(supervisor.log_dir / f"{n}.log").read_text().splitlines() for n in names]
        if all("ready" in lines for lines in logs):  # a line of its own, not the argv
            return
        time.sleep(0.05)
    raise AssertionError("children did not start")


def test_supervisor_stops_with_sigint_then_sigterm_then_sigkill(tmp_path):
    with launcher.Supervisor(tmp_path, grace=0.5) as supervisor:
        supervisor.start("polite", _python(""))
        supervisor.start("deaf", _python("SIGINT"))
        supervisor.start("stubborn", _python("SIGINT,SIGTERM"))
        _wait_ready(supervisor, ["polite", "deaf", "stubborn"])
        assert supervisor.exited() is None
        start = time.monotonic()
        codes = supervisor.stop()
    assert codes == {"polite": 0, "deaf": -signal.SIGTERM, "stubborn": -signal.SIGKILL}
    assert time.monotonic() - start < 5


def test_supervisor_names_a_dead_node_and_quotes_its_log(tmp_path):
    with launcher.Supervisor(tmp_path, grace=0.5) as supervisor:
        supervisor.start("alive", _python(""))
        supervisor.start("crash", [sys.executable, "-c",
                                   "print('the reason it died'); raise SystemExit(3)"])
        deadline = time.monotonic() + 10
        while supervisor.exited() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match="node crash exited with code 3") as err:
            supervisor.check()
        assert "the reason it died" in str(err.value)
        assert supervisor.watch(duration=5.0) == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_their_supervisor(tmp_path):
    """A supervisor killed outright (no chance to stop anything) takes its children along."""
    script = textwrap.dedent(f"""
        import sys, time
        from genpol.launcher import Supervisor
        s = Supervisor({str(tmp_path / "logs")!r})
        s.__enter__()
        p = s.start("child", [sys.executable, "-c", "import time; time.sleep(60)"])
        print(p.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=os.environ.copy())
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists(), "the child outlived its supervisor"
    finally:
        if parent.poll() is None:
            parent.kill()
