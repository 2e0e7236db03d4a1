"""The operator's terminal for `genpol record --keyboard`: single keys in, a live status line out.

cbreak() turns off line buffering and echo (each key arrives at once, unechoed) and puts the
settings back on every way out (return, exception, Ctrl-C); it keeps ISIG and OPOST, unlike full
raw mode, so Ctrl-C stays SIGINT (Python's KeyboardInterrupt) and "\\n" still starts a new line.
KeyInput and LineInput turn stdin into actions (keys on a terminal, one command a line from a
pipe); Display scrolls action lines above a status line rewritten in place.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import termios
from collections.abc import Hashable, Iterator
from typing import TextIO

from genpol.recording import keys
from genpol.recording.keys import Action

ESC_WAIT_S = 0.05  # a lone ESC followed by nothing for this long is the Esc key


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys without Enter or echo on terminal `fd` for the block; its settings restored after
    (unread input dropped, so keys pressed after quitting do not reach the shell)."""
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO)
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


Event = Action | str  # an action, or a line telling the operator what was not understood


class KeyInput:
    """Actions from single keys on a terminal (in cbreak mode)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.decoder = keys.KeyDecoder()
        self.help = keys.HELP

    def read(self, timeout: float) -> list[Event]:
        """What arrived within `timeout` seconds (maybe nothing); QUIT when the terminal is gone."""
        wait = min(timeout, ESC_WAIT_S) if self.decoder.pending else timeout
        ready, _, _ = select.select([self.fd], [], [], wait)
        if not ready:
            return [self._event(k) for k in self.decoder.flush()]
        data = os.read(self.fd, 1024)
        if not data:  # hung up
            return [Action.QUIT]
        return [self._event(k) for k in self.decoder.feed(data)]

    @staticmethod
    def _event(key: str) -> Event:
        act = keys.action(key)
        return act if act else f"unknown key {keys.describe(key)} (h: help)"


class LineInput:
    """Actions from a pipe or file: one command word a line (keys.WORDS); its end is QUIT."""

    def __init__(self, fd: int):
        self.fd = fd
        self._buffer = b""
        self._ended = False
        self.help = keys.LINE_HELP

    def read(self, timeout: float) -> list[Event]:
        if self._ended:
            return [Action.QUIT]
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self.fd, 4096)
        if data:
            *lines, self._buffer = (self._buffer + data).split(b"\n")
        else:
            lines, self._buffer, self._ended = [self._buffer], b"", True
        events = [e for e in map(self._event, lines) if e is not None]
        return events + ([Action.QUIT] if self._ended else [])

    @staticmethod
    def _event(line: bytes) -> Event | None:
        try:
            return keys.line_action(line.decode("utf-8", errors="replace"))
        except ValueError as exc:
            return str(exc)


class Display:
    """Action lines scroll up; on a terminal (`live`) the status stays on the last line,
    rewritten in place; elsewhere it is printed as a line of its own whenever its state
    changes."""

    def __init__(self, stream: TextIO, live: bool):
        self.stream = stream
        self.live = live
        self._status = ""
        self._state: Hashable = None

    def say(self, line: str, keep_status: bool = True) -> None:
        """Print `line` above the status; `keep_status=False` blanks the status until the next
        status() (after an action, the last one shown may no longer hold)."""
        if not keep_status:
            self._status = ""
        if self.live:
            self._write(f"\r\x1b[K{line}\n{self._fit(self._status)}")
        else:
            self._write(f"{line}\n")

    def status(self, text: str, state: Hashable) -> None:
        """Show status `text`; off a terminal, only when `state` changed since the last one."""
        if self.live:
            self._status = text
            self._write(f"\r\x1b[K{self._fit(text)}")
        elif state != self._state:
            self._write(f"{text}\n")
        self._state = state

    def close(self) -> None:
        """Leave the cursor on a fresh line below the status."""
        if self.live and self._status:
            self._write("\n")
            self._status = ""

    def _fit(self, text: str) -> str:
        """One screen line: a wrapped status line could not be rewritten in place."""
        width = shutil.get_terminal_size((100, 24)).columns
        return text if len(text) < width else text[:max(width - 2, 1)] + "…"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
