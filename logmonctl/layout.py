"""What `logmonctl watch` shows, as data: layout(view, width, height) -> lines of (text, style).

Pure and curses-free (the Glances idea): the tests read the screen as lists, and the same lines
could be printed as text. Styles are names; screen.py alone turns them into curses attributes.
"""
from __future__ import annotations

import textwrap
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from shared.schema import ALERT, alert_message, iso_utc
from shared.units import count, duration, number, size

Segment = tuple[str, str]  # (text, style name)
Line = list[Segment]

# Smallest terminal the dashboard is laid out for; below it one line asks for more.
MIN_WIDTH, MIN_HEIGHT = 80, 24
# Every style name a Line may carry (screen.py maps each one to curses attributes).
STYLES = ("normal", "title", "head", "alert", "ok", "warn", "dim", "bar", "threshold")
# `s` cycles the sections' order through these; `t` switches between these summaries.
SORTS = ("hits", "5xx", "name")
TABLES = ("interval", "timeframe")

# Chart rows: at least / at most, whatever the terminal height.
CHART_MIN_ROWS, CHART_MAX_ROWS = 4, 16
# Room above the taller of the highest bar and the threshold, so the threshold line is never the top edge.
CHART_HEADROOM = 1.2
# Columns left of the chart for the scale ("  12.5 ┤").
LABEL_WIDTH = 9
# Bar glyphs by eighths of a cell; the threshold line where a bar stays below it.
EIGHTHS = " ▁▂▃▄▅▆▇█"
THRESHOLD_GLYPH = "─"
# The sections' name column: a third of the width within these bounds.
NAME_MIN, NAME_MAX = 12, 40
# Rows taken by everything but the chart, the section rows and the alert history rows:
# title, counts, banner, chart title, table title, table header, status classes, history title, keys.
FIXED_ROWS = 9
# The path in the title keeps at most this share of the width (its tail: the file name).
PATH_SHARE = 0.4

# Columns of the help box drawn over the middle of the screen.
HELP_WIDTH = 64
HELP = (
    "logmonctl watch: the live view of logmond",
    "",
    "  q  quit (Ctrl-C too)",
    "  p  pause / resume the display",
    "  s  sort sections: " + " -> ".join(SORTS),
    "  t  show the last interval / the timeframe rollup",
    "  ?  show / hide this help",
    "",
    "Chart: hits per log second over the alert window, newest",
    f"on the right; {THRESHOLD_GLYPH * 3} marks the alert threshold.",
)


@dataclass(frozen=True)
class View:
    """Everything the screen depends on: the newest snapshot and the viewer's own state."""

    socket: str
    data: dict[str, Any] | None = None  # `data` of the newest snapshot push; None while not connected
    seq: int | None = None
    lines_per_s: float | None = None  # between the last two snapshots; None until there are two
    problem: str = ""  # why we are waiting for the daemon (the client's message)
    paused: bool = False
    sort: str = SORTS[0]
    table: str = TABLES[0]
    help: bool = False


