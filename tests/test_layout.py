"""The live view as data: layout() on snapshots built by the daemon's own code, no terminal involved."""
from __future__ import annotations

from fractions import Fraction

import pytest

from conftest import T0, csv_line
from logmond.core import replies
from logmonctl import render
from logmond.core.monitor import CoreConfig, Monitor
from logmonctl.layout import (AXIS_CORNER, CHART_MIN_ROWS, EIGHTHS, FIXED_ROWS, LABEL_WIDTH, MIN_HEIGHT, MIN_WIDTH,
                              STYLES, THRESHOLD_GLYPH, View, allocate, chart, clock, columns, counts, fields, layout,
                              section_rows, table_header, table_title, TABLE_MIN_WIDTH)
from logmonctl.screen import ASCII, COLORS, MONO
from logmond.core.rulespec import parse_rules
from logmonctl.watch import with_alert
from shared.schema import alert_message

SOCKET = "/run/logmond/logmond.sock"
PATH = "/var/log/nginx/access.log"
SIZES = [(80, 24), (120, 40), (200, 50)]


def traffic(threshold: int = 1, quiet_after: bool = False, rules: tuple = ()) -> dict:
    """Snapshot data after 20 s of 4 hits/s: /report twice (all 404), /api (every other one 503),
    /blog; plus one malformed and one late line. With threshold 1 the alert fires; with
    quiet_after, 30 silent seconds follow and it recovers. `rules`: [[rule]] tables."""
    m = Monitor(CoreConfig(format="csv", threshold=Fraction(threshold), window=10, lateness=1,
                           summary_interval=2, timeframe=20, rules=parse_rules(list(rules))))
    lines = [csv_line(t, t, "/report/y", 404) * 2 + csv_line(t, t, "/api/x", 503 if t % 2 else 200)
             + csv_line(t, t, "/blog/z") for t in range(T0, T0 + 20)]
    m.feed(("".join(lines) + "garbage\n" + csv_line(T0, 1)).encode())
    m.advance(T0 + (60 if quiet_after else 22))
    st = replies.status(m, pid=4242, started_at=1000.0, now=1065.0,
                         file={"path": PATH, "device": 1, "inode": 2, "offset": 3, "size": 3},
                         process={"rss_bytes": 25 * 2**20, "cpu_percent": 3.5, "open_fds": 9}, clients=2,
                         tick=replies.tick_figures([0.003] * 60), notify={"hooks": None, "alertmanager": None})
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
    assert head.split() == ["section", "hits▼", "share", "4xx", "5xx", "share", "of", "hits"], "the bar has a header"
    assert row(lines, "  /report").split()[:5] == ["/report", "4", "50.0%", "100.0%", "0.0%"]
    assert row(lines, "  /api").split()[:5] == ["/api", "2", "25.0%", "0.0%", "50.0%"]
    assert row(lines, "Status classes").split() == ["Status", "classes", "1xx", "0", "2xx", "3", "(37.5%)", "3xx", "0",
                                                    "4xx", "4", "(50.0%)", "5xx", "1", "(12.5%)"]


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


API_ERRORS = {"name": "api_errors", "metric": "status_share", "status": "5xx", "section": "/api", "window": 10,
              "above": 0.4}


def test_the_banner_names_every_firing_rule_red_for_critical_yellow_for_warning():
    both = layout(view(data=traffic(rules=[{**API_ERRORS, "severity": "critical"}])), 120, 24)[2]
    assert [style for _, style in both] == ["alert"]
    assert text(both).startswith(" ALERT  high traffic since 2019-02-07T21:10:02Z, hits = 12 · now 3.60/s")
    assert " · api_errors 55.56%" in text(both)
    warning = layout(view(data=traffic(threshold=1000, rules=[API_ERRORS])), 80, 24)[2]
    assert [style for _, style in warning] == ["warn"]
    assert text(warning).startswith(" WARN  · api_errors 55.56% · traffic 3.60 hits/s over 10s")
    critical = layout(view(data=traffic(threshold=1000, rules=[{**API_ERRORS, "severity": "critical"}])), 80, 24)[2]
    assert [style for _, style in critical] == ["alert"] and text(critical).startswith(" ALERT  · api_errors")


