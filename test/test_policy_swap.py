"""Honest policy swaps on a live planner: a policy_path set is answered only after the checkpoint
is vetted (every file, a dry run), so each kind of broken checkpoint is refused with its reason,
the parameter and the running policy unchanged; a good one runs as soon as the set returns and
shows in ~/status; an older request never replaces a newer one; a policy that samples NaN is
halted (nothing published) until another is set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from genpol import planning, robot  # noqa: E402
from genpol.nodes.messages import duration_s  # noqa: E402
from genpol.nodes.planner import PlannerNode  # noqa: E402
from genpol.nodes.qos import LATCHED  # noqa: E402
from genpol.planning import PolicyHolder  # noqa: E402
from genpol.policies import make_config, make_policy, save_policy  # noqa: E402
from genpol.policies.normalize import compute_stats  # noqa: E402
from ros_helpers import TopicCollector, spinning, wait_for  # noqa: E402

MODEL, STATS, CONFIG = "model.safetensors", "stats.safetensors", "config.yaml"
HOME = np.array([0.0, -0.5, 0.5, 0.2, 0.0, 0.3])


def _tiny_checkpoint(path, family, fps=10.0):
    """An untrained small policy with statistics around HOME: enough to plan, instant to make."""
    rng = np.random.default_rng(0)
    state = HOME + 0.1 * rng.standard_normal((64, 6))
    action = state[:, None, :] + 0.05 * rng.standard_normal((64, 8, 6))
    config = make_config(family, state_dim=6, action_dim=6, horizon=8, fps=fps, hidden_dim=32,
                         joint_names=list(robot.JOINT_NAMES), **(
                             {"down_dims": [16, 32], "num_steps": 2} if family == "flow" else {}))
    policy = make_policy(config)
    policy.set_stats(compute_stats(state, action))
    save_policy(policy, path)
    return str(path)


def _edit_config(d, **changes):
    cfg = yaml.safe_load((d / CONFIG).read_text())
    cfg.update(changes)
    (d / CONFIG).write_text(yaml.safe_dump(cfg))


def _load(file):
    """Tensors copied out of the file's memory map, so the file may be rewritten."""
    return {k: v.clone() for k, v in load_file(str(file)).items()}


def _edit_tensors(d, name, edit):
    tensors = _load(d / name)
    edit(tensors)
    save_file(tensors, str(d / name), metadata={"format": "genpol-checkpoint-1",
                                                "family": "flow"})


def _nan_first_weight(w):
    key = next(k for k, v in w.items() if v.is_floating_point())
    w[key] = torch.full_like(w[key], float("nan"))


def _shift_actions(s):
    s["action_min"], s["action_max"] = s["action_min"] + 4.0, s["action_max"] + 4.0


