"""`genpol record --keyboard`: a running recorder's episodes started, stopped and discarded by key.

For real demonstrations with a leader arm, like LeRobot's recorder keys: the graph (leader
driver, teleop, recorder) runs elsewhere (its own processes or launch, maybe another machine on
the same ROS network) and this job only talks to the recorder, through its Trigger services, its
latched ~/status and its episode_success parameter, set before every stop (true, false, or empty
for unknown) so no earlier value can leak into the episode. Quitting (q, Esc, Ctrl-C, the end of
piped input) with an episode open stops it with outcome unknown and says so: nothing recorded is
lost, and `d` on the next run discards it (the recorder's rule: the open episode, else the last
finished one). On a terminal, keys act at once (cbreak mode, restored on every exit); from a pipe,
each line is one command word (genpol.recording.keys.WORDS). rclpy is imported only in run().
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any, Protocol, TextIO

from genpol import topics
from genpol.recording import terminal
from genpol.recording.keys import Action

STATUS_PERIOD_S = 1.0  # the status line is refreshed no more often than this
STALE_S = 3.5          # the recorder publishes its status every status_period_s (1 s by default)
POLL_S = 0.2


class Client(Protocol):
    """What EpisodeControl needs of genpol.nodes.session.ClientNode."""

    def trigger(self, name: str, timeout: float = ...) -> str: ...
    def set_node_parameters(self, node: str, values: dict[str, Any],
                            timeout: float = ...) -> None: ...
    def latest(self, key: str, default: Any = None) -> Any: ...


class EpisodeControl:
    """The operator's actions on recorder `name` through `client`; each returns the line to
    print: the recorder's answer, or why it refused. Knows whether an episode is open: from
    the recorder's status once one came after the last action, else from the last answer."""

    def __init__(self, client: Client, name: str = "recorder", timeout: float = 10.0):
        self.client = client
        self.name = name.strip("/")
        self.timeout = timeout
        self.services = {what: topics.service(self.name, f"{what}_episode")
                         for what in ("start", "stop", "discard")}
        self._open = False
        self._acted_at = 0.0
        self._start_called: float | None = None
        self._since: tuple[Any, float, bool] | None = None  # episode, start, started by us?

    # ---- the recorder's status ------------------------------------------------------------
    def status(self) -> tuple[float, dict]:
        """(when it arrived (monotonic), the recorder's latest status); (0, {}) before one."""
        return self.client.latest("status") or (0.0, {})

    def is_open(self) -> bool:
        received, status = self.status()
        return bool(status.get("recording")) if received > self._acted_at else self._open

    def status_line(self, now: float) -> tuple[str, tuple]:
        """The status line and its state (what changes it, durations aside)."""
        received, st = self.status()
        head = f"[{topics.service(self.name, 'status')}]"
        if not st:
            return f"{head} no status yet", ("none",)
        recording, episode = bool(st.get("recording")), st.get("episode")
        if recording and (self._since is None or self._since[0] != episode):
            called, self._start_called = self._start_called, None
            self._since = (episode, now if called is None else called, called is not None)
        elif not recording:
            self._since = None
        error = f"; ERROR {st['error']}" if st.get("error") else ""
        stale = (f" (no status for {now - received:.0f} s: is the recorder running?)"
                 if now - received > STALE_S else "")
        if self._since is not None:
            _, since, ours = self._since
            messages = sum((st.get("counts") or {}).values())
            text = (f"{head} episode {episode} RECORDING {'' if ours else '>= '}"
                    f"{now - since:.0f} s, {messages} messages{error}{stale}")
        else:
            text = f"{head} idle, no episode open{error}{stale}"
        return text, (recording, episode, bool(error), bool(stale))

    # ---- actions --------------------------------------------------------------------------
    def act(self, action: Action) -> str:
        if action is Action.START:
            called = time.monotonic()
            ok, line = self._call(action, "start")
            if ok:
                self._open, self._start_called = True, called
            return line
        if action in (Action.SUCCESS, Action.FAILURE):
            return self._stop(action is Action.SUCCESS, action)[1]
        if action is Action.DISCARD:
            ok, line = self._call(action, "discard")
            if ok:
                self._open = False
            return line
        raise ValueError(f"EpisodeControl does not act on {action}")

    def close(self) -> tuple[bool, str | None]:
        """Quitting: an open episode is stopped with outcome unknown (kept, not discarded).
        (stopped or none open?, the line saying what happened; None when none was open)."""
        if not self.is_open():
            return True, None
        ok, line = self._stop("", Action.QUIT)
        if ok:
            line += (" -- it was still recording at quit: kept with outcome unknown (discard "
                     "it with d first thing on the next run, or edit its episode.yaml)")
        return ok, line

    def _stop(self, success: bool | str, label: Action) -> tuple[bool, str]:
        try:
            self.client.set_node_parameters(self.name, {"episode_success": success},
                                            timeout=self.timeout)
        except RuntimeError as exc:
            return False, f"[{label.value}] not stopped: the outcome could not be set ({exc})"
        ok, line = self._call(label, "stop")
        if ok:
            self._open = False
            return ok, line
        try:  # the recorder clears the outcome only after a stop that ended an episode
            self.client.set_node_parameters(self.name, {"episode_success": ""},
                                            timeout=self.timeout)
        except RuntimeError as exc:
            line += f"; WARNING episode_success stays {success!r} for the next stop ({exc})"
        return ok, line

    def _call(self, label: Action, what: str) -> tuple[bool, str]:
        """Call the recorder's ~/<what>_episode: (answered success?, the line to print)."""
        self._acted_at = time.monotonic()
        try:
            message = self.client.trigger(self.services[what], timeout=self.timeout)
        except RuntimeError as exc:  # "<service> failed: <the recorder's reason>", or a timeout
            if "no episode is recording" in str(exc):
                self._open = False
            return False, f"[{label.value}] {exc}"
        finally:
            self._acted_at = time.monotonic()
        return True, f"[{label.value}] {message}"


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def run(recorder: str = "recorder", timeout: float = 10.0, stdin: TextIO | None = None,
        stdout: TextIO | None = None) -> int:
    """Drive recorder `recorder` from stdin until quit; 0, or 1 if an open episode could not be
    stopped at quit. RuntimeError when no recorder answers within `timeout` seconds;
    KeyboardInterrupt (Ctrl-C, SIGTERM) after the open episode was stopped."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        from genpol.nodes.record_client import RecorderControlClient
        from genpol.nodes.session import Session
    except ImportError as exc:
        raise RuntimeError(f"genpol record --keyboard needs rclpy and the ROS 2 messages "
                           f"({exc}); `make setup` installs them, or source a ROS 2 "
                           "distribution") from exc
    fd = stdin.fileno()
    tty = os.isatty(fd)
    main_thread = threading.current_thread() is threading.main_thread()
    with ExitStack() as stack:
        if main_thread:
            old_term = signal.signal(signal.SIGTERM, _interrupt)
            stack.callback(signal.signal, signal.SIGTERM, old_term)
        session = stack.enter_context(Session())
        client = session.spin(RecorderControlClient(session.context, recorder))
        control = EpisodeControl(client, recorder, timeout)
        print(f"genpol record --keyboard: waiting for /{control.name} ...", file=stdout,
              flush=True)
        _wait_for_recorder(client, control, timeout)
        display = terminal.Display(stdout, live=os.isatty(stdout.fileno()))
        stack.callback(display.close)
        if tty:
            stack.enter_context(terminal.cbreak(fd))
        source = terminal.KeyInput(fd) if tty else terminal.LineInput(fd)
        display.say(f"/{control.name} records into {control.status()[1].get('dataset_dir')}")
        display.say(source.help)
        return _loop(control, source, display)
    return 0  # not reached (mypy: ExitStack may swallow exceptions)


def _wait_for_recorder(client: Any, control: EpisodeControl, timeout: float) -> None:
    end = time.monotonic() + timeout
    while client.missing_services() or not control.status()[1]:
        if time.monotonic() > end:
            missing = client.missing_services() or [topics.service(control.name, "status")]
            raise RuntimeError(
                f"no recorder answers at /{control.name}: {missing} did not appear within "
                f"{timeout:g} s. Start the recorder first (`python -m genpol.nodes.recorder "
                "--ros-args -p dataset_dir:=DIR`, or the launch that runs it) on this ROS "
                f"network (ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}), or name it "
                "with --recorder NAME")
        time.sleep(0.05)


def _loop(control: EpisodeControl, source: Any, display: terminal.Display) -> int:
    shown = 0.0
    try:
        while True:
            now = time.monotonic()
            if now - shown >= STATUS_PERIOD_S:
                display.status(*control.status_line(now))
                shown = now
            for event in source.read(POLL_S):
                if isinstance(event, str):
                    display.say(event)
                elif event is Action.QUIT:
                    return _quit(control, display)
                elif event is Action.HELP:
                    display.say(source.help)
                else:
                    display.say(control.act(event), keep_status=False)
                    # the new status soon, yet still no more than once a period
                    shown = max(shown, time.monotonic() - STATUS_PERIOD_S + 0.3)
    except KeyboardInterrupt:
        _quit(control, display)
        raise


def _quit(control: EpisodeControl, display: terminal.Display) -> int:
    ok, line = control.close()
    display.say(line or "[quit] no episode open")
    return 0 if ok else 1
