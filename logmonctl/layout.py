"""What `logmonctl watch` shows, as data: layout(view, width, height) -> lines of (text, style).

Pure and curses-free (the Glances idea): the tests read the screen as lists, and the same lines
could be printed as text. Styles are names; screen.py alone turns them into curses attributes.

The screen, top to bottom: header, counts, banner; the chart of hits/s over the alert window with
its time axis; the sections table with, where the width allows, more panels beside it (exact
status codes, hosts, sections by 5xx, latency, vhosts); the status classes; the alert history;
the keys. `allocate` shares the rows out; the chart takes whatever the rest does not need, so no
row is left blank.
"""
from __future__ import annotations

import math
import textwrap
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

from shared.schema import ALERT, CRITICAL, HIGH_TRAFFIC, alert_message, iso_utc, metric_text
from shared.units import count, duration, latency, number, size

Segment = tuple[str, str]  # (text, style name)
Line = list[Segment]

# Smallest terminal the dashboard is laid out for; below it one line asks for more.
MIN_WIDTH, MIN_HEIGHT = 80, 24
# Every style name a Line may carry (screen.py maps each one to curses attributes).
STYLES = ("normal", "title", "head", "alert", "ok", "warn", "dim", "bar", "threshold")
# `s` cycles the sections' order through these; `t` switches between these summaries.
SORTS = ("hits", "5xx", "name")
TABLES = ("interval", "timeframe")
# `H` switches the chart between the live seconds of the alert window and the last day from the
# daemon's minute history, at 1 to MAX_MINUTES_PER_COLUMN minutes a column as the width allows.
CHARTS = ("live", "24h")
HISTORY_MINUTES = 1440
MAX_MINUTES_PER_COLUMN = 15
# Seconds of snapshots the lines/s figure in the counts line is averaged over.
RATE_SPAN = 10.0

# Rows of everything but the chart, the panels and the alert history: header, counts, banner,
# chart title, time axis, status classes, alert history title (the keys line is apart).
FIXED_ROWS = 7
# The chart's rows, at least (80x24 gives it exactly these); it takes every row nobody else needs.
CHART_MIN_ROWS = 6
# The sections table's rows (title and column header included): at least, and before the alert
# history gets more than its newest message.
TABLE_MIN_ROWS, TABLE_WANT_ROWS = 5, 7
# Alert messages shown before the panels get the rest of their rows; then more, while the
# history takes at most 1/HISTORY_SHARE of the screen (the chart gets the rest).
HISTORY_WANT = 3
HISTORY_SHARE = 5
# The top of the chart's scale is at least this much above the taller of the highest column and
# the threshold, then rounded up to a round number, so the threshold line is never the top edge.
CHART_HEADROOM = 1.25
# Columns left of the plot for the scale ("  12.5 ┤").
LABEL_WIDTH = 9
# Bar glyphs by eighths of a cell; the threshold line where a bar leaves its cell empty.
EIGHTHS = " ▁▂▃▄▅▆▇█"
THRESHOLD_GLYPH = "─"
# The time axis: its corner, and at least this many columns between two time labels.
AXIS_CORNER = "└"
TICK_SPACING = 24
# The sections table: at least this wide when panels stand beside it; its name column a third of
# its width within these bounds.
TABLE_MIN_WIDTH = 64
NAME_MIN, NAME_MAX = 12, 40
# A panel beside the table: at least this wide, one blank column before it.
PANEL_MIN_WIDTH = 32
# The path in the title keeps at most this share of the width (its tail: the file name).
PATH_SHARE = 0.4
# Marks the column the sections are sorted by.
SORT_MARK = "▼"
# Shares of all hits at which 4xx and 5xx answers are coloured as a warning, then as an alert.
ERROR_COLOURS = {"4xx": (0.10, 0.25), "5xx": (0.01, 0.05)}
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
CLASS_STYLES = {"2xx": "ok", "4xx": "warn", "5xx": "alert"}
# Characters a section filter may hold.
FILTER_MAX = 40

