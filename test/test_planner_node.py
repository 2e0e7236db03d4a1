"""The planner over real rclpy: chunks stamped with their observation, markers, policy swaps
through a parameter (good paths and every refusal; the last request wins), and its parameters'
descriptors, refusals and effects. The choice among samples is tested in test_control.py."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from genpol import planning, policies, robot  # noqa: E402
from genpol.data.arrays import ChunkData  # noqa: E402
from genpol.nodes.messages import duration_s, stamp_s  # noqa: E402
from genpol.nodes.planner import PlannerNode  # noqa: E402
from genpol.parameters import PLANNER  # noqa: E402
from genpol.planning import PolicyHolder  # noqa: E402
from genpol.train import TrainConfig, config_for_data, train  # noqa: E402
from ros_helpers import TopicCollector, spinning, wait_for  # noqa: E402

HOME = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])


def _tiny_checkpoint(path, family, joint_names=robot.JOINT_NAMES, fps=10.0, steps=5):
    rng = np.random.default_rng(0)
    state = HOME + 0.1 * rng.standard_normal((64, 6))
    action = state[:, None, :] + 0.05 * rng.standard_normal((64, 8, 6))
    data = ChunkData(state, action, joint_names=list(joint_names), fps=fps)
    config = config_for_data(family, data, hidden_dim=32, **(
        {"down_dims": [16, 32], "num_steps": 2} if family == "flow" else {}))
    train(config, data, TrainConfig(steps=steps, batch_size=16, device="cpu", progress=False),
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
    node = PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=checkpoints["good"]),
        Parameter("num_samples", value=4), Parameter("inference_rate_hz", value=20.0),
        Parameter("fresh_num_samples", value=4),  # the arm here never follows: every chunk is
        Parameter("cpu_threads", value=0),  # fresh; and leave pytest's torch threads alone
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
        # an observation's stamp, or for a chunk that continues the one before (rtc) the step
        # of that chunk's grid nearest the observation
        stamp, before = stamp_s(msg.header.stamp), stamp_s(chunks.messages[-2].header.stamp)
        steps = (stamp - before) * 10.0
        assert stamp in sent or (abs(steps - round(steps)) < 1e-6
                                 and min(abs(stamp - s) for s in sent) <= 0.05 + 1e-6), \
            "chunk stamp is neither an observation's nor on the last chunk's step grid"
        assert list(msg.joint_names) == list(robot.JOINT_NAMES) and len(msg.points) == 8
        assert [duration_s(p.time_from_start) for p in msg.points] == pytest.approx(
            [k / 10.0 for k in range(8)], abs=1e-6)
        assert markers.wait(1)
        strips = [m for m in markers.messages[-1].markers if m.type == Marker.LINE_STRIP]
        assert len(strips) == 4 and len(strips[0].points) == 8
        assert strips[0].scale.x > strips[1].scale.x  # the executed sample stands out
        # markers carry the observation they were planned on (eval's planner latency)
        assert all(stamp_s(m.header.stamp) in sent for m in strips)

        assert client.wait_for_service(timeout_sec=5)
        for key, words in (("missing", "does not exist"), ("empty", "config.yaml"),
                           ("foreign", "joints")):
            result = _set_param(probe, client, "policy_path", checkpoints[key])
            assert not result.successful and words in result.reason, (key, result.reason)
        assert node.get_parameter("policy_path").value == checkpoints["good"]
        before = len(chunks)
        assert chunks.wait(before + 2, timeout=5), "the old policy stopped after a refusal"
        assert node.holder.path == checkpoints["good"]

        result = _set_param(probe, client, "policy_path", checkpoints["other"])
        assert result.successful, result.reason
        assert wait_for(lambda: node.holder.path == checkpoints["other"], timeout=10)
        time.sleep(0.3)
        chunks.clear()
        assert chunks.wait(2, timeout=5)
        points = chunks.messages[-1].points
        assert duration_s(points[1].time_from_start) == pytest.approx(1 / 5.0)  # its fps


def _set(probe, client, name, value):
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    future = client.call_async(request)
    assert wait_for(future.done, timeout=10)
    return future.result().results[0]


def test_parameters_are_described_checked_and_applied(ros):
    """Descriptors from the table; read-only, out-of-range and unknown choices refused with the
    old value kept; accepted values take effect (post-set callback)."""
    node = PlannerNode(parameter_overrides=[Parameter("cpu_threads", value=0),
                                            Parameter("camera_topics", value=["none=/unused"])])
    probe = rclpy.create_node("probe")
    describe = probe.create_client(DescribeParameters, "/planner/describe_parameters")
    client = probe.create_client(SetParameters, "/planner/set_parameters")
    with spinning(node, probe):
        assert describe.wait_for_service(timeout_sec=5) and client.wait_for_service(timeout_sec=5)
        future = describe.call_async(DescribeParameters.Request(names=[p.name for p in PLANNER]))
        assert wait_for(future.done, timeout=10)
        got = {d.name: d for d in future.result().descriptors}
        for param in PLANNER:
            assert got[param.name].description == param.description
            assert got[param.name].read_only == param.read_only, param.name
        assert got["num_samples"].integer_range[0].from_value == 1
        assert got["selection"].additional_constraints == "one of: consistent, first"

        result = _set(probe, client, "device", "cpu")
        assert not result.successful and "read-only" in result.reason
        assert node.get_parameter("device").value == "auto"
        result = _set(probe, client, "num_samples", 0)
        assert not result.successful and "out of range" in result.reason
        assert node.get_parameter("num_samples").value == 8 == node.num_samples
        result = _set(probe, client, "selection", "best")
        assert not result.successful and "selection must be one of" in result.reason
        assert node.selector.mode == "consistent"
        result = _set(probe, client, "policy_path", "")
        assert not result.successful and "empty" in result.reason

        changes = (("num_samples", 3), ("inference_rate_hz", 2.5),
                   ("max_observation_age_s", 0.25), ("sampling_steps", 4),
                   ("chunking", "rtc"), ("rtc_schedule", "linear"),
                   ("rtc_max_guidance", 2.0), ("added_delay_s", 0.1))
        for name, value in (*changes, ("selection", "first")):
            result = _set(probe, client, name, value)
            assert result.successful, (name, result.reason)
            assert node.get_parameter(name).value == value
        assert {name: getattr(node, name) for name, _ in changes} == dict(changes)
        result = _set(probe, client, "chunking", "guess")
        assert not result.successful and "chunking must be one of" in result.reason
        assert node.chunking == "rtc"
        assert node.selector.mode == "first"


def test_the_last_policy_request_wins_when_an_older_load_ends_later(monkeypatch):
    """Two quick swaps: a slow load of A that ends after a fast load of B must not replace B."""
    release = {"A": threading.Event(), "B": threading.Event()}

    def load_when_released(path, device):
        assert release[path].wait(5)
        return f"policy {path}"

    monkeypatch.setattr(planning, "check_checkpoint", lambda path: "")
    monkeypatch.setattr(policies, "load_policy", load_when_released)
    monkeypatch.setattr(PolicyHolder, "_ready", lambda self, policy, vetted: policy)  # a str
    holder = PolicyHolder("cpu")
    done: dict[str, str] = {}
    finished = threading.Condition()

    def on_done(path, error):
        with finished:
            done[path] = error
            finished.notify_all()

    holder.load_in_background("A", on_done)
    holder.load_in_background("B", on_done)
    release["B"].set()
    with finished:
        assert finished.wait_for(lambda: "B" in done, timeout=5)
    assert (holder.path, done["B"]) == ("B", "")
    release["A"].set()
    with finished:
        assert finished.wait_for(lambda: "A" in done, timeout=5)
    assert (holder.path, holder.policy) == ("B", "policy B")
    assert done["A"] == planning.SUPERSEDED


def test_rtc_chunks_continue_the_last_one_on_the_timeline(ros, tmp_path):
    """A binned policy honours its prefix exactly, so each chunk's first steps are the last
    chunk's at the same times; with chunking select they are drawn afresh."""
    # trained enough that its chunks are smooth: an untrained one jumps between far tokens from
    # step to step, and the planner then rightly sees the test's arm (which interpolates them)
    # leave the chunk, and draws every chunk afresh
    path = _tiny_checkpoint(tmp_path / "binned", "binned", steps=300)
    node = PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=path), Parameter("num_samples", value=4),
        Parameter("inference_rate_hz", value=10.0), Parameter("cpu_threads", value=0),
        Parameter("added_delay_s", value=0.05), Parameter("chunking", value="rtc"),
        Parameter("fresh_num_samples", value=6),
        Parameter("camera_topics", value=["none=/unused"])])
    assert "forced prefix" in node.strategy(node.holder.policy)
    probe = rclpy.create_node("probe")
    chunks = TopicCollector(probe, JointTrajectory, "/genpol/action_chunk")
    markers = TopicCollector(probe, MarkerArray, "/genpol/chunk_markers")
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)
    client = probe.create_client(SetParameters, "/planner/set_parameters")

    def publish_state():
        """An arm that follows the last chunk (one that stayed at HOME would have left it, and
        the planner would rightly stop continuing it)."""
        now = probe.get_clock().now()
        q = HOME
        if chunks.messages:
            last = chunks.messages[-1]
            t = stamp_s(last.header.stamp) + np.array(
                [duration_s(p.time_from_start) for p in last.points])
            pts = np.array([p.positions for p in last.points])
            q = [np.interp(now.nanoseconds * 1e-9, t, pts[:, j]) for j in range(pts.shape[1])]
        msg = JointState(name=list(robot.JOINT_NAMES), position=[float(v) for v in q])
        msg.header.stamp = now.to_msg()
        state_pub.publish(msg)

    def agreement(a, b) -> tuple[int, float]:
        """(B's leading steps equal to A at their times, the largest gap over the first two)"""
        ta = stamp_s(a.header.stamp) + np.array([duration_s(p.time_from_start) for p in a.points])
        tb = stamp_s(b.header.stamp) + np.array([duration_s(p.time_from_start) for p in b.points])
        qa = np.array([p.positions for p in a.points])
        qb = np.array([p.positions for p in b.points])
        on_a = np.stack([np.interp(tb, ta, qa[:, j]) for j in range(qa.shape[1])], axis=1)
        gap = np.abs(qb - on_a).max(axis=1)
        same = int(np.argmax(gap > 1e-5)) if (gap > 1e-5).any() else len(gap)
        return same, float(gap[:2].max())

    probe.create_timer(0.02, publish_state)
    with spinning(node, probe):
        assert chunks.wait(6, timeout=20)
        msgs = chunks.messages[1:6]
        same = [agreement(a, b)[0] for a, b in zip(msgs, msgs[1:], strict=False)]
        # The one honest reason to draw afresh: the arm (here a starved timer) lagged so far
        # behind that the planner saw it leave the chunk, and said so.
        left = sum(n for kind, n in node.warnings.counts().items() if "arm left" in kind)
        assert any(n >= 2 for n in same), f"no chunk continued its committed prefix: {same}"
        assert all(n >= 2 for n in same) or left > 0, \
            f"a chunk left its committed prefix ({same} steps) with no reason given"
        # the first chunk chose the mode among fresh_num_samples samples, the continuations
        # among num_samples (one marker strip per sample)
        samples = [sum(m.type == Marker.LINE_STRIP for m in a.markers) for a in markers.messages]
        assert samples[0] == 6 and samples.count(4) >= 3, samples
        assert client.wait_for_service(timeout_sec=5)
        assert _set(probe, client, "chunking", "select").successful
        assert "selection" in node.strategy(node.holder.policy)
        time.sleep(0.3)
        chunks.clear()
        assert chunks.wait(5, timeout=20)
        msgs = chunks.messages
        gaps = [agreement(a, b)[1] for a, b in zip(msgs, msgs[1:], strict=False)]
        assert max(gaps) > 1e-3, "free samples happened to equal the last chunk"


