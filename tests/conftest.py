"""Helpers for tests against the real thing: a logmond process, a real log, a real socket."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from shared.client import Client, ClientError

T0 = 1_549_573_800


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def csv_line(ts: int, n: int = 0, path: str = "/api/user", status: int = 200) -> str:
    return f'"10.0.0.{n % 5}","-","apache",{ts},"GET {path}/{n} HTTP/1.0",{status},{100 + n % 50}\n'


class Writer(threading.Thread):
    """Appends lines stamped with the wall clock, about `rate` a second, through an O_APPEND
    descriptor like a web server, until stopped. `line(ts, n)` makes the n-th (csv_line)."""

    TICK = 0.02

    def __init__(self, path: Path, rate: float = 30, line: Callable[[int, int], str] = csv_line) -> None:
        super().__init__(daemon=True)
        self.path, self.rate, self.line = path, rate, line
        self.written = 0
        self.halt = threading.Event()

    def run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        owed = 0.0
        try:
            while not self.halt.wait(self.TICK):
                owed += self.rate * self.TICK
                now, count = int(time.time()), int(owed)
                owed -= count
                os.write(fd, "".join(self.line(now, self.written + i) for i in range(count)).encode())
                self.written += count
        finally:
            os.close(fd)

    def stop(self) -> int:
        """Stop writing; the number of lines written."""
        self.halt.set()
        self.join(timeout=10)
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
