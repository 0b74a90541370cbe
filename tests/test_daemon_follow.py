"""A real logmond following a real log while a real writer appends: rotations, absence, partial
lines, restarts and a corrupt checkpoint. Every test ends on exact counts: nothing lost, nothing
counted twice.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import sqlite3
import time
import zlib
from pathlib import Path

import msgpack
import pytest

from conftest import Logmond, csv_line, saved_state, wait_for
from shared.units import size

# Live mode with nothing late: lines carry the wall time and may be this far out of order. The
# safety check and drain grace are short so that rotation is settled sooner, by the same rules.
LIVE = ("--lateness", "30", "--threshold", "1000000", "--safety-check", "0.5", "--drain-grace", "0.5")
# Lines a second from the writer (conftest.Writer: one O_APPEND descriptor, one write per line).
RATE = 2000


def held_files(pid: int) -> list[str]:
    """What the process's descriptors point at."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


def line_count(*paths: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in paths if p.exists())


def follow_news(d: Logmond, n: int) -> list[str]:
    """Wait until logmond has said n things of the file it follows (one line per rotation,
    truncation or re-creation), and return them without the `logmond: INFO <path> ` prefix."""
    prefix = f"logmond: INFO {d.log} "

    def said() -> list[str]:
        return [ln.removeprefix(prefix) for ln in d.stderr().splitlines() if ln.startswith(prefix)]

    wait_for(lambda: len(said()) >= n, 10, f"{n} lines about {d.log} on logmond's stderr")
    return said()


def assert_only_logmond_speaks(d: Logmond) -> None:
    """Every stderr line is logmond's own: pyinotify's ("The pathname ... has probably changed")
    would reach stderr bare."""
    err = d.stderr()
    assert "pyinotify" not in err and "probably changed" not in err, err
    assert all(ln.startswith("logmond: ") for ln in err.splitlines()), err


def assert_exactly(d: Logmond, written: int) -> dict:
    """Wait for `written` lines, then check nothing was counted twice or dropped as malformed."""
    st = d.wait_lines(written, timeout=20)
    st = d.status()
    assert (st["lines"], st["parsed"], st["malformed"], st["late"]) == (written, written, 0, 0), st
    return st


def test_rename_and_create_rotation_while_writing(logmond, short_tmp, writer):
    log = short_tmp / "access.log"
    log.write_text("".join(csv_line(int(time.time()), i) for i in range(20)))
    d = logmond("--from-start", *LIVE).start()
    w = writer(log, rate=RATE).start()
    w.more(200)
    for rotation in (1, 2):
        d.wait_lines(100)
        os.rename(log, short_tmp / f"access.log.{rotation}")
        w.more(150)  # still writing into the renamed file, as a server does until told to reopen
        w.reopen()   # creates a new access.log
        w.more(200)
    written = 20 + w.stop()
    assert line_count(log, short_tmp / "access.log.1", short_tmp / "access.log.2") == written
    # The rotated files are drained then closed; only then is the count final.
    wait_for(lambda: not any(".log." in f for f in held_files(d.proc.pid)), 15, "rotated files to be closed")
    st = assert_exactly(d, written)
    assert st["file"]["inode"] == os.stat(log).st_ino
    assert st["file"]["offset"] == st["file"]["size"] == log.stat().st_size
    rotated = re.compile(r"rotated: following the new file \(inode (\d+)\) from its start; "
                         r"read (\d+(?:\.\d)? K?i?B) more from the old one \(inode (\d+)\)")
    news = [rotated.fullmatch(line) for line in follow_news(d, 2)]
    assert all(news) and len(news) == 2, news
    (new1, more1, old1), (new2, more2, old2) = (m.groups() for m in news)
    inode = {name: str(os.stat(short_tmp / name).st_ino) for name in ("access.log.1", "access.log.2", "access.log")}
    assert (old1, new1, old2, new2) == (inode["access.log.1"], inode["access.log.2"],
                                        inode["access.log.2"], inode["access.log"])
    assert "0 B" not in (more1, more2)  # 150 lines went into each renamed file
    assert_only_logmond_speaks(d)


def test_copytruncate_rotation_while_writing(logmond, short_tmp, writer):
    log = short_tmp / "access.log"
    d = logmond("--from-start", *LIVE)
    w = writer(log, rate=RATE).start()  # creates the file before logmond starts
    w.more(10)
    d.start()
    w.more(200)
    inode = log.stat().st_ino
    for rotation in (1, 2):
        # logrotate's copytruncate, with the writer held still from copy to truncate (lines
        # written in between would be lost by design) and logmond caught up before the copy.
        with w.paused():
            d.wait_lines(w.written)
            shutil.copyfile(log, short_tmp / f"access.log.{rotation}")
            os.truncate(log, 0)
            # Seen while still empty, so that the one line about it says "to 0 B" every time.
            wait_for(lambda: d.status()["file"]["offset"] == 0, 10, "logmond to read from the start")
        w.more(200)
    written = w.stop()
    st = assert_exactly(d, written)
    assert st["file"]["inode"] == inode == log.stat().st_ino
    assert st["file"]["offset"] == st["file"]["size"] == log.stat().st_size
    assert follow_news(d, 2) == ["truncated to 0 B: reading it from the start"] * 2
    assert_only_logmond_speaks(d)
    # Nothing more turns up once the safety check (fingerprints compared again) has looked at the
    # file. It runs at the first tick 2 s after the last one, so within any 3 ticks: wait for the
    # daemon to publish 3 snapshots (each the end of a tick's work).
    d.snapshots(3)
    assert d.status()["lines"] == written