def test_a_rule_alert_push_switches_its_rule_and_leaves_high_traffic_alone():
    data = traffic(threshold=1000, rules=[API_ERRORS])
    event = {"id": 99, "type": "recover", "at": T0 + 21, "rule": "api_errors", "severity": "warning",
             "metric": "status_share", "value": 0.25, "hits": 8}
    after = with_alert(data, {"event": "alert", **event})
    rules = {r["name"]: r for r in after["status"]["rules"]}
    assert (rules["api_errors"]["active"], rules["api_errors"]["value"]) == (False, 0.25)
    assert after["status"]["alert"] == data["status"]["alert"] and after["alerts"][-1] == event
    assert text(layout(view(data=after), 80, 24)[2]).startswith(" OK  3.60 hits/s")


def test_the_alert_history_has_the_exact_messages():
    data = traffic(quiet_after=True)
    lines = screen(view(data=data), 200, 50)
    fired, recovered = data["alerts"]
    assert f"  {alert_message(fired)}" in lines and f"  {alert_message(recovered)}" in lines
    wrapped = " ".join(screen(view(data=data), 80, 24)).split()
    assert " ".join(alert_message(recovered).split()) in " ".join(wrapped), "wrapped, not cut, at 80 columns"


def test_the_chart_has_its_height_and_the_threshold_where_bars_are_below_it():
    rows = chart([0, 0, 5, 10, 20], threshold=8, end=T0 + 5, width=50, height=6)
    assert len(rows) == 7 and all(len(text(r)) == LABEL_WIDTH + 50 for r in rows), "6 rows and the time axis"
    # Scale 0..25 (20 with headroom, rounded up) over 6 rows of 4.17: the threshold 8 is in the
    # second row from the bottom, [4.17, 8.33).
    mark = text(rows[4])[LABEL_WIDTH:]
    assert mark == THRESHOLD_GLYPH * 20 + "▂" * 10 + "█" * 20, "the line where a bar leaves the cell empty"
    assert [s for t, s in rows[4] if THRESHOLD_GLYPH in t] == ["threshold"]
    assert all(THRESHOLD_GLYPH not in text(r) for i, r in enumerate(rows[:6]) if i != 4)
    assert text(rows[0]).startswith("     25 ┤") and text(rows[4]).startswith("      8 ┤")
    assert text(rows[5]).startswith("      0 ┤") and text(rows[5])[LABEL_WIDTH:] == " " * 20 + "█" * 30


def test_the_chart_squeezes_many_seconds_and_stays_in_its_area():
    rows = chart(list(range(120)), threshold=200, end=T0, width=50, height=4)
    assert len(rows) == 5 and max(len(text(r)) for r in rows) <= LABEL_WIDTH + 50
    for width, height in SIZES:
        lines = screen(view(), width, height)
        top = next(i for i, line in enumerate(lines) if line.startswith("Hits/s"))
        axis = next(i for i, line in enumerate(lines) if line[LABEL_WIDTH - 1:LABEL_WIDTH] == AXIS_CORNER)
        assert axis - top - 1 >= CHART_MIN_ROWS
        assert all(line[LABEL_WIDTH - 1] in "┤│" for line in lines[top + 1:axis])


def test_help_overlay():
    lines = screen(view(help=True))
    assert any("p      pause / resume the display" in line for line in lines)
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


# -- issue 9's defects, one test each ------------------------------------------------------------

def alerts(n: int) -> list[dict]:
    """n alternating alert and recovery events, a minute apart."""
    return [{"id": i + 1, "type": "alert" if i % 2 == 0 else "recover", "at": T0 + 60 * i, "hits": 1200 + i,
             "rate": 10.0 + i / 100, "threshold": 10.0, "window": 120} for i in range(n)]


