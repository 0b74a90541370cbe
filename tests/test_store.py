"""The state database: what a save writes, what a load gives back, and the real daemon on it."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zlib
from collections import Counter
from fractions import Fraction
from pathlib import Path

import msgpack
import pytest

from conftest import T0, csv_line, saved_state, wait_for
from logmond import store
from logmond.core.monitor import CoreConfig, Monitor

CORE = CoreConfig(format="csv", threshold=Fraction(3), window=10, lateness=2, summary_interval=10, timeframe=60)
KEY = [CORE.format, CORE.window, CORE.lateness, CORE.summary_interval, CORE.timeframe]


def traffic(seconds: range) -> bytes:
    """Six lines a second (the alert at 3/s fires), over 40 hosts and 3 sections."""
    return "".join(csv_line(t, 7 * t + i, f"/s{(t + i) % 3}", 503 if i == 0 else 200).replace(
        f'"10.0.0.{(7 * t + i) % 5}"', f'"10.0.{(7 * t + i) % 40}.1"') for t in seconds for i in range(6)).encode()


def rows(db_path: Path, table: str) -> int:
    db = sqlite3.connect(db_path)
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def opened(tmp_path: Path) -> store.Database:
    db = store.Database(str(tmp_path / "state"))
    db.prepare()
    return db


def resumed(db: store.Database) -> Monitor:
    state = db.load()
    assert state is not None and state["core"] == KEY
    m = Monitor(CORE, record=True)
    m.load(state["monitor"], records=state.get("records"), legacy_hosts=state.get("legacy_hosts"))
    return m


def same(a: Monitor, b: Monitor) -> None:
    assert a.timeframe_summary() == b.timeframe_summary()
    assert (a.lines, a.cursor, a.window_hits, a.alert.firing, a.alert.since) == \
        (b.lines, b.cursor, b.window_hits, b.alert.firing, b.alert.since)
    assert list(a.journal.history) == list(b.journal.history)


def test_each_closed_block_and_event_is_written_once_and_the_state_resumes(tmp_path):
    db = opened(tmp_path)
    m = Monitor(CORE, record=True)
    for t in range(T0, T0 + 200, 5):
        m.feed(traffic(range(t, t + 5)))
        db.save(store.snapshot(KEY, [], m))
    path = tmp_path / "state" / store.NAME
    # The timeframe holds 6 blocks of 10 s; the older ones were deleted as they left it.
    assert rows(path, "blocks") == len(m.rollup.blocks) == 6
    assert rows(path, "events") == len(m.journal.history) >= 1
    same(resumed(db), m)
    # Saved again with nothing new: no block or event is written twice.
    db.save(store.snapshot(KEY, [], m))
    assert rows(path, "blocks") == 6 and rows(path, "events") == len(m.journal.history)
    same(resumed(db), m)


def test_a_failed_save_loses_nothing_the_next_one_writes_it(tmp_path, monkeypatch):
    db = opened(tmp_path)
    m = Monitor(CORE, record=True)
    m.feed(traffic(range(T0, T0 + 30)))
    db.save(store.snapshot(KEY, [], m))
    m.feed(traffic(range(T0 + 30, T0 + 60)))

    def full(*args: object) -> bytes:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_pack", full)
    with pytest.raises(sqlite3.OperationalError):
        db.save(store.snapshot(KEY, [], m))
    monkeypatch.undo()
    assert resumed(db).lines == 30 * 6, "the failed save changed nothing"
    m.feed(traffic(range(T0 + 60, T0 + 70)))
    db.save(store.snapshot(KEY, [], m))
    same(resumed(db), m)


def test_the_file_is_private_in_wal_mode_with_its_schema_version(tmp_path):
    db = opened(tmp_path)
    path = tmp_path / "state" / store.NAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION


def test_a_0_1_checkpoint_is_imported_once_with_its_hosts(tmp_path, monkeypatch):
    old = Monitor(CORE)  # 0.1: the whole rollup, hosts and alert history in one state
    old.feed(traffic(range(T0, T0 + 45)))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "checkpoint.msgpack").write_bytes(msgpack.packb(
        {"version": 1, "core": KEY, "positions": [], "monitor": old.to_state()}, use_bin_type=True))
    db = store.Database(str(state_dir))
    db.prepare()
    m = resumed(db)
    same(m, old)
    db.save(store.snapshot(KEY, [], m))
    assert not (state_dir / "checkpoint.msgpack").exists() and (state_dir / "checkpoint.msgpack.imported").exists()
    assert rows(state_dir / store.NAME, "legacy_hosts") == 1
    packed: list[object] = []
    real_pack = store._pack
    monkeypatch.setattr(store, "_pack", lambda value: packed.append(value) or real_pack(value))
    db.save(store.snapshot(KEY, [], m))
    assert not any(isinstance(v, dict) and "levels" in v for v in packed), "its hosts state is written once"
    monkeypatch.undo()
    again = resumed(db)
    same(again, old)
    # Once the imported blocks have left the timeframe, their hosts state goes too.
    for t in range(T0 + 45, T0 + 200, 5):
        for mon in (again, old):
            mon.feed(traffic(range(t, t + 5)))
        db.save(store.snapshot(KEY, [], again))
    assert rows(state_dir / store.NAME, "legacy_hosts") == 0
    same(resumed(db), old)


def test_a_newer_schema_is_refused_with_one_line_and_exit_2(tmp_path):
    state_dir = tmp_path / "state"
    opened(tmp_path).close()
    db = sqlite3.connect(state_dir / store.NAME)
    db.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    db.close()
    log = tmp_path / "access.log"
    log.write_text("")
    proc = subprocess.run([sys.executable, "-m", "logmond", "--file", str(log), "--socket", str(tmp_path / "s"),
                           "--state-dir", str(state_dir)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "newer than this logmond's" in proc.stderr, proc.stderr


def test_the_daemon_resumes_from_its_database_after_kill_9(logmond, short_tmp):
    log = short_tmp / "access.log"
    now = int(time.time())
    log.write_text("".join(csv_line(now - 30 + i // 10, i) for i in range(300)))
    d = logmond("--from-start", "--summary-interval", "5", "--lateness", "1").start()
    d.wait_lines(300)
    wait_for(lambda: (saved_state(d.state) or {}).get("monitor", {}).get("lines") == 300, 10, "the state saved")
    before = d.call("stats")["timeframe"]
    assert d.stop(9) == -9
    d.start()
    st = d.status()
    assert (st["lines"], st["parsed"]) == (300, 300)
    assert d.call("stats")["timeframe"]["sections"] == before["sections"]
    assert rows(d.state / store.NAME, "blocks") >= 1


@pytest.fixture
def small_disk(short_tmp):
    """A 1 MiB tmpfs as the state dir, so that the test can fill it up."""
    state = short_tmp / "state"
    state.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(state)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root): {done.stderr.strip()}")
    yield state
    subprocess.run(["umount", "-l", str(state)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_warns_once_counts_on_and_the_next_save_catches_up(logmond, short_tmp, small_disk, writer):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--from-start", "--lateness", "30", "--threshold", "1000000").start()
    w = writer(log, rate=200).start()
    w.more(200)
    wait_for(lambda: (saved_state(small_disk) or {}).get("monitor", {}).get("lines", 0) >= 200, 10, "a save")
    filler = fill(small_disk)
    w.more(600)
    first = d.status()["lines"]
    wait_for(lambda: d.status()["lines"] >= first + 200, 10, "counting to go on while the disk is full")
    wait_for(lambda: "cannot write the state database" in d.stderr(), 10, "the warning")
    filler.unlink()
    wait_for(lambda: "is written again" in d.stderr(), 15, "a save that succeeds")
    assert d.stderr().count("cannot write the state database") == 1, "once a minute, not each second"
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    d.start()
    written = w.stop()
    st = d.wait_lines(written, timeout=20)
    st = d.status()
    assert (st["lines"], st["parsed"], st["late"]) == (written, written, 0)


def history(db_path: Path) -> list[dict]:
    db = sqlite3.connect(db_path)
    try:
        return [msgpack.unpackb(zlib.decompress(data), raw=False)
                for (data,) in db.execute("SELECT data FROM history ORDER BY start")]
    finally:
        db.close()


@pytest.mark.parametrize("interval", [10, 7, 120])
def test_history_rows_are_the_minutes_of_the_log_counted_independently(tmp_path, interval):
    core = CoreConfig(format="csv", threshold=Fraction(1000), window=10, lateness=2, summary_interval=interval,
                      timeframe=600)
    key = [core.format, core.window, core.lateness, core.summary_interval, core.timeframe]
    db = opened(tmp_path)
    m = Monitor(core, record=True)
    rnd = random.Random(interval)
    # Uneven traffic over 12 minutes with quiet gaps, statuses and sections known per line.
    lines = [(t, n, f"/s{rnd.randrange(4)}", rnd.choice([200, 200, 404, 503]))
             for n, t in enumerate(sorted(T0 + rnd.randrange(720) for _ in range(3000)))]
    for i in range(0, len(lines), 500):
        m.feed("".join(csv_line(t, n, path, status) for t, n, path, status in lines[i:i + 500]).encode())
        db.save(store.snapshot(key, [], m))
    m.advance(T0 + 2000)
    db.save(store.snapshot(key, [], m))
    span = max(60, interval)

    def row_of(t: int) -> int:
        # A block belongs to the row of its start (a block across a minute's end stays with its start).
        block = t // interval * interval
        return block // span * span

    expected: dict[int, Counter] = {}
    for t, n, path, status in lines:
        c = expected.setdefault(row_of(t), Counter())
        c["hits"] += 1
        c[f"{status // 100}xx"] += 1
        c[path.rsplit("/", 1)[0] if path.count("/") > 1 else path] += 1
    got = {r["start"]: r for r in history(tmp_path / "state" / store.NAME)}
    assert sorted(got) == sorted(expected)
    for start, c in expected.items():
        r = got[start]
        assert r["end"] == start + span and r["hits"] == c["hits"]
        assert r["status"] == {k: v for k, v in sorted(c.items()) if k.endswith("xx")}
        assert dict(r["sections"]) == {k: v for k, v in c.items() if k.startswith("/")}


def test_old_history_is_purged_hourly_in_batches_by_a_clock_the_test_controls(tmp_path, monkeypatch):
    now = [0.0]
    db = store.Database(str(tmp_path / "state"), history_days=1, clock=lambda: now[0])
    db.prepare()
    monkeypatch.setattr(store, "PURGE_BATCH", 50)
    m = Monitor(CORE, record=True)
    day = 86400
    rows_in = [{"start": T0 + 60 * i, "end": T0 + 60 * i + 60, "hits": 1} for i in range(0, 2 * day // 60, 10)]
    state = store.snapshot(KEY, [], m)
    db.save({**state, "history": rows_in})
    path = tmp_path / "state" / store.NAME
    total = len(rows_in)
    assert rows(path, "history") == total - 50, "a first purge at start, one batch"
    db.save(store.snapshot(KEY, [], m))
    assert rows(path, "history") == total - 100, "old rows are left: the next save goes on"
    while True:  # batch after batch, until one finds nothing more to delete
        before = rows(path, "history")
        db.save(store.snapshot(KEY, [], m))
        if rows(path, "history") == before:
            break
    kept = [r["start"] for r in history(path)]
    newest = rows_in[-1]["start"]
    assert min(kept) >= newest - day and len(kept) == sum(1 for r in rows_in if r["start"] >= newest - day)
    db.save({**store.snapshot(KEY, [], m), "history": [{"start": newest + 600, "end": newest + 660, "hits": 1}]})
    assert min(r["start"] for r in history(path)) == min(kept), "not before the hour is over"
    now[0] += store.PURGE_EVERY
    db.save(store.snapshot(KEY, [], m))
    assert min(r["start"] for r in history(path)) >= newest + 600 - day


def test_a_schema_1_database_is_migrated(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    db = sqlite3.connect(state_dir / store.NAME)
    db.executescript("CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL);"
                     "CREATE TABLE blocks (seq INTEGER PRIMARY KEY, start INTEGER NOT NULL, data BLOB NOT NULL);"
                     "CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, data BLOB NOT NULL);"
                     "PRAGMA user_version = 1;")
    db.close()
    d = opened(tmp_path)
    assert d.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert rows(state_dir / store.NAME, "history") == 0