def test_delete_and_recreate_while_writing(logmond, short_tmp, writer):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond(*LIVE).start()  # an empty file: from its end is from its start
    w = writer(log, rate=RATE).start()
    w.more(200)
    for _ in (1, 2):
        d.wait_lines(100)
        os.unlink(log)
        w.more(150)  # into the deleted file
        w.reopen()
        w.more(200)
    written = w.stop()
    assert line_count(log) < written
    wait_for(lambda: not any(f.endswith("(deleted)") and "access.log" in f for f in held_files(d.proc.pid)),
             15, "the deleted files to be closed")
    st = assert_exactly(d, written)
    assert st["file"]["inode"] == os.stat(log).st_ino
    news = follow_news(d, 2)
    assert len(news) == 2 and all(re.fullmatch(r"re-created \(inode \d+\): reading it from the start", n)
                                  for n in news), news
    assert news[1] == f"re-created (inode {st['file']['inode']}): reading it from the start"
    assert_only_logmond_speaks(d)


def test_absent_file_is_waited_for_and_read_from_its_start(logmond, short_tmp, writer):
    log = short_tmp / "access.log"
    d = logmond(*LIVE).start()  # no --from-start: a file that appears is new, read whole
    st = d.status()
    assert st["lines"] == 0
    assert st["file"] == {"path": str(log), "device": None, "inode": None, "offset": None, "size": None}
    assert d.proc.poll() is None
    w = writer(log, rate=RATE).start()  # creates it and writes at once
    w.more(300)
    written = w.stop()
    st = assert_exactly(d, written)
    assert st["file"]["inode"] == log.stat().st_ino
    assert st["file"]["size"] == log.stat().st_size
    assert follow_news(d, 1) == [f"appeared (inode {st['file']['inode']}): reading it from the start"]


def test_partial_line_is_counted_once_completed(logmond, short_tmp):
    log = short_tmp / "access.log"
    now = int(time.time())
    log.write_text("".join(csv_line(now, i) for i in range(3)))
    d = logmond("--from-start", *LIVE).start()
    d.wait_lines(3)
    line = csv_line(now, 99).encode()
    head, middle, tail = line[:20], line[20:40], line[40:]
    with open(log, "ab") as f:
        f.write(csv_line(now, 3).encode() + head)  # one write: a whole line and the start of the next
    st = d.wait_lines(4)
    complete = log.stat().st_size - len(head)
    assert (st["lines"], st["file"]["offset"]) == (4, complete)
    with open(log, "ab") as f:
        f.write(middle)
    size = log.stat().st_size
    st = wait_for(lambda: (s := d.status())["file"]["size"] == size and s, 10, "size to grow")
    assert (st["lines"], st["file"]["offset"]) == (4, complete)
    with open(log, "ab") as f:
        f.write(tail)
    st = assert_exactly(d, 5)
    assert st["file"]["offset"] == st["file"]["size"] == log.stat().st_size


def run_50_lines_and_stop(logmond, short_tmp) -> int:
    """A first logmond counts 50 lines stamped now, then stops cleanly; returns that stamp."""
    now = int(time.time())
    (short_tmp / "access.log").write_text("".join(csv_line(now, i) for i in range(50)))
    first = logmond("--from-start", *LIVE).start()
    first.wait_lines(50)
    assert first.stop() == 0
    return now


def test_restart_counts_lines_appended_while_stopped_exactly_once(logmond, short_tmp):
    log, now = short_tmp / "access.log", run_50_lines_and_stop(logmond, short_tmp)
    with open(log, "a") as f:
        f.write("".join(csv_line(now, i) for i in range(50, 80)))
    # No --from-start this time: only the checkpoint can say where to resume.
    second = logmond(*LIVE).start()
    assert_exactly(second, 80)
    assert "Traceback" not in second.stderr()
    assert second.stop() == 0
    third = logmond(*LIVE).start()  # nothing new: the same totals
    st = third.status()
    assert (st["lines"], st["parsed"]) == (80, 80)


