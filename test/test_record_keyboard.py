"""`genpol record --keyboard`: keys (arrow escape sequences included) map to episode actions; the
outcome goes into the recorder's episode_success before every stop and never lingers after a
refused one; and, live, the command on a pseudo-terminal drives an in-process recorder node:
episodes saved as success or failure, discarded, stopped with outcome unknown at quit, and the
terminal's settings restored. From a pipe it takes one command a line; no recorder is an error
that names it."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from genpol.cli import main
from genpol.jobs.record_keyboard import EpisodeControl
from genpol.recording import keys
from genpol.recording.keys import Action, KeyDecoder

# ---- the key mapping ---------------------------------------------------------------------------


def _actions(decoder: KeyDecoder, data: bytes) -> list[Action | None]:
    return [keys.action(k) for k in decoder.feed(data)]


def test_keys_and_arrow_sequences_map_to_actions():
    d = KeyDecoder()
    assert _actions(d, b" sS") == [Action.START] * 3
    assert _actions(d, b"\r") == _actions(d, b"\n") == _actions(d, b"\r\n") == [Action.SUCCESS]
    assert _actions(d, b"\x1b[C\x1bOC\x1b[1;2C") == [Action.SUCCESS] * 3  # right: CSI, SS3, shift
    assert _actions(d, b"fF") == [Action.FAILURE] * 2
    assert _actions(d, b"\x1b[D\x1bODdD") == [Action.DISCARD] * 4        # left arrow, d
    assert _actions(d, b"qQ\x03\x04") == [Action.QUIT] * 4               # q, raw Ctrl-C / Ctrl-D
    assert _actions(d, b"x\x1b[A\x1b[15~") == [None, None]    # x, up: no action; F5: no key
    assert d.feed(b"x\x1b[A") == ["x", keys.UP] and not d.pending


def test_an_escape_sequence_split_across_reads_waits_for_its_rest():
    d = KeyDecoder()
    assert d.feed(b"\x1b") == [] and d.pending
    assert d.feed(b"[") == [] and d.pending
    assert d.feed(b"Ds") == [keys.LEFT, "s"] and not d.pending
    assert d.flush() == []


def test_a_lone_esc_quits_once_nothing_follows_it():
    d = KeyDecoder()
    assert d.feed(b"\x1b") == [] and d.pending
    assert [keys.action(k) for k in d.flush()] == [Action.QUIT] and not d.pending
    assert d.feed(b"\x1bs") == [keys.ESC, "s"]  # Esc then a key (Alt-s): Esc acts first
    assert d.feed(b"\x1b\x1b") == [keys.ESC] and d.pending


def test_line_commands_from_a_pipe():
    assert [keys.line_action(w) for w in ("start", " S ", "stop", "success", "fail", "f",
                                          "discard", "quit")] == [
        Action.START, Action.START, Action.SUCCESS, Action.SUCCESS, Action.FAILURE,
        Action.FAILURE, Action.DISCARD, Action.QUIT]
    assert keys.line_action("   ") is None
    with pytest.raises(ValueError, match=r"unknown command 'jump'.*start \| stop"):
        keys.line_action("jump")


# ---- the control, against a fake recorder ------------------------------------------------------


class _FakeRecorder:
    """The recorder's answers, as ClientNode gives them: a message, or RuntimeError."""

    def __init__(self):
        self.calls: list = []
        self.recording = False
        self.index = 0

    def trigger(self, name, timeout=10.0):
        self.calls.append(name)
        if name.endswith("/start_episode"):
            self.recording = True
            return f"recording episode {self.index} to /d/episode_{self.index}"
        if name.endswith("/stop_episode"):
            if not self.recording:
                raise RuntimeError(f"{name} failed: no episode is recording (call "
                                   "start_episode first)")
            self.recording, self.index = False, self.index + 1
            return f"episode {self.index - 1} saved"
        raise AssertionError(name)

    def set_node_parameters(self, node, values, timeout=10.0):
        self.calls.append((node, values))

    def latest(self, key, default=None):
        return default


