"""Follow one access log as it grows, rotates, is truncated or replaced: the imperative shell.

inotify callbacks only note what changed; `read()` does the work: make the current file the one
the path names now (the file it replaces is kept open and drained first), then read every open
file to its end. Offsets count only complete lines handed out, so a checkpoint of `positions()`
taken after handling what `read()` returned resumes with every line delivered exactly once.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

with warnings.catch_warnings():
    # pyinotify 0.9.6 imports asyncore, deprecated in 3.11 (the pyasyncore package on 3.12+).
    warnings.simplefilter("ignore", DeprecationWarning)
    import pyinotify

from logmond.core.linebuffer import LineBuffer
from logmond.core.parse import MAX_LINE
from shared.units import size as human_size

# Bytes of a file's start hashed into its identity: ext4 hands a freed inode number to the next
# new file at once, and the first KiB of an access log (timestamps, hosts) tells two files apart.
FINGERPRINT_BYTES = 1024
# Seconds a rotated or deleted file must stay quiet before we close it: the writer keeps writing
# into it until it reopens the path.
DRAIN_GRACE = 2.0
# Bytes per read call: at most MAX_LINE, so an endless line is never read whole (LineBuffer cuts it).
READ_SIZE = 64 * 1024

_DIR_EVENTS = pyinotify.IN_CREATE | pyinotify.IN_MOVED_FROM | pyinotify.IN_MOVED_TO | pyinotify.IN_DELETE
_FILE_EVENTS = pyinotify.IN_MODIFY | pyinotify.IN_ATTRIB | pyinotify.IN_MOVE_SELF
# A file that disappears under an open descriptor (NFS, FUSE) is handled like a delete.
_VANISHED = (errno.ENOENT, errno.ESTALE)
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")

log = logging.getLogger(__name__)

# pyinotify prints to stderr through its own handler, including a false error on every rotation
# ("pathname ... has probably changed"); real failures reach us as exceptions (quiet=False). The
# level, not only the handler, keeps it quiet: a logger left with no handler at all would fall
# back to logging.lastResort, which writes to stderr.
_pyinotify_log = logging.getLogger("pyinotify")
_pyinotify_log.handlers[:] = [logging.NullHandler()]
_pyinotify_log.propagate = False
_pyinotify_log.setLevel(logging.CRITICAL + 1)

# How a file left the log's path (_OpenFile.left_by), which decides what its successor is called.
RENAMED, DELETED = "renamed", "deleted"


def _open_readonly(path: str) -> int:
    # O_NONBLOCK: opening a FIFO put at the log's path must not hang the daemon.
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)


@dataclass(frozen=True)
class Identity:
    """Which file, across renames: device and inode, plus a hash of its first bytes because inode
    numbers are reused as soon as a file is deleted."""

    device: int
    inode: int
    fingerprint: str  # hex sha1 of the first `fingerprint_len` bytes of the file
    fingerprint_len: int  # min(FINGERPRINT_BYTES, the file's size when fingerprinted)

    @classmethod
    def of(cls, fd: int) -> Identity:
        """The identity of an open file, fingerprinting as much of its start as it has."""
        st = os.fstat(fd)
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        return cls(st.st_dev, st.st_ino, hashlib.sha1(head).hexdigest(), len(head))

    def matches(self, file: str | int) -> bool:
        """Same device and inode, and the first fingerprint_len bytes hash to the fingerprint."""
        if isinstance(file, int):
            return self._matches_open(file)
        try:
            st = os.stat(file)
            if (st.st_dev, st.st_ino) != (self.device, self.inode):
                return False
            fd = _open_readonly(file)
        except OSError:
            return False
        try:
            return self._matches_open(fd)
        except OSError:
            return False
        finally:
            os.close(fd)

    def _matches_open(self, fd: int) -> bool:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (self.device, self.inode):
            return False
        head = os.pread(fd, self.fingerprint_len, 0)
        return len(head) == self.fingerprint_len and hashlib.sha1(head).hexdigest() == self.fingerprint


@dataclass(frozen=True)
class Position:
    """Where to resume a file: just after the last complete line handed out."""

    identity: Identity
    offset: int
    # True when `offset` is inside an over-long line whose rest is to be skipped.
    skipping: bool = False

    def to_state(self) -> dict:
        i = self.identity
        return {"device": i.device, "inode": i.inode, "fingerprint": i.fingerprint,
                "fingerprint_len": i.fingerprint_len, "offset": self.offset, "skipping": self.skipping}

    @classmethod
    def from_state(cls, state: dict) -> Position:
        """The inverse of to_state; ValueError, KeyError or TypeError on anything else."""
        def count(key: str) -> int:
            value = state[key]
            if type(value) is not int:
                raise TypeError(f"{key} must be an integer, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{key} must be >= 0")
            return value

        fingerprint = state["fingerprint"]
        if not isinstance(fingerprint, str):
            raise TypeError("fingerprint must be a string")
        if not _SHA1_HEX.fullmatch(fingerprint):
            raise ValueError("fingerprint must be 40 lower-case hex digits")
        fingerprint_len = count("fingerprint_len")
        if fingerprint_len > FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint_len must be <= {FINGERPRINT_BYTES}")
        skipping = state.get("skipping", False)
        if not isinstance(skipping, bool):
            raise TypeError("skipping must be true or false")
        return cls(Identity(count("device"), count("inode"), fingerprint, fingerprint_len), count("offset"), skipping)


class _OpenFile:
    """One open log file: its descriptor, inotify watch, read position and unfinished last line."""

    def __init__(self, fd: int, wd: int | None) -> None:
        self.fd = fd
        self.wd = wd
        self.identity = Identity.of(fd)
        self.read_pos = 0
        self.lines = LineBuffer()
        self.last_data = time.monotonic()
        # Set by read_new when it starts the file again from 0, for the follower to log once.
        self.restarted: str | None = None
        # Once replaced at the path: how it left, where it stood then, the file that took its place.
        self.left_by: str | None = None
        self.left_at = 0
        self.successor: _OpenFile | None = None

    @property
    def offset(self) -> int:
        return self.read_pos - self.lines.pending

    def position(self) -> Position:
        return Position(self.identity, self.offset, self.lines.skipping)

    def seek(self, offset: int, skipping: bool = False) -> None:
        """Start reading at `offset`, which must follow a complete line (or, `skipping`, lie
        inside an over-long one whose first part was already handed out)."""
        self.read_pos = offset
        self.lines = LineBuffer(skipping)

    def read_new(self, verify: bool, limit: int | None = None) -> bytes:
        """Complete lines added since the last call (about `limit` bytes at most); from the start
        again if truncated or rewritten."""
        size = os.fstat(self.fd).st_size
        if size < self.read_pos or ((verify or size > self.read_pos) and not self.identity.matches(self.fd)):
            # copytruncate, or truncated and rewritten past our offset. The partial line is dropped;
            # lines written between logrotate's copy and truncate are lost (its documented window).
            self.restarted = (f"truncated to {human_size(size)}" if size < self.read_pos else
                              f"truncated and rewritten (now {human_size(size)}, its first bytes changed)")
            self.seek(0)
            self.identity = Identity.of(self.fd)
        out = []
        end = size if limit is None else min(size, self.read_pos + limit)
        while self.read_pos < end:
            chunk = os.pread(self.fd, min(READ_SIZE, end - self.read_pos), self.read_pos)
            if not chunk:
                break
            self.read_pos += len(chunk)
            out.append(self.lines.feed(chunk))
        if out:
            self.last_data = time.monotonic()
            if self.identity.fingerprint_len < min(size, FINGERPRINT_BYTES):
                self.identity = Identity.of(self.fd)
        return b"".join(out)

    def read_all(self) -> bool:
        """Nothing left to read (a limited read() may have stopped short)."""
        try:
            return self.read_pos >= os.fstat(self.fd).st_size
        except OSError:
            return True

    def deleted(self) -> bool:
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError as exc:
            if exc.errno in _VANISHED:
                return True
            raise


def _left(limit: int | None, taken: list[bytes]) -> int | None:
    """What remains of a read() byte budget."""
    return None if limit is None else max(0, limit - sum(map(len, taken)))


def _start_of_last_line(fd: int) -> int:
    """Where following "from the end" starts: after the last newline, so a line still being
    written is delivered whole (or at the end, if that line is already too long to keep)."""
    size = os.fstat(fd).st_size
    look = min(size, MAX_LINE + 1)
    tail = os.pread(fd, look, size - look)
    newline = tail.rfind(b"\n")
    if newline >= 0:
        return size - look + newline + 1
    return 0 if look == size else size


class _Events(pyinotify.ProcessEvent):
    """pyinotify callbacks: they only note what read() must look at, and never raise, because an
    exception leaves the rest of pyinotify's batch queued until some later event."""

    def my_init(self, follower: Follower) -> None:
        self._follower = follower

    def process_default(self, event: pyinotify.Event) -> None:
        try:
            self._follower._note(event.wd, event.mask, event.name)
        except Exception:
            log.exception("inotify event %r", event)
            self._follower._resync_later()

    def process_IN_Q_OVERFLOW(self, event: pyinotify.Event) -> None:
        # The kernel dropped events (they reach only this method, never process_default).
        self._follower._resync_later()


