"""Following a log through appends, rotation, truncation, deletion, restarts and lost events.

Real files, a real writer thread appending with O_APPEND, real renames and unlinks. The follower
is driven the way the daemon drives it: wait on its fd with select(), read(), and check() every
CHECK_EVERY seconds.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import select
import shutil
import tempfile
import termios
import time
import tracemalloc
from array import array
from collections import Counter
from pathlib import Path
from typing import Callable

import msgpack
import pyinotify
import pytest

from logmond import tail
from logmond.core.parse import MAX_LINE
from logmond.tail import FINGERPRINT_BYTES, Follower, Identity, Position
from shared import units

from conftest import Writer, numbered_line, wait_for

# The owner's safety-check period; tests that must prove the inotify path alone never check().
CHECK_EVERY = 2.0
# Lines a second from the writer thread.
WRITE_RATE = 2000
LINE = re.compile(rb"line (\d+)\n")


def numbers(data: bytes) -> list[int]:
    """The n of every `line <n>` in data; fails on anything else (a fragment, a glued line)."""
    out = []
    for line in data.splitlines(keepends=True):
        m = LINE.fullmatch(line)
        assert m, f"not a whole line: {line[:80]!r}"
        out.append(int(m[1]))
    return out


def assert_exactly_once(got: list[int], end: int, start: int = 0) -> None:
    counts = Counter(got)
    assert [n for n, c in counts.items() if c > 1] == [], "duplicated"
    assert sorted(set(range(start, end)) - counts.keys()) == [], "missing"
    assert sorted(counts.keys() - set(range(start, end))) == [], "unexpected"


def open_paths() -> list[str]:
    """What this process's descriptors point at ('... (deleted)' for unlinked files)."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
    return paths


class Driver:
    """Runs a Follower like the daemon's loop and collects the line numbers it hands out."""

    def __init__(self, follower: Follower, check_every: float = CHECK_EVERY, got: list[int] = ()) -> None:
        self.follower = follower
        self.got = list(got)  # lines handed out so far, by earlier followers too
        self._check_every = check_every
        self._next_check = time.monotonic() + check_every

    def step(self) -> None:
        select.select([self.follower.fileno()], [], [], 0.05)
        self.got += numbers(self.follower.read())
        if time.monotonic() >= self._next_check:
            self.got += numbers(self.follower.check())
            self._next_check = time.monotonic() + self._check_every

    def until(self, cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} ({len(self.got)} lines so far)")
            self.step()

    def count_at_least(self, n: int) -> None:
        self.until(lambda: len(self.got) >= n, what=f"{n} lines")

    def finish(self, writer: Writer) -> None:
        """Stop the writer, take everything it wrote, then one more check() for stray repeats."""
        writer.stop()
        self.until(lambda: len(self.got) >= writer.written, what=f"all {writer.written} lines")
        self.got += numbers(self.follower.check())


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


def follow(stack: contextlib.ExitStack, path: Path, **kwargs) -> Follower:
    f = Follower(str(path), **kwargs)
    stack.callback(f.close)
    return f


def start_writer(stack: contextlib.ExitStack, path: Path) -> Writer:
    """`line <n>` at WRITE_RATE, each line in two writes so that the follower sees partial lines."""
    w = Writer(path, rate=WRITE_RATE, line=numbered_line, split=True).start()
    stack.callback(w.stop)
    return w


def append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def lines(first: int, end: int) -> bytes:
    return b"".join(b"line %d\n" % n for n in range(first, end))


def readable(f: Follower, timeout: float = 2.0) -> bool:
    return bool(select.select([f.fileno()], [], [], timeout)[0])


# -- 1. appends, partial lines, where following starts ------------------------------------------

def test_appends_appear_promptly_and_a_partial_line_waits_for_its_newline(stack, log):
    log.write_bytes(b"line 0\nline 1\nli")  # the writer is in the middle of line 2
    f = follow(stack, log)
    assert f.read() == b""  # from the end, but from the start of the unfinished line
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    stack.callback(os.close, fd)

    os.write(fd, b"ne 2\n")
    started = time.monotonic()
    assert readable(f)
    assert f.read() == b"line 2\n"
    assert time.monotonic() - started < 0.5  # woken by inotify, no polling

    os.write(fd, b"line 3")
    assert readable(f)
    assert f.read() == b""
    assert f.positions()[0].offset == len(b"line 0\nline 1\nline 2\n")
    os.write(fd, b"\n")
    assert readable(f)
    assert f.read() == b"line 3\n"
    assert f.positions()[0].offset == log.stat().st_size


