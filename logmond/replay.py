"""`--replay`: release the lines of an existing log paced by their own timestamps (x speed).

An old log can then be watched as if live, without a web server: the log clock runs from the
first line's time at `speed` log seconds per wall second.
"""
from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Callable

from logmond.core.linebuffer import LineBuffer
from logmond.core.formats import LogFormat
from logmond.core.parse import Record, decode_line
from logmond.tail import Position

# Bytes read from the file at a time while looking ahead for due lines.
READ_SIZE = 256 * 1024
# Seconds between releases of due lines: often enough that the replay looks live.
REPLAY_STEP = 0.1


class ReplayClock:
    """The `source.Clock` of a replay: log time is how far the replayer has released lines."""

    def __init__(self) -> None:
        self.released: int | None = None

    def now(self, wall: float) -> int | None:
        """The log second up to which lines have been released: never ahead of them, so that a
        fast replay cannot close a second before its lines are out."""
        return self.released

    def observe(self, log_second: int, wall: float) -> None:
        """The replay's clock is its own pacing: what the lines say changes nothing."""

    def horizon(self, wall: float) -> int | None:
        """An old log replayed: its lines carry no relation to this machine's clock."""
        return None


class Replayer:
    """A `source.Source` for the daemon, like the follower, that moves its ReplayClock.

    `decide_format(sample)` is the monitor's: the replayer must read each line's time before the
    monitor sees the line, in the format the monitor settles on.
    """

    poll_interval = REPLAY_STEP

    def __init__(self, path: str, speed: float, wall0: float, decide_format: Callable[[bytes], LogFormat | None],
                 clock: ReplayClock | None = None) -> None:
        self.clock = clock or ReplayClock()
        self.path = path
        self.speed = speed
        self.wall0 = wall0
        self._file = open(path, "rb")
        self._lines = LineBuffer()
        self._decide_format = decide_format
        self._format: LogFormat | None = None
        self._queue: deque[tuple[int | None, bytes]] = deque()
        self._first: int | None = None
        self._eof = False
        self.offset = 0

    @property
    def done(self) -> bool:
        return self._eof and not self._queue

    def _at(self, wall: float) -> int | None:
        return None if self._first is None else self._first + int((wall - self.wall0) * self.speed)

    def fileno(self) -> None:
        """No file descriptor to wait on: the owner calls read() every poll_interval."""
        return None

    def positions(self) -> list[Position]:
        """A replay always starts from the top: nothing to checkpoint."""
        return []

    def reopen(self) -> Replayer:
        """Nothing to reopen: the replayed file is read once, start to end."""
        return self

    def read(self, limit: int | None = None) -> bytes:
        return self.due(time.time(), limit)

    def check(self, limit: int | None = None) -> bytes:
        return self.read(limit)

    def has_more(self) -> bool:
        """The pacing decides when lines are due, not the reader."""
        return False

    def due(self, wall: float, limit: int | None = None) -> bytes:
        """Lines whose time has come (malformed ones at once, to be counted), up to `limit` bytes."""
        out: list[bytes] = []
        size = 0
        while self._queue or self._fill():
            if limit is not None and size >= limit:
                return b"".join(out)
            ts, line = self._queue[0]
            now = self._at(wall)
            if ts is not None and now is not None and ts > now:
                break
            self._queue.popleft()
            out.append(line)
            size += len(line)
            self.offset += len(line)
        # Everything due is out: the log clock may move on to the replayed time.
        self.clock.released = self._at(wall)
        return b"".join(out)

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._file.read(READ_SIZE)
        lines = self._lines.feed(data) if data else self._lines.flush()
        if not data:
            self._eof = True
            self._file.close()
        if self._format is None and lines:
            self._format = self._decide_format(lines)
        # Lines end at b"\n" only: a bare CR inside a quoted field is part of its line.
        cut = lines.split(b"\n")[:-1]
        self._queue.extend((self._time_of(raw), raw + b"\n") for raw in cut)
        return bool(self._queue)

    def _time_of(self, raw: bytes) -> int | None:
        """The line's time, or None (released at once, for the monitor to count) if it has none."""
        line = decode_line(raw)
        if line is None or self._format is None or line == self._format.header or "\x00" in line:
            return None
        rec = self._format.parse(line)
        if not isinstance(rec, Record):
            return None
        if self._first is None:
            self._first = rec.ts
        return rec.ts

    def status(self) -> dict[str, Any]:
        st = os.stat(self.path)
        return {"path": self.path, "device": st.st_dev, "inode": st.st_ino, "offset": self.offset, "size": st.st_size}

    def close(self) -> None:
        self._file.close()
