"""`--replay`: release the lines of an existing log paced by their own timestamps (x speed).

An old log can then be watched as if live, without a web server: the log clock runs from the
first line's time at `speed` log seconds per wall second.
"""
from __future__ import annotations

import os
import time
from collections import deque

from logmond.core.batch import split_lines
from logmond.core.linebuffer import LineBuffer
from logmond.core.parse import CSV_HEADER, FORMATS, Record, decode_line, detect_format, parse_line

# Bytes read from the file at a time while looking ahead for due lines.
READ_SIZE = 256 * 1024


class Replayer:
    """A line source for the daemon, like the follower, and the log clock of the replay."""

    def __init__(self, path: str, fmt: str, speed: float, wall0: float) -> None:
        self.path = path
        self.speed = speed
        self.wall0 = wall0
        self._file = open(path, "rb")
        self._lines = LineBuffer()
        self._format = None if fmt == "auto" else fmt
        self._queue: deque[tuple[int | None, bytes]] = deque()
        self._first: int | None = None
        self._released: int | None = None
        self._eof = False
        self.offset = 0

    @property
    def done(self) -> bool:
        return self._eof and not self._queue

    def _at(self, wall: float) -> int | None:
        return None if self._first is None else self._first + int((wall - self.wall0) * self.speed)

    def now(self, wall: float) -> int | None:
        """The log second up to which lines have been released: never ahead of them, so that a
        fast replay cannot close a second before its lines are out."""
        return self._released

    def observe(self, log_second: int, wall: float) -> None:
        """The replay's clock is its own pacing: what the lines say changes nothing."""

    def fileno(self) -> None:
        """No file descriptor to wait on: the owner calls read() on a timer."""
        return None

    def positions(self) -> list:
        """A replay always starts from the top: nothing to checkpoint."""
        return []

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
        self._released = self._at(wall)
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
            self._format = detect_format(split_lines(lines)[:50]) or "csv"
        for raw in lines.splitlines(keepends=True):
            self._queue.append((self._time_of(raw), raw))
        return bool(self._queue)

    def _time_of(self, raw: bytes) -> int | None:
        line = decode_line(raw.rstrip(b"\n"))
        if line is None or line == CSV_HEADER:
            return None
        assert self._format in FORMATS
        rec = parse_line(line, self._format)
        if not isinstance(rec, Record):
            return None
        if self._first is None:
            self._first = rec.ts
        return rec.ts

    def status(self) -> dict:
        st = os.stat(self.path)
        return {"path": self.path, "device": st.st_dev, "inode": st.st_ino, "offset": self.offset, "size": st.st_size}

    def close(self) -> None:
        self._file.close()