# Columns of the help box drawn over the middle of the screen.
HELP_WIDTH = 66


def _help() -> list[Line]:
    """The help box: the keys, then a legend of every colour the screen uses."""
    warn4, alert4 = ERROR_COLOURS["4xx"]
    warn5, alert5 = ERROR_COLOURS["5xx"]
    keys = [
        "logmonctl watch: the live view of logmond",
        "",
        "  q      quit (Ctrl-C too)",
        "  p      pause / resume the display",
        "  s      sort sections: " + " -> ".join(SORTS) + f" ({SORT_MARK} marks the column)",
        "  t      show the last interval / the timeframe rollup",
        "  /      filter sections by a substring (Enter keeps it)",
        "  Esc    clear the filter",
        "  H      chart: live seconds / the last day from history",
        "  h ?    show / hide this help",
        "",
        "Chart: hits per log second over the alert window, newest on the",
        "right edge; each column the mean of its seconds.",
        "",
        "Colours:",
    ]
    legend = [
        ("ALERT", "alert", f"alert firing; 5xx >= {alert5:.0%}, 4xx >= {alert4:.0%} of a section's hits"),
        ("warn", "warn", f"5xx >= {warn5:.0%}, 4xx >= {warn4:.0%}; malformed or late lines"),
        ("OK", "ok", "alert quiet or recovered; 2xx answers"),
        ("█▆▃", "bar", "hits per second; share of hits"),
        (THRESHOLD_GLYPH * 3, "threshold", "the alert threshold, at its height"),
        ("text", "dim", "scales, labels, nothing to see"),
    ]
    lines = [[(f" {text}", "title")] for text in keys]
    lines += [[("  ", "title"), (f" {sample:<5} ", style), (f" {meaning}", "title")] for sample, style, meaning in legend]
    return [fit(line, HELP_WIDTH, "title") for line in lines]


@dataclass(frozen=True)
class View:
    """Everything the screen depends on: the newest snapshot and the viewer's own state."""

    socket: str
    data: dict[str, Any] | None = None  # `data` of the newest snapshot push; None while not connected
    seq: int | None = None
    lines_per_s: float | None = None  # averaged over RATE_SPAN seconds; None until two snapshots
    problem: str = ""  # why we are waiting for the daemon (the client's message)
    paused: bool = False
    sort: str = SORTS[0]
    table: str = TABLES[0]
    help: bool = False
    filter: str = ""  # only sections whose name holds it
    editing: bool = False  # keys go to the filter
    chart: str = CHARTS[0]
    # The last day from history: {"end": epoch seconds, "rates": hits/s per minute, oldest first}.
    history: dict[str, Any] | None = None


