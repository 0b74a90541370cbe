"""The live demo behind `make run`: a traffic generator, logmond following it, and the viewer.

Everything lives in a fresh temporary directory: the log the generator writes (nginx combined
plus request and upstream times, several sections, hosts and a status mix, with a surge every
five minutes that takes the rate over the threshold), logmond's socket and its state. Quitting the viewer stops the generator and
the daemon and removes the directory; nothing is left running.

    python -m logmond.tools.demo                # the viewer (q quits)
    python -m logmond.tools.demo --no-viewer    # just the generator and logmond, until Ctrl-C

Before the viewer takes the terminal it prints the socket and the logmonctl command that queries
it from another terminal, and says so again once the demo has stopped, since the viewer's screen
hides the first line.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from shared.cli import Parser, UsageError
from shared.client import Client, ClientError

# Base traffic and its surge: 4 hits/s, x8 for 60 s from 15 s into each 300 s cycle. With the
# default alert (120 s window, 10 hits/s) the alert fires about a minute in and recovers about
# two minutes later.
RATE = 4.0
SURGE = "15,60,8"
PERIOD = 300
# Seconds to wait for logmond to answer on its socket before giving up.
START_TIMEOUT = 20.0
# Seconds a child gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1
# What logmond is told about each format the generator can write: the timed log is nginx's
# combined plus `$request_time $upstream_response_time`, which auto-detection reads with its times.
DAEMON_FORMAT = {"timed": "auto", "combined": "combined", "clf": "clf", "csv": "csv"}


def _die_with_parent() -> None:
    """Children get SIGTERM if the demo itself is killed, so even kill -9 leaves nothing behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        # Own session: Ctrl-C in the viewer reaches the demo only, which stops children in order.
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, preexec_fn=_die_with_parent)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_answering(socket: str, daemon: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"logmond exited: {log.read_text(errors='replace').strip()[-500:]}")
        try:
            with Client(socket, timeout=1) as client:
                client.call("ping")
            return
        except ClientError:
            time.sleep(0.1)
    raise RuntimeError(f"logmond did not answer on {socket} within {START_TIMEOUT:.0f}s")


def logmonctl_command() -> str:
    """How to type logmonctl here: the script installed next to this Python (.venv/bin/logmonctl
    after `make run`), relative to the working directory when it is below it."""
    script = Path(sys.executable).with_name("logmonctl")
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m logmonctl"
    relative = os.path.relpath(script)
    return shlex.quote(str(script) if relative.startswith("..") else relative)


def started_line(socket: str) -> str:
    query = f"{logmonctl_command()} --socket {shlex.quote(socket)} status"
    return f"demo: logmond serves {socket}; query it from another terminal with: {query}"


def stopped_line(socket: str, work: Path) -> str:
    query = f"{logmonctl_command()} --socket {shlex.quote(socket)} status"
    return f"demo stopped: logmond on {socket} has exited and {work} is removed (while it ran: {query})"


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="python -m logmond.tools.demo", description="Live demo: generator + logmond + viewer.")
    p.add_argument("--no-viewer", action="store_true", help="run generator and logmond until interrupted")
    p.add_argument("--format", choices=tuple(DAEMON_FORMAT), default="timed",
                   help="log format (timed: nginx combined + request and upstream times)")
    try:
        args = p.parse_args(argv)
    except UsageError as exc:
        print(f"{p.prog}: {exc}", file=sys.stderr)
        return 2

    # SIGTERM ends the demo like Ctrl-C does: through the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="logmon-demo-", dir="/tmp"))
    log, socket, stderr = work / "access.log", str(work / "logmond.sock"), work / "logmond.stderr"
    children: list[subprocess.Popen] = []
    announced = False
    try:
        children.append(_spawn([sys.executable, "-m", "logmond.tools.loggen", "--live", "--format", args.format,
                                "--rate", str(RATE), "--surge", SURGE, "--period", str(PERIOD),
                                "--output", str(log)], stderr))
        daemon = _spawn([sys.executable, "-m", "logmond", "--file", str(log), "--socket", socket,
                         "--state-dir", str(work / "state"), "--format", DAEMON_FORMAT[args.format]], stderr)
        children.append(daemon)
        _wait_until_answering(socket, daemon, stderr)
        print(started_line(socket), flush=True)
        announced = True
        if args.no_viewer:
            while all(c.poll() is None for c in children):
                time.sleep(0.5)
            return 1
        from logmonctl.watch import run
        return run(socket)
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            _stop(child)
        shutil.rmtree(work, ignore_errors=True)
        if announced:
            print(stopped_line(socket, work), flush=True)


if __name__ == "__main__":
    sys.exit(main())
