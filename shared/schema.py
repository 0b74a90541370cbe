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
# The built-in rule's name in events (the others are named by their `[[rule]]` table).
HIGH_TRAFFIC = "high_traffic"
CRITICAL, WARNING = "critical", "warning"
SEVERITIES = (CRITICAL, WARNING)
# What a rule measures over its window: hits/s, the share of hits with a status, a latency quantile.
RATE, STATUS_SHARE, LATENCY = "rate", "status_share", "latency"
METRICS = (RATE, STATUS_SHARE, LATENCY)
SUMMARY = "summary"
TOTALS = "totals"


def iso_utc(ts: float) -> str:
    """Log time as ISO 8601 UTC, the form every alert message uses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def metric_text(metric: str, value: float) -> str:
    """A rule's value in its unit: hits/s, a percentage, or milliseconds (values are kept in
    hits/s, a fraction and seconds)."""
    if metric == STATUS_SHARE:
        return f"{value * 100:.2f}%"
    if metric == LATENCY:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} hits/s"


def alert_message(event: Event) -> str:
    """The exact human line for an alert or recovery event (the contract users grep for).

    Events of `[[rule]]` rules carry `rule`, `metric` and `value`; the built-in rule's (named
    high_traffic; unnamed in events saved before there were other rules) keep their own message.
    """
    rule = event.get("rule", HIGH_TRAFFIC)
    if rule != HIGH_TRAFFIC:
        value, when = metric_text(event["metric"], event["value"]), iso_utc(event["at"])
        if event["type"] == ALERT:
            return f"{rule} generated an alert - {event['metric']} = {value}, triggered at {when}"
        return f"{rule} alert recovered - {event['metric']} = {value}, recovered at {when}"
    tail = f" ({event['rate']:.2f}/s over {event['window']}s)"
    when = iso_utc(event["at"])
    if event["type"] == ALERT:
        return f"High traffic generated an alert - hits = {event['hits']}, triggered at {when}{tail}"
    return f"High traffic alert recovered - hits = {event['hits']}, recovered at {when}{tail}"