def layout(view: View, width: int, height: int) -> list[Line]:
    """At most `height` lines of at most `width` columns; the last one stays off the bottom-right cell."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        text = f"terminal is {width}x{height}: logmonctl watch needs at least {MIN_WIDTH}x{MIN_HEIGHT}"
        return [fit([(text, "warn")], width - 1)][:height]
    rows = height - 1
    body = waiting(view, width, rows) if view.data is None else dashboard(view, view.data, width, rows)
    if view.help:
        body = overlay(body, _help(), (width - HELP_WIDTH) // 2)
    return body + [footer(view, width - 1)]


# -- the screens ---------------------------------------------------------------------------

def waiting(view: View, width: int, rows: int) -> list[Line]:
    """Before the first snapshot and after the daemon went away: what we wait for, and why."""
    lines = [fit([(f" waiting for logmond at {view.socket}…", "title")], width, "title")]
    lines += [fit([(f" {text}", "dim")], width) for text in textwrap.wrap(view.problem, width - 2)]
    return pad(lines[:rows], rows)


@dataclass(frozen=True)
class Rows:
    """How `allocate` shared the rows out."""

    chart: int
    panels: int
    history: int


def allocate(rows: int, panels_need: int, history_sizes: list[int]) -> Rows:
    """Share `rows` between the chart, the panels (sections table and its neighbours) and the
    alert history (`history_sizes`: lines per message, oldest first): each gets its minimum, then
    the table its first rows, the history its newest few whole messages, the panels all they
    need, the history the rest of its messages; the chart takes what is left."""
    free = rows - FIXED_ROWS - CHART_MIN_ROWS
    panels = min(panels_need, TABLE_MIN_ROWS)
    free -= panels
    newest = list(reversed(history_sizes))

    def whole(limit: int, budget: int) -> int:
        used = 0
        for n in newest[:limit]:
            if used + n > budget:
                break
            used += n
        return used

    history = max(1, whole(1, free))
    free -= history
    grow = max(0, min(panels_need, TABLE_WANT_ROWS) - panels)
    panels, free = panels + min(grow, max(free, 0)), free - min(grow, max(free, 0))
    more = whole(HISTORY_WANT, history + max(free, 0))
    free, history = free - max(0, more - history), max(history, more)
    grow = max(0, panels_need - panels)
    panels, free = panels + min(grow, max(free, 0)), free - min(grow, max(free, 0))
    more = whole(len(newest), max(history, min(history + max(free, 0), rows // HISTORY_SHARE)))
    free, history = free - max(0, more - history), max(history, more)
    return Rows(CHART_MIN_ROWS + max(free, 0), panels, history)


def dashboard(view: View, data: dict[str, Any], width: int, rows: int) -> list[Line]:
    """Exactly `rows` lines (see allocate)."""
    st = data["status"]
    summary = data[view.table]
    extras = panels(summary, width)
    need = panels_height(len(sections_table(summary, view, width)), extras, panel_columns(width))
    history = history_blocks(data["alerts"], width)
    share = allocate(rows, need, [len(b) for b in history])
    shown = [line for block in newest_whole(history, share.history) for line in block]
    return [title(view, st, width), counts(view, st, width), banner(st, width),
            *chart_part(view, data, width, share.chart),
            *side_by_side(lambda w: sections_table(summary, view, w), extras, width, share.panels),
            status_classes(summary, width),
            fit([(f"Alerts ({len(data['alerts'])} recent, newest last)", "head")], width),
            *pad(shown or [fit([("  none", "dim")], width)], share.history)]


def overlay(body: list[Line], box: list[Line], left: int) -> list[Line]:
    """`body` with the lines of `box` in place of its middle lines, `left` columns in (the help)."""
    top = max(0, (len(body) - len(box)) // 2)
    out = list(body)
    for i, line in enumerate(box[:len(body)]):
        out[top + i] = [(" " * left, "normal"), *line]
    return out


# -- header, counts, banner -----------------------------------------------------------------

def title(view: View, st: dict[str, Any], width: int) -> Line:
    path = shorten_left(st["file"]["path"], int(width * PATH_SHARE))
    right = [(" PAUSED ", "warn")] if view.paused else [(f" logmond {st['version']} ", "title")]
    left = fields([(0, [(f" {path}", "title")]), (2, [(f" │ up {duration(st['uptime'])}", "title")]),
                   (3, [(f" │ pid {st['pid']}", "title")]), (4, [(f" │ seq {view.seq}", "title")])],
                  width - sum(len(text) for text, _ in right))
    return spread(left, right, width, "title")


def counts(view: View, st: dict[str, Any], width: int) -> Line:
    """Lines read and what became of them, and the daemon's own cost; fields drop out whole,
    the least needed first, when the width is short."""
    proc = st["process"]
    speed = "-" if view.lines_per_s is None else f"{view.lines_per_s:,.0f}"
    return fields([
        (0, [(f" lines {count(st['lines'])}", "normal")]),
        (3, [(f" ({speed}/s)", "normal")]),
        (4, [(f"  parsed {count(st['parsed'])}", "normal")]),
        (1, [("  ", "normal"), (f"malformed {count(st['malformed'])}", "warn" if st["malformed"] else "normal")]),
        (2, [("  ", "normal"), (f"late {count(st['late'])}", "warn" if st["late"] else "normal")]),
        (5, [(f"  │ rss {size(proc['rss_bytes'])}", "normal")]),
        (6, [(f"  cpu {proc['cpu_percent']:.1f}%", "normal")]),
    ], width)


def banner(st: dict[str, Any], width: int) -> Line:
    """Red while the high-traffic alert or a critical rule fires, yellow while only warning rules
    do, green and quiet otherwise; every firing rule is named with its value.

    The rate is the one of the second the alert state was decided on (both come from the same
    snapshot or the same alert push), so the two never disagree.
    """
    alert, rate, threshold = st["alert"], st["rate"], number(st["threshold"])
    firing = [r for r in st.get("rules", []) if r["active"] and r["name"] != HIGH_TRAFFIC]
    style = "alert" if alert["active"] or any(r["severity"] == CRITICAL for r in firing) else "warn"
    named = [(1, [(f" · {r['name']}" + ("" if r["value"] is None else f" {metric_text(r['metric'], r['value'])}"),
                   style)]) for r in firing]
    if alert["active"]:
        parts = [(0, [(" ALERT  high traffic", style)]), (2, [(f" since {iso_utc(alert['since'])}", style)]),
                 (3, [(f", hits = {alert['hits']}", style)]), (0, [(f" · now {rate:.2f}/s", style)]),
                 (4, [(f" over {st['window']}s", style)]), (5, [(f", threshold {threshold}/s", style)]), *named]
        return fit(fields(parts, width), width, style)
    if firing:
        parts = [(0, [(" ALERT " if style == "alert" else " WARN ", style)]), *named,
                 (2, [(f" · traffic {rate:.2f} hits/s", style)]), (4, [(f" over {st['window']}s", style)])]
        return fit(fields(parts, width), width, style)
    parts = [(0, [(f" OK  {rate:.2f} hits/s", "ok")]), (1, [(f" over {st['window']}s", "ok")]),
             (2, [(f", threshold {threshold}/s", "ok")])]
    return fit(fields(parts, width), width, "ok")


# -- the chart ------------------------------------------------------------------------------

def chart_part(view: View, data: dict[str, Any], width: int, rows: int) -> list[Line]:
    """The chart's title, its rows and its time axis: the live seconds, or the last day."""
    threshold, plot = data["status"]["threshold"], width - LABEL_WIDTH
    if view.chart == "live":
        return [chart_title(data, width), *chart(data["seconds"], threshold, data["window_end"], plot, rows)]
    minutes = min(HISTORY_MINUTES, plot * MAX_MINUTES_PER_COLUMN)
    legend = (3, [(f"   {THRESHOLD_GLYPH * 3} threshold {number(threshold)}/s", "threshold")])
    if view.history is None:
        title = fields([(0, [("Hits/s from history", "head")]), (1, [(", loading…", "dim")]), legend], width)
        return [title, *chart([], threshold, None, plot, rows)]
    rates = view.history["rates"][-minutes:]
    title = fields([(0, [("Hits/s", "head")]), (2, [(f" over the last {duration(len(rates) * 60)} from history", "head")]),
                    (1, [(f", {number(len(rates) / plot)} min per column", "head")]), legend], width)
    return [title, *chart(rates, threshold, view.history["end"], plot, rows, per=60)]


