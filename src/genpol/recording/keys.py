"""Keys -> episode actions for `genpol record --keyboard`: pure, so it is tested without a terminal.

A terminal in cbreak mode sends plain bytes for letters, space and Enter, and escape sequences for
the arrows (ESC [ C, or ESC O C in application-cursor mode, with optional modifier parameters);
Esc alone is a lone ESC byte, told apart from the start of a sequence only by nothing following
it, so KeyDecoder keeps an unfinished sequence pending until the caller says no more came
(flush). When stdin is not a terminal, each line is one command word instead (line_action).
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    START = "start"
    SUCCESS = "stop, success"
    FAILURE = "stop, failed"
    DISCARD = "discard"
    QUIT = "quit"
    HELP = "help"


# Key names for what is not one printable character.
ENTER, ESC, LEFT, RIGHT, UP, DOWN = "enter", "esc", "left", "right", "up", "down"
CTRL_C, CTRL_D = "ctrl-c", "ctrl-d"

KEYMAP: dict[str, Action] = {
    " ": Action.START, "s": Action.START,
    ENTER: Action.SUCCESS, RIGHT: Action.SUCCESS,
    "f": Action.FAILURE,
    LEFT: Action.DISCARD, "d": Action.DISCARD,
    "q": Action.QUIT, ESC: Action.QUIT, CTRL_C: Action.QUIT, CTRL_D: Action.QUIT,
    "h": Action.HELP, "?": Action.HELP,
}

#: Line mode (stdin not a terminal): one command per line, a word or the key's letter.
WORDS: dict[str, Action] = {
    "start": Action.START, "s": Action.START,
    "stop": Action.SUCCESS, "success": Action.SUCCESS,
    "fail": Action.FAILURE, "failed": Action.FAILURE, "failure": Action.FAILURE,
    "f": Action.FAILURE,
    "discard": Action.DISCARD, "d": Action.DISCARD,
    "quit": Action.QUIT, "q": Action.QUIT, "exit": Action.QUIT,
    "help": Action.HELP, "h": Action.HELP, "?": Action.HELP,
}

HELP = ("keys: space/s start | Enter/→ stop, success | f stop, failed | ←/d discard "
        "(the open episode, else the last finished) | q/Esc quit")
LINE_HELP = ("commands, one per line: start | stop (success) | fail | discard (the open "
             "episode, else the last finished) | quit (or end of input)")

_CONTROL = {"\r": ENTER, "\n": ENTER, "\x03": CTRL_C, "\x04": CTRL_D}
_ARROWS = {"A": UP, "B": DOWN, "C": RIGHT, "D": LEFT}


def action(key: str) -> Action | None:
    """The action of one decoded key (letters in either case); None for a key with none."""
    return KEYMAP.get(key if len(key) != 1 else key.lower())


def line_action(line: str) -> Action | None:
    """The action of one line of line mode; None for an empty line; ValueError naming the
    commands for anything else."""
    word = line.strip().lower()
    if not word:
        return None
    if word not in WORDS:
        raise ValueError(f"unknown command {line.strip()!r}; {LINE_HELP}")
    return WORDS[word]


def describe(key: str) -> str:
    """A key as the operator would name it, for 'unknown key' messages."""
    return repr(key) if len(key) == 1 else key


class KeyDecoder:
    """Bytes from a terminal in, key names out; an unfinished escape sequence waits for more."""

    def __init__(self) -> None:
        self._pending = ""

    @property
    def pending(self) -> bool:
        """An ESC (maybe the start of a sequence) waits: flush() it if nothing follows soon."""
        return bool(self._pending)

    def feed(self, data: bytes) -> list[str]:
        text = self._pending + data.decode("utf-8", errors="replace")
        self._pending = ""
        keys: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                key, used = _escape(text, i)
                if used == 0:  # unfinished: wait for the rest
                    self._pending = text[i:]
                    break
                if key:
                    keys.append(key)
                i += used
                continue
            if ch == "\r" and text[i + 1:i + 2] == "\n":  # a terminal that sends CR LF
                i += 1
            keys.append(_CONTROL.get(ch, ch))
            i += 1
        return keys

    def flush(self) -> list[str]:
        """Nothing more came: a pending lone ESC is the Esc key; a broken sequence is dropped."""
        pending, self._pending = self._pending, ""
        return [ESC] if pending == "\x1b" else []


def _escape(text: str, i: int) -> tuple[str, int]:
    """The key of the escape sequence at text[i] and its length; (_, 0) if it is unfinished; ("",
    n) for a finished sequence that is no key of ours (F-keys, Home, ...)."""
    rest = text[i + 1:]
    if not rest:
        return "", 0
    if rest[0] == "O":  # SS3: ESC O <letter>
        if len(rest) < 2:
            return "", 0
        return _ARROWS.get(rest[1], ""), 3
    if rest[0] == "[":  # CSI: ESC [ <parameters 0x30-0x3F>* <final 0x40-0x7E>
        for j, ch in enumerate(rest[1:], start=2):
            if "\x40" <= ch <= "\x7e":
                return _ARROWS.get(ch, ""), j + 1
            if not "\x20" <= ch <= "\x3f":  # not a sequence after all: drop the ESC [
                return "", j
        return "", 0
    return ESC, 1  # Esc, then another key (Esc twice, an Alt combination): Esc first
