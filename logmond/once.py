"""`logmond --once`: read a whole log (or stdin), print summaries and alerts in log-time order."""
from __future__ import annotations

import gc
import json
import sqlite3
import sys
from typing import Any, Callable, Sequence

from logmond.core import catalog
from logmond.core.errors import OperatorError
from logmond.core.linebuffer import LineBuffer
from logmond.core.monitor import Monitor
from logmond.core.settings import CoreConfig
from logmond.inputs import read_chunks
from logmond.store import Database
from shared.schema import ALERT, RECOVER, SUMMARY, Event, alert_message, iso_utc
from shared.units import percentiles, size

# Bytes read per system call.
READ_SIZE = 1024 * 1024
# Exit status when the input had lines but no format fits any of them.
EXIT_NO_FORMAT = 1
# Share of malformed lines past which --once warns on stderr (as `logmonctl check` does).
MALFORMED_WARNING = 0.10
# Characters of a line quoted in those messages.
FIRST_LINE_CHARS = 120
# Milliseconds a backfill waits for the daemon's lock on the same database (its commits are short).
BACKFILL_BUSY_MS = 10_000


def format_summary(s: Event) -> str:
    """A summary as at most six lines of at most 80 columns."""
    status = "  ".join(f"{k} {v}" for k, v in s["status"].items()) or "-"
    head = (f"{iso_utc(s['start'])} +{s['end'] - s['start']}s  {s['hits']} hits ({s['rate']:.2f}/s)  "
            f"hosts {s['hosts']}  {size(s['bytes'])}")
    lines = [head[:80], f"  status  {status}"[:80]]
    if s["sections"]:
        parts = []
        for name, n in s["sections"][:5]:
            err = s["errors"][name]
            bad = f" {err['5xx']:.0%} 5xx" if err["5xx"] else ""
            parts.append(f"{name} {n}{bad}")
        lines.append(("  top     " + ", ".join(parts))[:80])
    if s.get("latency"):
        lines.append(("  latency " + percentiles(s["latency"]))[:80])
    if s.get("vhosts"):
        lines.append(("  vhosts  " + ", ".join(f"{v} {n}" for v, n in s["vhosts"][:5]))[:80])
    if s["top_hosts"]:
        lines.append(("  hosts   " + ", ".join(f"{h} {n}" for h, n in s["top_hosts"]))[:80])
    return "\n".join(lines)


def _writer(as_json: bool) -> Callable[[Event], None]:
    out = sys.stdout
    if as_json:
        return lambda e: out.write(json.dumps(e, separators=(",", ":")) + "\n")

    def write(e: Event) -> None:
        if e["type"] in (ALERT, RECOVER):
            out.write(alert_message(e) + "\n")
        elif e["type"] == SUMMARY:
            out.write(format_summary(e) + "\n")
    return write


def _save_history(state_dir: str, rows: list[dict[str, Any]]) -> None:
    """Add the rows to the state dir's history in one transaction, so that a daemon on the same
    database sees all of them or none; minutes it has already are left as they are."""
    db = Database(state_dir, busy_timeout_ms=BACKFILL_BUSY_MS)
    db.prepare()
    try:
        added = db.add_history(rows)
    except sqlite3.Error as exc:
        raise OperatorError(f"cannot add the history to {db.path}: {exc}") from None
    finally:
        db.close()
    print(f"logmond: history: {added} minute rows added to {db.path}, {len(rows) - added} it had already",
          file=sys.stderr)


def run_once(paths: str | Sequence[str], config: CoreConfig, as_json: bool, history_to: str | None = None) -> int:
    """Read every input in order as one stream; print events as they complete, then totals; with
    `history_to` (a state dir), add the minute rows read to its history (a backfill)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    # A short-lived batch run: the core makes no reference cycles, and the cyclic collector
    # would otherwise rescan millions of young tuples (about 7 % of the run).
    gc.disable()
    monitor = Monitor(config, record=history_to is not None)
    rows: list[dict[str, Any]] = []
    write = _writer(as_json)
    said_format = False
    for path in paths:
        lines = LineBuffer()
        for data in read_chunks(path, READ_SIZE):
            for event in monitor.feed(lines.feed(data)):
                write(event)
            if history_to is not None:
                monitor.rollup.take_closed()  # the rollup's blocks are the daemon's business
                rows += monitor.take_history()
            if not as_json and not said_format and monitor.format and config.format == "auto":
                extra = monitor.describe_format().get("extra")
                plus = f" + {extra}" if extra else ""
                print(f"logmond: format {monitor.format}{plus} (auto-detected)", file=sys.stderr)
                said_format = True
        # Each input's end ends its last line.
        for event in monitor.feed(lines.flush()):
            write(event)
    for event in monitor.finish():
        write(event)
    if history_to is not None:
        _save_history(history_to, rows + monitor.take_history())
    totals = monitor.totals()
    if as_json:
        write(totals)
    else:
        print(f"{totals['lines']} lines: {totals['parsed']} parsed, {totals['malformed']} malformed, "
              f"{totals['late']} late", file=sys.stderr)
    sys.stdout.flush()
    if monitor.log_format is None and totals["lines"]:
        first = (monitor.unfit_sample() or "")[:FIRST_LINE_CHARS]
        print(f"logmond: no known format fits {', '.join(paths)} (tried {catalog.tried()}); first line: "
              f"{first!r}; give --format (a preset or the server's log_format / LogFormat string)", file=sys.stderr)
        return EXIT_NO_FORMAT
    if totals["lines"] and totals["malformed"] > MALFORMED_WARNING * totals["lines"]:
        reason = max(totals["malformed_by_reason"], key=totals["malformed_by_reason"].__getitem__)
        sample = next((m["line"] for m in totals["malformed_samples"] if m["reason"] == reason), "")
        print(f"logmond: warning: {totals['malformed'] / totals['lines']:.0%} of the lines are malformed, mostly "
              f"{reason}, e.g. {sample[:FIRST_LINE_CHARS]!r}", file=sys.stderr)
    return 0
