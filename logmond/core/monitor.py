"""The monitoring core: lines in, events out, with log time as the only clock.

`Monitor` is pure: the caller hands it bytes of complete lines and, when live, the current log
time. Seconds are evaluated in order once complete (a line more than `lateness` seconds newer has
been seen, or the caller says time has passed, or input ended), so the alert events are exactly
those of the offline rule for any input whose lines are at most `lateness` seconds out of order.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Any

from logmond.core.alerts import AlertRule
from logmond.core.batch import Chunk, Counts, fast_chunk, slow_chunk, split_lines
from logmond.core.parse import detect_format
from logmond.core.settings import RELOADABLE, CoreConfig, core_config, core_values
from logmond.core.window import Block, Rollup
from shared.schema import TOTALS, Event

# Malformed lines kept for inspection (the newest ones).
MALFORMED_SAMPLES = 20
# Bytes of a run of lines handed to one batch: big enough to amortise, small enough that one bad
# line only sends this much down the slow path.
BATCH_BYTES = 256 * 1024
# Undecided input kept while `auto` looks for a line it can parse (then it settles on csv).
DETECT_MAX_BYTES = 1024 * 1024
# Lines the format detector samples.
DETECT_LINES = 50
# A run of empty blocks longer than this is reported as one summary, so a timestamp far in the
# future cannot make the monitor print forever. One day at the default interval.
MAX_EMPTY_BLOCKS = 8640


class Monitor:
    def __init__(self, config: CoreConfig) -> None:
        config.check()
        self.config = config
        self.format: str | None = None if config.format == "auto" else config.format
        self._undecided = b""
        self.lines = self.parsed = self.late = 0
        self.malformed_by_reason: Counter[str] = Counter()
        self.malformed_samples: deque[dict[str, str]] = deque(maxlen=MALFORMED_SAMPLES)
        # Newest log second seen or announced; seconds < clock - lateness are complete.
        self.clock: int | None = None
        # Next second to evaluate; None until the first one is.
        self.cursor: int | None = None
        # Hits per second (for the seconds still in the alert window or not yet evaluated) and
        # the open summary blocks.
        self.counts = Counts(config.summary_interval)
        self.seconds = self.counts.seconds
        self.blocks = self.counts.blocks
        # Hits in (cursor - 1 - window, cursor - 1].
        self.window_hits = 0
        self.next_block: int | None = None
        self.last_summary: Event | None = None
        self.rollup = Rollup(config.timeframe, config.summary_interval)
        self.alert = AlertRule(config.threshold, config.window, config.hysteresis)

    # -- input ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        """Take complete lines (each ending in b'\\n'); return the events they complete."""
        if self.format is None:
            data = self._detect(data)
            if not data:
                return []
        events: list[Event] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start + BATCH_BYTES) + 1 or len(data)
            self._take(data[start:end])
            events += self._evaluate(self._complete_through())
            start = end
        return events

    def advance(self, now: int) -> list[Event]:
        """Live mode: log time has reached `now` even if no line says so."""
        if self.clock is None or now <= self.clock:
            return []
        self.clock = now
        return self._evaluate(self._complete_through())

    def reconfigure(self, config: CoreConfig) -> list[str]:
        """A config reload: apply the settings that can change while running (threshold and
        hysteresis, from the next second on); return the names of the others that differ, which
        only a restart applies."""
        config.check()
        old, new = core_values(self.config), core_values(config)
        hot = {name: new[name] for name in RELOADABLE if name in new}
        self.config = core_config({**old, **hot})
        self.alert.retune(self.config.threshold, self.config.hysteresis)
        return [name for name in new if new[name] != old[name] and name not in hot]

    def finish(self) -> list[Event]:
        """End of input: evaluate every remaining second and report the last block."""
        events: list[Event] = []
        if self.format is None:
            data, self._undecided = self._undecided, b""
            self.decide_format(data)
            events += self.feed(data)
        if self.clock is None:
            return events
        events += self._evaluate(self.clock)
        if self.next_block in self.blocks:
            events += self._close_block(self.next_block + self.config.summary_interval)
        return events

    def decide_format(self, sample: bytes) -> str:
        """The format, decided now from `sample` (complete lines) if `auto` has not yet: the
        replayer reads each line's time before handing the line over."""
        if self.format is None:
            self.format = detect_format(split_lines(sample)[:DETECT_LINES]) or "csv"
        return self.format

    def _detect(self, data: bytes) -> bytes:
        self._undecided += data
        sample = split_lines(self._undecided)[:DETECT_LINES]
        fmt = detect_format(sample)
        if fmt is None and len(self._undecided) < DETECT_MAX_BYTES:
            return b""
        self.format = fmt or "csv"
        data, self._undecided = self._undecided, b""
        return data

    def _take(self, data: bytes) -> None:
        cfg, fmt = self.config, self.format
        assert fmt is not None
        chunk: Chunk | None = None
        try:
            chunk = fast_chunk(data.decode("utf-8"), fmt, self.counts, self.clock, cfg.lateness)
        except UnicodeDecodeError:
            pass
        if chunk is None:
            chunk = slow_chunk(data, fmt, self.counts, self.clock, cfg.lateness)
        self.lines += chunk.lines
        self.parsed += chunk.parsed
        self.late += chunk.late
        for reason, sample in chunk.malformed:
            self.malformed_by_reason[reason] += 1
            self.malformed_samples.append({"reason": reason, "line": sample})
        self.clock = chunk.clock

    def _complete_through(self) -> int | None:
        return None if self.clock is None else self.clock - self.config.lateness - 1

    # -- evaluation ----------------------------------------------------------------------
    def _evaluate(self, upto: int | None) -> list[Event]:
        """Evaluate every second up to `upto` inclusive, in order."""
        events: list[Event] = []
        if upto is None:
            return events
        if self.cursor is None:
            if not self.seconds or min(self.seconds) > upto:
                return events
            self.cursor = min(self.seconds)
            interval = self.config.summary_interval
            self.next_block = self.cursor // interval * interval
        window, seconds, alert = self.config.window, self.seconds, self.alert
        t = self.cursor
        while t <= upto:
            if self.window_hits == 0 and not alert.firing:
                # Nothing in the window and quiet: nothing can happen before the next hit.
                nxt = min((s for s in seconds if s >= t), default=upto + 1)
                t = min(nxt, upto + 1)
                events += self._close_blocks_through(t)
                if t > upto:
                    break
            self.window_hits += seconds.get(t, 0) - seconds.pop(t - window, 0)
            event = alert.evaluate(t, self.window_hits)
            if event:
                events.append(event)
            t += 1
            events += self._close_blocks_through(t)
        self.cursor = max(t, self.cursor)
        return events

    def _close_blocks_through(self, end: int) -> list[Event]:
        """Report every block that ends at or before `end`, empty ones included."""
        events: list[Event] = []
        interval = self.config.summary_interval
        assert self.next_block is not None
        while self.next_block + interval <= end:
            if self.next_block not in self.blocks:
                busy = min((s for s in self.blocks if s > self.next_block), default=end)
                run_end = min(busy, end) // interval * interval
                if run_end - self.next_block > MAX_EMPTY_BLOCKS * interval:
                    events.append(Block().summary(self.next_block, run_end))
                    self.next_block = run_end
                    continue
            events += self._close_block(self.next_block + interval)
        return events

    def _close_block(self, end: int) -> list[Event]:
        start = self.next_block
        assert start is not None
        block = self.blocks.pop(start, None)
        summary = (block or Block()).summary(start, end)
        if block is not None:
            self.rollup.push(start, block)
        self.next_block = end
        self.last_summary = summary
        return [summary]

    # -- views ---------------------------------------------------------------------------
    def totals(self) -> Event:
        return {
            "type": TOTALS, "format": self.format or "auto", "lines": self.lines, "parsed": self.parsed,
            "malformed": sum(self.malformed_by_reason.values()), "late": self.late,
            "malformed_by_reason": dict(self.malformed_by_reason),
            "malformed_samples": list(self.malformed_samples),
        }

    def rate(self) -> float:
        """Hits/s over the alert window ending at the last evaluated second."""
        return self.window_hits / self.config.window

    def recent_seconds(self) -> list[int]:
        """Hits for each of the last `window` evaluated seconds, oldest first (for charts)."""
        if self.cursor is None:
            return [0] * self.config.window
        return [self.seconds.get(t, 0) for t in range(self.cursor - self.config.window, self.cursor)]

    def timeframe_summary(self) -> Event | None:
        return None if self.next_block is None else self.rollup.summary(self.next_block)

    # -- persistence -----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Everything needed to resume exactly where this monitor is (msgpack-friendly)."""
        return {
            "format": self.format, "lines": self.lines, "parsed": self.parsed, "late": self.late,
            "malformed_by_reason": dict(self.malformed_by_reason),
            "malformed_samples": list(self.malformed_samples),
            "clock": self.clock, "cursor": self.cursor, "window_hits": self.window_hits,
            "seconds": [[s, n] for s, n in self.seconds.items()],
            "blocks": [[s, b.to_state()] for s, b in self.blocks.items()],
            "next_block": self.next_block, "last_summary": self.last_summary,
            "rollup": self.rollup.to_state(), "alert": self.alert.to_state(),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Resume from `to_state()` output; raises (KeyError, TypeError, ValueError) if it is not."""
        self.format = state["format"] or self.format
        self.lines, self.parsed, self.late = int(state["lines"]), int(state["parsed"]), int(state["late"])
        self.malformed_by_reason = Counter({str(k): int(v) for k, v in state["malformed_by_reason"].items()})
        self.malformed_samples.extend(state["malformed_samples"])
        self.clock = state["clock"]
        self.cursor = state["cursor"]
        self.window_hits = int(state["window_hits"])
        self.seconds.update((int(s), int(n)) for s, n in state["seconds"])
        self.blocks.update((int(s), Block.from_state(b)) for s, b in state["blocks"])
        self.next_block = state["next_block"]
        self.last_summary = state["last_summary"]
        self.rollup.load(state["rollup"])
        self.alert.load(state["alert"])
