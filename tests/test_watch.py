"""logmonctl watch: its pure parts, then the real viewer in a real pseudo-terminal against a real logmond.

The terminal is rendered by pyte, fed continuously from the pty by a reader thread; every check
waits on what a person would see on the screen.
"""
from __future__ import annotations

import curses
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pyte
import pytest

from conftest import csv_line, wait_for
from logmonctl.layout import AXIS_CORNER, LABEL_WIDTH, View
from logmonctl.watch import Feed, Mailbox, lines_rate, on_key, receive, with_alert

REPO = Path(__file__).resolve().parent.parent
# Fast windows so that summaries close and the alert fires within seconds.
FAST = ("--alert-window", "10", "--threshold", "1", "--lateness", "1", "--summary-interval", "1",
        "--timeframe", "20")
# The viewer, made the session's controlling terminal first (as a login shell would), so that
# a resize of the pty signals it and ^C is a SIGINT, exactly as in a real terminal.
LAUNCH = ("import fcntl, runpy, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
          "runpy.run_module('logmonctl.watch', run_name='__main__', alter_sys=True)")
RMCUP, CNORM, CLEAR = b"\x1b[?1049l", b"\x1b[?25h", b"\x1b[2J"


# -- the pure parts ------------------------------------------------------------------------

def status(pid: int = 7, uptime: float = 10.0, lines: int = 100) -> dict:
    return {"pid": pid, "uptime": uptime, "lines": lines,
            "alert": {"active": False, "since": None, "hits": None, "rate": None}}


def snapshot(seq: int, **st: object) -> dict:
    return {"event": "snapshot", "seq": seq, "data": {"status": status(**st), "alerts": []}}


ALERT_PUSH = {"event": "alert", "id": 1, "type": "alert", "at": 1000, "hits": 22, "rate": 2.2,
              "threshold": 1.0, "window": 10}


def test_snapshots_replace_the_data_and_give_lines_per_second():
    feed = receive(Feed(problem="gone"), snapshot(1, uptime=10.0, lines=100))
    assert (feed.seq, feed.lines_per_s, feed.problem) == (1, None, "")
    feed = receive(feed, snapshot(2, uptime=12.0, lines=150))
    assert (feed.seq, feed.lines_per_s) == (2, 25.0)
    assert receive(feed, snapshot(3, pid=8, uptime=1.0, lines=0)).lines_per_s == 25.0, "a new daemon: keep the last"
    assert lines_rate(((7, 5.0, 1), (7, 5.0, 9))) is None


def test_9_lines_per_second_is_a_steady_average_over_ten_seconds():
    # A steady 4 lines/s that the daemon reads in uneven gulps (1, 7, 1, 7 … per snapshot).
    feed, lines, rates = Feed(), 0, []
    for second in range(1, 41):
        lines += 1 if second % 2 else 7
        feed = receive(feed, snapshot(second, uptime=float(second), lines=lines))
        rates.append(feed.lines_per_s)
    assert all(3.9 <= r <= 4.4 for r in rates[10:]), rates
    assert max(rates[1:]) - min(rates[1:]) > 1, "the first seconds have less to average"


def test_an_alert_push_switches_the_banner_at_once_and_only_once():
    feed = receive(receive(Feed(), snapshot(1)), ALERT_PUSH)
    assert feed.data["status"]["alert"] == {"active": True, "since": 1000, "hits": 22, "rate": 2.2}
    assert feed.data["status"]["rate"] == 2.2, "the banner's rate is the one the alert was decided on"
    assert feed.data["alerts"] == [{k: v for k, v in ALERT_PUSH.items() if k != "event"}]
    assert with_alert(feed.data, ALERT_PUSH) is feed.data, "the snapshot already has it"
    recovered = with_alert(feed.data, {**ALERT_PUSH, "id": 2, "type": "recover", "at": 1030, "hits": 3})
    assert recovered["status"]["alert"]["active"] is False and len(recovered["alerts"]) == 2
    assert recovered["status"]["rate"] == 2.2
    assert receive(Feed(), ALERT_PUSH) == Feed(), "nothing to merge into before the first snapshot"


