"""Log time when no line says what time it is.

Lines carry the log's time; between lines the log clock keeps advancing with the wall clock, at
the offset seen when the newest line arrived. A backlog read at start-up arrives long after its
time, so it sets a large offset that the first live line then corrects.
"""
from __future__ import annotations

# Seconds ahead of this machine's clock that a live line's time may be: a server on this host (or
# one whose clock is roughly right) never logs further ahead, so a line that does is corrupt.
FUTURE_TOLERANCE = 300


class LiveClock:
    def __init__(self) -> None:
        self._offset: float | None = None

    def observe(self, log_second: int, wall: float) -> None:
        """The newest log second known when `wall` was read."""
        self._offset = wall - log_second

    def now(self, wall: float) -> int | None:
        """The log second it is at `wall`, or None before any line."""
        return None if self._offset is None else int(wall - self._offset)

    def horizon(self, wall: float) -> int | None:
        """A line dated after this is corrupt: the log cannot be from the future."""
        return int(wall) + FUTURE_TOLERANCE
