"""Helpers for tests against the real thing: a logmond process, a real log, a real socket."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Callable, Iterator

import msgpack
import pytest

from shared.client import Client, ClientError

T0 = 1_549_573_800



def saved_state(state_dir: Path) -> dict | None:
    """The state row of logmond's database in `state_dir`, read on its own (not through
    logmond.store), or None while there is none."""
    path = state_dir / "logmond.sqlite3"
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT data FROM state WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        return None  # not created yet
    finally:
        db.close()
    return None if row is None else msgpack.unpackb(zlib.decompress(row[0]), raw=False)


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition",
             every: float = 0.02) -> object:
    """Poll `condition` every `every` seconds until it returns something truthy, and return that;
    fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def csv_line(ts: int, n: int = 0, path: str = "/api/user", status: int = 200) -> str:
    return f'"10.0.0.{n % 5}","-","apache",{ts},"GET {path}/{n} HTTP/1.0",{status},{100 + n % 50}\n'


def numbered_line(ts: int, n: int) -> str:
    """`line <n>`: for tests that check every number arrived exactly once."""
    return f"line {n}\n"


class Writer:
    """A web server writing its access log, from a thread: one O_APPEND descriptor, about `rate`
    lines a second, one write() per line (two with `split`, so that a reader sees partial lines).
    The n-th line (n = 0, 1, 2, ...) is `line(ts, n)`, ts the wall clock's second when it is
    written, so lines can be numbered and checked to arrive exactly once.

    start() opens the file (creating it) and returns the writer; stop() returns how many lines
    were written. reopen() is what a server does after a rotation signal: close its descriptor and
    open the path again, creating a new file. `with writer.paused():` holds it between two lines.
    """

    # Seconds between the thread's wake-ups; each writes the lines due since the last one.
    TICK = 0.002
    # A stalled thread (paused, or starved of CPU) does not make up for more than this many seconds.
    MAX_CATCH_UP = 0.1

    def __init__(self, path: Path, rate: float = 30, line: Callable[[int, int], str] = csv_line,
                 split: bool = False) -> None:
        self.path, self.rate, self.line, self.split = path, rate, line, split
        self.written = 0
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def start(self) -> Writer:
        with self._lock:
            self._fd = self._open()
        self._thread.start()
        return self

    def _run(self) -> None:
        owed, last = 0.0, time.monotonic()
        while not self._halt.wait(self.TICK):  # pacing, not synchronisation
            now = time.monotonic()
            owed += self.rate * min(now - last, self.MAX_CATCH_UP)
            last = now
            with self._lock:
                while owed >= 1 and not self._halt.is_set():
                    self._write(self.line(int(time.time()), self.written).encode())
                    self.written += 1
                    owed -= 1

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        if self.split:
            os.write(self._fd, data[:4])
            os.write(self._fd, data[4:])
        else:
            os.write(self._fd, data)

    def more(self, n: int, timeout: float = 10.0) -> int:
        """Wait until n more lines have been written (through whatever descriptor it holds)."""
        target = self.written + n
        wait_for(lambda: self.written >= target, timeout, f"the writer to write {n} more lines", every=0.001)
        return self.written

    def reopen(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = self._open()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            yield

    def stop(self) -> int:
        """Stop writing (again is harmless); the number of lines written."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the writer did not stop"
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        return self.written


class Logmond:
    """One logmond process with its own log, socket and state dir."""

    def __init__(self, root: Path, log: Path, *args: str) -> None:
        self.root = root
        self.log = log
        self.socket = str(root / "s.sock")
        self.state = root / "state"
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.stderr_path = root / "stderr.txt"

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "logmond", "--file", str(self.log), "--socket", self.socket,
                "--state-dir", str(self.state), *self.args, *extra]

    def start(self, *extra: str, env: dict[str, str] | None = None) -> Logmond:
        stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command(*extra), stdout=subprocess.DEVNULL, stderr=stderr,
                                     env={**os.environ, **(env or {})})
        stderr.close()
        wait_for(self.answers, timeout=15, what="logmond to answer on its socket")
        return self

    def answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"logmond exited with {self.proc.returncode}: {self.stderr()}")
        try:
            with Client(self.socket, timeout=2) as c:
                c.call("ping")
            return True
        except ClientError:
            return False

    def status(self) -> dict:
        with Client(self.socket, timeout=5) as c:
            return c.call("status")

    def call(self, op: str, **args) -> dict:
        with Client(self.socket, timeout=5) as c:
            return c.call(op, **args)

    def wait_lines(self, n: int, timeout: float = 20) -> dict:
        return wait_for(lambda: (st := self.status())["lines"] >= n and st, timeout, f"{n} lines counted")

    def snapshots(self, n: int, timeout: float = 10.0) -> int:
        """Wait, as a subscriber, until the daemon has published at least n snapshots after the
        newest one it had when asked; returns the last one's seq. A snapshot is published at the
        end of each tick's once-a-second work (live clock, safety check, checkpoint), so this
        waits for that work to have run n more times."""
        deadline = time.monotonic() + timeout
        with Client(self.socket, timeout=5) as c:
            first = None
            for push in c.subscribe(timeout=timeout):
                if push["event"] != "snapshot":
                    continue
                if first is None:
                    first = push["seq"]  # the newest already published (or the first one after)
                elif push["seq"] >= first + n:
                    return push["seq"]
                if time.monotonic() > deadline:
                    break
        raise AssertionError(f"timed out after {timeout}s waiting for {n} snapshots")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self.proc = None
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="lm", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def writer() -> Iterator[Callable[..., Writer]]:
    """Factory: writer(path, **kwargs) -> a Writer (not started); each is stopped after the test,
    so that a test failing half-way leaves no writer running."""
    made: list[Writer] = []

    def make(path: Path, **kwargs) -> Writer:
        w = Writer(path, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


@pytest.fixture
def logmond(short_tmp: Path) -> Iterator[Callable[..., Logmond]]:
    """Factory: logmond(*args) -> a Logmond (not started) following short_tmp/access.log."""
    made: list[Logmond] = []

    def make(*args: str, log: Path | None = None) -> Logmond:
        d = Logmond(short_tmp, log or short_tmp / "access.log", *args)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(timeout=10)
