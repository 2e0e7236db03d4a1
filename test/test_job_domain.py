"""Jobs run on their own ROS domain: `genpol record --sim` (like eval and demo, through
rosenv.job_network) picks a private domain with LOCALHOST discovery unless ROS_DOMAIN_ID is set,
says which on its first line, and its graph is seen there and nowhere else; two runs at once get
different domains. Also the choice itself: locks, busy ports, the user's ROS_DOMAIN_ID."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from genpol import rosenv

ANNOUNCED = re.compile(r"^\[genpol (\w+)\] ROS domain (\d+) \((.*)\)$")
PRIVATE = "private; set ROS_DOMAIN_ID to share one"


@pytest.fixture
def no_user_network(monkeypatch):
    for key in rosenv.KEYS:
        monkeypatch.delenv(key, raising=False)


def test_private_domain_announced_set_for_the_block_reused_inside_and_put_back(
        no_user_network, capsys):
    with rosenv.job_network("eval") as domain:
        line = capsys.readouterr().out
        assert line == f"[genpol eval] ROS domain {domain} ({PRIVATE})\n"
        assert domain in rosenv.PRIVATE_DOMAINS and domain != 0
        assert os.environ["ROS_DOMAIN_ID"] == str(domain)
        assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
        with rosenv.job_network("record") as inner:  # demo's stages: same domain, said once
            assert inner == domain
        assert capsys.readouterr().out == ""
    assert "ROS_DOMAIN_ID" not in os.environ
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ


def test_the_users_domain_and_discovery_range_win(monkeypatch, capsys):
    monkeypatch.setenv("ROS_DOMAIN_ID", "5")
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    with rosenv.job_network("eval") as domain:
        assert domain == 5 and os.environ["ROS_DOMAIN_ID"] == "5"
        assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ  # shared: left as it is
    assert capsys.readouterr().out == "[genpol eval] ROS domain 5 (from ROS_DOMAIN_ID)\n"

    monkeypatch.delenv("ROS_DOMAIN_ID")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    with rosenv.job_network("record") as domain:
        assert domain in rosenv.PRIVATE_DOMAINS
        assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"

    monkeypatch.setenv("ROS_DOMAIN_ID", "300")
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID='300'.*0..101"), \
            rosenv.job_network("eval"):
        pass


def _free_domains(count: int) -> list[int]:
    free = [d for d in range(60, 100) if not rosenv.domain_in_use(d)]
    assert len(free) >= count, "this host uses nearly every ROS domain"
    return free[:count]


def test_a_domain_held_by_another_run_or_with_a_participant_is_skipped(monkeypatch, tmp_path):
    monkeypatch.setattr(rosenv, "LOCK_DIR", tmp_path)  # only this test's runs hold locks
    a, b = _free_domains(2)
    monkeypatch.setattr(rosenv, "PRIVATE_DOMAINS", range(a, a + 1))
    with rosenv.private_domain() as first:
        assert first == a
        with pytest.raises(RuntimeError, match="set ROS_DOMAIN_ID"), rosenv.private_domain():
            pass
    with rosenv.private_domain() as again:  # released with its block
        assert again == a
    monkeypatch.setattr(rosenv, "PRIVATE_DOMAINS", [a, b])
    for _ in range(5):
        with rosenv.private_domain() as one, rosenv.private_domain() as two:
            assert {one, two} == {a, b}
    # Something else (not genpol, no lock) has participant 0's discovery port of domain a.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("", rosenv.PORT_BASE + rosenv.DOMAIN_GAIN * a + 10))
        assert rosenv.domain_in_use(a)
        for _ in range(5):
            with rosenv.private_domain() as domain:
                assert domain == b


# ------------------------------------------------------------------------ real jobs, at once


class Job:
    """`genpol record --sim` in its own process group; its stdout lines as they come."""

    def __init__(self, out: Path, env: dict[str, str]):
        cmd = [sys.executable, "-m", "genpol.cli", "record", "--sim", "--no-cameras",
               "--episodes", "100", "--settle-s", "2", "--out", str(out)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def first_line(self, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while not self.lines and self.proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.2)
        assert self.lines, f"no output (exit {self.proc.poll()})"
        return self.lines[0]

    def children_env(self) -> list[dict[str, str]]:
        """The environment of each node process it started."""
        out = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                raw = Path(f"/proc/{pid}/environ").read_bytes()
                out.append(dict(kv.split("=", 1) for kv in raw.decode().split("\0") if "=" in kv))
        return out

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the job discards its episode, stops its nodes

    def stop(self) -> None:
        self.interrupt()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _observer(domain: int):
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=domain)
    return context, rclpy.create_node(f"observer_{domain}", context=context)


def _arms(node) -> list[str]:
    """Who publishes /joint_states on the node's domain (sim_arm does, once per graph)."""
    return sorted(i.node_name for i in node.get_publishers_info_by_topic("/joint_states"))


def test_two_jobs_at_once_each_on_the_domain_they_announce_and_nowhere_else(ros_env, tmp_path):
    import rclpy

    base = {k: v for k, v in os.environ.items() if k not in rosenv.KEYS}
    user_domain = int(ros_env["ROS_DOMAIN_ID"])
    observers = {0: _observer(0)}  # up from the start: anything on domain 0 has time to show
    jobs = [Job(tmp_path / "a", base), Job(tmp_path / "b", base),
            Job(tmp_path / "c", {**base, "ROS_DOMAIN_ID": str(user_domain)})]
    try:
        announced = [ANNOUNCED.match(job.first_line()) for job in jobs]
        assert all(announced), [job.lines[:3] for job in jobs]
        domains = [int(m.group(2)) for m in announced if m]
        assert [m.group(1) for m in announced if m] == ["record"] * 3
        assert [m.group(3) for m in announced if m] == [PRIVATE, PRIVATE, "from ROS_DOMAIN_ID"]
        assert domains[2] == user_domain
        assert len(set(domains)) == 3 and 0 not in domains, domains
        for d in domains:
            observers[d] = _observer(d)
        # Positive control: each graph's sim_arm shows on its own domain, and only there.
        end = time.monotonic() + 120
        while not all(_arms(observers[d][1]) for d in domains) and time.monotonic() < end:
            for job in jobs:
                assert job.proc.poll() is None, "\n".join(job.lines[-20:])
            time.sleep(0.2)
        time.sleep(2.0)  # time enough for another graph's participants to show up too
        seen = {d: _arms(observers[d][1]) for d in observers}
        assert seen == {0: [], **{d: ["sim_arm"] for d in domains}}, seen
        for job, d in zip(jobs[:2], domains[:2], strict=True):
            env = job.children_env()
            assert len(env) == 4 and all(e["ROS_DOMAIN_ID"] == str(d) and
                                         e["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
                                         for e in env), env
    finally:
        for job in jobs:
            job.interrupt()
        for job in jobs:
            job.stop()
        for context, node in observers.values():
            node.destroy_node()
            rclpy.try_shutdown(context=context)