#: kind -> (how the good flow checkpoint is broken, words the refusal must hold)
BROKEN = {
    "truncated": (lambda d: (d / MODEL).write_bytes((d / MODEL).read_bytes()[:-1000]),
                  [MODEL, "truncated"]),
    "zero_length": (lambda d: (d / MODEL).write_bytes(b""), [MODEL, "empty (0 bytes)"]),
    "pickled": (lambda d: torch.save(_load(d / MODEL), d / MODEL),
                [MODEL, "pickle (torch.save)", "never unpickles"]),
    "unknown_key": (lambda d: _edit_tensors(d, MODEL, lambda w: w.update(
        extra_head=torch.zeros(3))), [MODEL, "unexpected tensors ['extra_head']"]),
    "wrong_family": (lambda d: _edit_config(d, family="mse"), [MODEL, "says family: mse"]),
    "unknown_family": (lambda d: _edit_config(d, family="wavenet"),
                       [CONFIG, "unknown policy family 'wavenet'"]),
    "nan_stats": (lambda d: _edit_tensors(d, STATS, lambda s: s["state_mean"].fill_(np.nan)),
                  [STATS, "'state_mean' holds 6 NaN"]),
    "nan_weights": (lambda d: _edit_tensors(d, MODEL, _nan_first_weight),
                    [MODEL, "NaN or inf", "train again"]),
    "string_horizon": (lambda d: _edit_config(d, horizon="8"), [CONFIG, "horizon is '8' (str)"]),
    "fps_1000": (lambda d: _edit_config(d, fps=1000), [CONFIG, "fps 1000 is outside 1..200"]),
    "beyond_limits": (lambda d: _edit_tensors(d, STATS, _shift_actions),
                      ["beyond the joint's limits"]),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("swap")
    paths = {"flow": _tiny_checkpoint(root / "flow", "flow"),
             "mse": _tiny_checkpoint(root / "mse", "mse", fps=5.0)}
    shutil.copytree(paths["flow"], root / "flow_copy")
    paths["flow_copy"] = str(root / "flow_copy")
    for kind, (breaks, _) in BROKEN.items():
        shutil.copytree(paths["flow"], root / kind)
        breaks(root / kind)
        paths[kind] = str(root / kind)
    return paths


class Probe:
    """A node of the test's own: joint states in, chunks and status out, parameter calls."""

    def __init__(self):
        self.node = rclpy.create_node("probe")
        self.chunks = TopicCollector(self.node, JointTrajectory, "/genpol/action_chunk")
        self.status = TopicCollector(self.node, String, "/planner/status", LATCHED)
        self.setter = self.node.create_client(SetParameters, "/planner/set_parameters")
        self.getter = self.node.create_client(GetParameters, "/planner/get_parameters")
        states = self.node.create_publisher(JointState, "/joint_states", 10)

        def publish_state():
            msg = JointState(name=list(robot.JOINT_NAMES), position=[float(v) for v in HOME])
            msg.header.stamp = self.node.get_clock().now().to_msg()
            states.publish(msg)

        self.node.create_timer(0.02, publish_state)

    def set_async(self, path):
        request = SetParameters.Request(
            parameters=[Parameter("policy_path", value=path).to_parameter_msg()])
        return self.setter.call_async(request)

    def set(self, path):
        future = self.set_async(path)
        assert wait_for(future.done, timeout=20)
        return future.result().results[0]

    def get(self):
        future = self.getter.call_async(GetParameters.Request(names=["policy_path"]))
        assert wait_for(future.done, timeout=10)
        return future.result().values[0].string_value

    def last_status(self):
        return json.loads(self.status.messages[-1].data) if len(self.status) else {}

    def wait_status(self, predicate, timeout=5.0):
        ok = wait_for(lambda: predicate(self.last_status()), timeout)
        return self.last_status() if ok else None


def _planner(path, **more):
    return PlannerNode(parameter_overrides=[
        Parameter("policy_path", value=path), Parameter("num_samples", value=2),
        Parameter("inference_rate_hz", value=20.0),
        Parameter("cpu_threads", value=0),  # leave this pytest process's torch threads alone
        Parameter("camera_topics", value=["none=/unused"]),
        *[Parameter(k, value=v) for k, v in more.items()]])


def test_each_broken_checkpoint_is_refused_and_the_old_policy_runs_on(ros, checkpoints):
    good = checkpoints["flow"]
    node, probe = _planner(good), Probe()
    with spinning(node, probe.node):
        assert probe.setter.wait_for_service(timeout_sec=5)
        assert probe.getter.wait_for_service(timeout_sec=5)
        assert probe.chunks.wait(2, timeout=10)
        for kind, (_, words) in BROKEN.items():
            result = probe.set(checkpoints[kind])
            assert not result.successful, f"{kind} was accepted"
            for word in words:
                assert word in result.reason, (kind, word, result.reason)
            assert probe.get() == good, f"{kind}: the parameter names a policy that is not running"
            assert node.holder.path == good and node.holder.policy.config.family == "flow"
            before = len(probe.chunks)
            assert probe.chunks.wait(before + 2, timeout=5), f"no chunks after refusing {kind}"
        status = probe.wait_status(lambda s: "beyond_limits" in s.get("last_refusal", ""))
        assert status is not None, probe.last_status()
        assert "beyond the joint's limits" in status["last_refusal"]
        assert "beyond the joint's limits" in status["refused"]
        assert (status["policy_path"], status["family"], status["halted"]) == (good, "flow", "")
        # `genpol param set` prints the reason and the value that stays
        done = subprocess.run(
            [sys.executable, "-m", "genpol.cli", "param", "set", "planner", "policy_path",
             checkpoints["nan_weights"]], capture_output=True, text=True, timeout=60,
            env=os.environ.copy())
        assert done.returncode == 1, done.stdout + done.stderr
        assert "NaN or inf" in done.stderr and f"policy_path stays {good}" in done.stderr
        assert node.holder.path == good


def test_a_good_checkpoint_runs_when_the_set_returns_and_shows_in_status(ros, checkpoints):
    node, probe = _planner(checkpoints["flow"]), Probe()
    with spinning(node, probe.node):
        assert probe.setter.wait_for_service(timeout_sec=5) and probe.chunks.wait(1, timeout=10)
        status = probe.wait_status(lambda s: s.get("family") == "flow")
        assert status is not None, probe.last_status()
        first_loaded = datetime.fromisoformat(status["loaded_at"])
        time.sleep(1.1)  # loaded_at has whole seconds
        result = probe.set(checkpoints["mse"])
        assert result.successful, result.reason
        # vetted and loaded before the answer: it runs now, not after a background load
        assert node.holder.path == checkpoints["mse"] and probe.get() == checkpoints["mse"]
        status = probe.wait_status(lambda s: s.get("family") == "mse")
        assert status is not None, probe.last_status()
        assert status["policy_path"] == checkpoints["mse"] and status["last_refusal"] == ""
        assert datetime.fromisoformat(status["loaded_at"]) > first_loaded
        time.sleep(0.2)
        probe.chunks.clear()
        assert probe.chunks.wait(2, timeout=5)
        points = probe.chunks.messages[-1].points
        assert duration_s(points[1].time_from_start) == pytest.approx(1 / 5.0)  # mse's fps


def test_of_two_quick_sets_the_last_runs(ros, checkpoints):
    node, probe = _planner(checkpoints["flow"]), Probe()
    with spinning(node, probe.node):
        assert probe.setter.wait_for_service(timeout_sec=5) and probe.chunks.wait(1, timeout=10)
        last_path = checkpoints["flow_copy"]
        first, last = probe.set_async(checkpoints["mse"]), probe.set_async(last_path)
        assert wait_for(lambda: first.done() and last.done(), timeout=20)
        assert first.result().results[0].successful and last.result().results[0].successful
        assert node.holder.path == last_path == probe.get()  # runs once the answer is back
        status = probe.wait_status(lambda s: s.get("policy_path") == last_path)
        assert status is not None and status["family"] == "flow", probe.last_status()
        probe.chunks.clear()
        assert probe.chunks.wait(2, timeout=5)
        points = probe.chunks.messages[-1].points
        assert duration_s(points[1].time_from_start) == pytest.approx(1 / 10.0)  # flow's fps


def test_an_older_request_vetted_last_never_replaces_a_newer_one(monkeypatch):
    """A slow vetting of A overlaps a quick one of B: B runs, A is superseded and not installed
    even when it is offered after B."""
    release = threading.Event()

    def vet(path, device):
        if path == "A":
            assert release.wait(5)
        return f"policy {path}"

    monkeypatch.setattr(planning, "vet_policy", vet)
    monkeypatch.setattr(PolicyHolder, "_ready", lambda self, policy, vetted: policy)  # a str
    holder = PolicyHolder("cpu")
    got = {}
    slow = threading.Thread(target=lambda: got.update(A=holder.prepare("A")))
    slow.start()
    assert wait_for(lambda: holder._latest == 1)
    b = holder.prepare("B")
    assert not holder.superseded(b) and holder.install(b)
    release.set()
    slow.join(5)
    assert holder.superseded(got["A"])
    assert not holder.install(got["A"])
    assert (holder.path, holder.policy) == ("B", "policy B")


def test_a_policy_that_samples_nan_is_halted_until_a_new_one_is_set(ros, checkpoints,
                                                                    monkeypatch):
    good = checkpoints["flow"]
    node, probe = _planner(good), Probe()
    with spinning(node, probe.node):
        assert probe.setter.wait_for_service(timeout_sec=5) and probe.chunks.wait(2, timeout=10)
        policy = node.holder.policy
        monkeypatch.setattr(policy, "predict_chunks", lambda *a, **k: np.full(
            (2, policy.config.horizon, policy.config.action_dim), np.nan))
        status = probe.wait_status(lambda s: bool(s.get("halted")))
        assert status is not None, probe.last_status()
        assert "non-finite" in status["halted"] and good in status["halted"]
        time.sleep(0.2)
        halted_at = len(probe.chunks)
        time.sleep(1.0)
        assert len(probe.chunks) == halted_at, "chunks published after the policy sampled NaN"
        assert all(np.isfinite(p.positions).all() for m in probe.chunks.messages
                   for p in m.points)
        assert probe.set(good).successful  # the same path again: a fresh policy
        assert probe.chunks.wait(halted_at + 2, timeout=5)
        assert probe.wait_status(lambda s: s.get("halted") == "") is not None


def test_a_broken_start_up_checkpoint_leaves_nothing_running(ros, checkpoints):
    node = _planner(checkpoints["nan_weights"])
    try:
        assert node.holder.policy is None and node.holder.path == ""
        assert node.get_parameter("policy_path").value == ""
        status = node.status()
        assert "NaN or inf" in status["load_error"]
        assert status["last_refusal"].startswith(checkpoints["nan_weights"])
    finally:
        node.close()
        node.destroy_node()