@pytest.mark.parametrize("width,height", [(80, 24), (100, 30), (120, 40), (200, 50)])
def test_1_the_alert_history_shows_whole_messages_newest_last(width, height):
    data = {**traffic(), "alerts": alerts(20)}
    lines = screen(view(data=data), width, height)
    start = next(i for i, line in enumerate(lines) if line.startswith("Alerts (20 recent"))
    history = " ".join(line.strip() for line in lines[start + 1:-1] if line.strip())
    shown = [alert_message(e) for e in data["alerts"] if alert_message(e) in history]
    assert shown and history == " ".join(shown), "only whole messages"
    assert shown == [alert_message(e) for e in data["alerts"][-len(shown):]], "the newest ones, newest last"


def test_2_the_banner_rate_is_the_rate_the_alert_state_was_decided_on():
    # An alert push, merged into the last snapshot (watch.with_alert), brings its own rate.
    data = traffic(quiet_after=True)
    fired = {**alerts(1)[0], "rate": 10.18}
    data["status"] = {**data["status"], "rate": 10.18, "alert": {"active": True, "since": fired["at"],
                                                                  "hits": fired["hits"], "rate": 10.18}}
    banner = screen(view(data=data))[2]
    assert banner.startswith(" ALERT") and "now 10.18/s" in banner


def test_3_the_y_axis_starts_at_0_and_traffic_under_the_threshold_is_drawn():
    rows = chart([1, 2, 1, 2, 3, 1, 2, 1, 2, 1], threshold=10, end=T0, width=60, height=6)
    plot = [text(r)[LABEL_WIDTH:] for r in rows[:6]]
    assert text(rows[5]).startswith("      0 ┤"), "the bottom row is 0, not the threshold"
    assert set(plot[5]) <= set(EIGHTHS[1:]), "every second under the threshold has its bar on the bottom row"
    # Scale 0..20 over 6 rows: 10 is in the fourth row from the bottom, [10, 13.3).
    assert text(rows[2]).startswith("     10 ┤") and plot[2] == THRESHOLD_GLYPH * 60
    lines = screen(view(), 80, 24)
    top = next(i for i, line in enumerate(lines) if line.startswith("Hits/s"))
    assert lines[top + CHART_MIN_ROWS][LABEL_WIDTH - 1] in "┤│", "at least 6 rows at 80x24"


@pytest.mark.parametrize("width,height", SIZES + [(100, 30)])
def test_4_the_chart_fills_its_width_with_time_ticks(width, height):
    data = traffic()
    lines = screen(view(data=data), width, height)
    axis = next(line for line in lines if line[LABEL_WIDTH - 1:LABEL_WIDTH] == AXIS_CORNER)
    plot = width - LABEL_WIDTH
    assert len(columns(data["seconds"], plot)) == plot, "every column right of the axis is plotted"
    end, span = data["window_end"], len(data["seconds"])
    assert axis[LABEL_WIDTH:].startswith(clock(end - span)) and axis.endswith(clock(end - 1)), "both ends"
    assert len([t for t in axis.split("─") if t.strip() not in ("", AXIS_CORNER)]) >= 3, "and the middle"
    per = f"{span / plot:.2f}".rstrip("0").rstrip(".")
    assert f"{per} s per column" in row(lines, "Hits/s")
    # More seconds than columns and fewer: each column the mean hits/s of its share of the seconds.
    assert columns([3, 6], 4) == [3.0, 3.0, 6.0, 6.0] and columns([1, 2, 3], 2) == pytest.approx([4 / 3, 8 / 3])


