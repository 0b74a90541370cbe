"""What the socket API answers, built from the monitor and the facts the shell gathered.

Pure: the shell passes in file status, process figures and times; nothing here reads a clock.
"""
from __future__ import annotations

from typing import Any, Sequence

from logmond import __version__
from logmond.core.monitor import Monitor
from shared.protocol import PROTOCOL
from shared.schema import CRITICAL, HIGH_TRAFFIC, LATENCY, RATE

# Alert events carried in each pushed snapshot (the full history is the `alerts` op).
SNAPSHOT_ALERTS = 20


def status(monitor: Monitor, *, pid: int, started_at: float, now: float, file: dict[str, Any],
           process: dict[str, Any], clients: int, tick: dict[str, Any], notify: dict[str, Any]) -> dict[str, Any]:
    """The `status` reply: exactly the keys of the contract."""
    alert = monitor.alert
    last = next((e for e in reversed(monitor.journal.history) if e.get("rule", HIGH_TRAFFIC) == HIGH_TRAFFIC), None)
    last = last if alert.firing else None
    return {
        "version": __version__,
        "protocol": PROTOCOL,
        "pid": pid,
        "started_at": started_at,
        "uptime": round(now - started_at, 3),
        "file": file,
        **monitor.describe_format(),
        "lines": monitor.lines,
        "parsed": monitor.parsed,
        "malformed": sum(monitor.malformed_by_reason.values()),
        "late": monitor.late,
        "recent": {**dict(zip(("lines", "malformed"), monitor.recent_quality())),
                   "top_reason": max(monitor.malformed_by_reason, key=monitor.malformed_by_reason.__getitem__,
                                     default=None)},
        "clock": monitor.clock,
        "rate": monitor.rate(),
        "threshold": float(monitor.config.threshold),
        "window": monitor.config.window,
        "alert": {
            "active": alert.firing,
            "since": alert.since,
            "hits": last["hits"] if last else None,
            "rate": last["rate"] if last else None,
        },
        "rules": rules(monitor),
        "process": process,
        "clients": clients,
        "tick": tick,
        "notify": notify,
    }


def rules(monitor: Monitor) -> list[dict[str, Any]]:
    """Every rule's state, the built-in one first: `value` is at the last evaluated second (None
    while a rule is not evaluated), `error` says why a rule cannot see what it measures."""
    alert, config = monitor.alert, monitor.config
    out: list[dict[str, Any]] = [{
        "name": HIGH_TRAFFIC, "metric": RATE, "active": alert.firing, "since": alert.since, "value": monitor.rate(),
        "threshold": float(config.threshold), "severity": CRITICAL, "window": config.window, "direction": "above",
        "error": None}]
    fmt = monitor.log_format
    for rule in monitor.rules.rules.values():
        spec, error = rule.spec, None
        if fmt is not None and spec.metric == LATENCY and not fmt.latency:
            error = f"format {fmt.name} has no request time"
        elif fmt is not None and spec.vhost is not None and not fmt.vhost:
            error = f"format {fmt.name} has no virtual host"
        out.append({"name": spec.name, "metric": spec.metric, "active": rule.firing, "since": rule.since,
                    "value": rule.value, **spec.describe(), "error": error})
    return out


def tick_figures(seconds: Sequence[float]) -> dict[str, Any]:
    """status's `tick`: how many durations of the once-a-second work were kept, and their
    median, 99th percentile (nearest rank: a value that was measured) and maximum in milliseconds,
    None while there are none."""
    ordered = sorted(seconds)
    n = len(ordered)

    def ms(percent: int) -> float | None:
        # The rank ceil(percent * n / 100), in integers so that no rounding moves it.
        return round(ordered[-(-percent * n // 100) - 1] * 1000, 3) if n else None

    return {"count": n, "p50_ms": ms(50), "p99_ms": ms(99), "max_ms": ms(100)}


def stats(monitor: Monitor) -> dict[str, Any]:
    """The last complete summary and the rollup over the timeframe (None before the first)."""
    return {"interval": monitor.last_summary, "timeframe": monitor.timeframe_summary()}


def alerts(monitor: Monitor, since: int | None = None) -> dict[str, Any]:
    """Alert history, oldest first, only events with id > since."""
    return {"events": [e for e in monitor.journal.history if since is None or e["id"] > since]}


def push(status_reply: dict[str, Any], monitor: Monitor) -> dict[str, Any]:
    """One pushed snapshot: everything the live viewer draws, in one message."""
    return {
        "status": status_reply,
        "seconds": monitor.recent_seconds(),
        "window_end": monitor.cursor,
        "malformed_by_reason": dict(monitor.malformed_by_reason),
        **stats(monitor),
        "alerts": list(monitor.journal.history)[-SNAPSHOT_ALERTS:],
    }
