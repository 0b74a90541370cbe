"""The two small interfaces the daemon runs on: where lines come from, and what log time it is.

The follower (tail.py, with the live clock of clock.py) and the replayer (replay.py, with its
ReplayClock) implement them, so the daemon wires either without knowing which it has.
"""
from __future__ import annotations

from typing import Any, Protocol

from logmond.tail import Position


class Source(Protocol):
    """Complete lines of the log, as bytes, in the order they were written."""

    # Seconds between timed reads for a source with no descriptor to wait on (None: it has one).
    poll_interval: float | None

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when there is news, or None."""

    def read(self, limit: int | None = None) -> bytes:
        """Complete lines available now, at most about `limit` bytes."""

    def check(self, limit: int | None = None) -> bytes:
        """The periodic safety check (lost events, network filesystems), then read()."""

    def has_more(self) -> bool:
        """More is ready to read right away (a backlog)."""

    def positions(self) -> list[Position]:
        """Where to resume after a restart; [] when nothing is worth keeping."""

    def status(self) -> dict[str, Any]:
        """The `file` part of the status reply."""

    def reopen(self) -> Source:
        """SIGHUP: the same log opened again where this one stands (self if nothing changes).
        Raises OSError if it cannot; the caller keeps this one then."""

    def close(self) -> None:
        """Release the descriptors; called once, after the last read."""


class Clock(Protocol):
    """Log time when no line says what time it is."""

    def observe(self, log_second: int, wall: float) -> None:
        """The newest log second known when `wall` was read."""

    def now(self, wall: float) -> int | None:
        """The log second it is at `wall`, or None before any line."""

    def horizon(self, wall: float) -> int | None:
        """The newest log second a line may plausibly carry at `wall`, or None for no bound."""