def test_5_no_field_of_the_counts_line_is_ever_cut():
    data = traffic()
    data["status"] = {**data["status"], "lines": 123_456_789, "parsed": 123_000_000, "malformed": 456_789,
                      "late": 12_345}
    whole = text(counts(view(data=data, lines_per_s=12345.0), data["status"], 500))
    parts = ["lines 123.5M", "(12,345/s)", "parsed 123.0M", "malformed 457k", "late 12,345", "rss 25.0 MiB", "cpu 3.5%"]
    assert [p for p in parts if p in whole] == parts
    for width in range(10, 90):
        line = text(counts(view(data=data, lines_per_s=12345.0), data["status"], width))
        assert len(line) <= width
        words = line.replace("│", " ").split()
        assert " ".join(words) == " ".join(w for p in parts if p in line for w in p.split()), (width, line)
        assert "lines 123.5M" in line or width < 13, "the most needed field stays longest"
    assert fields([(0, [("aaa", "normal")]), (1, [(" bbb", "normal")]), (2, [(" cc", "normal")])], 7) == \
        [("aaa bbb", "normal")]


def test_6_an_empty_interval_says_no_hits_under_its_title():
    data = traffic(quiet_after=True)
    assert data["interval"]["hits"] == 0
    lines = screen(view(data=data))
    assert ": 0 hits" in row(lines, "Top sections") and "  no hits" in lines
    assert not any("no complete summary" in line for line in lines)
    assert "  no complete summary yet" in screen(view(data={**data, "interval": None}))


@pytest.mark.parametrize("quiet", [False, True])
def test_7_the_status_classes_line_always_shows_all_five(quiet):
    for width in (80, 200):
        line = row(screen(view(data=traffic(quiet_after=quiet)), width, 24 if width == 80 else 50), "Status classes")
        assert [w for w in line.split() if w.endswith("xx")] == ["1xx", "2xx", "3xx", "4xx", "5xx"]


def test_8_error_shares_are_coloured_by_thresholds_explained_in_the_help():
    summary = {"hits": 1000, "sections": [[f"/s{i}", 100] for i in range(6)],
               "errors": {"/s0": {"4xx": 0.0, "5xx": 0.005}, "/s1": {"4xx": 0.0, "5xx": 0.023},
                          "/s2": {"4xx": 0.0, "5xx": 0.06}, "/s3": {"4xx": 0.05, "5xx": 0.0},
                          "/s4": {"4xx": 0.12, "5xx": 0.0}, "/s5": {"4xx": 0.3, "5xx": 0.0}}}
    rows = {text(line).split()[0]: line for line in section_rows(summary, "name", "", 80)}

    def style_of(name: str, share: str) -> str:
        """The style of the cell showing `share` (its last character)."""
        cells = [style for t, style in rows[name] for _ in t]
        return cells[text(rows[name]).index(f" {share}") + len(share)]

    assert [style_of(n, s) for n, s in (("/s0", "0.5%"), ("/s1", "2.3%"), ("/s2", "6.0%"))] == ["normal", "warn", "alert"]
    assert [style_of(n, s) for n, s in (("/s3", "5.0%"), ("/s4", "12.0%"), ("/s5", "30.0%"))] == ["normal", "warn",
                                                                                                  "alert"]
    help_lines = layout(view(help=True), 80, 24)
    legend = {style for line in help_lines for _, style in line}
    used = {style for v in (view(), view(data=traffic(quiet_after=True))) for line in layout(v, 200, 50)
            for _, style in line}
    assert used - {"normal", "title", "head"} <= legend, "every colour on the screen is in the legend"
    assert any("5xx >= 5%" in text(line) and "4xx >= 25%" in text(line) for line in help_lines)


def test_10_a_big_terminal_fills_with_more_panels():
    lines = screen(view(), 200, 50)
    assert any("Status codes" in line for line in lines) and any("Top hosts (2 distinct)" in line for line in lines)
    assert any("Sections by 5xx" in line for line in lines)
    assert sum(1 for line in lines if not line.strip()) < 3
    codes = next(line for line in lines if "Status codes" in line)
    assert "Status codes" not in "".join(screen(view(), 80, 24)), "80x24 keeps the core set"
    assert codes.index("Status codes") > 64
    assert any(line.split()[-3:] == ["404", "4", "50.0%"] or "404          4  50.0%" in line for line in lines)


