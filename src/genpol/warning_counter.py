"""Warnings counted rather than repeated: the first of a kind is logged at once, the rest summed.

A 50 Hz executor that is speed limited says so 50 times a second; a throttled log still fills
the console with one copy a second and hides everything else. The counter logs the first warning
of each kind, then at most one summary per period ("speed limited x412 in the last 30 s: <the
latest text>"), and keeps the count of every kind for the nodes' ~/status. Plain Python, safe to
call from several threads (the executor's tick thread and its subscriptions).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

#: what differs between two warnings of one kind: lists ("joints ['a', 'b']") and numbers, with
#: a unit of seconds or radians after them ("clock went back 0.003 s")
_LISTS = re.compile(r"\[[^\]]*\]|\{[^}]*\}")
_NUMBERS = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?:\s*(?:s|rad)\b)?")


def kind_of(text: str) -> str:
    """A warning's kind: its text before the first ':', ';', ',' or '(', without the numbers
    and lists in it ("speed limited: steps scaled ..." -> "speed limited")."""
    head = re.split(r"[:;,(]", _LISTS.sub(" ", text), maxsplit=1)[0]
    kind = " ".join(_NUMBERS.sub(" ", head).split())
    return kind or text.strip()


@dataclass
class _Kind:
    total: int = 0
    unlogged: int = 0  # seen since the last line logged
    last_logged: float = 0.0
    latest: str = ""


class WarningCounter:
    """Decides which warnings reach the log: add() each one, log what it returns; call due()
    now and then (a status timer) so the summary of a kind that has gone quiet is not lost."""

    def __init__(self, period_s: float = 30.0):
        self.period_s = float(period_s)
        self._kinds: dict[str, _Kind] = {}
        self._lock = threading.Lock()

    def add(self, text: str, now: float, kind: str | None = None) -> str | None:
        """Count warning `text` (of `kind`, kind_of(text) if not given) seen at time `now`
        (seconds, any monotonic clock); the line to log now, or None."""
        kind = kind or kind_of(text)
        with self._lock:
            k = self._kinds.get(kind)
            if k is None:
                self._kinds[kind] = _Kind(total=1, last_logged=now, latest=text)
                return text
            k.total += 1
            k.unlogged += 1
            k.latest = text
            return self._summary(kind, k, now)

    def due(self, now: float) -> list[str]:
        """Summaries of kinds whose period has passed with warnings not logged yet."""
        with self._lock:
            lines = [self._summary(kind, k, now) for kind, k in self._kinds.items()]
        return [line for line in lines if line]

    def _summary(self, kind: str, k: _Kind, now: float) -> str | None:
        elapsed = now - k.last_logged
        if k.unlogged == 0 or elapsed < self.period_s:
            return None
        line = k.latest if k.unlogged == 1 else \
            f"{kind} x{k.unlogged} in the last {elapsed:.0f} s: {k.latest}"
        k.unlogged, k.last_logged = 0, now
        return line

    def counts(self) -> dict[str, int]:
        """{kind: warnings of that kind so far}, most frequent first."""
        with self._lock:
            pairs = [(kind, k.total) for kind, k in self._kinds.items()]
        return dict(sorted(pairs, key=lambda p: -p[1]))