def layout(view: View, width: int, height: int) -> list[Line]:
    """At most `height` lines of at most `width` columns; the last one stays off the bottom-right cell."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        text = f"terminal is {width}x{height}: logmonctl watch needs at least {MIN_WIDTH}x{MIN_HEIGHT}"
        return [fit([(text, "warn")], width - 1)][:height]
    rows = height - 1
    body = waiting(view, width, rows) if view.data is None else dashboard(view, view.data, width, rows)
    if view.help:
        body = overlay(body, [fit([(f" {text}", "title")], HELP_WIDTH, "title") for text in HELP],
                       (width - HELP_WIDTH) // 2)
    return body + [footer(view, width - 1)]


# -- the screens ---------------------------------------------------------------------------

def waiting(view: View, width: int, rows: int) -> list[Line]:
    """Before the first snapshot and after the daemon went away: what we wait for, and why."""
    lines = [fit([(f" waiting for logmond at {view.socket}…", "title")], width, "title")]
    lines += [fit([(f" {text}", "dim")], width) for text in textwrap.wrap(view.problem, width - 2)]
    return pad(lines[:rows], rows)


def dashboard(view: View, data: dict[str, Any], width: int, rows: int) -> list[Line]:
    """Exactly `rows` lines: the fixed ones, then the sections and the alert history as far as they
    need, and the chart between CHART_MIN_ROWS and CHART_MAX_ROWS; the history takes what is left."""
    st = data["status"]
    summary = data[view.table]
    sections = section_rows(summary, view.sort, width)
    history = history_lines(data["alerts"], width)
    free = rows - (FIXED_ROWS - 1)
    chart_rows = max(CHART_MIN_ROWS, min(CHART_MAX_ROWS, free - max(1, len(sections)) - max(1, len(history))))
    section_count = min(max(1, len(sections)), free - chart_rows - 1)
    history_count = free - chart_rows - section_count
    lines = [title(view, st, width), counts(view, st, width), banner(st, width),
             chart_title(data, st, width),
             *chart(data["seconds"], st["threshold"], width - LABEL_WIDTH - 1, chart_rows),
             table_title(summary, view, width), table_header(view.sort, width),
             *pad(sections[:section_count] or [fit([("  no complete summary yet", "dim")], width)], section_count),
             status_classes(summary, width),
             fit([(f"Alerts ({len(data['alerts'])} recent)", "head")], width),
             *pad(history[-history_count:] if history else [fit([("  none", "dim")], width)], history_count)]
    return lines


def overlay(body: list[Line], box: list[Line], left: int) -> list[Line]:
    """`body` with the lines of `box` in place of its middle lines, `left` columns in (the help)."""
    top = max(0, (len(body) - len(box)) // 2)
    out = list(body)
    for i, line in enumerate(box[:len(body)]):
        out[top + i] = [(" " * left, "normal"), *line]
    return out


# -- the parts ------------------------------------------------------------------------------

def title(view: View, st: dict[str, Any], width: int) -> Line:
    path = shorten_left(st["file"]["path"], int(width * PATH_SHARE))
    left = [(f" {path} │ up {duration(st['uptime'])} │ pid {st['pid']} │ seq {view.seq}", "title")]
    right = [(" PAUSED ", "warn")] if view.paused else [(f" logmond {st['version']} ", "title")]
    return spread(left, right, width, "title")


def counts(view: View, st: dict[str, Any], width: int) -> Line:
    """Lines read and what became of them; the daemon's own cost on the right, always visible."""
    proc = st["process"]
    speed = "-" if view.lines_per_s is None else f"{view.lines_per_s:,.0f}"
    left = [(f" lines {count(st['lines'])} ({speed}/s)  parsed {count(st['parsed'])}  ", "normal"),
            (f"malformed {count(st['malformed'])}", "warn" if st["malformed"] else "normal"),
            ("  ", "normal"),
            (f"late {count(st['late'])}", "warn" if st["late"] else "normal")]
    right = [(f" │ rss {size(proc['rss_bytes'])}  cpu {proc['cpu_percent']:.1f}% ", "normal")]
    return spread(left, right, width, "normal")


def banner(st: dict[str, Any], width: int) -> Line:
    """Red while the alert fires (since when, hits at the trigger); green and quiet otherwise."""
    alert, rate = st["alert"], st["rate"]
    if alert["active"]:
        text = f" ALERT  high traffic since {iso_utc(alert['since'])}, hits = {alert['hits']} · now {rate:.2f}/s"
        return fit([(text, "alert")], width, "alert")
    text = f" OK  {rate:.2f} hits/s over {st['window']}s, threshold {number(st['threshold'])}/s"
    return fit([(text, "ok")], width, "ok")


def chart_title(data: dict[str, Any], st: dict[str, Any], width: int) -> Line:
    end, span = data["window_end"], len(data["seconds"])
    when = f"{clock(end - span)}–{clock(end)}Z" if end is not None else "no log time yet"
    return fit([(f"Hits/s, log time {when} ({span} s)", "head"),
                (f"   {THRESHOLD_GLYPH * 3} threshold {number(st['threshold'])}/s", "threshold")], width)


def chart(seconds: list[int], threshold: float, width: int, height: int) -> list[Line]:
    """`height` rows of bars (oldest second left), the scale on the left, the threshold drawn across.

    When there are more seconds than columns each column is their mean; when fewer, each second
    is several columns wide. On the threshold's row a column shows the bar only if it reaches it.
    """
    values = columns(seconds, width)
    top = max(max(values, default=0), threshold) * CHART_HEADROOM or 1.0
    step = top / height
    mark = min(height - 1, int(threshold / step))
    lines = []
    for row in range(height - 1, -1, -1):
        label = number(top) if row == height - 1 else number(threshold) if row == mark else "0" if row == 0 else ""
        line: Line = [(f"{label:>{LABEL_WIDTH - 2}} {'┤' if label else '│'}", "dim")]
        for value in values:
            if row == mark and value < threshold:
                line.append((THRESHOLD_GLYPH, "threshold"))
            else:
                fill = min(8, max(0, round((value - row * step) / step * 8)))
                line.append((EIGHTHS[fill], "bar"))
        lines.append(merge(line))
    return lines


