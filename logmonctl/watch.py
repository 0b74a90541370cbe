"""`logmonctl watch` (alias `top`): the live curses view of a running logmond.

A background thread holds the daemon's `subscribe` stream and leaves the newest state in a
one-slot mailbox; the UI loop sleeps in select() until a key, a post or a signal wakes it, so an
alert is on screen the moment it is pushed and an idle viewer costs nothing. Pure parts:
receive() folds pushes, on_key() folds keys, layout() draws; screen.py is the curses shell.
"""
from __future__ import annotations

import curses
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType
from typing import Any, NamedTuple

from logmonctl import screen
from logmonctl.cli import EXIT_USAGE
from logmonctl.layout import CHARTS, FILTER_MAX, HISTORY_MINUTES, RATE_SPAN, SORTS, TABLES, View, layout
from shared.cli import Parser, UsageError, socket_help
from shared.client import Client, ClientError
from shared import paths
from shared.protocol import EVENT_ALERT, EVENT_SNAPSHOT, ApiError
from shared.schema import ALERT, HIGH_TRAFFIC

# Seconds between attempts to reach an absent daemon.
RETRY = 1.0
# Seconds allowed for connect and hello.
CONNECT_TIMEOUT = 2.0
# Seconds without a push (one comes every second) before the daemon counts as gone.
STALL = 5.0
# Seconds between two fetches of the last day while the chart shows history (its rows are minutes).
HISTORY_REFRESH = 30.0
# Bytes drained from the wake pipe per read.
WAKE_READ = 4096
# Key codes curses gives for Esc, Enter and Backspace (terminals differ on the last two).
ESC = 27
ENTER = (10, 13, curses.KEY_ENTER)
BACKSPACE = (8, 127, curses.KEY_BACKSPACE)
EXIT_OK = 0
EXIT_NO_TTY = 1
EXIT_TERM = 128 + signal.SIGTERM
CLIENT_NAME = "logmonctl watch"


class Feed(NamedTuple):
    """The View fields the feed thread owns (see layout.View), and what lines_per_s is made of."""

    data: dict[str, Any] | None = None
    seq: int | None = None
    lines_per_s: float | None = None
    problem: str = ""
    # (pid, uptime, lines) of the snapshots of the last RATE_SPAN seconds, oldest first.
    samples: tuple[tuple[int, float, int], ...] = ()


class Terminated(Exception):
    """SIGTERM, raised in the UI loop so that the terminal is restored on the way out."""


# -- functional core -----------------------------------------------------------------------

def receive(feed: Feed, push: dict[str, Any]) -> Feed:
    """The feed after one push: a snapshot replaces the data; an alert is merged in at once."""
    if push.get("event") == EVENT_SNAPSHOT:
        data = push["data"]
        st = data["status"]
        samples = (*(s for s in feed.samples if s[0] == st["pid"] and st["uptime"] - s[1] <= RATE_SPAN),
                   (st["pid"], st["uptime"], st["lines"]))
        rate = lines_rate(samples)
        return Feed(data, push["seq"], feed.lines_per_s if rate is None else rate, "", samples)
    if push.get("event") == EVENT_ALERT and feed.data is not None:
        return feed._replace(data=with_alert(feed.data, push))
    return feed


def lines_rate(samples: tuple[tuple[int, float, int], ...]) -> float | None:
    """Lines read per second from the oldest to the newest (pid, uptime, lines) sample of one
    daemon process: an average over up to RATE_SPAN seconds, steady while the log is."""
    (_, start, first), (_, end, last) = samples[0], samples[-1]
    if end - start <= 0:
        return None
    return max(0, last - first) / (end - start)


