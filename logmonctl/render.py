"""Text for logmonctl: daemon replies in, strings out. Pure, so every format is unit-tested."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from shared import schema
from shared.schema import HIGH_TRAFFIC, alert_message, iso_utc, metric_text
from shared.units import counted, duration, latency, number, percentiles, size, thousands

# Columns a label takes in the key/value blocks of `status` and `stats`.
LABEL_WIDTH = 10
# Indent of the tables under a summary heading.
INDENT = "  "


def percent(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Aligned columns: the first (a name) left, the others (figures) right."""
    cells = [list(header), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [INDENT + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in cells]


def _field(label: str, text: str) -> str:
    return f"{label:<{LABEL_WIDTH}}{text}"


def window_hits(status: dict[str, Any]) -> int:
    """Hits in the alert window: the daemon's rate is exactly hits / window."""
    return round(status["rate"] * status["window"])


def position(offset: int | None, total: int | None) -> str:
    """How far logmond has read the file, in the words an operator asks it: done, or how far behind."""
    if offset is None:
        return "not there yet"
    if total is None:
        return f"at {size(offset)} (its size is unknown)"
    if offset == total:
        return f"read to the end ({size(total)})"
    if offset > total:  # truncated under logmond, which has not read it since
        return f"at {size(offset)}, past its end ({size(total)}): truncated, to be read again from the start"
    return f"at {size(offset)} of {size(total)} ({size(total - offset)} behind)"


def status_text(st: dict[str, Any], last: dict[str, Any] | None = None) -> str:
    """`logmonctl status`: the status reply, with 'now' taken from the last complete summary."""
    f, alert, proc = st["file"], st["alert"], st["process"]
    clock = "no lines yet" if st["clock"] is None else iso_utc(st["clock"])
    over = ">" if st["rate"] > st["threshold"] else "<="
    if alert["active"]:
        age = "" if st["clock"] is None or alert["since"] is None else f" ({duration(st['clock'] - alert['since'])})"
        state = f"FIRING since {iso_utc(alert['since'])}{age}" if alert["since"] is not None else "FIRING"
    else:
        state = "quiet"
    return "\n".join([
        _field("logmond", f"{st['version']}, pid {st['pid']}, up {duration(st['uptime'])}, "
                          f"{counted(st['clients'], 'client')}"),
        _field("file", f"{f['path']} ({st['format'] or 'no known format fits it'}), "
                       f"{position(f['offset'], f['size'])}"),
        _field("log time", clock),
        _field("lines", f"{thousands(st['lines'])} read: {thousands(st['parsed'])} parsed, "
                        f"{thousands(st['malformed'])} malformed, {thousands(st['late'])} late"),
        _field("now", "no complete interval yet" if last is None else
               f"{last['rate']:.2f} hits/s over the last {last['end'] - last['start']}s "
               f"(to {iso_utc(last['end'])})"),
        _field("traffic", f"{st['rate']:.2f} hits/s over {st['window']}s ({counted(window_hits(st), 'hit')}) "
                          f"{over} threshold {number(st['threshold'])}"),
        _field("alert", state),
        *(_field("rule", rule_state(r)) for r in rules_of(st)),
        _field("process", f"RSS {size(proc['rss_bytes'])}, CPU {proc['cpu_percent']:.1f}%, "
                          f"{counted(proc['open_fds'], 'open fd')}"),
    ])


# Share of the lines read over the alert window that, malformed, makes `check` warn: a log a
# tenth unreadable is a blind spot worth a look, even while traffic looks fine.
MALFORMED_WARNING = 0.10
# Nagios plugin states, which are also the exit codes of `status` and `check`.
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def malformed_ratio(st: dict[str, Any]) -> float:
    """Malformed share of the lines read over the last alert window."""
    recent = st["recent"]
    return recent["malformed"] / recent["lines"] if recent["lines"] else 0.0


def state(st: dict[str, Any]) -> int:
    """The plugin state: UNKNOWN while no format fits the log (a blind spot is never OK),
    CRITICAL while the high-traffic alert or a critical rule fires, WARNING while only warning
    rules fire, a rule cannot see what it measures, or too much of the log is malformed, else OK."""
    if st["format"] is None and st["format_error"]:
        return UNKNOWN
    firing = [r for r in rules_of(st) if r["active"]]
    if st["alert"]["active"] or any(r["severity"] == "critical" for r in firing):
        return CRITICAL
    if firing or any(r["error"] for r in rules_of(st)) or malformed_ratio(st) > MALFORMED_WARNING:
        return WARNING
    return OK


def alert_line(event: dict[str, Any]) -> str:
    """`logmonctl alerts`: the rule and its severity, then the exact message."""
    return f"[{event.get('severity', schema.CRITICAL)} {event.get('rule', HIGH_TRAFFIC)}] {alert_message(event)}"


def _rule_prefix(event: dict[str, Any]) -> str:
    """A `[[rule]]` rule's name before its event in a history row; the built-in rule's go bare."""
    rule = event.get("rule", HIGH_TRAFFIC)
    return "" if rule == HIGH_TRAFFIC else f"{rule} "


def rules_of(st: dict[str, Any]) -> list[dict[str, Any]]:
    """The `[[rule]]` rules of a status reply (the built-in one is its own fields)."""
    return [r for r in st.get("rules", []) if r["name"] != HIGH_TRAFFIC]


def rule_state(rule: dict[str, Any]) -> str:
    """One rule in words: `api_errors FIRING (status_share 7.50% > 5.00%, critical)`."""
    value = "not evaluated" if rule["value"] is None else metric_text(rule["metric"], rule["value"])
    sign = "<" if rule["direction"] == "below" else ">"
    bound = f"{rule['metric']} {value}, {sign} {metric_text(rule['metric'], rule['threshold'])} fires"
    if rule["error"]:
        return f"{rule['name']} cannot be evaluated: {rule['error']}"
    if rule["active"]:
        return f"{rule['name']} FIRING since {iso_utc(rule['since'])} ({bound}, {rule['severity']})"
    return f"{rule['name']} quiet ({bound}, {rule['severity']})"


def _perfdata(rule: dict[str, Any]) -> str:
    """A rule as a Nagios perfdata item: shares in %, latencies in s, its bound in the warning or
    the critical slot by its severity; U while it is not evaluated."""
    scale, unit = {"status_share": (100, "%"), "latency": (1, "s")}.get(rule["metric"], (1, ""))
    value = "U" if rule["value"] is None else f"{rule['value'] * scale:.6g}{unit}"
    bound = f"{rule['threshold'] * scale:.6g}"
    if rule["direction"] == "below":
        bound = f"{bound}:"  # Nagios' range syntax: alert below the bound
    slots = f";;{bound}" if rule["severity"] == "critical" else f";{bound};"
    return f" {rule['name']}={value}{slots}"


def check_line(st: dict[str, Any]) -> str:
    """The Nagios plugin line; the state follows the daemon's alert, which hysteresis may hold on."""
    code = state(st)
    ratio = malformed_ratio(st)
    threshold = number(st["threshold"])
    perf = (f" | rate={st['rate']:.2f};;{threshold} hits={window_hits(st)} malformed={st['malformed']}"
            f" malformed_ratio={ratio:.3f};{MALFORMED_WARNING}" + "".join(map(_perfdata, rules_of(st))))
    if code == UNKNOWN:
        return (f"LOGMON UNKNOWN - no known format fits {st['file']['path']}: {st['format_error']};"
                f" give the server's format (--format or `format`){perf}")
    over = ">" if st["rate"] > st["threshold"] else "<="
    held = " (alert still firing)" if st["alert"]["active"] and over == "<=" else ""
    text = f"{st['rate']:.2f} hits/s over {st['window']}s {over} {threshold}{held}"
    if ratio > MALFORMED_WARNING:
        recent = st["recent"]
        text = (f"{ratio:.0%} of the lines over {st['window']}s are malformed "
                f"({recent['malformed']} of {recent['lines']}, mostly {recent['top_reason']}); {text}")
    noted = [r for r in rules_of(st) if r["active"] or r["error"]]
    if noted:
        text = "; ".join(map(rule_state, noted)) + f"; {text}"
    return f"LOGMON {_STATE_NAMES[code]} - {text}{perf}"


def check_unknown(reason: str) -> str:
    return f"LOGMON UNKNOWN - {reason}"


def summary_text(title: str, s: dict[str, Any] | None) -> list[str]:
    """One summary as a heading, its totals and tables of sections, status classes, methods, hosts."""
    if s is None:
        return [f"{title}: nothing yet (no summary has closed)"]
    hits = s["hits"]
    hosts = f"{s['hosts']}" if s["hosts_exact"] else f"~{s['hosts']} (estimated)"
    lines = [
        f"{title}: {iso_utc(s['start'])} .. {iso_utc(s['end'])} ({duration(s['end'] - s['start'])})",
        INDENT + _field("hits", f"{hits} ({s['rate']:.2f}/s)"),
        INDENT + _field("bytes", f"{size(s['bytes'])} (mean {size(s['bytes_mean'])})"),
        INDENT + _field("hosts", hosts),
    ]
    for key, label in (("latency", "latency"), ("upstream_latency", "upstream")):
        if s.get(key):
            lines.append(INDENT + _field(label, percentiles(s[key])))
    if s["sections"]:
        timed = s.get("section_latency")
        header = ("section", "hits", "share", "4xx", "5xx", *(("p50", "p99") if timed is not None else ()))
        rows = []
        for name, n in s["sections"]:
            row = [name, n, percent(n, hits), f"{s['errors'][name]['4xx']:.1%}", f"{s['errors'][name]['5xx']:.1%}"]
            if timed is not None:
                t = timed.get(name)
                row += [latency(t["p50"]), latency(t["p99"])] if t else ["-", "-"]
            rows.append(row)
        lines += ["", *table(header, rows)]
    for header, counts in (("status", list(s["status"].items())), ("method", list(s["methods"].items())),
                           ("vhost", s.get("vhosts", [])), ("top host", s["top_hosts"])):
        if counts:
            lines += ["", *table((header, "hits", "share"), [(k, n, percent(n, hits)) for k, n in counts])]
    return lines


def stats_text(stats: dict[str, Any]) -> str:
    """`logmonctl stats`: the last complete summary, then the rollup over the timeframe."""
    return "\n".join([*summary_text("Last interval", stats["interval"]), "",
                      *summary_text("Timeframe", stats["timeframe"])])


# Glyphs of the hits/s sparkline, lowest first (a blank for no hits at all).
SPARKS = " ▁▂▃▄▅▆▇█"


def spark(value: float, top: float) -> str:
    """One sparkline glyph for `value` on a scale up to `top`."""
    if value <= 0 or top <= 0:
        return SPARKS[0]
    return SPARKS[max(1, round(value / top * (len(SPARKS) - 1)))]


def history_text(steps: list[dict[str, Any]], step: int, by: str | None) -> list[str]:
    """`logmonctl history`: one aligned row per step with a sparkline of hits/s, latency when the
    log has it and the alerts in it; with `by`, the step's top keys under it."""
    timed = any(s["latency"] for s in steps)
    top = max((s["rate"] for s in steps), default=0.0)
    fmt = "%Y-%m-%d %H:%M" if step < 86400 else "%Y-%m-%d"
    header = ["start (UTC)", "hits", "hits/s", "", "4xx", "5xx", "bytes", *(("p50", "p99") if timed else ()), "alerts"]
    rows = []
    for s in steps:
        hits, status = s["hits"], s["status"]
        lat = s["latency"]
        alerts = ", ".join(f"{_rule_prefix(e)}{'ALERT' if e['type'] == 'alert' else 'recovered'} "
                           f"{iso_utc(e['at'])[11:19]}" for e in s["alerts"])
        rows.append([time.strftime(fmt, time.gmtime(s["start"])), f"{hits:,}", f"{s['rate']:.2f}",
                     spark(s["rate"], top), percent(status.get("4xx", 0), hits), percent(status.get("5xx", 0), hits),
                     size(s["bytes"]), *((latency(lat["p50"]), latency(lat["p99"])) if lat else
                                         (("-", "-") if timed else ())), alerts])
        if by is not None:
            rows += [[f"  {key}", f"{n:,}", "", "", percent(n, hits), "", "", *(("", "") if timed else ()), ""]
                     for key, n in s["top"]]
    return table(header, rows)
