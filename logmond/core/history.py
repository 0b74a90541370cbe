"""History over any span: the minute rows of the state database summed into steps.

Pure: the rows and events come in as the store read them; percentiles come from merging the
rows' latency sketches, so they are right over any span, not averages of averages.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from logmond.core.quantiles import QuantileSketch
from shared.schema import HISTORY_BY

# What `by` ranks, and where a history row (core.window.history_row) keeps it.
BY = dict(zip(HISTORY_BY, ("sections", "codes", "top_hosts", "vhosts")))
# Keys named per step with `by`.
TOP_KEYS = 10
# The longest step (a week) and the widest span (ten years) one request may ask for.
MAX_STEP = 7 * 86400
MAX_SPAN = 3650 * 86400


def check(since: Any, until: Any, step: Any, by: Any) -> str | None:
    """Why these request arguments make no sense, or None."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (since, until, step)):
        return "'since', 'until' and 'step' must be integers (seconds)"
    if not 60 <= step <= MAX_STEP or step % 60:
        return f"'step' must be a whole number of minutes, at most {MAX_STEP // 86400} days"
    if not since < until <= since + MAX_SPAN:
        return f"'since' must be before 'until', at most {MAX_SPAN // 86400} days before"
    if by is not None and by not in BY:
        return f"'by' must be one of {', '.join(BY)}"
    return None


def steps(rows: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]], since: int, until: int, step: int,
          by: str | None) -> list[dict[str, Any]]:
    """One entry per step in [since, until) (steps aligned to multiples of `step`, the empty ones
    too): hits, rate, status classes, bytes, latency percentiles when the rows have times, the
    top keys `by` asks for, and the alert events in it."""
    first = since // step * step
    out = [{"start": s, "end": s + step, "hits": 0, "status": Counter(), "bytes": 0, "sketch": None,
            "top": Counter(), "alerts": []} for s in range(first, until, step)]

    def at(t: int) -> dict[str, Any] | None:
        i = (t - first) // step
        return out[i] if 0 <= i < len(out) else None

    for row in rows:
        into = at(row["start"])
        if into is None:
            continue
        into["hits"] += row["hits"]
        into["bytes"] += row["bytes"]
        into["status"].update(row["status"])
        if row.get("latency_sketch") is not None:
            sketch = QuantileSketch.from_state(row["latency_sketch"])
            if into["sketch"] is None:
                into["sketch"] = sketch
            else:
                into["sketch"].merge(sketch)
        if by is not None:
            into["top"].update(dict(row.get(BY[by], [])))
    for event in events:
        into = at(event["at"])
        if into is not None:
            into["alerts"].append(event)
    for s in out:
        sketch = s.pop("sketch")
        s["rate"] = round(s["hits"] / step, 3)
        s["status"] = dict(sorted(s["status"].items()))
        s["latency"] = None if sketch is None else sketch.summary()
        s["top"] = [[k, n] for k, n in sorted(s["top"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_KEYS]]
    return out


def page_end(since: int, until: int, step: int, max_rows: int) -> int:
    """Where a reply that reads at most about `max_rows` minute rows ends: whole steps, at least
    one, and never past `until`."""
    first = since // step * step
    per_step = step // 60
    return min(until, first + max(1, max_rows // per_step) * step)