class Follower:
    """Follow the log at `path`: complete lines out, exactly once with a checkpoint of positions().

    A `source.Source`: its descriptor wakes the owner, so it needs no timed reads.
    """

    poll_interval = None

    def __init__(self, path: str, *, resume: Sequence[Position] = (), from_start: bool = False,
                 drain_grace: float = DRAIN_GRACE) -> None:
        self._path = os.path.abspath(path)
        self._drain_grace = drain_grace
        self._dir, self._name = os.path.split(self._path)
        self._current: _OpenFile | None = None
        self._draining: list[_OpenFile] = []  # replaced files still being read, oldest first
        self._gone: _OpenFile | None = None  # the last file to leave the path, until one takes its place
        self._path_changed = False  # stat the path before reading
        self._verify = False  # compare fingerprints even without new data
        self._complaint: str | None = None
        self._closed = False
        with os.scandir(self._dir):  # FileNotFoundError / PermissionError for the owner to report
            pass
        self._wm = pyinotify.WatchManager()
        self._notifier = pyinotify.Notifier(self._wm, _Events(follower=self))
        try:
            os.set_blocking(self.fileno(), False)
            os.set_inheritable(self.fileno(), False)
            try:
                self._dir_wd = self._wm.add_watch(self._dir, _DIR_EVENTS, quiet=False)[self._dir]
            except pyinotify.WatchManagerError as exc:
                raise OSError(f"cannot watch {self._dir}: {exc}") from None
            self._start(resume, from_start)
        except BaseException:
            self.close()
            raise

    # -- the interface ------------------------------------------------------------------------

    def fileno(self) -> int:
        """The inotify descriptor (non-blocking): readable when read() has something to do."""
        return self._wm.get_fd()

    def read(self, limit: int | None = None) -> bytes:
        """Complete lines available now, a replaced file's before the current file's; about
        `limit` bytes at most (call again for the rest). Never blocks."""
        if self._closed:
            raise ValueError("read from a closed Follower")
        if self._notifier.check_events(timeout=0):  # read_events() fails with EAGAIN on an empty queue
            self._notifier.read_events()
        self._notifier.process_events()  # also events queued by hand (tests inject an overflow)
        if self._path_changed:
            self._path_changed = False
            self._sync_path()
        verify, self._verify = self._verify, False
        out: list[bytes] = []
        for f in list(self._draining):
            out.append(self._read_file(f, verify, _left(limit, out)))
        out.append(self._close_drained())
        if self._current is not None:
            out.append(self._read_file(self._current, verify, _left(limit, out)))
        return b"".join(out)

    def check(self, limit: int | None = None) -> bytes:
        """Slow safety net for lost events (overflow, network filesystems): look at the path and
        every fingerprint again, then read like read()."""
        self._resync_later()
        return self.read(limit)

    def has_more(self) -> bool:
        """Bytes are left unread after a read() cut short by its limit."""
        return not all(f.read_all() for f in [*self._draining, *([self._current] if self._current else [])])

    def positions(self) -> list[Position]:
        """Where to resume every open file, consistent with all lines returned so far."""
        files = [*self._draining, *([self._current] if self._current else [])]
        return [f.position() for f in files]

    def status(self) -> dict:
        """The current file: path, device, inode, offset, size (None values while it is absent)."""
        f = self._current
        if f is None:
            return {"path": self._path, "device": None, "inode": None, "offset": None, "size": None}
        try:
            size: int | None = os.fstat(f.fd).st_size
        except OSError:
            size = None
        return {"path": self._path, "device": f.identity.device, "inode": f.identity.inode,
                "offset": f.offset, "size": size}

    def reopen(self) -> Follower:
        """The path opened afresh (SIGHUP), resuming every file where this follower stands; call
        after reading everything. OSError if it cannot, and this follower stays usable."""
        positions = self.positions()
        return Follower(self._path, resume=positions, from_start=not positions, drain_grace=self._drain_grace)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._notifier.stop()  # closes the inotify fd, which drops every watch
        for f in [*self._draining, *([self._current] if self._current else [])]:
            os.close(f.fd)
        self._draining.clear()
        self._current = None

    # -- event notes (called from _Events) ----------------------------------------------------

    def _note(self, wd: int, mask: int, name: str) -> None:
        if wd == self._dir_wd:
            if name == self._name:
                self._path_changed = True
        elif mask & (pyinotify.IN_ATTRIB | pyinotify.IN_MOVE_SELF):  # renamed, or nlink dropped to 0
            self._path_changed = True
        # IN_MODIFY needs no note: read() reads every open file to its end.

    def _resync_later(self) -> None:
        self._path_changed = True
        self._verify = True

    # -- files --------------------------------------------------------------------------------

    def _start(self, resume: Sequence[Position], from_start: bool) -> None:
        first = self._take_path()
        if first is not None and not resume:
            first.seek(0 if from_start else _start_of_last_line(first.fd))
        resumed_first = False
        for pos in resume:
            if first is not None and not resumed_first and pos.identity.matches(first.fd):
                first.seek(pos.offset, pos.skipping)  # past the end (truncated meanwhile): read_new restarts
                resumed_first = True
                continue
            rotated = self._find_in_dir(pos.identity, exclude=first)
            if rotated is not None:
                rotated.seek(pos.offset, pos.skipping)
                self._leave(rotated, RENAMED)
        # Each rotated file found was replaced by the next one, the last by the file at the path;
        # each rotation is said once its old file is drained.
        for older, newer in zip(self._draining, self._draining[1:]):
            older.successor = newer
        self._current = first
        if first is None:
            return
        if self._draining:
            self._draining[-1].successor = first
            self._gone = None
        elif resume and not resumed_first:
            # A resumed checkpoint that matches no file at the path: the file is new since, read from 0.
            log.info("%s is a new file since the checkpoint (inode %d): reading it from the start",
                     self._path, first.identity.inode)

    def _sync_path(self) -> None:
        """Make the current file the one the path names now; the one it replaces drains first."""
        cur = self._current
        if cur is not None:
            try:
                st = os.stat(self._path)
                if (st.st_dev, st.st_ino) == (cur.identity.device, cur.identity.inode):
                    return
            except OSError:
                pass
            cur.last_data = time.monotonic()  # the grace starts now
            self._current = None
            self._leave(cur, DELETED if cur.deleted() else RENAMED)
        new = self._take_path()
        self._current = new
        if new is None:
            return
        if new.left_by is not None:  # renamed away and back: the same file, nothing happened
            new.left_by = new.successor = None
            if self._gone is new:
                self._gone = None
            return
        self._arrived(new)

    def _leave(self, f: _OpenFile, how: str) -> None:
        """f no longer is the file at the path: drain it, and remember how it went."""
        f.left_by, f.left_at = how, f.read_pos
        self._draining.append(f)
        self._gone = f

    def _arrived(self, new: _OpenFile) -> None:
        """One line for the operator per new file at the path; a rotation's waits for the old
        file to be drained, so that it can say how much more that gave."""
        old, self._gone = self._gone, None
        if old is None:
            log.info("%s appeared (inode %d): reading it from the start", self._path, new.identity.inode)
        elif old.left_by == DELETED:
            log.info("%s re-created (inode %d): reading it from the start", self._path, new.identity.inode)
        elif old in self._draining:
            old.successor = new
        else:
            self._log_rotation(old, new)

    def _log_rotation(self, old: _OpenFile, new: _OpenFile) -> None:
        log.info("%s rotated: following the new file (inode %d) from its start; read %s more from the old one "
                 "(inode %d)", self._path, new.identity.inode, human_size(old.read_pos - old.left_at),
                 old.identity.inode)

    def _take_path(self) -> _OpenFile | None:
        """The file at the path, read from 0; a file we already hold is taken back, not reread."""
        fd = self._open_regular(self._path)
        if fd is None:
            return None
        st = os.fstat(fd)
        for f in self._draining:
            if (f.identity.device, f.identity.inode) == (st.st_dev, st.st_ino):
                os.close(fd)
                self._draining.remove(f)
                return f
        return self._adopt(fd)

    def _find_in_dir(self, identity: Identity, exclude: _OpenFile | None) -> _OpenFile | None:
        """A file in the log's directory with this identity (a rotated access.log.1), opened."""
        held = {(f.identity.device, f.identity.inode) for f in [*self._draining, exclude] if f}
        if (identity.device, identity.inode) in held:
            return None
        with os.scandir(self._dir) as entries:
            for entry in entries:
                if entry.inode() != identity.inode:
                    continue
                fd = self._open_regular(entry.path)
                if fd is not None and identity.matches(fd):
                    return self._adopt(fd)
                if fd is not None:
                    os.close(fd)
        return None

    def _open_regular(self, path: str) -> int | None:
        """A read-only descriptor, or None while there is no readable regular file at `path`."""
        try:
            fd = _open_readonly(path)
        except FileNotFoundError:
            return None
        except OSError as exc:  # unreadable for now: check() tries again every few seconds
            self._complain(f"cannot open {path}: {exc.strerror}")
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._complain(f"{path} is not a regular file")
            return None
        self._complaint = None
        return fd

    def _adopt(self, fd: int) -> _OpenFile:
        # Watch the inode we hold, through /proc, not whatever the path names by now.
        watch_path = f"/proc/self/fd/{fd}"
        try:
            wd = self._wm.add_watch(watch_path, _FILE_EVENTS, quiet=False)[watch_path]
        except pyinotify.WatchManagerError as exc:
            log.warning("cannot watch %s (%s): new lines will be seen only by the slow check", self._path, exc)
            wd = None
        return _OpenFile(fd, wd)

    def _read_file(self, f: _OpenFile, verify: bool, limit: int | None = None) -> bytes:
        try:
            data = f.read_new(verify, limit)
        except OSError as exc:
            if exc.errno not in _VANISHED:
                raise
        else:
            if f.restarted is not None:
                what = self._path if f is self._current else f"the old file (inode {f.identity.inode})"
                log.info("%s %s: reading it from the start", what, f.restarted)
                f.restarted = None
            return data
        # Gone under our descriptor (network filesystem): like a delete we can no longer drain.
        if f is self._current:
            f.left_by = DELETED
            self._gone = f
        self._forget(f)
        self._path_changed = True
        return b""

    def _close_drained(self) -> bytes:
        """Close replaced files that are done: quiet for the drain grace, and either the new file has
        data (the writer has moved on) or the old one is deleted. Returns their unfinished lines."""
        now = time.monotonic()
        moved_on = self._current is not None and self._current.read_pos > 0
        out = []
        for f in list(self._draining):
            if now - f.last_data >= self._drain_grace and (moved_on or f.deleted()) and f.read_all():
                out.append(f.lines.flush())
                self._forget(f)
        return b"".join(out)

    def _forget(self, f: _OpenFile) -> None:
        if f.wd is not None:
            try:
                self._wm.rm_watch(f.wd, quiet=False)  # before close, or the kernel has dropped it (EINVAL)
            except pyinotify.WatchManagerError:
                pass  # already gone with the inode
        os.close(f.fd)
        if f is self._current:
            self._current = None
        else:
            self._draining.remove(f)
            if f.left_by == RENAMED and f.successor is not None:
                self._log_rotation(f, f.successor)
            f.successor = None

    def _complain(self, message: str) -> None:
        if message != self._complaint:
            log.warning("%s; waiting for it", message)
            self._complaint = message