def chart_title(data: dict[str, Any], width: int) -> Line:
    span = len(data["seconds"])
    per = span / max(1, width - LABEL_WIDTH)
    return fields([(0, [("Hits/s", "head")]),
                   (2, [(f" over the last {span} s of log time", "head")]),
                   (1, [(f", {number(per)} s per column", "head")]),
                   (3, [(f"   {THRESHOLD_GLYPH * 3} threshold {number(data['status']['threshold'])}/s", "threshold")])],
                  width)


def chart(seconds: list[float], threshold: float, end: int | None, width: int, height: int,
          per: int = 1) -> list[Line]:
    """`height` rows of bars over `width` columns (hits/s of each `per` seconds, oldest left, newest
    at the right edge), the scale on the left from 0 on the bottom row, the threshold line on the
    row that holds it wherever a bar leaves that cell empty; then the time axis."""
    values = columns(seconds, width)
    top = nice(max(max(values, default=0.0), threshold) * CHART_HEADROOM)
    step = top / height
    mark = min(height - 1, int(threshold / step))
    lines = []
    for row in range(height - 1, -1, -1):
        label = (number(top) if row == height - 1 else "0" if row == 0 else
                 number(threshold) if row == mark else "")
        line: Line = [(f"{label:>{LABEL_WIDTH - 2}} {'┤' if label else '│'}", "dim")]
        for value in values:
            fill = min(8, max(0, round((value - row * step) / step * 8)))
            if row == mark and fill == 0:
                line.append((THRESHOLD_GLYPH, "threshold"))
            else:
                line.append((EIGHTHS[fill], "bar"))
        lines.append(merge(line))
    return lines + [time_axis(len(seconds), end, width, per)]


