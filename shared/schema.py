"""The shape of events shared by `logmond --once --json`, the socket API and logmonctl.

Events are plain dicts so they go unchanged into JSON Lines and msgpack.
"""
from __future__ import annotations

import time
from typing import Any

Event = dict[str, Any]

# What `history` ranks per step with `by` (the socket op and logmonctl history --by).
HISTORY_BY = ("section", "status", "host", "vhost")

ALERT = "alert"
RECOVER = "recover"
SUMMARY = "summary"
TOTALS = "totals"


def iso_utc(ts: float) -> str:
    """Log time as ISO 8601 UTC, the form every alert message uses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def alert_message(event: Event) -> str:
    """The exact human line for an alert or recovery event (the contract users grep for)."""
    tail = f" ({event['rate']:.2f}/s over {event['window']}s)"
    when = iso_utc(event["at"])
    if event["type"] == ALERT:
        return f"High traffic generated an alert - hits = {event['hits']}, triggered at {when}{tail}"
    return f"High traffic alert recovered - hits = {event['hits']}, recovered at {when}{tail}"