def with_alert(data: dict[str, Any], push: dict[str, Any]) -> dict[str, Any]:
    """Snapshot data as the next snapshot will show it: the event in the history, the banner switched."""
    event = {k: v for k, v in push.items() if k != "event"}
    if any(e["id"] == event["id"] for e in data["alerts"]):
        return data
    firing = event["type"] == ALERT
    name = event.get("rule", HIGH_TRAFFIC)
    rules = [{**r, "active": firing, "since": event["at"] if firing else None, "value": event["value"]}
             if r["name"] == name else r for r in data["status"].get("rules", [])]
    status = {**data["status"], "rules": rules}
    if name == HIGH_TRAFFIC:
        alert = {"active": firing, "since": event["at"] if firing else None,
                 "hits": event["hits"] if firing else None, "rate": event["rate"] if firing else None}
        # The rate of the second that decided the alert, so that the banner agrees with its state.
        status = {**status, "alert": alert, "rate": event["rate"]}
    return {**data, "status": status, "alerts": [*data["alerts"], event]}


def on_key(view: View, key: int) -> View | None:
    """The view after a key; None to quit. Other keys (KEY_RESIZE too) change nothing.

    While a filter is typed (after `/`), keys go to it: Enter keeps it, Esc clears it.
    """
    if view.editing:
        return on_filter_key(view, key)
    if key == ord("/"):
        return replace(view, editing=True)
    if key == ESC:
        return replace(view, filter="")
    if key in (ord("q"), ord("Q")):
        return None
    if key == ord("p"):
        return replace(view, paused=not view.paused)
    if key == ord("s"):
        return replace(view, sort=SORTS[(SORTS.index(view.sort) + 1) % len(SORTS)])
    if key == ord("t"):
        return replace(view, table=TABLES[(TABLES.index(view.table) + 1) % len(TABLES)])
    if key in (ord("?"), ord("h")):
        return replace(view, help=not view.help)
    if key == ord("H"):
        return replace(view, chart=CHARTS[(CHARTS.index(view.chart) + 1) % len(CHARTS)])
    return view


def on_filter_key(view: View, key: int) -> View:
    """A key typed into the sections filter."""
    if key == ESC:
        return replace(view, filter="", editing=False)
    if key in ENTER:
        return replace(view, editing=False)
    if key in BACKSPACE:
        return replace(view, filter=view.filter[:-1])
    if 32 <= key < 127 and len(view.filter) < FILTER_MAX:
        return replace(view, filter=view.filter + chr(key))
    return view


# -- the feed thread -----------------------------------------------------------------------