def test_the_outcome_is_set_before_each_stop_and_cleared_when_the_stop_is_refused():
    rec = _FakeRecorder()
    control = EpisodeControl(rec, "/arm/recorder")
    assert control.act(Action.START) == "[start] recording episode 0 to /d/episode_0"
    assert control.act(Action.FAILURE) == "[stop, failed] episode 0 saved"
    assert rec.calls == ["/arm/recorder/start_episode",
                         ("arm/recorder", {"episode_success": False}),
                         "/arm/recorder/stop_episode"]
    rec.calls.clear()
    line = control.act(Action.SUCCESS)  # nothing open: the recorder refuses
    assert line.startswith("[stop, success] /arm/recorder/stop_episode failed: no episode")
    assert rec.calls == [("arm/recorder", {"episode_success": True}),
                         "/arm/recorder/stop_episode",
                         ("arm/recorder", {"episode_success": ""})]  # not left for the next


def test_quit_stops_an_open_episode_with_outcome_unknown_and_says_so():
    rec = _FakeRecorder()
    control = EpisodeControl(rec)
    assert control.close() == (True, None)  # nothing open: nothing called
    assert rec.calls == []
    control.act(Action.START)
    ok, line = control.close()
    assert ok and rec.calls[-2:] == [("recorder", {"episode_success": ""}),
                                     "/recorder/stop_episode"]
    assert line is not None and line.startswith("[quit] episode 0 saved")
    assert "kept with outcome unknown" in line


def test_keyboard_and_sim_together_are_refused():
    with pytest.raises(SystemExit, match="--keyboard.*--sim.*one of them"):
        main(["record", "--keyboard", "--sim"])
    with pytest.raises(SystemExit, match="dataset_dir"):
        main(["record", "--keyboard", "--out", "demos"])
    with pytest.raises(SystemExit, match="--sim.*--keyboard"):
        main(["record", "--out", "demos"])


# ---- live: the command against a recorder node -------------------------------------------------


@pytest.fixture
def live_recorder(ros, tmp_path):
    """A recorder node at /kb/recorder recording /kb/joint_states, published at 50 Hz."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState

    from genpol.nodes.recorder import RecorderNode
    from ros_helpers import spinning

    dataset = tmp_path / "demos"
    values = {"dataset_dir": str(dataset), "topics": ["/kb/joint_states"],
              "topic_types": ["/kb/joint_states:sensor_msgs/msg/JointState"], "backend": "mcap",
              "min_free_mb": 1.0, "flush_period_s": 0.2, "status_period_s": 0.5}
    node = RecorderNode(namespace="kb",
                        parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    pub = node.create_publisher(JointState, "/kb/joint_states", 10)
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.02):
            pub.publish(JointState(name=["j"], position=[0.0]))

    thread = threading.Thread(target=publish, daemon=True)
    with spinning(node):
        thread.start()
        try:
            yield dataset
        finally:
            stop.set()
            thread.join()


def _genpol(*args: str) -> list[str]:
    return [sys.executable, "-m", "genpol", "record", *args]


class _Pty:
    """The command's terminal: keys written to it, its output read until a pattern shows."""

    def __init__(self, master: int):
        self.master, self.out, self.seen = master, "", 0

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match:
        end = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(self.out, self.seen)
            if match:
                self.seen = match.end()
                return match
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout:g} s; output:\n{self.out}")
            if select.select([self.master], [], [], min(left, 0.1))[0]:
                try:
                    self.out += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the other side closed
                    time.sleep(0.05)


def _meta(dataset: Path, index: int) -> dict:
    from genpol.recording.episode import episode_name, read_metadata

    return read_metadata(dataset / episode_name(index)) or {}


