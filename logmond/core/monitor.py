"""The monitoring core: lines in, events out, with log time as the only clock.

`Monitor` is pure: the caller hands it bytes of complete lines and, when live, the current log
time. Seconds are evaluated in order once complete (a line more than `lateness` seconds newer has
been seen, or the caller says time has passed, or input ended), so the alert events are exactly
those of the offline rule for any input whose lines are at most `lateness` seconds out of order
and never jump by more than `lateness` + MAX_JUMP (the clock guard, batch.py). A confirmed jump
backwards closes the timeline as end of input would and starts a new one at the new time.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Any

from logmond.core.alerts import AlertRule, Journal
from logmond.core.counters import Counters
from logmond.core.batch import MAX_JUMP, Chunk, Counts, fast_chunk, slow_chunk, split_lines
from logmond.core import catalog
from logmond.core.formats import LogFormat
from logmond.core.parse import R_FORMAT, SAMPLE_CHARS, Record
from logmond.core.rules import Changes, RuleSet
from logmond.core.settings import RELOADABLE, CoreConfig, core_config, core_values
from logmond.core.window import HISTORY_TRACKED, Block, Rollup, history_row
from shared.schema import ALERT, HIGH_TRAFFIC, TOTALS, Event

# Malformed lines kept for inspection (the newest ones).
MALFORMED_SAMPLES = 20
# Bytes of a run of lines handed to one batch: big enough to amortise, small enough that one bad
# line only sends this much down the slow path.
BATCH_BYTES = 256 * 1024
# Undecided input kept while `auto` looks for a format that fits.
DETECT_MAX_BYTES = 1024 * 1024
# Lines the format detector samples.
DETECT_LINES = 50
# Runs remembered for the malformed share of the last alert window (a run is a read of up to
# BATCH_BYTES, so this covers far more than any window's lines at any rate).
MAX_QUALITY_RUNS = 4096
# A run of empty blocks longer than this is reported as one summary, so a timestamp far in the
# future cannot make the monitor print forever. One day at the default interval.
MAX_EMPTY_BLOCKS = 8640
# Seconds of log time per history row (or the summary interval, when it is longer).
HISTORY_SPAN = 60


class Monitor:
    def __init__(self, config: CoreConfig, record: bool = False, metrics: bool = False) -> None:
        # For the state database: closed blocks, alert events and history rows are handed out
        # once (Rollup.take_closed, journal.history, take_history) instead of being part of every
        # to_state().
        self.record = record
        config.check()
        self.config = config
        self.log_format: LogFormat | None = (None if config.format == catalog.AUTO
                                             else catalog.compile_format(config.format))
        self._undecided = b""
        # Non-blank lines in `_undecided`: while there are some and no format, status says none fits.
        self._held = 0
        # Lines `auto` found no format for (counted malformed `format`), the first kept to show.
        self.unfit = 0
        self.first_unfit: str | None = None
        # (log clock, lines, malformed) of each run of the last alert window, oldest first: how
        # much of what arrived lately could not be read (check warns past MALFORMED_WARNING).
        self._quality: deque[tuple[int | None, int, int]] = deque()
        self.lines = self.parsed = self.late = 0
        self.malformed_by_reason: Counter[str] = Counter()
        self.malformed_samples: deque[dict[str, str]] = deque(maxlen=MALFORMED_SAMPLES)
        # Newest log second accepted or announced; seconds < clock - lateness are complete.
        self.clock: int | None = None
        # The clock guard's suspects, not yet counted anywhere (batch.Chunk.groups).
        self.groups: list[list[tuple[Record, str]]] = []
        # Hits of the last `window` seconds before a jump backwards, oldest first: the new timeline
        # goes on with them as the seconds before its first, since real time went on.
        self.carry: list[int] = []
        # Next second to evaluate; None until the first one is.
        self.cursor: int | None = None
        # Hits per second (for the seconds still in the alert window or not yet evaluated) and
        # the open summary blocks.
        self.journal = Journal()
        self.alert = AlertRule(config.threshold, config.window, config.hysteresis, self.journal)
        self.rules = RuleSet(config.rules)
        # The cursor of a timeline closed by a jump backwards, while the rules' windows wait to be
        # moved to the new one (see _evaluate).
        self._rule_base: int | None = None
        # Counters since start for the metrics endpoint, kept only when it is on.
        self.counters = Counters(config.metrics_sections) if metrics else None
        self.counts = Counts(config.summary_interval, self.rules, self.counters)
        self.seconds = self.counts.seconds
        self.blocks = self.counts.blocks
        # Hits in (cursor - 1 - window, cursor - 1].
        self.window_hits = 0
        self.next_block: int | None = None
        self.last_summary: Event | None = None
        self.rollup = Rollup(config.timeframe, config.summary_interval, record)
        # Recording: the history row being filled (its start and the blocks of it merged so far),
        # and the rows finished since the last take_history().
        self._row: tuple[int, Block] | None = None
        self._rows: list[dict[str, Any]] = []

    # -- input ---------------------------------------------------------------------------
    def feed(self, data: bytes, horizon: int | None = None) -> list[Event]:
        """Take complete lines (each ending in b'\\n'); return the events they complete.

        `horizon` is the newest log second a line may plausibly carry (live: the wall clock plus
        a tolerance); a line dated after it is malformed `clock`. None: no such bound.
        """
        if self.log_format is None:
            data = self._detect(data)
            if not data:
                return []
        events: list[Event] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start + BATCH_BYTES) + 1 or len(data)
            events += self._take(data[start:end], horizon)
            events += self._evaluate(self._complete_through())
            start = end
        return events

    def advance(self, now: int) -> list[Event]:
        """Live mode: log time has reached `now` even if no line says so."""
        if self.clock is None or now <= self.clock:
            return []
        self.clock = now
        return self._evaluate(self._complete_through())

    def reconfigure(self, config: CoreConfig) -> tuple[list[str], Changes]:
        """A config reload: apply the settings that can change while running (threshold,
        hysteresis and rules, from the next second on); return the names of the others that
        differ, which only a restart applies, and what changed among the rules."""
        config.check()
        old, new = core_values(self.config), core_values(config)
        hot = {name: new[name] for name in RELOADABLE if name in new}
        self.config = core_config({**old, **hot})
        self.alert.retune(self.config.threshold, self.config.hysteresis)
        changes = self.rules.reconfigure(self.config.rules)
        return [name for name in new if new[name] != old[name] and name not in hot], changes

    def finish(self) -> list[Event]:
        """End of input: evaluate every remaining second and report the last block."""
        events: list[Event] = []
        if self.log_format is None:
            data, self._undecided = self._undecided, b""
            self._held = 0
            if self.decide_format(data) is None:
                self._unfit(split_lines(data))
            else:
                events += self.feed(data)
        if self.groups:
            chunk = Chunk(self.clock, self.config.lateness, self.groups)
            chunk.settle(end=True)
            chunk.count(self.counts)
            self._tally(chunk)
        events += self._close_timeline()
        if self.record:
            self._finish_row()
        return events

    @property
    def format(self) -> str | None:
        """The format's name (a preset, or nginx / apache for a format string); None while `auto`
        has found none."""
        return None if self.log_format is None else self.log_format.name

    def describe_format(self) -> dict[str, object]:
        """`format` and `format_spec` (and `extra` for combined with extra fields) for replies;
        with `format_error` saying why while no format fits."""
        if self.log_format is not None:
            return {**self.log_format.describe(), "format_error": None}
        reason = None
        if self.unfit or self._held:
            reason = f"none of the formats tried fits the lines read so far ({catalog.tried()})"
        return {"format": None, "format_spec": None, "format_error": reason}

    def decide_format(self, sample: bytes) -> LogFormat | None:
        """The format, decided now from `sample` (complete lines) if `auto` has not yet; None if
        nothing fits them. The replayer reads each line's time before handing the line over."""
        if self.log_format is None:
            self.log_format = catalog.detect(split_lines(sample)[:DETECT_LINES])
        return self.log_format

    def _detect(self, data: bytes) -> bytes:
        """Hold lines until a format fits them; a full sample (DETECT_LINES lines, or
        DETECT_MAX_BYTES) that nothing fits is counted malformed `format`, and the search goes
        on with the lines after it."""
        self._undecided += data
        lines = split_lines(self._undecided)
        self.log_format = catalog.detect(lines[:DETECT_LINES])
        if self.log_format is not None or len(self._undecided) >= DETECT_MAX_BYTES or len(lines) >= DETECT_LINES:
            data, self._undecided, self._held = self._undecided, b"", 0
            if self.log_format is not None:
                return data
            self._unfit(lines)
        else:
            self._held = len(lines)
        return b""

    def _unfit(self, lines: list[str]) -> None:
        if lines and self.first_unfit is None:
            self.first_unfit = lines[0][:SAMPLE_CHARS]
        self.unfit += len(lines)
        self.lines += len(lines)
        self._note_quality(self.clock, len(lines), len(lines))
        if lines:
            self.malformed_by_reason[R_FORMAT] += len(lines)
            self.malformed_samples.extend({"reason": R_FORMAT, "line": line[:SAMPLE_CHARS]} for line in lines[-3:])

    def _take(self, data: bytes, horizon: int | None) -> list[Event]:
        """Count a run of lines; return the events of a timeline closed by a jump backwards."""
        events: list[Event] = []
        while True:
            chunk = self._chunk(data, horizon)
            self._tally(chunk)
            if chunk.rest is None:
                return events
            # The suspects confirmed a jump backwards: finish the old timeline as end of input
            # would, then start a new one at their time and go on with the rest of the run.
            events += self._close_timeline()
            carry, base = self.recent_seconds(), self.cursor
            self._new_timeline()
            self.carry, self._rule_base = carry, base
            self.rollup = Rollup(self.config.timeframe, self.config.summary_interval, self.record)
            fresh = Chunk(None, self.config.lateness)
            fresh.adopt(chunk.jump)
            fresh.count(self.counts)
            self._tally(fresh)
            data = data[chunk.rest:]

    def _chunk(self, data: bytes, horizon: int | None) -> Chunk:
        """The fast path when it can take the run (never with suspects held), else the slow one."""
        fmt, lateness = self.log_format, self.config.lateness
        assert fmt is not None
        chunk: Chunk | None = None
        if not self.groups:
            try:
                chunk = fast_chunk(data.decode("utf-8"), fmt, self.counts, self.clock, lateness, horizon)
            except UnicodeDecodeError:
                pass
        if chunk is None:
            chunk = slow_chunk(data, fmt, self.counts, self.clock, lateness, self.groups, horizon)
        return chunk

    def _tally(self, chunk: Chunk) -> None:
        self._note_quality(chunk.clock, chunk.lines, len(chunk.malformed))
        self.lines += chunk.lines
        self.parsed += chunk.parsed
        self.late += chunk.late
        for reason, sample in chunk.malformed:
            self.malformed_by_reason[reason] += 1
            self.malformed_samples.append({"reason": reason, "line": sample})
        self.clock = chunk.clock
        self.groups = chunk.groups

    def _close_timeline(self) -> list[Event]:
        """Evaluate every second up to the clock and report the open block."""
        if self.clock is None:
            return []
        events = self._evaluate(self.clock)
        if self.next_block in self.blocks:
            events += self._close_block(self.next_block + self.config.summary_interval)
        return events

    def _new_timeline(self) -> None:
        """Forget the per-second state and the open blocks: the next lines set the clock afresh.
        Totals, the alerts' state and their history stay."""
        self.seconds.clear()
        self.blocks.clear()
        self.clock = self.cursor = self.next_block = None
        self.window_hits = 0
        self.carry = []

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
            for t, n in zip(range(self.cursor - len(self.carry), self.cursor), self.carry):
                if n:
                    self.seconds[t] = n
            self.window_hits, self.carry = sum(self.carry), []
            if self._rule_base is not None:
                self.rules.shift(self.cursor - self._rule_base)
                self._rule_base = None
        window, seconds, alert, rules, journal = self.config.window, self.seconds, self.alert, self.rules, self.journal
        t = self.cursor
        while t <= upto:
            if self.window_hits == 0 and not alert.firing and rules.idle():
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
            if rules:
                events += map(journal.record, rules.evaluate(t))
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
        if self.record:
            self._add_to_history(start, end, block)
        self.next_block = end
        self.last_summary = summary
        return [summary]

    def _add_to_history(self, start: int, end: int, block: Block | None) -> None:
        """Merge a closed block into the history row of its start (a minute, or the block itself
        when the interval is longer); a row is finished once a block reaches its end."""
        span = self._history_span()
        row_start = start // span * span
        if self._row is not None and self._row[0] != row_start:
            self._finish_row()
        if block is not None and block.hits:
            if self._row is None:
                self._row = (row_start, Block())
            self._row[1].merge(block, HISTORY_TRACKED)
        if end >= row_start + span:
            self._finish_row()

    def _history_span(self) -> int:
        return max(HISTORY_SPAN, self.config.summary_interval)

    def _finish_row(self) -> None:
        if self._row is not None:
            start, block = self._row
            self._rows.append(history_row(start, start + self._history_span(), block))
            self._row = None

    def take_history(self) -> list[dict[str, Any]]:
        """The history rows finished since the last call (recording only), oldest first."""
        taken, self._rows = self._rows, []
        return taken

    # -- views ---------------------------------------------------------------------------
    def totals(self) -> Event:
        return {
            "type": TOTALS, **self.describe_format(), "lines": self.lines, "parsed": self.parsed,
            "malformed": sum(self.malformed_by_reason.values()), "late": self.late,
            "malformed_by_reason": dict(self.malformed_by_reason),
            "malformed_samples": list(self.malformed_samples),
        }

    def firing_events(self) -> list[Event]:
        """The alert event of each rule firing now, for notifications to tell again after a restart."""
        firing = {name for name, rule in self.rules.rules.items() if rule.firing}
        if self.alert.firing:
            firing.add(HIGH_TRAFFIC)
        found: dict[str, Event] = {}
        for event in reversed(self.journal.history):
            name = event.get("rule", HIGH_TRAFFIC)
            if name in firing and name not in found and event["type"] == ALERT:
                found[name] = event
        return list(found.values())

    def unfit_sample(self) -> str | None:
        """A line no format fits (the first one), to show the operator."""
        if self.first_unfit is not None:
            return self.first_unfit
        lines = split_lines(self._undecided[:SAMPLE_CHARS * 4])
        return lines[0][:SAMPLE_CHARS] if lines else None

    def _note_quality(self, clock: int | None, lines: int, malformed: int) -> None:
        if lines:
            self._quality.append((clock, lines, malformed))
        newest = self.clock if self.clock is not None else clock
        while self._quality and (len(self._quality) > MAX_QUALITY_RUNS or (
                newest is not None and self._quality[0][0] is not None
                and self._quality[0][0] <= newest - self.config.window)):
            self._quality.popleft()

    def recent_quality(self) -> tuple[int, int]:
        """(lines, malformed) read in runs of the last alert window of log time."""
        self._note_quality(self.clock, 0, 0)
        return sum(n for _, n, _ in self._quality), sum(m for _, _, m in self._quality)

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
            "format": None if self.log_format is None else self.log_format.describe(),
            "lines": self.lines, "parsed": self.parsed, "late": self.late, "unfit": self.unfit,
            "malformed_by_reason": dict(self.malformed_by_reason),
            "malformed_samples": list(self.malformed_samples),
            "clock": self.clock, "cursor": self.cursor, "window_hits": self.window_hits,
            "seconds": [[s, n] for s, n in self.seconds.items()],
            "blocks": [[s, b.to_state()] for s, b in self.blocks.items()],
            "next_block": self.next_block, "last_summary": self.last_summary,
            "rollup": self.rollup.to_state(),
            "alert": {**self.alert.to_state(), **self.journal.to_state(), **({"history": []} if self.record else {})},
            "rules": self.rules.to_state(), "rule_base": self._rule_base,
            "counters": None if self.counters is None else self.counters.to_state(),
            "suspects": [[[*rec, sample] for rec, sample in group] for group in self.groups],
            "carry": self.carry,
            "row": None if self._row is None else [self._row[0], self._row[1].to_state()],
        }

    def load(self, state: dict[str, Any], horizon: int | None = None, records: list[dict[str, Any]] | None = None,
             legacy_hosts: tuple[int, dict[str, Any]] | None = None) -> None:
        """Resume from `to_state()` output, with a recording rollup's records (see Rollup.load);
        raises (KeyError, TypeError, ValueError) if it is not.

        A clock that a corrupt line moved before the clock guard existed is repaired: see _repair.
        """
        if state["format"] is not None and self.log_format is None:
            self.log_format = catalog.restore(state["format"])
        self.unfit = int(state.get("unfit", 0))
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
        self.rollup.load(state["rollup"], records, legacy_hosts)
        self.alert.load(state["alert"])
        self.journal.load(state["alert"])
        # Absent from checkpoints written before there were rules.
        self.rules.load(state.get("rules", {}))
        self._rule_base = state.get("rule_base")
        if self.counters is not None and state.get("counters") is not None:
            self.counters.load(state["counters"])
        # Absent from checkpoints written before the clock guard.
        self.groups = [_records(group) for group in state.get("suspects", [])]
        self.carry = [int(n) for n in state.get("carry", [])]
        row = state.get("row")
        self._row = None if row is None else (int(row[0]), Block.from_state(row[1]))
        self._repair(horizon)

    def _repair(self, horizon: int | None) -> None:
        """Bring back a clock that lies beyond `horizon` or far beyond the newest second the state
        holds data for. What lies beyond the horizon is dropped (the rollup whole, if it holds any
        of it); if seconds beyond it were evaluated, that timeline cannot go on: it starts afresh
        with the next line (totals and alert history stay)."""
        if self.clock is None:
            return
        if horizon is not None and self.clock > horizon:
            if self.cursor is not None and self.cursor > horizon + 1:
                self._new_timeline()
                self.rules.clear_windows()
                self._rule_base = None
            self.rules.drop_after(horizon)
            for second in [s for s in self.seconds if s > horizon]:
                del self.seconds[second]
            for start in [s for s in self.blocks if s > horizon]:
                del self.blocks[start]
            if any(start > horizon for start, _ in self.rollup.blocks):
                self.rollup = Rollup(self.config.timeframe, self.config.summary_interval, self.record)
            if self.last_summary is not None and self.last_summary["end"] > horizon + 1:
                self.last_summary = None
        newest = self._data_through()
        far = self.config.lateness + MAX_JUMP
        if newest is None or self.clock > newest + far or (horizon is not None and self.clock > horizon):
            self.clock = newest

    def _data_through(self) -> int | None:
        """The newest second the state vouches for: a second or an open block with hits, or the
        evaluated seconds (which needed the clock `lateness` past them)."""
        interval = self.config.summary_interval
        newest = [*self.seconds, *(start + interval - 1 for start in self.blocks)]
        if self.cursor is not None:
            newest.append(self.cursor + self.config.lateness)
        return max(newest, default=None)


def _records(rows: list[Any]) -> list[tuple[Record, str]]:
    """Suspects as to_state() saves them: the Record's fields, then the sample."""
    out = []
    for *fields, sample in rows:
        ts, host, method, section, status, size, rtime, utime, vhost = fields
        out.append((Record(int(ts), str(host), str(method), str(section), int(status), int(size),
                           _seconds(rtime), _seconds(utime), None if vhost is None else str(vhost)), str(sample)))
    return out


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
