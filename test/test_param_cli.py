"""`genpol param` against a live planner over real rclpy (no ROS 2 CLI): set, get, list and
describe through the node's parameter services, refusals with the node's reason (and its log's
warning), an unreachable node; and bringup's NODE.PARAM:=VALUE overrides (plain data, no ROS)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from genpol import cli, graph, launcher, param_values
from genpol.parameters import PLANNER

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = {p.name: p.description for p in PLANNER}


def genpol(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """`genpol ARGS` as its own process, on this run's private ROS network (ros_env)."""
    return subprocess.run([sys.executable, "-m", "genpol.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="module")
def planner(ros_env):
    """A planner (no policy) spinning in this process on a private session for the module."""
    from genpol.nodes.planner import PlannerNode
    from genpol.nodes.session import Session
    from rclpy.parameter import Parameter

    with Session() as session:
        node = PlannerNode(context=session.context, parameter_overrides=[
            Parameter("cpu_threads", value=0), Parameter("camera_topics", value=["none=/x"])])
        session.spin(node)
        try:
            yield session, node
        finally:
            node.close()


def _get_independently(session, name: str):
    """The planner's value of `name` through a GetParameters call of a node of our own."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    from genpol.nodes.session import ClientNode

    probe = session.spin(ClientNode("param_probe", session.context))
    try:
        probe.service(GetParameters, "/planner/get_parameters").wait_for_service(timeout_sec=5)
        result = probe.call("/planner/get_parameters", GetParameters.Request(names=[name]))
        return result.values[0].type, parameter_value_to_python(result.values[0])
    finally:
        session.stop(probe)


def test_set_changes_the_live_value(planner):
    from rcl_interfaces.msg import ParameterType

    session, node = planner
    done = genpol("param", "set", "planner", "inference_rate_hz", "2.0")
    assert done.returncode == 0, done.stderr
    assert "inference_rate_hz = 2.0" in done.stdout
    assert node.get_parameter("inference_rate_hz").value == 2.0 == node.inference_rate_hz
    got = genpol("param", "get", "/planner", "inference_rate_hz")
    assert (got.returncode, got.stdout.strip()) == (0, "2.0"), got.stderr
    # an int given for a double goes as a double (rclpy would refuse the integer 3)
    done = genpol("param", "set", "/planner", "inference_rate_hz", "3")
    assert done.returncode == 0, done.stderr
    assert _get_independently(session, "inference_rate_hz") == (
        ParameterType.PARAMETER_DOUBLE, 3.0)
    done = genpol("param", "set", "planner", "selection", "first")
    assert done.returncode == 0 and node.selector.mode == "first", done.stderr


def test_refused_sets_print_the_reason_and_keep_the_value(planner, capfd):
    _, node = planner
    rate, chunking = node.inference_rate_hz, node.chunking
    bad = genpol("param", "set", "planner", "inference_rate_hz", "-1.0")
    assert bad.returncode == 1
    assert "refused inference_rate_hz = -1.0" in bad.stderr and "out of range" in bad.stderr
    assert f"inference_rate_hz stays {rate}" in bad.stderr
    bad = genpol("param", "set", "planner", "chunking", "guess")
    assert bad.returncode == 1 and "chunking must be one of ['rtc', 'select']" in bad.stderr
    assert (node.inference_rate_hz, node.chunking) == (rate, chunking)
    assert node.get_parameter("chunking").value == chunking
    # the planner's own log says so too, with the reason
    log = capfd.readouterr().err
    assert "refused inference_rate_hz=-1.0" in log and "out of range" in log
    assert "refused chunking='guess': chunking must be one of" in log
    assert "WARN" in log


def test_list_and_describe(planner):
    listed = genpol("param", "list", "planner")
    assert listed.returncode == 0, listed.stderr
    assert {p.name for p in PLANNER} <= set(listed.stdout.split())
    described = genpol("param", "describe", "planner", "inference_rate_hz", "chunking")
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert f"inference_rate_hz (double): {DESCRIPTION['inference_rate_hz']}" in text
    assert "range: 0.0 .. 1000.0" in text
    assert f"chunking (string): {DESCRIPTION['chunking']}" in text
    assert "one of: rtc, select" in text
    missing = genpol("param", "get", "planner", "no_such_param")
    assert missing.returncode == 1
    assert "no parameter 'no_such_param'" in missing.stderr and "chunking" in missing.stderr


def test_an_unreachable_node_times_out_with_a_clear_message(planner):
    start = time.monotonic()
    gone = genpol("param", "get", "no_such_node", "rate_hz", "--timeout", "1")
    assert gone.returncode == 1
    assert "node /no_such_node did not answer within 1 s" in gone.stderr
    assert "Is the graph running" in gone.stderr
    assert f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}" in gone.stderr
    assert "Nodes seen:" in gone.stderr
    assert time.monotonic() - start < 20


# ---- bringup's NODE.PARAM:=VALUE: plain data, no ROS ------------------------------------------

def test_values_are_typed_as_ros2_param_set_types_them():
    assert [param_values.parse(t) for t in ("true", "8", "2.5", "1e-3", "abc", "", "[a, b]",
                                            "[1, 2.5]", "{a: 1}")] == [
        True, 8, 2.5, 0.001, "abc", "", ["a", "b"], [1.0, 2.5], "{a: 1}"]
    assert param_values.typed("1", "double") == 1.0
    assert param_values.typed("[0, 1]", "double array") == [0.0, 1.0]
    assert param_values.typed("8", "string") == "8"


def test_bringup_node_parameters_become_typed_overrides(tmp_path):
    args, overrides = launcher.parse_bringup_args([
        "executor_mode:=ensemble", "planner.inference_rate_hz:=1", "executor.mode:=latest",
        "executor.velocity_scale:=0.3", "planner.num_samples:=8"])
    assert args["executor_mode"] == "ensemble"
    assert overrides == {"planner": {"inference_rate_hz": 1.0, "num_samples": 8},
                         "executor": {"mode": "latest", "velocity_scale": 0.3}}
    assert type(overrides["planner"]["inference_rate_hz"]) is float
    nodes = {n.name: n for n in graph.resolve(args, overrides)}
    assert nodes["executor"].params == {"mode": "latest", "velocity_scale": 0.3}
    launcher.node_argv(nodes["planner"], tmp_path)
    (written,) = yaml.safe_load((tmp_path / "planner.overrides.yaml").read_text()).values()
    assert written["ros__parameters"] == {"policy_path": "", "inference_rate_hz": 1.0,
                                          "num_samples": 8}


@pytest.mark.parametrize("given, words", [
    ("planer.num_samples:=8", "no node 'planer' with parameters; known nodes: ['camera', "),
    ("planner.rate:=1", "planner has no parameter 'rate'; its parameters: ['policy_path'"),
    ("planner.num_samples:=many", "num_samples takes type integer, got 'many'"),
    ("executor.mode:=fast", "mode must be one of"),
    ("planner.inference_rate_hz:=-1", "inference_rate_hz must be in [0, 1000]"),
])
def test_bringup_refuses_unknown_nodes_parameters_and_bad_values(given, words, capsys):
    with pytest.raises(ValueError) as refused:
        launcher.parse_bringup_args([given])
    assert words in str(refused.value)
    assert cli.main(["bringup", given]) == 2  # refused before anything starts
    assert words in capsys.readouterr().err


def test_launch_file_passes_node_parameters_to_resolve(monkeypatch):
    """ros2 launch hands undeclared NODE.PARAM:=VALUE names over as launch configurations."""
    class Recorded:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class Configuration(Recorded):
        def perform(self, context):
            return context.launch_configurations[self.args[0]]

    for name, attrs in {"launch": {"LaunchDescription": Recorded},
                        "launch.actions": {"DeclareLaunchArgument": Recorded,
                                           "OpaqueFunction": Recorded},
                        "launch.substitutions": {"LaunchConfiguration": Configuration},
                        "launch_ros": {}, "launch_ros.actions": {"Node": Recorded}}.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("bringup_launch_params",
                                                  ROOT / "launch" / "bringup.launch.py")
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)
    (actions,) = launch_file.generate_launch_description().args
    (opaque,) = [a for a in actions if "function" in a.kwargs]
    given = {a.name: a.default for a in graph.ARGUMENTS} | {"planner.inference_rate_hz": "1"}
    nodes = opaque.kwargs["function"](types.SimpleNamespace(launch_configurations=given))
    (planner,) = [n for n in nodes if n.kwargs["name"] == "planner"]
    assert planner.kwargs["parameters"][-1] == {"policy_path": "", "inference_rate_hz": 1.0}
    refused = given | {"planner.rate": "1"}
    with pytest.raises(ValueError, match="planner has no parameter 'rate'"):
        opaque.kwargs["function"](types.SimpleNamespace(launch_configurations=refused))
