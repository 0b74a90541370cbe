"""The state database: one SQLite file in the state dir holding what logmond needs to resume.

Each save is one transaction: file positions, the monitor's small state, the summary blocks
closed since the last save and the new alert events commit together or not at all, so that after
a crash offsets and counts agree and every line is counted exactly once. What is written once
stays written: a closed block is one row, an alert event one row; only the small state row is
replaced each second. WAL mode with synchronous=NORMAL: a commit survives `kill -9`, and a power
loss at worst rolls the newest commits back, which the same exactly-once argument covers.

Schema (PRAGMA user_version = SCHEMA_VERSION):
- state(id = 1, data): zlib'd msgpack of {core, positions, monitor} without the closed blocks and
  the alert history;
- blocks(seq, start, data): the rollup's closed blocks (Rollup.take_closed records), the ones the
  timeframe has left deleted at each save;
- events(id, at, data): every alert and recovery event, kept history_days;
- history(start, end, hits, data): one row per minute of log time with hits (core.window.history_row),
  kept history_days;
- legacy_hosts(id = 1, through, data): after importing a 0.1 checkpoint, the distinct-host state
  of its blocks, deleted once they have all left the timeframe.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import zlib
from typing import Any, Callable, Iterator

import msgpack

from logmond import checkpoint
from logmond.core.alerts import MAX_HISTORY
from logmond.core.errors import OperatorError
from logmond.core.monitor import Monitor

NAME = "logmond.sqlite3"
SCHEMA_VERSION = 2
# Creates what is missing, so it also migrates an older schema (1 had no history).
SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (seq INTEGER PRIMARY KEY, start INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS history (start INTEGER PRIMARY KEY, end INTEGER NOT NULL, hits INTEGER NOT NULL,
                                    data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS legacy_hosts (id INTEGER PRIMARY KEY CHECK (id = 1), through INTEGER NOT NULL,
                                         data BLOB NOT NULL);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
# Milliseconds a writer waits for another one's lock (a backfill) before the save fails and the
# next second retries.
BUSY_TIMEOUT_MS = 200
# zlib level of the blobs: the fastest, which already shrinks repetitive names several times.
COMPRESSION = 1
# Seconds between two purges of history rows and events older than history_days, and rows
# deleted per statement: a purge never holds the database for more than a few milliseconds.
PURGE_EVERY = 3600.0
PURGE_BATCH = 2000
# A blob larger than this is not ours (windows are bounded): refuse to load it.
MAX_BLOB = 256 * 1024 * 1024

log = logging.getLogger("logmond.store")


def _pack(value: Any) -> bytes:
    """A blob as the tables hold it: zlib'd msgpack."""
    return zlib.compress(msgpack.packb(value, use_bin_type=True), COMPRESSION)


def _unpack(blob: bytes) -> Any:
    data = zlib.decompressobj().decompress(blob, MAX_BLOB)
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def snapshot(core: list[Any], positions: list[dict[str, Any]], monitor: Monitor) -> dict[str, Any]:
    """What Database.save takes from a recording monitor: its state, the blocks its rollup closed
    and the history rows it finished since the last snapshot, and its alert events."""
    rollup = monitor.rollup
    return {"core": core, "positions": positions, "monitor": monitor.to_state(),
            "closed": rollup.take_closed(), "legacy_hosts": rollup.take_legacy_hosts(),
            "first_seq": rollup.first_seq, "events": list(monitor.journal.history),
            "history": monitor.take_history()}