def test_a_slow_planner_plans_as_soon_as_the_first_state_comes(ros, checkpoints):
    """At 0.2 Hz, attempts with nothing to plan on must not use up the period: the first chunk
    follows the first joint state within a fraction of it, not up to 5 s later."""
    node = PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=checkpoints["good"]), Parameter("num_samples", value=2),
        Parameter("inference_rate_hz", value=0.2), Parameter("cpu_threads", value=0),
        Parameter("camera_topics", value=["none=/unused"])])
    probe = rclpy.create_node("probe")
    chunks = TopicCollector(probe, JointTrajectory, "/genpol/action_chunk")
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)
    first: list[float] = []

    def publish_state():
        msg = JointState(name=list(robot.JOINT_NAMES), position=[float(v) for v in HOME])
        msg.header.stamp = probe.get_clock().now().to_msg()
        if not first:
            first.append(time.monotonic())
        state_pub.publish(msg)

    with spinning(node, probe):
        assert wait_for(lambda: node.holder.policy is not None, timeout=10)
        time.sleep(0.5)  # the planner tries, with no state yet
        probe.create_timer(0.02, publish_state)
        assert chunks.wait(1, timeout=5)
        assert time.monotonic() - first[0] < 1.0, "the first chunk waited for the next period"
        time.sleep(1.0)
        assert len(chunks) == 1  # and the limit still holds after it


