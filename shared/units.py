"""How figures look to a person, one formatter each, so every front end says the same thing."""
from __future__ import annotations

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def number(x: float) -> str:
    """A threshold or scale value as typed, without noise: 10, 10.5, 2.5, 0.25, 0.33."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def size(n: float) -> str:
    """Bytes for a person: 512 B, 34.2 KiB, 1.5 GiB."""
    for unit in SIZE_UNITS:
        if n < 1024 or unit == SIZE_UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """An age in its two largest units (2d03h, 1h02m, 4m05s, 7s): precise enough, short enough."""
    s = max(int(seconds), 0)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def thousands(n: int) -> str:
    """A count in full, grouped (1,234,567): where there is room, as in `status`, exact beats short."""
    return f"{n:,}"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun, which is singular for 1 only: 1 client, 2 clients, 1,500 lines."""
    return f"{thousands(n)} {noun if n == 1 else plural or noun + 's'}"


def count(n: int) -> str:
    """Exact up to 99,999, then three significant figures: a count that always fits a narrow field."""
    if n < 100_000:
        return thousands(n)
    if n < 1_000_000:
        return f"{n / 1e3:.0f}k"
    return f"{n / 1e6:.1f}M" if n < 1_000_000_000 else f"{n / 1e9:.1f}G"


def latency(seconds: float) -> str:
    """A request time in the unit that reads best: 850 µs, 12.3 ms, 1.20 s."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def percentiles(summary: dict) -> str:
    """A latency summary ({count, p50, p90, p99, max}) on one line."""
    return (f"p50 {latency(summary['p50'])}  p90 {latency(summary['p90'])}  p99 {latency(summary['p99'])}  "
            f"max {latency(summary['max'])} ({summary['count']:,} timed)")
