"""The live view as data: layout() on snapshots built by the daemon's own code, no terminal involved."""
from __future__ import annotations

from fractions import Fraction

import pytest

from conftest import T0, csv_line
from logmond.core import replies
from logmonctl import render
from logmond.core.monitor import CoreConfig, Monitor
from logmonctl.layout import (CHART_MIN_ROWS, EIGHTHS, LABEL_WIDTH, MIN_HEIGHT, MIN_WIDTH, STYLES, THRESHOLD_GLYPH, View,
                              chart, layout)
from logmonctl.screen import ASCII, COLORS, MONO
from shared.schema import alert_message

SOCKET = "/run/logmond/logmond.sock"
PATH = "/var/log/nginx/access.log"
SIZES = [(80, 24), (120, 40), (200, 50)]


def traffic(threshold: int = 1, quiet_after: bool = False) -> dict:
    """Snapshot data after 20 s of 4 hits/s: /report twice (all 404), /api (every other one 503),
    /blog; plus one malformed and one late line. With threshold 1 the alert fires; with
    quiet_after, 30 silent seconds follow and it recovers."""
    m = Monitor(CoreConfig(format="csv", threshold=Fraction(threshold), window=10, lateness=1,
                           summary_interval=2, timeframe=20))
    lines = [csv_line(t, t, "/report/y", 404) * 2 + csv_line(t, t, "/api/x", 503 if t % 2 else 200)
             + csv_line(t, t, "/blog/z") for t in range(T0, T0 + 20)]
    m.feed(("".join(lines) + "garbage\n" + csv_line(T0, 1)).encode())
    m.advance(T0 + (60 if quiet_after else 22))
    st = replies.status(m, pid=4242, started_at=1000.0, now=1065.0,
                         file={"path": PATH, "device": 1, "inode": 2, "offset": 3, "size": 3},
                         process={"rss_bytes": 25 * 2**20, "cpu_percent": 3.5, "open_fds": 9}, clients=2)
    return replies.push(st, m)


def view(**kw) -> View:
    return View(**{"socket": SOCKET, "data": traffic(), "seq": 42, "lines_per_s": 12.0, **kw})


def text(line: list[tuple[str, str]]) -> str:
    return "".join(t for t, _ in line)


def screen(v: View, width: int = 80, height: int = 24) -> list[str]:
    return [text(line) for line in layout(v, width, height)]