def test_from_start_reads_what_is_already_there(stack, log):
    log.write_bytes(lines(0, 50))
    assert numbers(follow(stack, log, from_start=True).read()) == list(range(50))
    assert follow(stack, log).read() == b""


def test_a_steady_writer_is_followed_without_the_safety_check(stack, log):
    log.touch()
    f = follow(stack, log)
    w = start_writer(stack, log)
    d = Driver(f, check_every=float("inf"))
    d.count_at_least(500)
    d.finish(w)
    assert_exactly_once(d.got, w.written)


# -- 2. the file appears later --------------------------------------------------------------------

def test_absent_file_is_awaited_and_read_from_zero(stack, log):
    f = follow(stack, log)
    assert f.positions() == []
    assert f.status() == {"path": str(log), "device": None, "inode": None, "offset": None, "size": None}
    assert f.read() == b""
    w = start_writer(stack, log)
    d = Driver(f, check_every=float("inf"))
    d.count_at_least(300)
    d.finish(w)
    assert_exactly_once(d.got, w.written)
    st = log.stat()
    assert f.status() == {"path": str(log), "device": st.st_dev, "inode": st.st_ino,
                          "offset": st.st_size, "size": st.st_size}


def test_missing_directory_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Follower(str(tmp_path / "no-such-dir" / "access.log"))


def test_unreadable_directory_raises_permission_error(stack):
    # Not under tmp_path, whose parents are private to the user running the tests.
    top = tempfile.mkdtemp(prefix="tail")
    stack.callback(shutil.rmtree, top)
    os.chmod(top, 0o711)
    locked = os.path.join(top, "logs")
    os.mkdir(locked, 0o311)  # may be entered, not listed
    stack.callback(os.chmod, locked, 0o755)  # so that rmtree can empty it
    pid = os.fork()
    if pid == 0:  # child: drop root, which reads any directory
        code = 2
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            Follower(os.path.join(locked, "access.log")).close()
            code = 0
        except PermissionError:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1, "expected PermissionError"


def test_a_file_vanishing_before_it_is_opened_is_not_an_error(stack, log):
    f = follow(stack, log)
    seen = []
    for n in range(300):  # many CREATE events for files that are gone when read() looks
        log.write_bytes(b"line %d\n" % n)
        os.unlink(log)
        if n % 10 == 0:
            seen += numbers(f.read())
    log.write_bytes(lines(1000, 1100))
    d = Driver(f)
    d.until(lambda: 1099 in d.got, what="the last file")
    got = seen + d.got
    assert max(Counter(got).values()) == 1
    assert_exactly_once([n for n in got if n >= 1000], 1100, 1000)


# -- 3. rename + create rotation ------------------------------------------------------------------

def test_create_rotation_while_writing(stack, log, capfd, monkeypatch):
    monkeypatch.setattr(tail, "DRAIN_GRACE", 0.5)  # shorter than the daemon's 2 s, the same rules
    rotated = log.with_name("access.log.1")
    log.touch()
    f = follow(stack, log)
    w = start_writer(stack, log)
    d = Driver(f)
    d.count_at_least(200)

    os.rename(log, rotated)
    renamed_at = w.written
    d.until(lambda: w.written >= renamed_at + 100, what="writes into the renamed file")
    w.reopen()
    reopened_at = time.monotonic()
    d.until(lambda: log.exists() and f.status()["inode"] == log.stat().st_ino, what="the new file")
    assert time.monotonic() - reopened_at < tail.DRAIN_GRACE
    old, new = f.positions()
    assert old.identity.matches(str(rotated)) and new.identity.matches(str(log))
    assert str(rotated) in open_paths()

    d.until(lambda: len(f.positions()) == 1, timeout=tail.DRAIN_GRACE + 3, what="the old file closed")
    assert time.monotonic() - reopened_at > tail.DRAIN_GRACE - 0.1
    assert str(rotated) not in open_paths()
    d.finish(w)
    assert_exactly_once(d.got, w.written)
    assert capfd.readouterr().err == ""  # pyinotify's own stderr logging is silenced
    assert not any(type(h) is logging.StreamHandler for h in logging.getLogger("pyinotify").handlers)