def columns(seconds: list[int], width: int) -> list[float]:
    """One value per chart column: means of groups of seconds, or each second repeated."""
    if not seconds or width <= 0:
        return []
    if len(seconds) <= width:
        return [float(v) for v in seconds for _ in range(width // len(seconds))]
    per = -(-len(seconds) // width)
    return [sum(seconds[i:i + per]) / len(seconds[i:i + per]) for i in range(0, len(seconds), per)]


def table_title(summary: dict[str, Any] | None, view: View, width: int) -> Line:
    which = "last interval" if view.table == "interval" else "timeframe"
    if summary is None:
        return fit([(f"Top sections, {which}", "head")], width)
    start, end = summary["start"], summary["end"]
    return fit([(f"Top sections, {which} {clock(start)}–{clock(end)}Z ({duration(end - start)}):"
                 f" {summary['hits']:,} hits, {summary['rate']:.2f}/s", "head")], width)


def name_width(width: int) -> int:
    return max(NAME_MIN, min(NAME_MAX, width // 3))


def table_header(sort: str, width: int) -> Line:
    nw = name_width(width)
    cells = [(f"  {'section':<{nw}}", "name"), (f" {'hits':>9}", "hits"), (f" {'share':>6}", ""),
             (f" {'4xx':>6}", ""), (f" {'5xx':>6}", "5xx")]
    return fit([(text, "head" if key == sort else "dim") for text, key in cells], width)


def section_rows(summary: dict[str, Any] | None, sort: str, width: int) -> list[Line]:
    """One line per section: hits, share of all hits, 4xx and 5xx shares, and a share bar."""
    if summary is None or not summary["sections"]:
        return []
    total = summary["hits"] or 1
    rows = [(name, hits, summary["errors"].get(name, {"4xx": 0.0, "5xx": 0.0})) for name, hits in summary["sections"]]
    order = {"hits": lambda r: (-r[1], r[0]), "5xx": lambda r: (-r[2]["5xx"], -r[1], r[0]), "name": lambda r: r[0]}
    nw = name_width(width)
    bar_width = width - nw - 2 - 31 - 2
    lines = []
    for name, hits, errors in sorted(rows, key=order[sort]):
        share = hits / total
        lines.append(fit([(f"  {shorten_left(name, nw):<{nw}} {hits:>9,} {share:>6.1%} ", "normal"),
                          (f"{errors['4xx']:>6.1%}", "warn" if errors["4xx"] else "normal"), (" ", "normal"),
                          (f"{errors['5xx']:>6.1%}", "alert" if errors["5xx"] else "normal"), ("  ", "normal"),
                          ("█" * round(share * bar_width), "bar")], width))
    return lines


def status_classes(summary: dict[str, Any] | None, width: int) -> Line:
    """Hits by status class with their shares (2xx green, 4xx yellow, 5xx red)."""
    if summary is None:
        return fit([("status classes: no complete summary yet", "dim")], width)
    total = summary["hits"] or 1
    styles = {"2xx": "ok", "4xx": "warn", "5xx": "alert"}
    line: Line = [("status classes", "head")]
    for cls, n in summary["status"].items():
        line += [("  ", "normal"), (f"{cls} {n:,} ({n / total:.1%})", styles.get(cls, "normal"))]
    return fit(line, width)


def history_lines(events: list[dict[str, Any]], width: int) -> list[Line]:
    """The recent alert events, oldest first, each in the exact alert message, wrapped to the width."""
    lines = []
    for event in events:
        style = "alert" if event["type"] == ALERT else "ok"
        lines += [fit([(text, style)], width)
                  for text in textwrap.wrap(alert_message(event), width - 2, initial_indent="  ",
                                            subsequent_indent="    ")]
    return lines


def footer(view: View, width: int) -> Line:
    keys = f" q quit  p {'resume' if view.paused else 'pause'}  s sort: {view.sort}  t table: {view.table}  ? help"
    return fit([(keys, "dim")], width)


# -- text helpers ---------------------------------------------------------------------------

def fit(line: Line, width: int, fill: str | None = None) -> Line:
    """Cut `line` to `width` columns (padding with `fill`-styled spaces if given).

    Characters that are not exactly one column wide (controls, wide, combining) become '?', so that
    one character is one column and text from the log cannot move the cursor.
    """
    out: Line = []
    room = max(0, width)
    for text, style in line:
        text = "".join(c if one_column(c) else "?" for c in text)[:room]
        if text:
            out.append((text, style))
            room -= len(text)
    if fill is not None and room:
        out.append((" " * room, fill))
    return merge(out)


def spread(left: Line, right: Line, width: int, fill: str | None = None) -> Line:
    """`left` then `right` flush to the right edge; the right part wins when there is no room."""
    right = fit(right, width)
    used = sum(len(text) for text, _ in right)
    return fit([*fit(left, width - used, fill), *right], width)


def one_column(c: str) -> bool:
    return c.isprintable() and not unicodedata.combining(c) and unicodedata.east_asian_width(c) not in "WF"


def merge(line: Line) -> Line:
    """Join neighbouring segments of the same style (fewer curses calls, simpler tests)."""
    out: Line = []
    for text, style in line:
        if out and out[-1][1] == style:
            out[-1] = (out[-1][0] + text, style)
        else:
            out.append((text, style))
    return out


def pad(lines: list[Line], rows: int) -> list[Line]:
    return lines[:rows] + [[] for _ in range(rows - len(lines))]


def shorten_left(text: str, width: int) -> str:
    """Keep the tail (a file or section name matters most at its end)."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))
