"""The planner over real rclpy: chunks stamped with their observation, markers, the consistent
choice among samples, and policy swaps through a parameter (good paths and every refusal)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from genpol import robot  # noqa: E402
from genpol.data.arrays import ChunkData  # noqa: E402
from genpol.nodes.messages import duration_s, stamp_s  # noqa: E402
from genpol.planning import ChunkSelector  # noqa: E402
from genpol.train import TrainConfig, config_for_data, train  # noqa: E402
from ros_helpers import TopicCollector, spinning, wait_for  # noqa: E402

HOME = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])


def _tiny_checkpoint(path, family, joint_names=robot.JOINT_NAMES, fps=10.0):
    rng = np.random.default_rng(0)
    state = HOME + 0.1 * rng.standard_normal((64, 6))
    action = state[:, None, :] + 0.05 * rng.standard_normal((64, 8, 6))
    data = ChunkData(state, action, joint_names=list(joint_names), fps=fps)
    config = config_for_data(family, data, hidden_dim=32, **(
        {"down_dims": [16, 32], "num_steps": 2} if family == "flow" else {}))
    train(config, data, TrainConfig(steps=5, batch_size=16, device="cpu", progress=False),
          out_dir=path)
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    good = _tiny_checkpoint(root / "flow", "flow")
    other = _tiny_checkpoint(root / "mse", "mse", fps=5.0)
    foreign = root / "foreign"
    shutil.copytree(good, foreign)
    cfg = yaml.safe_load((foreign / "config.yaml").read_text())
    cfg["joint_names"] = [f"joint_{i}" for i in range(6)]
    (foreign / "config.yaml").write_text(yaml.safe_dump(cfg))
    empty = root / "empty"
    empty.mkdir()
    return {"good": good, "other": other, "foreign": str(foreign), "empty": str(empty),
            "missing": str(root / "does_not_exist")}


def _set_param(probe, client, name, value):
    request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value=value))])
    future = client.call_async(request)
    assert wait_for(future.done, timeout=10)
    return future.result().results[0]


def test_planner_publishes_stamped_chunks_and_swaps_policies(ros, checkpoints):
    from genpol.nodes.planner import PlannerNode

    node = PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=checkpoints["good"]),
        Parameter("num_samples", value=4), Parameter("inference_rate_hz", value=20.0),
        Parameter("cpu_threads", value=0),  # leave this pytest process's torch threads alone
        Parameter("camera_topics", value=["none=/unused"])])
    probe = rclpy.create_node("probe")
    chunks = TopicCollector(probe, JointTrajectory, "/genpol/action_chunk")
    markers = TopicCollector(probe, MarkerArray, "/genpol/chunk_markers")
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)
    client = probe.create_client(SetParameters, "/planner/set_parameters")
    sent: list[float] = []

    def publish_state():
        msg = JointState(name=list(reversed(robot.JOINT_NAMES)),
                         position=[float(v) for v in HOME[::-1]])
        msg.header.stamp = probe.get_clock().now().to_msg()
        sent.append(stamp_s(msg.header.stamp))
        state_pub.publish(msg)

    probe.create_timer(0.02, publish_state)
    with spinning(node, probe):
        assert chunks.wait(3, timeout=10)
        msg = chunks.messages[-1]
        assert stamp_s(msg.header.stamp) in sent, "chunk stamp is not an observation's stamp"
        assert list(msg.joint_names) == list(robot.JOINT_NAMES) and len(msg.points) == 8
        assert [duration_s(p.time_from_start) for p in msg.points] == pytest.approx(
            [k / 10.0 for k in range(8)], abs=1e-6)
        assert markers.wait(1)
        strips = [m for m in markers.messages[-1].markers if m.type == Marker.LINE_STRIP]
        assert len(strips) == 4 and len(strips[0].points) == 8
        assert strips[0].scale.x > strips[1].scale.x  # the executed sample stands out

        assert client.wait_for_service(timeout_sec=5)
        for key, words in (("missing", "does not exist"), ("empty", "config.yaml"),
                           ("foreign", "joints")):
            result = _set_param(probe, client, "policy_path", checkpoints[key])
            assert not result.successful and words in result.reason, (key, result.reason)
        assert node.get_parameter("policy_path").value == checkpoints["good"]
        before = len(chunks)
        assert chunks.wait(before + 2, timeout=5), "the old policy stopped after a refusal"
        assert node.runner.path == checkpoints["good"]

        result = _set_param(probe, client, "policy_path", checkpoints["other"])
        assert result.successful, result.reason
        assert wait_for(lambda: node.runner.path == checkpoints["other"], timeout=10)
        time.sleep(0.3)
        chunks.clear()
        assert chunks.wait(2, timeout=5)
        points = chunks.messages[-1].points
        assert duration_s(points[1].time_from_start) == pytest.approx(1 / 5.0)  # its fps


def test_selector_keeps_the_committed_mode():
    selector = ChunkSelector("consistent")
    t = np.arange(10) / 10.0
    left = np.stack([t, t], axis=1)[None]    # one mode rises, the other falls
    right = -left
    first = selector.select(np.concatenate([right, left]), 0.0, 10.0, key="p")
    assert first == 0  # nothing to be consistent with: sample 0
    for k in range(1, 5):  # the committed ("right") mode is picked wherever it is listed
        stamp = k * 0.1
        shifted = np.stack([t + stamp, t + stamp], axis=1)[None]
        order = [shifted, -shifted] if k % 2 else [-shifted, shifted]
        assert selector.select(np.concatenate(order), stamp, 10.0, key="p") == (1 if k % 2 else 0)
    # Another policy's chunks are not compared: sample 0 again.
    assert selector.select(np.concatenate([left, right]), 0.5, 10.0, key="q") == 0
    assert ChunkSelector("first").select(np.concatenate([right, left]), 0.0, 10.0) == 0
    with pytest.raises(ValueError, match="selection must be one of"):
        ChunkSelector("best")


def test_first_chunk_comes_from_inside_a_mode_not_between_modes():
    rng = np.random.default_rng(0)
    t = np.arange(10) / 10.0
    mode = np.stack([t, t], axis=1)
    between = np.zeros((1, 10, 2))              # the average of the two modes
    left = mode + 0.02 * rng.standard_normal((8, 10, 2))
    right = -mode + 0.02 * rng.standard_normal((8, 10, 2))
    chunks = np.concatenate([between, left, right])
    index = ChunkSelector("consistent").select(chunks, 0.0, 10.0, key="p")
    assert index != 0
    assert np.abs(chunks[index] - (mode if index <= 8 else -mode)).max() < 0.1
    # After a policy change there is no commitment to keep: a fresh draw inside a mode again.
    selector = ChunkSelector("consistent")
    selector.select(chunks, 0.0, 10.0, key="p")
    assert selector.select(chunks, 0.1, 10.0, key="q") != 0


def test_first_chunk_keeps_the_policys_mode_proportions():
    """A 3:1 policy must go the minority way about a quarter of the time, not never: picking
    the densest sample would always take the larger mode."""
    from genpol.planning import typical

    rng = np.random.default_rng(1)
    t = np.arange(10) / 10.0
    mode = np.stack([t, t], axis=1)
    picks = []
    for _ in range(400):
        signs = np.where(rng.random(32) < 0.75, 1.0, -1.0)
        chunks = signs[:, None, None] * mode + 0.03 * rng.standard_normal((32, 10, 2))
        chunks[rng.integers(32)] = 0.0  # one sample between the modes
        index = typical(chunks)
        assert np.abs(chunks[index]).max() > 0.5  # never the one between the modes
        picks.append(signs[index])
    minority = np.mean(np.array(picks) < 0)
    assert 0.17 < minority < 0.33, minority
