"""The status line: warnings counted rather than repeated, the planner's and the executor's
~/status, `genpol status` and the line `genpol bringup` prints once a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from genpol.recent import Recent
from genpol.status_line import format_line
from genpol.warning_counter import WarningCounter, kind_of

PLANNER = {"policy_path": "/ckpt/flow", "family": "flow", "chunking": "rtc", "num_samples": 8,
           "rate_hz": 4.63, "latency_ms": {"p50": 180.2, "p99": 260.9}, "chunks_published": 40,
           "loading": "", "load_error": "", "refused": "", "warnings": {"not planning": 2}}
EXECUTOR = {"mode": "continue", "velocity_scale": 0.3, "chunks_received": 250,
            "chunks_accepted": 230, "chunks_dropped": 20, "speed_limited": 0.12,
            "speed_scale": 0.05, "fault": "", "warnings": {"speed limited": 412, "stale": 20}}


def test_warnings_are_logged_once_then_summarised():
    counter = WarningCounter(period_s=30.0)
    speed = "speed limited: steps scaled down to {:.2f} of what the chunks asked"
    assert counter.add(speed.format(0.05), now=0.0) == speed.format(0.05)  # the first at once
    assert all(counter.add(speed.format(0.04), now=0.1 * i) is None for i in range(1, 100))
    assert counter.add("dropped action chunk: stale, stamp is 1.2 s old", 5.0, "stale")  # new kind
    assert counter.due(now=20.0) == []  # the period has not passed
    summary = counter.add(speed.format(0.03), now=31.0)
    assert summary == f"speed limited x100 in the last 31 s: {speed.format(0.03)}"
    assert counter.add(speed.format(0.03), now=32.0) is None
    assert counter.due(now=50.0) == []
    assert counter.due(now=62.0) == [speed.format(0.03)]  # one repeat: logged as it was
    assert counter.counts() == {"speed limited": 102, "stale": 1}
    assert counter.due(now=100.0) == []  # nothing left unlogged

    quiet = WarningCounter(period_s=1.0)
    quiet.add("clock went back 0.003 s: dropped all chunks", 0.0)
    quiet.add("clock went back 0.010 s: dropped all chunks", 0.5)
    quiet.add("clock went back 0.020 s: dropped all chunks", 0.6)
    assert quiet.due(2.0) == ["clock went back x2 in the last 2 s: "
                              "clock went back 0.020 s: dropped all chunks"]
    assert quiet.counts() == {"clock went back": 3}

    assert kind_of("stamp is 0.125 s in the future: are the planner and ...") == \
        "stamp is in the future"
    assert kind_of("start position of ['wrist_roll', 'gripper'] is outside the joint limits; "
                   "moving back") == "start position of is outside the joint limits"
    assert kind_of("camera front: bad encoding") == "camera front"


def test_recent_rate_and_percentiles():
    recent = Recent(window_s=5.0)
    assert recent.rate(0.0) == 0.0 and recent.percentile(0.0, 50) is None
    for i in range(21):  # 4 per second from t = 10 to 15
        recent.add(10.0 + 0.25 * i, float(i))
    assert recent.rate(15.0) == pytest.approx(4.0)  # a new series: first to latest
    assert recent.rate(16.0) == pytest.approx(16 / 5.0)  # the last 5 s: t in (11, 15]
    assert recent.percentile(16.0, 50) == pytest.approx(np.median(np.arange(5, 21)))
    assert recent.rate(30.0) == 0.0 and recent.mean(30.0) is None


def test_status_line_from_the_statuses():
    line = format_line(PLANNER, EXECUTOR, {"task": "reach_around", "episode": 3, "time_s": 4.2})
    assert line == ("genpol | policy flow rtc n=8 4.6 ch/s p50 180 p99 261 ms | executor "
                    "continue 230/250 ok 20 dropped | speed x0.30 limited 12% to x0.05 | sim "
                    "reach_around ep 3 4.2 s | warn: speed limited 412, stale 20, not planning 2")
    assert format_line(None, None) == "genpol | no planner status | no executor status"
    silent = format_line(PLANNER, EXECUTOR, ages={"planner": 12.3, "executor": 0.5})
    assert "planner silent 12 s" in silent and "executor continue" in silent
    idle = format_line({"family": "", "load_error": "checkpoint '/x' does not exist",
                        "refused": "num_samples=0: num_samples must be in [1, 256], got 0"},
                       {**EXECUTOR, "fault": "not commanding the arm: the first measured "
                                             "position is outside the joint limits",
                        "warnings": {}})
    assert "policy none (load failed: checkpoint '/x' does not exist)" in idle
    assert "(refused num_samples=0" in idle and "executor FAULT not commanding the arm" in idle
    assert "warn" not in idle
    halted = format_line({**PLANNER, "halted": "flow sampled NaN"}, EXECUTOR)
    assert "policy flow rtc n=8" in halted and "HALTED (flow sampled NaN)" in halted


# ---- over real rclpy ------------------------------------------------------------------------

def _genpol(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genpol.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_nodes_publish_status_and_genpol_status_reads_it(ros):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from genpol import topics
    from genpol.nodes.executor import ExecutorNode
    from genpol.nodes.messages import duration_msg, time_msg, trajectory_msg
    from genpol.nodes.planner import PlannerNode
    from genpol.nodes.qos import LATCHED
    from ros_helpers import TopicCollector, spinning, wait_for

    planner = PlannerNode(parameter_overrides=[Parameter("cpu_threads", value=0),
                                               Parameter("camera_topics", value=["none=/unused"])])
    executor = ExecutorNode(parameter_overrides=[Parameter("mode", value="latest")])
    probe = rclpy.create_node("probe")
    planner_status = TopicCollector(probe, String, topics.PLANNER_STATUS, LATCHED)
    executor_status = TopicCollector(probe, String, topics.EXECUTOR_STATUS, LATCHED)
    chunk_pub = probe.create_publisher(JointTrajectory, topics.ACTION_CHUNK, 10)
    with spinning(planner, executor, probe):
        # a shell that cannot see this graph finds none, and says what to check
        elsewhere = _genpol("status", "--once", "--timeout", "1",
                            env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"})
        # a chunk 10 s old: dropped as stale, and counted (once the executor ticks: before,
        # it has no time to call a chunk old by)
        assert wait_for(lambda: executor.ticks > 0, timeout=5)
        stale = probe.get_clock().now().nanoseconds * 1e-9 - 10.0
        chunk_pub.publish(trajectory_msg(list(executor.config.joint_names),
                                         [duration_msg(k / 10) for k in range(5)],
                                         np.zeros((5, 6)), stamp=time_msg(stale)))
        assert wait_for(lambda: executor.chunks_received == 1, timeout=10)
        assert not planner.set_parameters_atomically(
            [Parameter("policy_path", value="/does/not/exist")]).successful

        def latest(collector, key):
            return json.loads(collector.messages[-1].data).get(key) if len(collector) else None

        assert wait_for(lambda: latest(executor_status, "chunks_dropped") == 1, timeout=5)
        assert wait_for(lambda: latest(planner_status, "refused"), timeout=5)
        ex = json.loads(executor_status.messages[-1].data)
        assert ex["mode"] == "latest" and ex["chunks_received"] == 1
        assert ex["warnings"] == {"stale": 1} and ex["fault"] == ""
        assert 0.0 <= ex["speed_limited"] <= 1.0
        pl = json.loads(planner_status.messages[-1].data)
        assert pl["family"] == "" and pl["chunks_published"] == 0 and pl["rate_hz"] == 0.0
        assert "policy_path='/does/not/exist'" in pl["refused"]

        here = _genpol("status", "--once", "--timeout", "20")
        out, _ = here.communicate(timeout=60)
        assert here.returncode == 0, out
        line = out.strip().splitlines()[-1]
        assert line.startswith("genpol | policy none") and "executor latest 0/1 ok" in line, out
        assert "warn: stale 1" in line, line
    out, _ = elsewhere.communicate(timeout=30)
    assert elsewhere.returncode == 1 and "no genpol graph found" in out, out
    assert "ROS_DOMAIN_ID" in out


def test_bringup_prints_the_status_line_once_a_second(ros_env):
    """The simulated graph without a policy: sim_arm, planner and executor, with the line."""
    proc = _genpol("bringup", "--duration", "8")
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.append((time.monotonic(), text.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    output = "\n".join(text for _, text in lines)
    status = [(t, text) for t, text in lines if text.startswith("genpol | ")]
    assert proc.returncode == 0, output[-3000:]
    assert status, output[-3000:]
    assert any("executor continue" in text for _, text in status), status
    assert len(status) <= 9, status  # 8 s at most once a second
    gaps = np.diff([t for t, _ in status])
    assert gaps.size == 0 or gaps.min() > 0.5, gaps  # not bunched up either
    assert "Traceback" not in output, output[-3000:]