class Mailbox:
    """One slot with the newest Feed; a post wakes the UI loop by a byte on its wake pipe."""

    def __init__(self, wake_fd: int) -> None:
        self._lock = threading.Lock()
        self._wake_fd: int | None = wake_fd
        self._feed: Feed | None = None
        self._history: dict[str, Any] | None = None
        self._failure: Exception | None = None

    def post(self, feed: Feed) -> None:
        with self._lock:
            self._feed = feed
            self._wake()

    def post_history(self, history: dict[str, Any]) -> None:
        with self._lock:
            self._history = history
            self._wake()

    def take_history(self) -> dict[str, Any] | None:
        """The newest history not taken yet, or None."""
        with self._lock:
            history, self._history = self._history, None
            return history

    def fail(self, exc: Exception) -> None:
        """The feed thread died of a bug: the UI loop re-raises it (after restoring the terminal)."""
        with self._lock:
            self._failure = exc
            self._wake()

    def take(self) -> Feed | None:
        """The newest Feed not taken yet, or None."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            feed, self._feed = self._feed, None
            return feed

    def close(self) -> None:
        """No more wake-ups: the pipe is about to be closed."""
        with self._lock:
            self._wake_fd = None

    def _wake(self) -> None:
        if self._wake_fd is not None:
            try:
                os.write(self._wake_fd, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already


def follow(path: str, mailbox: Mailbox, halt: threading.Event) -> None:
    """Hold the subscription; whenever it is lost, say why and try again every RETRY seconds."""
    try:
        while not halt.is_set():
            client = Client(path, timeout=CONNECT_TIMEOUT, name=CLIENT_NAME)
            try:
                client.connect()
                feed = Feed()
                for push in client.subscribe(timeout=STALL):
                    feed = receive(feed, push)
                    mailbox.post(feed)
            except (ClientError, ApiError) as exc:
                mailbox.post(Feed(problem=str(exc)))
            finally:
                client.close()
            halt.wait(RETRY)
    except Exception as exc:
        mailbox.fail(exc)


def follow_history(path: str, mailbox: Mailbox, halt: threading.Event, wanted: threading.Event) -> None:
    """While the chart shows history (`wanted`), fetch the last day of minutes every
    HISTORY_REFRESH seconds; a failure leaves the last one shown (the live feed says what is wrong)."""
    try:
        while True:
            wanted.wait()
            if halt.is_set():
                return
            until = int(time.time()) // 60 * 60
            try:
                with Client(path, timeout=CONNECT_TIMEOUT, name=CLIENT_NAME) as client:
                    rates = [s["rate"] for s in client.history(until - HISTORY_MINUTES * 60, until, 60)]
                mailbox.post_history({"end": until, "rates": rates})
            except (ClientError, ApiError):
                pass
            halt.wait(HISTORY_REFRESH)
    except Exception as exc:
        mailbox.fail(exc)


# -- the shell -----------------------------------------------------------------------------

def run(socket_path: str) -> int:
    """Show the live view until `q`, Ctrl-C or SIGTERM; the exit status. Main thread only (signals)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("logmonctl: watch needs a terminal on stdin and stdout", file=sys.stderr)
        return EXIT_NO_TTY
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    mailbox = Mailbox(wake_w)
    halt = threading.Event()
    wanted = threading.Event()  # the chart shows history: keep it fetched
    try:
        with signals(wake_w), screen.opened() as scr:
            threading.Thread(target=follow, args=(socket_path, mailbox, halt), name="logmond-feed", daemon=True).start()
            threading.Thread(target=follow_history, args=(socket_path, mailbox, halt, wanted), name="logmond-history",
                             daemon=True).start()
            return loop(scr, View(socket=socket_path), mailbox, wake_r, wanted)
    except KeyboardInterrupt:
        return EXIT_OK
    except Terminated:
        return EXIT_TERM
    finally:
        halt.set()
        wanted.set()  # wakes the history thread, which then sees halt
        mailbox.close()
        os.close(wake_r)
        os.close(wake_w)


def loop(scr: screen.Screen, view: View, mailbox: Mailbox, wake_fd: int, wanted: threading.Event) -> int:
    """Draw, sleep until something happens, apply it; again until `q`."""
    while True:
        if view.chart == "live":
            wanted.clear()
        else:
            wanted.set()
        scr.draw(layout(view, *scr.size()))
        select.select([sys.stdin.fileno(), wake_fd], [], [])
        if signal.SIGWINCH in drain(wake_fd):
            scr.resize()
        for key in scr.keys():
            if (keyed := on_key(view, key)) is None:
                return EXIT_OK
            view = keyed
        if not view.paused and (feed := mailbox.take()) is not None:
            view = replace(view, data=feed.data, seq=feed.seq, lines_per_s=feed.lines_per_s, problem=feed.problem)
        if not view.paused and (history := mailbox.take_history()) is not None:
            view = replace(view, history=history)


def drain(fd: int) -> bytes:
    """Everything waiting in the non-blocking wake pipe (signal numbers and mailbox posts)."""
    data = b""
    try:
        while chunk := os.read(fd, WAKE_READ):
            data += chunk
    except BlockingIOError:
        pass
    return data


@contextmanager
def signals(wake_fd: int) -> Iterator[None]:
    """SIGWINCH and SIGTERM wake the loop through `wake_fd`; SIGTERM then unwinds as Terminated.

    Installed before curses starts, so curses leaves SIGWINCH to us (Screen.resize follows it).
    """
    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = {signal.SIGWINCH: signal.signal(signal.SIGWINCH, lambda signum, frame: None),
                signal.SIGTERM: signal.signal(signal.SIGTERM, terminate)}
    previous_fd = signal.set_wakeup_fd(wake_fd, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main() -> int:
    parser = Parser(prog="python -m logmonctl.watch", description="The live view of logmond.")
    parser.add_argument("--socket", metavar="PATH", help=socket_help())
    try:
        args = parser.parse_args()
    except UsageError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run(paths.socket_path(args.socket))


if __name__ == "__main__":
    sys.exit(main())