def test_latency_and_vhosts_panels_only_when_the_log_has_them():
    data = traffic()
    plain = screen(view(data=data), 200, 50)
    assert not any("Latency" in line or "Top vhosts" in line for line in plain)
    timed = {"count": 8, "p50": 0.012, "p90": 0.2, "p99": 1.5, "max": 2.0}
    data["interval"] = {**data["interval"], "latency": timed, "section_latency": {"/api": timed},
                        "vhosts": [["shop.example", 6], ["blog.example", 2]]}
    lines = screen(view(data=data), 200, 50)
    assert any("Latency" in line for line in lines) and any("Top vhosts" in line for line in lines)
    assert any("(all)" in line and "12.0 ms" in line and "1.50 s" in line for line in lines)
    assert any("shop.example" in line and "75.0%" in line for line in lines)


def test_the_filter_shows_only_matching_sections_and_the_sort_column_is_marked():
    lines = screen(view(filter="rep"))
    assert [line.split()[0] for line in lines if line.startswith("  /")] == ["/report"]
    assert "filter 'rep'" in row(lines, "Top sections")
    assert "  no section matches 'zzz'" in screen(view(filter="zzz"))
    editing = screen(view(filter="ap", editing=True))
    assert editing[-1].startswith(" filter sections: ap") and "Esc clear" in editing[-1]
    for sort, mark in (("hits", "hits▼"), ("5xx", "5xx▼"), ("name", "section▼")):
        assert mark in row(screen(view(sort=sort)), "  section")


@pytest.mark.parametrize("rows", range(MIN_HEIGHT - 1, 60))
@pytest.mark.parametrize("need", [3, 5, 12, 30])
@pytest.mark.parametrize("history", [[], [1], [2, 2, 2], [3] * 20])
def test_allocate_shares_out_every_row(rows, need, history):
    share = allocate(rows, need, history)
    assert FIXED_ROWS + share.chart + share.panels + share.history == rows
    assert share.chart >= CHART_MIN_ROWS and 1 <= share.history and min(need, 5) <= share.panels <= need
    assert share.history == 1 or share.history in {sum(history[-k:]) for k in range(1, len(history) + 1)}


@pytest.mark.parametrize("width", range(TABLE_MIN_WIDTH, 201, 3))
def test_no_header_is_cut_at_any_width(width):
    head = text(table_header("hits", width)).split()
    assert head[:5] == ["section", "hits▼", "share", "4xx", "5xx"]
    assert " ".join(head[5:]) in ("share of hits", "share", "bar", "")
    title = text(table_title(traffic()["interval"], view(), width))
    assert title.endswith(("8 hits, 4.00/s", "8 hits", "(2s)", "21:10:20Z")), title


def test_H_shows_the_last_day_from_history_at_up_to_15_minutes_a_column():
    end = T0 // 60 * 60
    rates = [float(i % 60 == 0) * 30 + 2 for i in range(1440)]
    for width, height, shown in ((80, 24, "17h45m"), (200, 50, "1d00h")):
        lines = screen(view(chart="24h", history={"end": end, "rates": rates}), width, height)
        title = row(lines, "Hits/s")
        assert f"over the last {shown} from history" in title
        per = min(1440, (width - LABEL_WIDTH) * 15) / (width - LABEL_WIDTH)
        assert f"{per:.2f}".rstrip("0").rstrip(".") + " min per column" in title
        axis = next(line for line in lines if line[LABEL_WIDTH - 1:LABEL_WIDTH] == AXIS_CORNER)
        minutes = min(1440, (width - LABEL_WIDTH) * 15)
        assert axis[LABEL_WIDTH:].startswith(clock(end - minutes * 60)) and axis.endswith(clock(end - 60))
        assert "H 24h" in lines[-1]
    assert "loading" in row(screen(view(chart="24h")), "Hits/s")