def test_an_unexpected_error_in_planning_is_reported_and_planning_goes_on(ros, checkpoints):
    node = PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=checkpoints["good"]),
        Parameter("num_samples", value=2), Parameter("inference_rate_hz", value=20.0),
        Parameter("cpu_threads", value=0), Parameter("camera_topics", value=["none=/unused"])])
    plan_once, calls = node._plan_once, []

    def failing_once() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in planning")
        return plan_once()

    node._plan_once = failing_once  # type: ignore[method-assign]
    probe = rclpy.create_node("probe")
    chunks = TopicCollector(probe, JointTrajectory, "/genpol/action_chunk")
    state_pub = probe.create_publisher(JointState, "/joint_states", 10)

    def publish_state():
        msg = JointState(name=list(robot.JOINT_NAMES), position=[float(v) for v in HOME])
        msg.header.stamp = probe.get_clock().now().to_msg()
        state_pub.publish(msg)

    probe.create_timer(0.02, publish_state)
    with spinning(node, probe):
        assert chunks.wait(3, timeout=10), "planning stopped after the error"
        assert len(calls) > 1
        assert node.status()["warnings"].get("planning failed: RuntimeError") == 1


def test_a_frame_rendered_before_a_reset_is_not_planned_on(ros, checkpoints):
    """A frame of the last episode still in flight when the reset comes shows the old scene: a
    vision policy would choose the new episode's path from it. Joint states from before the
    reset were already refused; frames now are too."""
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    node = PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=checkpoints["good"]), Parameter("cpu_threads", value=0),
        Parameter("camera_topics", value=["front=/camera/image_raw"])])
    try:
        def frame(stamp_ns):
            msg = Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12))
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 10**9)
            return msg

        before = node.get_clock().now().nanoseconds
        node._on_image("front", frame(before))
        assert "front" in node._images  # no reset yet: taken
        node._on_reset(Trigger.Request(), Trigger.Response())
        assert node._images == {}
        node._on_image("front", frame(before))  # rendered before the reset, arriving after it
        assert node._images == {}
        node._on_image("front", frame(node.get_clock().now().nanoseconds))
        assert node._images["front"].shape == (2, 2, 3)
    finally:
        node.destroy_node()
