"""The launch files and `genpol bringup` name only executables and parameters that exist."""

from __future__ import annotations

import ast
import importlib
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


def test_launch_file_reads_the_graph():
    source = (ROOT / "launch" / "bringup.launch.py").read_text()
    tree = ast.parse(source)
    compile(tree, "bringup.launch.py", "exec")
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"graph", "Node", "DeclareLaunchArgument"} <= names
    assert "graph.select" in source and "graph.ARGUMENTS" in source
    # No executable is named in the launch file itself: they all come from the graph.
    assert "executable=spec.executable" in source


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


def test_overrides_have_the_type_of_the_parameter_they_set():
    """Launch arguments are strings; a parameter declared as an int must still get an int (rclpy
    refuses a string for it), so the value in the node's parameter file sets the type."""
    args = graph.resolve_arguments({})
    for spec in OWN:
        in_file = yaml.safe_load((ROOT / "config" / spec.params_file).read_text())
        in_file = in_file[spec.name]["ros__parameters"]
        _, values = graph.parameters(spec, args)
        for param, _arg in spec.overrides:
            if param in in_file:
                assert type(values[param]) is type(in_file[param]), (spec.name, param)


def test_bringup_commands_for_the_simulated_graph(tmp_path):
    args = launcher.parse_launch_args(["policy_path:=/tmp/p", "executor_mode:=latest"])
    cmds = dict(launcher.commands(args, tmp_path))
    assert sorted(cmds) == ["executor", "planner", "sim_arm"]
    planner = cmds["planner"]
    assert planner[1:3] == ["-m", "genpol.nodes.planner"]
    files = [planner[i + 1] for i, a in enumerate(planner) if a == "--params-file"]
    assert files[0].endswith("config/planner.yaml")
    assert yaml.safe_load(Path(files[1]).read_text()) == {
        "planner": {"ros__parameters": {"policy_path": "/tmp/p"}}}
    overrides = yaml.safe_load((tmp_path / "executor.overrides.yaml").read_text())
    assert overrides["executor"]["ros__parameters"] == {"mode": "latest"}


def test_sim_arguments_reach_sim_arm_typed(tmp_path):
    args = launcher.parse_launch_args(["task:=pick_place", "seed:=7", "scene_seed:=-1"])
    launcher.commands(args, tmp_path)
    overrides = yaml.safe_load((tmp_path / "sim_arm.overrides.yaml").read_text())
    assert overrides["sim_arm"]["ros__parameters"] == {"task": "pick_place", "seed": 7,
                                                       "scene_seed": -1}


def test_real_robot_graph_needs_a_ros_distribution(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ros2 on PATH
    args = launcher.parse_launch_args(["sim:=false"])
    assert "robot_state_publisher" in [s.name for s in graph.select(args)]
    with pytest.raises(RuntimeError, match="needs a sourced ROS 2 distribution"):
        launcher.commands(args, tmp_path)