def test_renamed_away_and_back_is_not_read_twice(stack, log):
    log.write_bytes(lines(0, 100))
    f = follow(stack, log, from_start=True)
    assert numbers(f.read()) == list(range(100))
    os.rename(log, log.with_name("access.log.tmp"))
    assert f.read() == b"" and f.status()["inode"] is None
    os.rename(log.with_name("access.log.tmp"), log)
    append(log, lines(100, 110))
    assert readable(f)
    assert numbers(f.read()) == list(range(100, 110))
    assert len(f.positions()) == 1


# -- 4. copytruncate --------------------------------------------------------------------------------

def test_copytruncate_while_writing(stack, log):
    log.touch()
    f = follow(stack, log)
    inode = log.stat().st_ino
    w = start_writer(stack, log)
    d = Driver(f)
    d.count_at_least(300)
    with w.paused():
        # Lines written between copy and truncate are lost by design (logrotate documents the
        # window), and so are lines we had not read yet: be caught up first.
        d.until(lambda: len(d.got) == w.written, what="caught up")
        shutil.copyfile(log, log.with_name("access.log.1"))
        os.truncate(log, 0)
        truncated_at = w.written
    d.until(lambda: len(d.got) >= truncated_at + 300, what="lines after the truncation")
    d.finish(w)
    assert_exactly_once(d.got, w.written)
    assert f.status()["inode"] == inode and len(f.positions()) == 1


def test_truncated_and_regrown_past_the_offset_is_caught_by_the_fingerprint(stack, log):
    log.write_bytes(lines(0, 100))
    f = follow(stack, log, from_start=True)
    assert numbers(f.read()) == list(range(100))
    with open(log, "r+b") as out:
        out.truncate(0)
        out.write(lines(100, 400))  # longer than before: the size alone shows nothing
    os.read(f.fileno(), 1 << 20)  # lose the events, like a network filesystem
    assert numbers(f.check()) == list(range(100, 400))
    append(log, lines(400, 410))
    assert readable(f)
    assert numbers(f.read()) == list(range(400, 410))


# -- 5. delete and re-create ------------------------------------------------------------------------

def test_delete_and_recreate_while_writing(stack, log, monkeypatch):
    monkeypatch.setattr(tail, "DRAIN_GRACE", 0.5)
    log.touch()
    f = follow(stack, log)
    w = start_writer(stack, log)
    d = Driver(f)
    d.count_at_least(200)

    os.unlink(log)
    deleted_at = w.written
    d.until(lambda: f.status()["inode"] is None, what="the delete noticed")
    d.until(lambda: w.written >= deleted_at + 100, what="writes into the deleted file")
    assert any(p == f"{log} (deleted)" for p in open_paths())  # still draining it
    w.reopen()
    d.until(lambda: log.exists() and f.status()["inode"] == log.stat().st_ino, what="the new file")
    d.until(lambda: len(f.positions()) == 1, timeout=5, what="the deleted file closed")
    assert f"{log} (deleted)" not in open_paths()
    d.finish(w)
    assert_exactly_once(d.got, w.written)


# -- 6. restart from a checkpoint -------------------------------------------------------------------

def checkpoint(f: Follower) -> bytes:
    return msgpack.packb([p.to_state() for p in f.positions()])


def restore(saved: bytes) -> list[Position]:
    return [Position.from_state(s) for s in msgpack.unpackb(saved)]


def follow_then_stop(stack, log) -> tuple[Driver, Writer, bytes]:
    """Follow a writer for 300 lines, save the positions, stop following (the writer goes on)."""
    log.touch()
    first = Driver(follow(stack, log))
    w = start_writer(stack, log)
    first.count_at_least(300)
    saved = checkpoint(first.follower)
    first.follower.close()
    return first, w, saved


def test_restart_resumes_exactly_once(stack, log):
    first, w, saved = follow_then_stop(stack, log)
    w.more(200)  # written while nobody follows

    second = Driver(follow(stack, log, resume=restore(saved)), got=first.got)
    second.count_at_least(len(first.got) + 300)
    second.finish(w)
    assert_exactly_once(second.got, w.written)


def test_restart_after_rotation_drains_the_rotated_file_first(stack, log):
    rotated = log.with_name("access.log.1")
    first, w, saved = follow_then_stop(stack, log)

    os.rename(log, rotated)
    w.more(100)  # into the rotated file
    w.reopen()
    w.more(100)  # into the new file

    f = follow(stack, log, resume=restore(saved))
    old, new = f.positions()
    assert old.identity.matches(str(rotated)) and old.offset > 0
    assert new.identity.matches(str(log)) and new.offset == 0
    batch = numbers(f.read())
    resumed_at = max(first.got) + 1
    assert batch == list(range(resumed_at, resumed_at + len(batch)))  # old remainder, then new
    second = Driver(f, got=first.got + batch)
    second.finish(w)
    assert_exactly_once(second.got, w.written)