def test_restart_across_a_rotation_while_stopped_counts_exactly_once(logmond, short_tmp):
    log, now = short_tmp / "access.log", run_50_lines_and_stop(logmond, short_tmp)
    with open(log, "a") as f:  # the tail of the old file, written before the rotation
        f.write("".join(csv_line(now, i) for i in range(50, 60)))
    os.rename(log, short_tmp / "access.log.1")
    log.write_text("".join(csv_line(now, i) for i in range(60, 85)))
    old_size = (short_tmp / "access.log.1").stat().st_size
    second = logmond(*LIVE).start()
    assert_exactly(second, 85)
    wait_for(lambda: not any(f.endswith("access.log.1") for f in held_files(second.proc.pid)), 15,
             "the rotated file to be closed")
    assert_exactly(second, 85)
    more = sum(len(csv_line(now, i)) for i in range(50, 60))
    assert old_size > more and follow_news(second, 1) == [
        f"rotated: following the new file (inode {log.stat().st_ino}) from its start; read {size(more)} "
        f"more from the old one (inode {(short_tmp / 'access.log.1').stat().st_ino})"]


def test_crash_while_writing_counts_exactly_once_after_restart(logmond, short_tmp, writer):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond(*LIVE).start()
    w = writer(log, rate=RATE).start()
    w.more(300)
    d.wait_lines(200)
    wait_for(lambda: saved_state(short_tmp / "state"), 5, "a checkpoint")
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    w.more(200)  # written while logmond is down
    d.start()
    w.more(200)
    written = w.stop()
    assert_exactly(d, written)


def _rewrite_state(db_path: Path, change) -> None:
    """Replace the state row with change(its state), as a damaged or foreign writer might."""
    db = sqlite3.connect(db_path)
    (blob,) = db.execute("SELECT data FROM state WHERE id = 1").fetchone()
    state = change(msgpack.unpackb(zlib.decompress(blob), raw=False))
    db.execute("UPDATE state SET data = ? WHERE id = 1", (zlib.compress(msgpack.packb(state)),))
    db.commit()
    db.close()


def _damage(db_path: Path, kind: str) -> None:
    if kind == "garbage":
        db_path.write_bytes(b"\xc1 this is not a database \x00\xff" * 100)
    elif kind == "truncated":
        data = db_path.read_bytes()
        db_path.write_bytes(data[:len(data) // 2])
    elif kind == "wrong-shape":
        _rewrite_state(db_path, lambda st: {**st, "positions": [{"device": "sda"}]})
    elif kind == "not-zlib":
        db = sqlite3.connect(db_path)
        db.execute("UPDATE state SET data = ? WHERE id = 1", (b"\x00 not compressed",))
        db.commit()
        db.close()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "wrong-shape", "not-zlib"])
def test_a_corrupt_state_database_is_kept_aside_and_logmond_starts_fresh(logmond, short_tmp, kind):
    log = short_tmp / "access.log"
    now = int(time.time())
    log.write_text("".join(csv_line(now, i) for i in range(20)))
    d = logmond("--from-start", *LIVE).start()
    d.wait_lines(20)
    assert d.stop() == 0
    db_path = short_tmp / "state" / "logmond.sqlite3"
    _damage(db_path, kind)
    bad_bytes = db_path.read_bytes()
    before = len(d.stderr())
    d.start()
    err = d.stderr()[before:]
    assert "Traceback" not in err, err
    warnings = [ln for ln in err.splitlines() if "WARNING" in ln and "state database" in ln]
    assert len(warnings) == 1, err
    bad = list((short_tmp / "state").glob("logmond.sqlite3.bad-*"))
    bad = [b for b in bad if not b.name.endswith(("-wal", "-shm"))]
    assert len(bad) == 1 and bad[0].read_bytes() == bad_bytes
    assert str(bad[0]) in warnings[0]
    # A fresh start, with --from-start: the whole file, once.
    assert_exactly(d, 20)
    # ... and a good state is written again.
    wait_for(lambda: (saved_state(short_tmp / "state") or {}).get("monitor", {}).get("lines") == 20,
             5, "a new checkpoint")


def test_twenty_kill_9_at_random_moments_count_every_line_once(logmond, short_tmp, writer):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--from-start", *LIVE)
    started = int(time.time())
    w = writer(log, rate=RATE).start()
    rnd = random.Random(20)
    counted = 0
    for _ in range(20):
        d.start()
        # A random moment: some hundreds of lines into this run, mid-batch or between saves.
        target = counted + rnd.randint(100, 1500)
        counted = d.wait_lines(target, timeout=20)["lines"]
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    d.start()
    written = w.stop()
    # One line two minutes on closes every minute the writer wrote in, so that its history rows
    # are all written: they must hold every line once too.
    with open(log, "a") as f:
        f.write(csv_line(int(time.time()) + 120, 0))
    assert_exactly(d, written + 1)
    span = {"since": started - 60, "until": int(time.time()) + 300, "step": 60, "by": None}
    wait_for(lambda: sum(s["hits"] for s in d.call("history", **span)["steps"]) == written, 20,
             "the history minutes to sum to the lines written")


def test_killed_before_its_first_tick_it_resumes_where_it_started(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("".join(csv_line(int(time.time()), i) for i in range(50)))
    d = logmond(*LIVE).start()  # no --from-start: it starts at the end, and must remember so
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    with open(log, "a") as f:
        f.write("".join(csv_line(int(time.time()), i) for i in range(7)))
    d.start()
    assert_exactly(d, 7)