def nice(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least x (a readable scale top)."""
    if x <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= x * (1 - 1e-9))


def columns(seconds: list[float], width: int) -> list[float]:
    """`width` values, column c the mean hits/s over its share [c, c + 1) * len / width of the
    seconds (a second split between two columns counts in each for its part): the plot always
    fills its width, whether there are more seconds than columns or fewer."""
    n = len(seconds)
    if not n or width <= 0:
        return []
    prefix = [0]
    for v in seconds:
        prefix.append(prefix[-1] + v)

    def upto(x: float) -> float:
        i = min(int(x), n - 1)
        return prefix[i] + (x - i) * seconds[i]

    per = n / width
    return [(upto(min(n, (c + 1) * per)) - upto(c * per)) / per for c in range(width)]


def time_axis(span: int, end: int | None, width: int, per: int = 1) -> Line:
    """The x axis under the plot: the time (UTC) of the values at both ends and between, `span`
    values of `per` seconds ending at `end`."""
    axis = [THRESHOLD_GLYPH] * width
    if end is not None and span and width >= 8:
        ticks = max(2, width // TICK_SPACING)
        for k in range(ticks + 1):
            col = round(k * (width - 1) / ticks)
            # The ends name the first and the last value; a tick between, the value under it.
            index = 0 if k == 0 else span - 1 if k == ticks else min(span - 1, int((col + 0.5) * span / width))
            text = clock(end - (span - index) * per)
            start = min(max(0, col - len(text) // 2), width - len(text))
            axis[start:start + len(text)] = text
    return [(f"{'':>{LABEL_WIDTH - 1}}{AXIS_CORNER}" + "".join(axis), "dim")]


# -- the sections table and the panels beside it ---------------------------------------------

def sections_table(summary: dict[str, Any] | None, view: View, width: int) -> list[Line]:
    """Title, column header, one line per (matching) section; a note when there is none."""
    lines = [table_title(summary, view, width), table_header(view.sort, width)]
    if summary is None:
        return lines + [fit([("  no complete summary yet", "dim")], width)]
    if not summary["hits"]:
        return lines + [fit([("  no hits", "dim")], width)]
    rows = section_rows(summary, view.sort, view.filter, width)
    if not rows:
        return lines + [fit([(f"  no section matches {view.filter!r}", "dim")], width)]
    return lines + rows


def table_title(summary: dict[str, Any] | None, view: View, width: int) -> Line:
    which = "last interval" if view.table == "interval" else "timeframe"
    shown = [(1, [(f"  filter {view.filter!r}", "warn")])] if view.filter else []
    if summary is None:
        return fields([(0, [(f"Top sections, {which}", "head")]), *shown], width)
    start, end = summary["start"], summary["end"]
    return fields([(0, [(f"Top sections, {which}", "head")]),
                   (2, [(f" {clock(start)}–{clock(end)}Z", "head")]), (3, [(f" ({duration(end - start)})", "head")]),
                   (1, [(f": {summary['hits']:,} hits", "head")]), (4, [(f", {summary['rate']:.2f}/s", "head")]),
                   *shown], width)


def name_width(width: int) -> int:
    return max(NAME_MIN, min(NAME_MAX, width // 3))


# The table's figure columns: key, header, width.
TABLE_COLUMNS = (("hits", "hits", 10), ("share", "share", 7), ("4xx", "4xx", 7), ("5xx", "5xx", 7))


# The bar column's header, the longest that fits.
BAR_HEADERS = ("share of hits", "share", "bar")


def table_header(sort: str, width: int) -> Line:
    """Column names; the one the rows are sorted by is marked and bright."""
    nw = name_width(width)

    def head(key: str, text: str) -> str:
        return text + SORT_MARK if key == sort else text

    cells = [(f"  {head('name', 'section'):<{nw}}", "name")]
    cells += [(f"{head(key, text):>{w}}", key) for key, text, w in TABLE_COLUMNS]
    room = width - sum(len(text) for text, _ in cells) - 2
    cells.append((next((f"  {bar}" for bar in BAR_HEADERS if len(bar) <= room), ""), ""))
    return fit([(text, "head" if key == sort else "dim") for text, key in cells], width)


def error_style(cls: str, share: float) -> str:
    """The colour of a 4xx or 5xx share (ERROR_COLOURS)."""
    warn, alert = ERROR_COLOURS[cls]
    return "alert" if share >= alert else "warn" if share >= warn else "normal"


def section_rows(summary: dict[str, Any], sort: str, needle: str, width: int) -> list[Line]:
    """One line per section holding `needle`: hits, share of all hits, 4xx and 5xx shares, a bar."""
    total = summary["hits"] or 1
    rows = [(name, hits, summary["errors"].get(name, {"4xx": 0.0, "5xx": 0.0}))
            for name, hits in summary["sections"] if needle in name]
    order = {"hits": lambda r: (-r[1], r[0]), "5xx": lambda r: (-r[2]["5xx"], -r[1], r[0]), "name": lambda r: r[0]}
    nw = name_width(width)
    bar_width = max(0, width - nw - 2 - sum(w for _, _, w in TABLE_COLUMNS) - 2)
    lines = []
    for name, hits, errors in sorted(rows, key=order[sort]):
        share = hits / total
        lines.append(fit([(f"  {shorten_left(name, nw):<{nw}}{hits:>10,}{share:>7.1%}", "normal"),
                          (f"{errors['4xx']:>7.1%}", error_style("4xx", errors["4xx"])),
                          (f"{errors['5xx']:>7.1%}", error_style("5xx", errors["5xx"])), ("  ", "normal"),
                          ("█" * max(1, round(share * bar_width)), "bar")], width))
    return lines


@dataclass(frozen=True)
class Panel:
    """A small table beside the sections: a title and its rows (each a Line of `width` columns)."""

    title: str
    rows: Callable[[int], list[Line]]
    size: int  # rows it has

    @property
    def need(self) -> int:
        return 1 + self.size

    def draw(self, width: int, height: int) -> list[Line]:
        shown = self.rows(width)[:height - 1]
        more = f", {len(shown)} of {self.size}" if len(shown) < self.size else ""
        return [fit([(self.title + more, "head")], width), *shown]


def counted(pairs: list[tuple[str, int]], total: int, style: Callable[[str], str] = lambda key: "normal",
            ) -> Callable[[int], list[Line]]:
    """Rows of `name  hits  share` for a panel."""
    def rows(width: int) -> list[Line]:
        nw = min(max(4, width - 19), max(len(str(name)) for name, _ in pairs) + 1)
        return [fit([(f"  {shorten_left(str(name), nw - 1):<{nw}}", style(str(name))),
                     (f"{n:>10,}{n / (total or 1):>7.1%}", "normal")], width) for name, n in pairs]
    return rows


def panels(summary: dict[str, Any] | None, width: int) -> list[Panel]:
    """The panels beside the sections table, in the order they give way: exact status codes, top
    hosts, sections by 5xx answers, latency per section (when the log has request times), top
    vhosts (when it has them). None when the width leaves no room for one."""
    if summary is None or not summary["hits"] or width < TABLE_MIN_WIDTH + 1 + PANEL_MIN_WIDTH:
        return []
    hits = summary["hits"]
    out = []
    codes = summary.get("codes", [])
    if codes:
        out.append(Panel("Status codes", counted(codes, hits, lambda c: CLASS_STYLES.get(f"{c[0]}xx", "normal")),
                         len(codes)))
    if summary["top_hosts"]:
        distinct = f"{'' if summary['hosts_exact'] else '~'}{summary['hosts']:,}"
        out.append(Panel(f"Top hosts ({distinct} distinct)", counted(summary["top_hosts"], hits),
                         len(summary["top_hosts"])))
    errors = summary.get("sections_5xx", [])
    if errors:
        out.append(Panel("Sections by 5xx (share of 5xx)", counted(errors, summary["status"].get("5xx", 0)),
                         len(errors)))
    if summary.get("latency"):
        out.append(Panel("Latency (request time)", latency_rows(summary), 2 + len(summary["section_latency"])))
    if summary.get("vhosts"):
        out.append(Panel("Top vhosts", counted(summary["vhosts"], hits), len(summary["vhosts"])))
    return out


def latency_rows(summary: dict[str, Any]) -> Callable[[int], list[Line]]:
    """A column header, then rows of `section  p50  p99`, all requests first."""
    pairs = [("(all)", summary["latency"]), *summary["section_latency"].items()]

    def rows(width: int) -> list[Line]:
        nw = min(max(4, width - 20), max(len(name) for name, _ in pairs) + 1)
        return [fit([(f"  {'':<{nw}}{'p50':>9}{'p99':>9}", "dim")], width),
                *(fit([(f"  {shorten_left(name, nw - 1):<{nw}}{latency(t['p50']):>9}{latency(t['p99']):>9}",
                        "normal")], width) for name, t in pairs)]
    return rows


def place(extras: list[Panel], height: int, columns: int) -> list[list[Panel]]:
    """Panels into at most `columns` columns of `height` rows, in order: a panel goes under the one
    before it if it fits whole there, else it starts a column; with no column left, it goes under
    cut short if 3 rows are left for it, and the panels after it are not shown."""
    stacks: list[list[Panel]] = []
    room = 0
    for panel in extras:
        if stacks and room >= panel.need:
            stacks[-1].append(panel)
        elif len(stacks) < columns:
            stacks.append([panel])
            room = height
        elif stacks and room >= 3:
            stacks[-1].append(panel)
        else:
            break
        room -= min(panel.need, room)
    return stacks


def panels_height(table: int, extras: list[Panel], columns: int) -> int:
    """The fewest rows that show the table (`table` rows) and every panel whole (see place)."""
    if not extras or not columns:
        return table
    height = max(table, *(p.need for p in extras))
    while sum(map(len, place(extras, height, columns))) < len(extras) or any(
            sum(p.need for p in stack) > height for stack in place(extras, height, columns)):
        height += 1
    return height


def side_by_side(table: Callable[[int], list[Line]], extras: list[Panel], width: int, height: int) -> list[Line]:
    """`height` lines: the sections table (drawn by `table` for a width) on the left and, in columns
    to its right, as many of the panels as fit (see place)."""
    stacks = place(extras, height, panel_columns(width))
    if not stacks:
        return pad(table(width)[:height], height)
    # What is left beyond the minimum widths goes half to the table, half to the panels.
    spare = width - TABLE_MIN_WIDTH - len(stacks) * (PANEL_MIN_WIDTH + 1)
    table_width = TABLE_MIN_WIDTH + spare // 2
    panel_width = (width - table_width) // len(stacks) - 1
    left = [fit(line, table_width, "normal") for line in pad(table(table_width)[:height], height)]
    columns = []
    for stack in stacks:
        lines: list[Line] = []
        for panel in stack:
            lines += panel.draw(panel_width, height - len(lines))
        columns.append([fit(line, panel_width, "normal") for line in pad(lines[:height], height)])
    return [merge([*left[y], *[seg for col in columns for seg in [(" ", "normal"), *col[y]]]]) for y in range(height)]


def panel_columns(width: int) -> int:
    """How many panels can stand beside the sections table at this width."""
    return max(0, (width - TABLE_MIN_WIDTH) // (PANEL_MIN_WIDTH + 1))


def status_classes(summary: dict[str, Any] | None, width: int) -> Line:
    """Hits by status class, all five always, with their shares (2xx green, 4xx yellow, 5xx red)."""
    if summary is None:
        return fit([("Status classes: no complete summary yet", "dim")], width)
    total = summary["hits"]
    # Shares drop out when the width is short: those of empty classes first.
    for shown in (1, 0.5, 0):
        line: Line = [("Status classes", "head")]
        for cls in STATUS_CLASSES:
            n = summary["status"].get(cls, 0)
            share = f" ({n / total:.1%})" if total and (n or shown == 1) and shown else ""
            line += [("  ", "normal"), (f"{cls} {n:,}{share}", CLASS_STYLES.get(cls, "normal") if n else "dim")]
        if sum(len(text) for text, _ in line) <= width:
            break
    return fit(line, width)


# -- alert history and keys -----------------------------------------------------------------

def history_blocks(events: list[dict[str, Any]], width: int) -> list[list[Line]]:
    """Each recent alert event, oldest first, as the exact alert message wrapped to the width."""
    blocks = []
    for event in events:
        style = "alert" if event["type"] == ALERT else "ok"
        blocks.append([fit([(text, style)], width)
                       for text in textwrap.wrap(alert_message(event), width - 2, initial_indent="  ",
                                                 subsequent_indent="    ")])
    return blocks


def newest_whole(blocks: list[list[Line]], rows: int) -> list[list[Line]]:
    """The newest messages that fit in `rows` whole, oldest of them first: an older message
    gives way whole, never a part of one."""
    shown: list[list[Line]] = []
    used = 0
    for block in reversed(blocks):
        if used + len(block) > rows:
            break
        shown.insert(0, block)
        used += len(block)
    return shown


def footer(view: View, width: int) -> Line:
    """The keys; while a filter is typed, how to finish it."""
    if view.editing:
        return fit([(f" filter sections: {view.filter}▏", "warn"), ("   Enter keep  Esc clear", "dim")], width)
    return fields([(0, [(" q quit", "dim")]), (1, [(f"  p {'resume' if view.paused else 'pause'}", "dim")]),
                   (2, [(f"  s sort: {view.sort}", "dim")]), (3, [(f"  t table: {view.table}", "dim")]),
                   (4, [("  / filter" + (" (Esc clears)" if view.filter else ""), "dim")]),
                   (5, [(f"  H {view.chart}", "dim")]),
                   (0, [("  ? help", "dim")])], width)


# -- text helpers ---------------------------------------------------------------------------

def fields(parts: list[tuple[int, Line]], width: int) -> Line:
    """Parts in their order, as many as fit in `width`: while too wide, the part with the largest
    priority number drops out whole (the last of them first), so no field is ever cut."""
    kept = list(parts)
    while kept and sum(len(text) for _, line in kept for text, _ in line) > width:
        worst = max(range(len(kept)), key=lambda i: (kept[i][0], i))
        del kept[worst]
    return fit([seg for _, line in kept for seg in line], width)


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