def row(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def check_fits(lines: list[list[tuple[str, str]]], width: int, height: int) -> None:
    assert len(lines) == height
    for line in lines:
        assert len(text(line)) <= width and all(style in STYLES for _, style in line)
    assert len(text(lines[-1])) < width, "the bottom-right cell is never written"


@pytest.mark.parametrize("width,height", SIZES)
@pytest.mark.parametrize("kw", [{}, {"help": True}, {"table": "timeframe", "sort": "5xx"}, {"paused": True},
                                {"data": traffic(quiet_after=True)}, {"data": None, "problem": "x " * 300}])
def test_every_line_fits_and_the_last_one_spares_the_corner(width, height, kw):
    check_fits(layout(view(**kw), width, height), width, height)


def test_the_header_shows_the_file_uptime_and_counts():
    lines = layout(view(), 80, 24)
    assert text(lines[0]).startswith(f" {PATH} │ up 1m05s │ pid 4242 │ seq 42")
    counts = text(lines[1])
    assert counts.startswith(" lines 82 (12/s)  parsed 81  malformed 1  late 1")
    assert counts.rstrip().endswith("│ rss 25.0 MiB  cpu 3.5%")
    assert ("malformed 1", "warn") in lines[1] and ("late 1", "warn") in lines[1]


def test_a_long_path_keeps_its_file_name():
    data = traffic()
    data["status"]["file"]["path"] = "/very/long" * 20 + "/access.log"
    title = screen(view(data=data))[0]
    assert "…" in title and "/access.log │ up" in title and "seq 42" in title


def test_sections_show_hits_shares_and_error_shares():
    lines = screen(view(), 80, 24)
    head = row(lines, "  section")
    assert head.split() == ["section", "hits", "share", "4xx", "5xx"]
    assert row(lines, "  /report").split()[:5] == ["/report", "4", "50.0%", "100.0%", "0.0%"]
    assert row(lines, "  /api").split()[:5] == ["/api", "2", "25.0%", "0.0%", "50.0%"]
    assert row(lines, "status classes").split() == ["status", "classes", "2xx", "3", "(37.5%)", "4xx", "4", "(50.0%)",
                                                    "5xx", "1", "(12.5%)"]


@pytest.mark.parametrize("sort,order", [("hits", ["/report", "/api", "/blog"]), ("5xx", ["/api", "/report", "/blog"]),
                                        ("name", ["/api", "/blog", "/report"])])
def test_sort_orders(sort, order):
    lines = screen(view(sort=sort))
    assert [line.split()[0] for line in lines if line.startswith("  /")] == order
    assert f"s sort: {sort}" in lines[-1]


def test_interval_or_timeframe():
    interval, timeframe = screen(view()), screen(view(table="timeframe"))
    assert row(interval, "Top sections").startswith("Top sections, last interval 21:10:18–21:10:20Z (2s): 8 hits")
    assert row(timeframe, "Top sections").startswith("Top sections, timeframe 21:10:00–21:10:20Z (20s): 80 hits")
    assert row(timeframe, "  /report").split()[1] == "40"
    assert "t table: timeframe" in timeframe[-1]


def test_the_banner_is_red_while_firing_and_green_when_quiet():
    firing = layout(view(), 80, 24)[2]
    assert [style for _, style in firing] == ["alert"] and len(text(firing)) == 80
    assert text(firing).startswith(" ALERT  high traffic since 2019-02-07T21:10:02Z, hits = 12 · now 3.60/s")
    quiet = layout(view(data=traffic(quiet_after=True)), 80, 24)[2]
    assert [style for _, style in quiet] == ["ok"]
    assert text(quiet).startswith(" OK  0.00 hits/s over 10s, threshold 1/s")


def test_the_alert_history_has_the_exact_messages():
    data = traffic(quiet_after=True)
    lines = screen(view(data=data), 200, 50)
    fired, recovered = data["alerts"]
    assert f"  {alert_message(fired)}" in lines and f"  {alert_message(recovered)}" in lines
    wrapped = " ".join(screen(view(data=data), 80, 24)).split()
    assert " ".join(alert_message(recovered).split()) in " ".join(wrapped), "wrapped, not cut, at 80 columns"


def test_the_chart_has_its_height_and_the_threshold_where_bars_are_below_it():
    rows = chart([0, 0, 5, 10, 20], threshold=8, width=50, height=6)
    assert len(rows) == 6 and all(len(text(r)) == LABEL_WIDTH + 50 for r in rows)
    # Scale 0..24 over 6 rows of 4: the threshold 8 is on the third row from the bottom.
    mark = text(rows[3])[LABEL_WIDTH:]
    assert mark == THRESHOLD_GLYPH * 30 + "▄" * 10 + "█" * 10, "the line where bars stay below it, bars elsewhere"
    assert [s for t, s in rows[3] if THRESHOLD_GLYPH in t] == ["threshold"]
    assert all(THRESHOLD_GLYPH not in text(r) for i, r in enumerate(rows) if i != 3)
    assert text(rows[0]).startswith("     24 ┤") and text(rows[3]).startswith("      8 ┤")
    assert text(rows[-1])[LABEL_WIDTH:] == " " * 20 + "█" * 30


def test_the_chart_squeezes_many_seconds_and_stays_in_its_area():
    rows = chart(list(range(120)), threshold=200, width=50, height=4)
    assert len(rows) == 4 and max(len(text(r)) for r in rows) <= LABEL_WIDTH + 50
    for width, height in SIZES:
        lines = screen(view(), width, height)
        top = next(i for i, line in enumerate(lines) if line.startswith("Hits/s"))
        bottom = next(i for i, line in enumerate(lines) if line.startswith("Top sections"))
        assert bottom - top - 1 >= CHART_MIN_ROWS
        assert all(line[LABEL_WIDTH - 1] in "┤│" for line in lines[top + 1:bottom])


def test_help_overlay():
    lines = screen(view(help=True))
    assert any("p  pause / resume the display" in line for line in lines)
    assert lines[-1].startswith(" q quit")
    assert not any("pause / resume" in line for line in screen(view()))


@pytest.mark.parametrize("width,height", [(MIN_WIDTH - 1, MIN_HEIGHT), (MIN_WIDTH, MIN_HEIGHT - 1), (1, 1), (0, 0),
                                          (500, 3)])
def test_a_small_terminal_gets_one_line_asking_for_more(width, height):
    lines = layout(view(), width, height)
    message = f"terminal is {width}x{height}: logmonctl watch needs at least 80x24"
    assert lines == ([[(message[:width - 1], "warn")]] if width > 1 else [[]])[:height]


def test_before_the_first_snapshot_it_says_what_it_waits_for():
    lines = screen(View(socket=SOCKET, problem=f"no logmond socket at {SOCKET}: is logmond running?"))
    assert lines[0].startswith(f" waiting for logmond at {SOCKET}…")
    assert lines[1] == f" no logmond socket at {SOCKET}: is logmond running?"
    assert lines[-1].startswith(" q quit") and len(lines) == 24


def test_names_from_the_log_cannot_move_the_cursor_or_overflow():
    data = traffic()
    data["interval"]["sections"][0][0] = "/\x1b[2J\tx日本e\u0301"
    lines = layout(view(data=data), 80, 24)
    check_fits(lines, 80, 24)
    assert any("/?[2J?x??e?" in text(line) for line in lines), "one character, one column"


def test_every_style_has_curses_attributes():
    assert set(COLORS) == set(MONO) == set(STYLES)


def test_every_glyph_has_an_ascii_stand_in_for_other_locales():
    views = [view(), view(help=True), view(data=traffic(quiet_after=True)), View(socket=SOCKET, problem="gone")]
    used = {c for v in views for line in layout(v, 200, 50) for t, _ in line for c in t if not c.isascii()}
    assert used | set(EIGHTHS.strip()) <= {chr(c) for c in ASCII}


def test_a_threshold_reads_the_same_in_the_viewer_as_in_status():
    """One number formatter for every front end: 10.5 is 10.5 in the banner, the chart and status."""
    data = traffic()
    data["status"] = {**data["status"], "threshold": 10.5, "rate": 3.0,
                      "alert": {"active": False, "since": None, "hits": None, "rate": None}}
    screen = [text(line) for line in layout(view(data=data), 80, 24)]
    assert any("threshold 10.5/s" in line for line in screen), screen
    assert not any("threshold 10/s" in line for line in screen)
    assert "threshold 10.5" in render.status_text(data["status"])