class Database:
    """The state database of one state dir, as the daemon keeps it."""

    records = True  # the monitor hands closed blocks and events out once (Monitor(record=True))

    def __init__(self, state_dir: str, history_days: int = 31, clock: Callable[[], float] = time.monotonic,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, NAME)
        self.history_days = history_days
        self.busy_timeout_ms = busy_timeout_ms
        self.db: sqlite3.Connection | None = None
        # Handed over but not yet committed, so that a failed save loses none of them: closed
        # blocks, history rows, the 0.1 checkpoint's hosts state.
        self._pending: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] = []
        self._legacy: tuple[int, dict[str, Any]] | None = None
        self._legacy_unsaved = False  # written once, when handed over; deleted once its blocks left
        self._saved_event = 0  # the newest alert event id committed
        self._imported: str | None = None  # the 0.1 checkpoint to move aside once saved here
        # Purges of old rows: monotonic time of the next one, and whether the last left some.
        self._clock = clock
        self._next_purge = clock()
        self._purging = False
        self._readers = threading.local()  # each reading thread's connection (history)

    def prepare(self) -> None:
        """Create the state dir and open the database (OperatorError if logmond cannot)."""
        try:
            os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise OperatorError(f"cannot create state dir {self.state_dir}: {exc.strerror}; "
                                f"create it or pass --state-dir DIR") from None
        if not os.access(self.state_dir, os.W_OK | os.X_OK):
            raise OperatorError(f"state dir {self.state_dir} is not writable by uid {os.geteuid()}: "
                                f"fix its owner or pass --state-dir DIR")
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:
            self._set_aside(f"it cannot be read ({exc})")
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        """The database, created 0600 with the schema if new; OperatorError for a newer schema."""
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OperatorError(f"{self.path} has schema version {version}, newer than this logmond's "
                                    f"{SCHEMA_VERSION}: run the newer logmond, or move the file away to start afresh")
            if version < SCHEMA_VERSION:
                db.executescript(SCHEMA)
            db.execute("SELECT count(*) FROM state").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def load(self) -> dict[str, Any] | None:
        """The saved state with its closed blocks and the newest alert events, the 0.1 checkpoint
        if this database has none yet (imported at the first save), or None."""
        assert self.db is not None
        try:
            row = self.db.execute("SELECT data FROM state WHERE id = 1").fetchone()
            if row is None:
                return self._load_legacy()
            state = _unpack(row[0])
            records = [_unpack(data) for (data,) in self.db.execute("SELECT data FROM blocks ORDER BY seq")]
            events = [_unpack(data) for (data,) in self.db.execute(
                "SELECT data FROM (SELECT id, data FROM events ORDER BY id DESC LIMIT ?) ORDER BY id", (MAX_HISTORY,))]
            legacy = self.db.execute("SELECT through, data FROM legacy_hosts WHERE id = 1").fetchone()
        except (sqlite3.DatabaseError, zlib.error, ValueError, TypeError, msgpack.UnpackException) as exc:
            self.set_aside(f"it cannot be read ({exc.__class__.__name__}: {exc})")
            return None
        self._saved_event = events[-1]["id"] if events else 0
        if legacy is not None:
            self._legacy = (int(legacy[0]), _unpack(legacy[1]))
        state["monitor"]["alert"]["history"] = events
        return {**state, "records": records, "legacy_hosts": self._legacy}

    def _load_legacy(self) -> dict[str, Any] | None:
        state = checkpoint.load(self.state_dir)
        if state is not None:
            self._imported = os.path.join(self.state_dir, checkpoint.NAME)
            log.info("importing the checkpoint %s into %s", self._imported, self.path)
        return state

    def save(self, state: dict[str, Any]) -> int:
        """Commit one state: `core`, `positions`, `monitor` (a recording monitor's to_state), the
        monitor's newly `closed` blocks, its `legacy_hosts` if any, the `first_seq` of the blocks
        its rollup still holds, and its alert `events` (those not saved yet are added); returns
        the bytes of the state row. Raises OSError or sqlite3.Error; nothing is lost then: the
        next save writes what this one did not."""
        assert self.db is not None
        self._pending += state["closed"]
        self._rows += state["history"]
        if state.get("legacy_hosts") is not None:
            self._legacy, self._legacy_unsaved = state["legacy_hosts"], True
        first, end = state["first_seq"], state["monitor"]["rollup"]["next_seq"]
        events = [e for e in state["events"] if e["id"] > self._saved_event]
        small = _pack({k: state[k] for k in ("core", "positions", "monitor")})
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO state (id, data) VALUES (1, ?)", (small,))
            db.executemany("INSERT OR REPLACE INTO blocks (seq, start, data) VALUES (?, ?, ?)",
                           [(r["seq"], r["start"], _pack(r)) for r in self._pending])
            db.execute("DELETE FROM blocks WHERE seq < ? OR seq >= ?", (first, end))
            db.executemany("INSERT OR REPLACE INTO events (id, at, data) VALUES (?, ?, ?)",
                           [(e["id"], e["at"], _pack(e)) for e in events])
            db.executemany("INSERT OR REPLACE INTO history (start, end, hits, data) VALUES (?, ?, ?, ?)",
                           [(r["start"], r["end"], r["hits"], _pack(r)) for r in self._rows])
            self._purge()
            legacy = self._legacy
            if legacy is not None and legacy[0] < first:
                db.execute("DELETE FROM legacy_hosts")
            elif legacy is not None and self._legacy_unsaved:
                db.execute("INSERT OR REPLACE INTO legacy_hosts (id, through, data) VALUES (1, ?, ?)",
                           (legacy[0], _pack(legacy[1])))
        if self._legacy is not None and self._legacy[0] < first:
            self._legacy = None
        self._pending, self._rows, self._legacy_unsaved = [], [], False
        if events:
            self._saved_event = events[-1]["id"]
        if self._imported is not None:
            self._move_imported()
        return len(small)

    def add_history(self, rows: list[dict[str, Any]]) -> int:
        """A backfill: add the rows for minutes the history does not have, in one transaction;
        how many were added."""
        with self._transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO history (start, end, hits, data) VALUES (?, ?, ?, ?)",
                           [(r["start"], r["end"], r["hits"], _pack(r)) for r in rows])
            return db.total_changes - before

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block ends, rolled back if it raises."""
        db = self.db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def events(self, after: int, limit: int) -> list[dict[str, Any]] | None:
        """Alert events with ids above `after`, oldest first, at most `limit` (all of them are
        kept, for history_days)."""
        assert self.db is not None
        return [_unpack(data) for (data,) in self.db.execute(
            "SELECT data FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit))]

    def history(self, since: int, until: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The history rows starting in [since, until) and the alert events at those times,
        oldest first (only what the last commits hold: a backfill's rows appear whole)."""
        db = self._reader()
        rows = [_unpack(data) for (data,) in db.execute(
            "SELECT data FROM history WHERE start >= ? AND start < ? ORDER BY start", (since, until))]
        events = [_unpack(data) for (data,) in db.execute(
            "SELECT data FROM events WHERE at >= ? AND at < ? ORDER BY id", (since, until))]
        return rows, events

    def close_reader(self) -> None:
        """In a reading thread, at shutdown: its connection closed, so the last close folds the WAL."""
        db = getattr(self._readers, "db", None)
        if db is not None:
            db.close()
            self._readers.db = None

    def _reader(self) -> sqlite3.Connection:
        """The calling thread's own connection for reading history (the daemon reads it in a
        thread apart, while the loop's connection writes)."""
        db = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = sqlite3.connect(self.path)
            db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        return db

    def _purge(self) -> None:
        """Once every PURGE_EVERY seconds, delete history rows and events older than history_days
        (of log time, before the newest row), PURGE_BATCH at a time, one batch per save."""
        now = self._clock()
        if not self._purging and now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY
        assert self.db is not None
        newest = self.db.execute("SELECT max(start) FROM history").fetchone()[0]
        if newest is None:
            return
        cut = newest - self.history_days * 86400
        deleted = 0
        for table, column in (("history", "start"), ("events", "at")):
            deleted += self.db.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {column} < ? LIMIT ?)",
                (cut, PURGE_BATCH)).rowcount
        self._purging = deleted > 0

    def _move_imported(self) -> None:
        assert self._imported is not None
        aside = f"{self._imported}.imported"
        try:
            os.replace(self._imported, aside)
            log.info("the checkpoint is now in %s; the old one is kept as %s", self.path, aside)
        except OSError as exc:
            log.warning("cannot move the imported checkpoint %s aside: %s", self._imported, exc.strerror)
        self._imported = None

    def close(self) -> None:
        """At shutdown: the last connection's close folds the WAL into the main file."""
        if self.db is not None:
            self.db.close()
            self.db = None

    def set_aside(self, why: str) -> None:
        """The database made no sense: keep it aside with a warning and start a fresh one."""
        if self.db is not None:
            self.db.close()
            self.db = None
        self._set_aside(why)
        self._pending, self._rows, self._legacy, self._legacy_unsaved, self._saved_event = [], [], None, False, 0
        self.db = self._open()

    def _set_aside(self, why: str) -> None:
        aside = f"{self.path}.bad-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + suffix, aside + suffix)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("state database %s ignored, %s (could not move it aside: %s); starting fresh",
                            self.path, why, exc.strerror)
                return
        log.warning("state database %s ignored, %s; kept as %s; starting fresh", self.path, why, aside)


class NoStore:
    """For --replay: a replay always starts from the top, so nothing is kept."""

    records = False

    def prepare(self) -> None:
        """Nothing to prepare."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> int:
        """Nothing is kept."""
        return 0

    def set_aside(self, why: str) -> None:
        """Nothing was loaded."""

    def close(self) -> None:
        """Nothing is open."""

    def events(self, after: int, limit: int) -> list[dict[str, Any]] | None:
        """Not kept: the monitor's own recent events are all there is."""
        return None

    def history(self, since: int, until: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A replay keeps no history."""
        return [], []

    def close_reader(self) -> None:
        """Nothing is open."""