# -- 7. a new file in a reused inode ---------------------------------------------------------------

def test_same_inode_with_other_content_is_read_from_zero(stack, log):
    log.write_bytes(lines(0, 100))
    first = follow(stack, log, from_start=True)
    assert numbers(first.read()) == list(range(100))
    saved = first.positions()
    first.close()

    os.unlink(log)
    log.write_bytes(lines(100, 400))  # ext4 usually hands it the same inode number
    assert numbers(follow(stack, log, resume=saved).read()) == list(range(100, 400))

    # The same, certainly: a checkpoint naming this very device and inode with the old content.
    st = log.stat()
    old = saved[0]
    forged = Identity(st.st_dev, st.st_ino, old.identity.fingerprint, old.identity.fingerprint_len)
    assert not forged.matches(str(log))
    assert numbers(follow(stack, log, resume=[Position(forged, old.offset)]).read()) == list(range(100, 400))


def test_the_fingerprint_grows_with_the_file(stack, log):
    log.write_bytes(b"line 0\n")
    f = follow(stack, log, from_start=True)
    f.read()
    assert f.positions()[0].identity.fingerprint_len == 7
    append(log, lines(1, 400))
    assert readable(f)
    f.read()
    identity = f.positions()[0].identity
    assert identity.fingerprint_len == FINGERPRINT_BYTES and identity.matches(str(log))


# -- 8. an endless line -----------------------------------------------------------------------------

def test_a_200_kib_line_is_cut_and_never_held_whole(stack, log):
    log.write_bytes(b"line 0\n")
    f = follow(stack, log, from_start=True)
    out = [f.read()]
    piece = b"x" * 8192
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(200 * 1024 // len(piece)):
            append(log, piece)
            assert readable(f)
            out.append(f.read())
            held = tracemalloc.get_traced_memory()[0] - base - sum(len(o) for o in out[1:])
            assert held < MAX_LINE + 32 * 1024
    finally:
        tracemalloc.stop()
    append(log, b"\nline 1\nline 2\n")
    assert readable(f)
    out.append(f.read())
    got = b"".join(out).splitlines(keepends=True)
    assert got == [b"line 0\n", b"x" * (MAX_LINE + 1) + b"\n", b"line 1\n", b"line 2\n"]
    assert f.positions()[0].offset == log.stat().st_size


def test_a_restart_in_the_middle_of_an_endless_line_skips_its_rest(stack, log):
    log.write_bytes(b"line 0\n" + b"x" * (MAX_LINE + 100))
    f = follow(stack, log, from_start=True)
    first = f.read()
    assert first == b"line 0\n" + b"x" * (MAX_LINE + 1) + b"\n"
    positions = f.positions()
    assert positions[0].skipping
    positions = [Position.from_state(p.to_state()) for p in positions]
    f.close()
    append(log, b"y" * 5000 + b"\nline 1\n")
    again = follow(stack, log, resume=positions)
    # The rest of the long line is not a line of its own after the restart.
    assert again.read() == b"line 1\n"


# -- 9. lost events ---------------------------------------------------------------------------------

def inotify_queue_bytes(fd: int) -> int:
    size = array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, size, True)
    return size[0]


