"""The high-traffic alert rule, one log second at a time.

Thresholds are exact fractions so that "exactly at the threshold never fires" holds for any
decimal flag value (0.1 * 30 is not 3.0 in floating point).
"""
from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Any

from shared.schema import ALERT, CRITICAL, HIGH_TRAFFIC, RATE, RECOVER, Event

# Alert events kept in memory for the `alerts` history (the state database keeps them all).
MAX_HISTORY = 1000


class Journal:
    """The alert events of every rule, numbered in the order they happen: one feed can yield an
    alert and its recovery, and a client asks for the events after the last id it saw."""

    def __init__(self) -> None:
        self.last_id = 0
        self.history: deque[Event] = deque(maxlen=MAX_HISTORY)

    def record(self, event: Event) -> Event:
        self.last_id += 1
        event = {"id": self.last_id, **event}
        self.history.append(event)
        return event

    def to_state(self) -> dict[str, Any]:
        return {"last_id": self.last_id, "history": list(self.history)}

    def load(self, state: dict[str, Any]) -> None:
        self.last_id = int(state["last_id"])
        self.history.extend(dict(e) for e in state["history"])


class AlertRule:
    """Quiet until the window average exceeds the threshold; firing until it falls to the band."""

    def __init__(self, threshold: Fraction, window: int, hysteresis: Fraction, journal: Journal) -> None:
        self.window = window
        self.retune(threshold, hysteresis)
        self.firing = False
        self.since: int | None = None
        self.journal = journal

    def retune(self, threshold: Fraction, hysteresis: Fraction) -> None:
        """New threshold and band, from the next second on (a config reload)."""
        self.threshold = threshold
        self._fire_above = threshold * self.window
        self._recover_at = threshold * (1 - hysteresis) * self.window

    def evaluate(self, t: int, hits: int) -> Event | None:
        """Decide second t given the hits in (t - window, t]; return the event it causes."""
        if not self.firing and hits > self._fire_above:
            self.firing, self.since = True, t
            return self._event(ALERT, t, hits)
        if self.firing and hits <= self._recover_at:
            self.firing, self.since = False, None
            return self._event(RECOVER, t, hits)
        return None

    def _event(self, kind: str, t: int, hits: int) -> Event:
        rate = hits / self.window
        return self.journal.record({"type": kind, "at": t, "hits": hits, "rate": rate,
                                    "threshold": float(self.threshold), "window": self.window,
                                    "rule": HIGH_TRAFFIC, "severity": CRITICAL, "metric": RATE, "value": rate})

    def to_state(self) -> dict[str, Any]:
        return {"firing": self.firing, "since": self.since}

    def load(self, state: dict[str, Any]) -> None:
        self.firing = bool(state["firing"])
        self.since = None if state["since"] is None else int(state["since"])