def test_keys():
    view = View(socket="s")
    assert on_key(view, ord("q")) is None
    assert on_key(view, ord("p")).paused and not on_key(on_key(view, ord("p")), ord("p")).paused
    sorts = [view := on_key(view, ord("s")) for _ in range(3)]
    assert [v.sort for v in sorts] == ["5xx", "name", "hits"]
    assert on_key(view, ord("t")).table == "timeframe" and on_key(view, ord("?")).help and on_key(view, ord("h")).help
    assert on_key(view, curses.KEY_RESIZE) == view


def test_filter_keys():
    view = on_key(View(socket="s"), ord("/"))
    assert view.editing
    for key in b"apq":
        view = on_key(view, key)
    assert (view.filter, view.editing) == ("apq", True), "q is typed, not quit"
    view = on_key(on_key(view, 127), 10)
    assert (view.filter, view.editing) == ("ap", False)
    assert on_key(view, ord("q")) is None
    assert on_key(view, 27).filter == "", "Esc clears a kept filter"
    typing = on_key(on_key(View(socket="s"), ord("/")), ord("x"))
    assert on_key(typing, 27) == View(socket="s"), "Esc while typing clears and stops"


def test_the_mailbox_keeps_the_newest_and_wakes_the_reader():
    r, w = os.pipe()
    os.set_blocking(w, False)
    box = Mailbox(w)
    box.post(Feed(seq=1))
    box.post(Feed(seq=2))
    assert os.read(r, 10) == b"\0\0" and box.take() == Feed(seq=2) and box.take() is None
    box.fail(ValueError("bug"))
    with pytest.raises(ValueError):
        box.take()
    assert os.read(r, 10) == b"\0"
    box.close()
    box.post(Feed(seq=3))  # after close: no wake-up byte is written
    os.set_blocking(r, False)
    with pytest.raises(BlockingIOError):
        os.read(r, 10)
    os.close(r)
    os.close(w)


# -- the real viewer in a real terminal ----------------------------------------------------

