"""The times `logmonctl history` is given: WHEN (a duration back from now, or an ISO 8601 time)
and its steps. Pure: `now` is passed in. ValueError with a message a person can act on."""
from __future__ import annotations

import re
from datetime import datetime, timezone

# Units of a duration back from now: `90m`, `6h`, `7d`, `2w`, `30s`.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"([1-9][0-9]{0,6})([smhdw])")
# The steps `--step` takes, and the ones tried, smallest first, when none is given.
STEPS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
# Rows a chosen step gives at most (the issue: a step chosen to give at most 100 rows).
MAX_ROWS = 100


def parse(text: str, now: float) -> int:
    """Seconds since the epoch for WHEN: `6h` is six hours before `now`; an ISO 8601 time
    (`2026-12-01T03:00`, `2026-12-01 03:00:00+01:00`) is taken as UTC unless it says otherwise."""
    found = DURATION.fullmatch(text.strip())
    if found:
        return int(now) - int(found.group(1)) * UNITS[found.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration back from now (90m, 6h, 7d) "
                         f"nor an ISO 8601 time (2026-12-01T03:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def step(text: str | None, since: int, until: int) -> int:
    """Seconds per step: as given (one of STEPS), or the smallest giving at most MAX_ROWS rows."""
    if text is not None:
        if text not in STEPS:
            raise ValueError(f"--step must be one of {', '.join(STEPS)}, not {text!r}")
        return STEPS[text]
    for seconds in STEPS.values():
        if (until - since) / seconds <= MAX_ROWS:
            return seconds
    return max(STEPS.values())