@pytest.mark.parametrize("how", ["kernel", "injected"])
def test_overflow_resynchronises(stack, log, how):
    rotated = log.with_name("access.log.1")
    log.touch()
    f = follow(stack, log)
    w = start_writer(stack, log)
    d = Driver(f, check_every=float("inf"))  # only the overflow may rescue us
    d.count_at_least(200)

    if how == "kernel":  # fill the kernel's queue so that it drops the rotation's events
        limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        if limit > 1 << 17:
            pytest.skip(f"max_queued_events is {limit}")
        junk, queued = str(log.with_name("junk")), -1
        for _ in range(limit // 256):  # touch and rm until the queue stops growing: it is full
            for _ in range(256):
                os.close(os.open(junk, os.O_WRONLY | os.O_CREAT, 0o644))
                os.unlink(junk)
            if queued == (queued := inotify_queue_bytes(f.fileno())):
                break
        assert inotify_queue_bytes(f.fileno()) >= limit * 16
    os.rename(log, rotated)
    w.more(100)
    w.reopen()
    w.more(100)
    if how == "injected":
        with w.paused():
            os.read(f.fileno(), 1 << 20)  # the events are lost; the kernel says so with IN_Q_OVERFLOW
            f._notifier.append_event(pyinotify._RawEvent(-1, pyinotify.IN_Q_OVERFLOW, 0, ""))
    d.until(lambda: len(f.positions()) == 2, timeout=3, what="the new file found")
    d.finish(w)
    assert_exactly_once(d.got, w.written)


# -- 10. what the operator is told ----------------------------------------------------------------

def test_each_change_of_the_file_is_one_log_line_saying_what_was_done(stack, log, caplog):
    caplog.set_level(logging.INFO, logger="logmond.tail")
    f = follow(stack, log, drain_grace=0)

    def told(step: Callable[[], object]) -> list[str]:
        """What the follower logs while `step` happens and it reads until it holds one file."""
        caplog.clear()
        step()  # the kernel has queued its events when the calls return

        def settled() -> bool:  # a drained file closes on a read after the new file has data
            f.read()
            return len(f.positions()) == 1
        wait_for(settled, 5, "the follower to hold one file")
        return [r.getMessage() for r in caplog.records]

    assert told(lambda: log.write_bytes(lines(0, 10))) == \
        [f"{log} appeared (inode {log.stat().st_ino}): reading it from the start"]

    def rotate() -> None:
        os.rename(log, log.with_name("access.log.1"))
        append(log.with_name("access.log.1"), lines(10, 20))  # the writer, before it reopens
        log.write_bytes(lines(20, 30))
    old_inode = log.stat().st_ino
    assert told(rotate) == [f"{log} rotated: following the new file (inode {log.stat().st_ino}) from its start; "
                            f"read {len(lines(10, 20))} B more from the old one (inode {old_inode})"]

    assert told(lambda: os.truncate(log, 0)) == [f"{log} truncated to 0 B: reading it from the start"]

    def rewrite() -> None:
        append(log, lines(30, 40))
        f.read()
        with open(log, "r+b") as out:
            out.truncate(0)
            out.write(lines(100, 400))
        os.read(f.fileno(), 1 << 20)  # the events lost: only the check's fingerprint sees it
        f.check()
    assert told(rewrite) == [f"{log} truncated and rewritten (now {units.size(len(lines(100, 400)))}, its first "
                             f"bytes changed): reading it from the start"]

    def recreate() -> None:
        os.unlink(log)
        log.write_bytes(lines(400, 410))
    assert told(recreate) == [f"{log} re-created (inode {log.stat().st_ino}): reading it from the start"]

    def away_and_back() -> None:
        os.rename(log, log.with_name("access.log.tmp"))
        f.read()
        os.rename(log.with_name("access.log.tmp"), log)
    assert told(away_and_back) == []


def test_a_restart_says_what_changed_while_stopped(stack, log, caplog):
    caplog.set_level(logging.INFO, logger="logmond.tail")
    log.write_bytes(lines(0, 10))
    first = follow(stack, log, from_start=True)
    first.read()
    saved = first.positions()
    first.close()
    os.unlink(log)
    log.write_bytes(lines(10, 20))
    follow(stack, log, resume=saved).read()
    assert [r.getMessage() for r in caplog.records] == \
        [f"{log} is a new file since the checkpoint (inode {log.stat().st_ino}): reading it from the start"]


# -- checkpoint state -------------------------------------------------------------------------------

def test_position_state_round_trips_through_msgpack():
    p = Position(Identity(2049, 1 << 40, "0123456789abcdef0123456789abcdef01234567", 1024), 987654)
    assert Position.from_state(msgpack.unpackb(msgpack.packb(p.to_state()))) == p


GOOD = {"device": 1, "inode": 2, "fingerprint": "a" * 40, "fingerprint_len": 10, "offset": 5}


@pytest.mark.parametrize("state", [
    None, [], "x", {},
    {k: v for k, v in GOOD.items() if k != "offset"},
    {**GOOD, "offset": "5"}, {**GOOD, "offset": -1}, {**GOOD, "device": True}, {**GOOD, "inode": 2.0},
    {**GOOD, "fingerprint": "xyz"}, {**GOOD, "fingerprint": b"a" * 40}, {**GOOD, "fingerprint_len": 4096},
])
def test_position_from_garbage_raises(state):
    with pytest.raises((ValueError, KeyError, TypeError)):
        Position.from_state(state)