class Term:
    """The viewer in a pseudo-terminal of cols x rows, its output rendered continuously by pyte."""

    def __init__(self, socket: str, cols: int, rows: int) -> None:
        self.screen = Screen(cols, rows)
        self.stream = Stream(self.screen)
        self.raw = bytearray()
        self.lock = threading.Lock()
        self.master, slave = os.openpty()
        self._winsize(cols, rows)
        env = {k: v for k, v in os.environ.items() if k not in ("LINES", "COLUMNS")}
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "--socket", socket], cwd=REPO,
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**env, "TERM": "xterm-256color"})
        os.close(slave)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the viewer closed its end
                return
            if not data:
                return
            with self.lock:
                self.raw += data
                self.stream.feed(data)

    def _winsize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def resize(self, cols: int, rows: int) -> None:
        """Like a terminal window resized: the kernel sends SIGWINCH to the viewer."""
        with self.lock:
            self.screen.resize(rows, cols)
        self._winsize(cols, rows)

    def lines(self) -> list[str]:
        with self.lock:
            return list(self.screen.display)

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait(self, condition: Callable[[str], object], what: str, timeout: float = 15.0) -> object:
        """Wait until `condition(screen text)` holds; on failure show the screen."""
        try:
            return wait_for(lambda: condition(self.text()), timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen was:\n{self.text()}") from None

    def mark(self) -> int:
        """Where the viewer's output is now, for wait_output()."""
        with self.lock:
            return len(self.raw)

    def wait_output(self, condition: Callable[[bytes], object], mark: int, what: str,
                    timeout: float = 15.0) -> None:
        """Wait until `condition(the viewer's output since mark)` holds."""
        def since() -> bytes:
            with self.lock:
                return bytes(self.raw[mark:])
        try:
            wait_for(lambda: condition(since()), timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the output since was {since()!r}") from None

    def shows(self, text: str, timeout: float = 15.0) -> None:
        self.wait(lambda screen: text in screen, repr(text), timeout)

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def exit_code(self) -> int:
        code = self.proc.wait(timeout=10)
        self.reader.join(timeout=5)
        return code

    def restored(self) -> bool:
        """The terminal is handed back: alternate screen left and cursor shown again."""
        with self.lock:
            tail = bytes(self.raw[-200:])
            return RMCUP in tail and CNORM in tail and not self.screen.cursor.hidden


class Screen(pyte.Screen):
    """pyte 0.8 plus what ncurses sends to an xterm-256color and pyte lacks: REP, SU and SD."""

    last = " "

    def draw(self, data: str) -> None:
        super().draw(data)
        self.last = data[-1:] or self.last

    def repeat_last(self, count: int = 1, **_: object) -> None:
        """REP (CSI n b): the last drawn character n more times."""
        self.draw(self.last * max(count, 1))

    def scroll_up(self, count: int = 1, **_: object) -> None:
        """SU (CSI n S): the scroll region moves up n lines; the cursor stays."""
        self._scroll(count, self.index, lambda top, bottom: bottom)

    def scroll_down(self, count: int = 1, **_: object) -> None:
        """SD (CSI n T): the scroll region moves down n lines; the cursor stays."""
        self._scroll(count, self.reverse_index, lambda top, bottom: top)

    def _scroll(self, count: int, step: Callable[[], None], edge: Callable[[int, int], int]) -> None:
        top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
        x, y = self.cursor.x, self.cursor.y
        self.cursor.y = edge(top, bottom)
        for _ in range(max(count, 1)):
            step()
        self.cursor.x, self.cursor.y = x, y


class Stream(pyte.ByteStream):
    csi = {**pyte.ByteStream.csi, "b": "repeat_last", "S": "scroll_up", "T": "scroll_down"}


@pytest.fixture
def term() -> Iterator[Callable[..., Term]]:
    made: list[Term] = []

    def make(socket: str, cols: int = 80, rows: int = 24) -> Term:
        t = Term(socket, cols, rows)
        made.append(t)
        return t

    yield make
    for t in made:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait(timeout=10)
        os.close(t.master)


# Writes a second to the busy log, three lines each.
RATE = 10


@pytest.fixture
def busy(logmond, short_tmp, writer):
    """A daemon with fast windows and a writer that keeps the alert firing."""
    log = short_tmp / "access.log"
    # Twice as many /report as /api lines, and only /api has 5xx answers: sorting by hits and by
    # 5xx share differ.
    def line(now: int, n: int) -> str:
        return csv_line(now, n, "/api/x", 503 if n % 2 else 200) + csv_line(now, n, "/report/y", 404) * 2

    # Four seconds of that traffic already logged (read with --from-start): two of them complete at
    # once (lateness 1), so summaries have closed and the alert has fired when the viewer connects.
    start = int(time.time()) - 4
    log.write_text("".join(line(start + n // RATE, n) for n in range(4 * RATE)))
    d = logmond("--from-start", *FAST).start()
    writer(log, rate=RATE, line=line).start()
    return d


def seq(screen: str) -> int | None:
    found = re.search(r"seq (\d+)", screen)
    return int(found.group(1)) if found else None


def test_sections_and_the_alert_at_80x24_and_200x50(busy, term):
    small, large = term(busy.socket, 80, 24), term(busy.socket, 200, 50)
    for t in (small, large):
        t.shows("ALERT  high traffic since")
        t.shows("High traffic generated an alert - hits = ")
        t.wait(lambda s: re.search(r"/report +\d+ +66\.7% +100\.0% +0\.0%", s)
               and re.search(r"/api +\d+ +33\.3% +0\.0% +\d+\.\d%", s), "both sections with their shares")
        t.shows(busy.log.name)
    assert len(small.lines()) == 24 and small.lines()[-1].startswith(" q quit")
    assert len(large.lines()) == 50 and large.lines()[-1].startswith(" q quit")
    small.send(b"q")
    large.send(b"\x03")  # Ctrl-C
    assert small.exit_code() == 0 and small.restored()
    assert large.exit_code() == 0 and large.restored()


def whole_dashboard(screen: str, cols: int, rows: int) -> bool:
    """Drawn once, for this size: nothing left over from an earlier size."""
    lines = screen.splitlines()
    return (len(lines) == rows and len(lines[0].rstrip()) == cols - 1 and lines[-1].startswith(" q quit")
            and all(screen.count(part) == 1 for part in ("q quit", "Hits/s", "Top sections", "/report", "Alerts (")))


def test_resizes_redraw_and_a_small_terminal_recovers(busy, term):
    t = term(busy.socket, 80, 24)
    t.wait(lambda s: whole_dashboard(s, 80, 24), "the dashboard at 80x24")
    t.resize(120, 40)
    t.wait(lambda s: whole_dashboard(s, 120, 40), "the dashboard at 120x40")
    t.resize(60, 20)
    t.wait(lambda s: [line for line in s.splitlines() if line.strip()]
           == ["terminal is 60x20: logmonctl watch needs at least 80x24".ljust(60)], "only the bigger-terminal line")
    # 1x1, the smallest: ncurses, once the viewer has given it the new size, clears the terminal
    # and repaints it (ESC [ 2 J). Only then the next size, or both resizes would be seen as one.
    mark = t.mark()
    t.resize(1, 1)
    t.wait_output(lambda out: CLEAR in out, mark, "the viewer to repaint at 1x1")
    t.resize(80, 24)
    t.wait(lambda s: whole_dashboard(s, 80, 24), "the dashboard back at 80x24")
    t.proc.send_signal(signal.SIGTERM)
    assert t.exit_code() == 128 + signal.SIGTERM and t.restored()


CLOCK = re.compile(r"\d\d:\d\d:\d\d")


def check_screen(t: Term, cols: int, rows: int) -> None:
    """What issue 9 asks of every size, on the screen a person sees."""
    t.wait(lambda s: whole_dashboard(s, cols, rows) and "High traffic generated an alert - hits =" in s,
           f"the whole dashboard with the alert at {cols}x{rows}")
    lines = t.lines()
    chart = [line for line in lines if len(line) > LABEL_WIDTH and line[LABEL_WIDTH - 1] in "┤│"]
    axis = next(line for line in lines if line[LABEL_WIDTH - 1:LABEL_WIDTH] == AXIS_CORNER)
    plotted = sum(1 for x in range(LABEL_WIDTH, cols) if any(line[x] != " " for line in chart))
    assert len(chart) >= 6 and plotted >= 0.9 * (cols - LABEL_WIDTH), (plotted, cols)
    assert len(CLOCK.findall(axis)) >= 3 and axis.rstrip().endswith(CLOCK.findall(axis)[-1]), axis
    classes = next(line for line in lines if line.startswith("Status classes"))
    assert [w for w in classes.split() if w.endswith("xx")] == ["1xx", "2xx", "3xx", "4xx", "5xx"]
    assert not any(line.rstrip().endswith("…") for line in lines)


def test_every_size_and_every_resize_between_them(busy, term):
    t = term(busy.socket, 80, 24)
    for cols, rows in ((80, 24), (100, 30), (120, 40), (200, 50), (80, 24)):
        t.resize(cols, rows)
        check_screen(t, cols, rows)
        text = t.text()
        assert ("Status codes" in text) == (cols > 80), "more panels where there is room"
    t.resize(200, 50)
    check_screen(t, 200, 50)
    t.wait(lambda s: "Status codes" in s and "Top hosts" in s, "the codes and hosts panels at 200x50")
    assert sum(1 for line in t.lines() if not line.strip()) < 3, t.text()
    t.send(b"q")
    assert t.exit_code() == 0 and t.restored()


def test_slash_filters_the_sections(busy, term):
    t = term(busy.socket, 80, 24)
    t.wait(lambda s: "  /api" in s and "  /report" in s, "both sections")
    t.send(b"/rep")
    t.shows("filter sections: rep")
    t.send(b"\r")
    t.wait(lambda s: "filter 'rep'" in s and "  /report" in s and "/api" not in s, "only /report")
    t.send(b"\x1b")
    t.wait(lambda s: "  /api" in s and "filter '" not in s, "Esc clears the filter")
    t.send(b"q")
    assert t.exit_code() == 0 and t.restored()


def test_H_switches_the_chart_to_the_last_day_from_history_and_back(busy, term):
    t = term(busy.socket, 120, 40)
    t.shows("Hits/s over the last 10 s of log time")
    t.send(b"H")
    t.shows("from history")
    t.wait(lambda s: "H 24h" in s and "min per column" in s, "the day's chart")
    t.send(b"H")
    t.shows("Hits/s over the last 10 s of log time")
    t.send(b"q")
    assert t.exit_code() == 0 and t.restored()


def test_waits_for_the_daemon_and_follows_its_restarts(logmond, short_tmp, term):
    (short_tmp / "access.log").write_text("")
    d = logmond(*FAST)
    t = term(d.socket)
    t.shows(f"waiting for logmond at {d.socket}")
    t.shows("no logmond socket at")
    d.start()
    first = d.proc.pid
    t.shows(f"pid {first}")
    d.stop()
    t.shows(f"waiting for logmond at {d.socket}", timeout=10)
    d.start()
    t.shows(f"pid {d.proc.pid}", timeout=10)
    assert d.proc.pid != first and "waiting for logmond" not in t.text()
    t.send(b"q")
    assert t.exit_code() == 0 and t.restored()


def test_keys_pause_sort_table_and_help(busy, term):
    t = term(busy.socket, 100, 30)
    t.shows("Top sections, last interval")
    t.wait(lambda s: "/api" in s and s.index("/report") < s.index("/api"), "the busiest section first")
    t.send(b"p")
    t.shows("PAUSED")
    frozen = seq(t.text())
    # Two snapshots published after the pause, the first a second before the second: a view that
    # was not paused would have drawn it by then.
    busy.snapshots(2)
    assert seq(t.text()) == frozen, "a paused view does not move"
    t.send(b"p")
    t.wait(lambda s: (seq(s) or 0) > frozen + 1, "the view moving again")
    t.send(b"t")
    t.shows("Top sections, timeframe")
    t.send(b"s")
    t.shows("s sort: 5xx")
    t.wait(lambda s: s.index("/api") < s.index("/report"), "the section with 5xx first")
    t.send(b"s")
    t.shows("s sort: name")
    t.send(b"?")
    t.shows("p      pause / resume the display")
    t.send(b"?")
    t.wait(lambda s: "pause / resume" not in s, "the help closed")
    t.send(b"q")
    assert t.exit_code() == 0 and t.restored()


def test_the_banner_names_every_firing_rule_in_a_real_terminal(logmond, short_tmp, writer, term):
    cfg = short_tmp / "rules.toml"
    cfg.write_text('[[rule]]\nname = "api_errors"\nmetric = "status_share"\nstatus = "5xx"\nsection = "/api"\n'
                   'window = 5\nabove = 0.3\nseverity = "critical"\n'
                   '[[rule]]\nname = "report_404"\nmetric = "status_share"\nstatus = "404"\nsection = "/report"\n'
                   'window = 5\nabove = 0.5\n')

    def line(now: int, n: int) -> str:
        return csv_line(now, n, "/api/x", 503 if n % 2 else 200) + csv_line(now, n, "/report/y", 404)

    d = logmond("--config", str(cfg), *FAST).start()
    writer(short_tmp / "access.log", rate=RATE, line=line).start()
    t = term(d.socket, 120, 30)
    t.wait(lambda s: re.search(r"ALERT  high traffic since .* · api_errors \d+\.\d\d% · report_404 100\.00%", s),
           "the banner to name both firing rules")
    t.shows("api_errors generated an alert - status_share = ")
    t.shows("report_404 generated an alert - status_share = 100.00%")
    t.send(b"q")
    assert t.exit_code() == 0 and t.restored()