def test_keys_on_a_terminal_drive_a_live_recorder(live_recorder):
    from genpol.recording import list_episodes

    dataset = live_recorder
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(_genpol("--keyboard", "--recorder", "kb/recorder"), stdin=slave,
                            stdout=slave, stderr=slave, env=os.environ.copy())
    term = _Pty(master)
    try:
        term.expect(r"/kb/recorder records into " + re.escape(str(dataset)))
        term.expect(r"keys: space/s start")
        assert not termios.tcgetattr(slave)[3] & (termios.ICANON | termios.ECHO), \
            "the terminal is not in cbreak mode while the keys are read"
        term.expect(r"\[/kb/recorder/status\] idle")

        term.send(b" ")
        term.expect(r"\[start\] recording episode 0 to ")
        term.expect(r"episode 0 RECORDING \d+ s")
        term.send(b"\r")  # Enter
        term.expect(r"\[stop, success\] episode 0 saved to .*; success")
        meta = _meta(dataset, 0)
        assert meta["success"] is True and meta["status"] == "complete"
        assert meta["message_counts"]["/kb/joint_states"] > 5
        term.expect(r"\[/kb/recorder/status\] idle, no episode open")  # refreshed after it

        term.send(b"s")
        term.expect(r"\[start\] recording episode 1 ")
        term.send(b"\x1b[D")  # left arrow
        term.expect(r"\[discard\] discarded the recording episode 1")
        assert _meta(dataset, 1)["status"] == "discarded"

        term.send(b" ")
        term.expect(r"\[start\] recording episode 2 ")
        term.send(b"f")
        term.expect(r"\[stop, failed\] episode 2 saved to .*; failure")
        assert _meta(dataset, 2)["success"] is False

        term.send(b"s")
        term.expect(r"\[start\] recording episode 3 ")
        term.send(b"\x1b[C")  # right arrow
        term.expect(r"\[stop, success\] episode 3 saved")
        assert _meta(dataset, 3)["success"] is True

        term.send(b"s")
        term.expect(r"\[start\] recording episode 4 ")
        term.send(b"q")
        term.expect(r"\[quit\] episode 4 saved to .*outcome unknown.*kept with outcome unknown")
        assert proc.wait(timeout=15) == 0, term.out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    meta = _meta(dataset, 4)
    assert meta["status"] == "complete" and meta["success"] is None
    assert [p.name for p in list_episodes(dataset)] == [
        "episode_000000", "episode_000002", "episode_000003", "episode_000004"]
    assert termios.tcgetattr(slave) == before, "the terminal's settings were not restored"
    os.close(master)
    os.close(slave)


def test_ctrl_c_stops_the_open_episode_and_restores_the_terminal(live_recorder):
    """The pty as the command's controlling terminal, so Ctrl-C is SIGINT as in a shell."""
    dataset = live_recorder
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    as_terminal = ("import fcntl, os, sys, termios; os.setsid(); "
                   "fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", as_terminal, *_genpol("--keyboard",
                            "--recorder", "kb/recorder")], stdin=slave, stdout=slave,
                            stderr=slave, env=os.environ.copy())
    term = _Pty(master)
    try:
        term.expect(r"keys: space/s start")
        term.send(b"s")
        term.expect(r"\[start\] recording episode 0 ")
        term.send(b"\x03")  # Ctrl-C
        term.expect(r"\[quit\] episode 0 saved to .*kept with outcome unknown")
        assert proc.wait(timeout=15) == 130, term.out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    meta = _meta(dataset, 0)
    assert meta["status"] == "complete" and meta["success"] is None
    assert termios.tcgetattr(slave) == before, "the terminal's settings were not restored"
    os.close(master)
    os.close(slave)


def test_commands_from_a_pipe_one_a_line(live_recorder):
    dataset = live_recorder
    done = subprocess.run(_genpol("--keyboard", "--recorder", "/kb/recorder/"),
                          input="start\nfail\njump\nstart\n", capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "commands, one per line" in out and "unknown command 'jump'" in out
    assert -1 < out.find("[stop, failed] episode 0 saved") < out.find("[start] recording "
                                                                       "episode 1"), out
    assert re.search(r"\[quit\] episode 1 saved.*kept with outcome unknown", out), out
    assert "\x1b[K" not in out  # no status line rewritten in place off a terminal
    assert _meta(dataset, 0)["success"] is False
    assert _meta(dataset, 1)["success"] is None and _meta(dataset, 1)["status"] == "complete"


def test_no_recorder_is_an_error_naming_it(ros_env):
    done = subprocess.run(_genpol("--keyboard", "--recorder", "nobody", "--timeout", "1"),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())
    assert done.returncode == 1
    assert "no recorder answers at /nobody" in done.stderr
    assert "--recorder NAME" in done.stderr
