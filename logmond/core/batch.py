"""Turn a run of complete lines into a `Chunk` of per-second and per-block counts.

Two paths give the same result. The fast path matches every line of the run with one strict
regex and does the rest with C-level builtins (zip, map, Counter), touching Python code only once
per *distinct* request, status, date or host; it gives up (returns None) on anything unusual:
a blank or malformed line, bad UTF-8, a late line, a jump of the clock. The slow path then takes
the run line by line with the format's reference parser (`LogFormat.parse`). A format's columns
hold a strict subset of what its parser accepts, read by the same field functions of `parse.py`,
so both paths count identically.

The clock guard (slow path, `Chunk.place`) keeps one corrupt timestamp from moving the clock: a
line far from the clock is held as a suspect, in a group of lines that agree with it, until
JUMP_CONFIRM of them confirm a jump, or a line near the clock shows they were wrong.
"""
from __future__ import annotations

import re
from collections import Counter
from bisect import bisect_left, bisect_right
from itertools import accumulate, compress, count, groupby, islice, repeat
from operator import floordiv, ge, gt, methodcaller, sub
from typing import Callable, Hashable, Sequence

from logmond.core.formats import KIND_SUFFIX, LogFormat
from logmond.core.counters import Counters
from logmond.core.rules import RuleSet
from logmond.core.parse import (MAX_BYTES_PER_LINE, MAX_LINE, R_BINARY, R_CLOCK, R_TOO_LONG, SAMPLE_CHARS, Record,
                                decode_line, latency_of, meaning_of, vhost_of)
from logmond.core.settings import MAX_SPAN
from logmond.core.window import Block

# Seconds beyond the lateness that a line's time may be from the clock, either way, and be taken as
# any line is. Past that bound it is a suspect (see JUMP_CONFIRM). Half an hour: a wrong time inside
# the bound costs at most that much log time of lines counted late, while a clock set back an hour
# (the usual time-zone mistake) or a log resuming after a longer gap is followed as a jump.
MAX_JUMP = 1800
# Suspects that confirm a jump: each at most `lateness` behind the newest suspect before it and not
# a jump from it. Corrupt times come one or two at a time; five that agree are a log whose time
# really moved, and a quiet log still confirms within a few lines.
JUMP_CONFIRM = 5
# Groups of suspects held at once; past it the smallest (the oldest on a tie) is refuted. Each holds
# fewer than JUMP_CONFIRM lines, so the guard holds at most 16 lines.
MAX_GROUPS = 4
# Bytes a block counts per second of its span, at most (the total saturates there): 32 TiB/s, far
# beyond any server, and low enough that the rollup's sum over a timeframe (at most
# ceil(timeframe / interval) + 1 blocks, under 3 * MAX_SPAN seconds) stays below 2**63, which
# msgpack always encodes.
MAX_BYTES_PER_SECOND = 2**45
assert 3 * MAX_SPAN * MAX_BYTES_PER_SECOND < 2**63

# A request-and-status text of the common shape (`GET /api/user?id=1 HTTP/1.1",200`), giving
# what parse.meaning_of gives for it: whole text, method, section, status.
_KIND = re.compile(r'^(([A-Z]{1,20}) (/[^/?# "\n]*)[^ "\n]*(?: HTTP/[0-9](?:\.[0-9])?)?"[, ]([1-5][0-9][0-9]))$',
                   re.M | re.ASCII)
# A bytes field as the fast path takes it: `-` or decimal digits (a longer one goes line by line).
_DIGITS = re.compile(r"-|[0-9]{1,13}", re.ASCII)
# Distinct request-and-status texts remembered by the fast path (about 100 bytes each); the
# cache starts over when full, so ids in paths cannot make it grow without bound.
MAX_CACHED_KINDS = 50_000
# Distinct request-time texts remembered by the fast path (about 100 bytes each): millisecond
# times under a minute are 60,000 texts; the cache starts over when full.
MAX_CACHED_LATENCIES = 100_000
# Lines per group in the cheap lateness test.
_GROUP = 16


class Chunk:
    """What a run of lines did besides counting: line totals, malformed samples, the new clock, and
    the clock guard's suspects still held when it ended."""

    __slots__ = ("lines", "parsed", "late", "malformed", "clock", "lateness", "groups", "jump", "records", "rest")

    def __init__(self, clock: int | None, lateness: int = 0,
                 groups: Sequence[Sequence[tuple[Record, str]]] = ()) -> None:
        self.lines = 0
        self.parsed = 0
        self.late = 0
        # (reason, sample) per malformed line, in input order (suspects when they are refuted).
        self.malformed: list[tuple[str, str]] = []
        # Newest log second accepted, the clock after this run.
        self.clock = clock
        self.lateness = lateness
        # Suspects (record, sample), not yet counted anywhere, oldest group first: each group
        # lines that agree with each other, far from the clock or, before there is one, the
        # candidates for it.
        self.groups: list[list[tuple[Record, str]]] = [list(group) for group in groups]
        # The group that confirmed a jump backwards; the run stopped after it, `rest` bytes in.
        self.jump: list[tuple[Record, str]] = []
        # Accepted lines not yet added to the Counts.
        self.records: list[Record] = []
        self.rest: int | None = None

    def place(self, rec: Record, sample: str) -> bool:
        """Decide one parsed line against the clock; False when it confirms a jump backwards: the
        caller closes the timeline, starts a new one and `adopt`s `jump` into it."""
        ts, clock, bound = rec.ts, self.clock, self.lateness + MAX_JUMP
        if clock is not None and clock - bound <= ts <= clock + bound:
            if self.groups:
                self.refute()
            self.lines += 1
            self.parsed += 1
            if ts < clock - self.lateness:
                self.late += 1
            else:
                self.clock = max(clock, ts)
                self.records.append(rec)
            return True
        for group in self.groups:
            newest = max(r.ts for r, _ in group)
            if newest - bound <= ts <= newest + bound:
                break
        else:
            if len(self.groups) == MAX_GROUPS:
                self._refute(min(self.groups, key=len))
            self.groups.append([(rec, sample)])
            return True
        if ts < newest - self.lateness:
            # Among suspects but late there: late whichever way they go.
            self.lines += 1
            self.parsed += 1
            self.late += 1
            return True
        group.append((rec, sample))
        if len(group) < JUMP_CONFIRM:
            return True
        self.groups.remove(group)
        self.refute()
        if clock is not None and ts < clock:
            self.jump = group
            return False
        self.adopt(group)
        return True

    def settle(self, end: bool = False) -> None:
        """End of a run: with no clock, a single group (nothing contradicts it) sets it, so that a
        line arriving alone counts at once. End of input: with no clock the largest group sets it
        (the oldest on a tie); every other suspect is refuted."""
        if self.clock is None and self.groups and (end or len(self.groups) == 1):
            best = max(self.groups, key=len)
            self.groups.remove(best)
            self.refute()
            self.adopt(best)
        if end:
            self.refute()

    def refute(self) -> None:
        """Every group of suspects was wrong."""
        while self.groups:
            self._refute(self.groups[0])

    def _refute(self, group: list[tuple[Record, str]]) -> None:
        """These suspects were wrong: behind the clock, late (as any old line); otherwise
        malformed `clock`."""
        self.groups.remove(group)
        behind = self.clock is not None and group[0][0].ts < self.clock
        for _, sample in group:
            self.lines += 1
            if behind:
                self.parsed += 1
                self.late += 1
            else:
                self.malformed.append((R_CLOCK, sample))

    def adopt(self, group: Sequence[tuple[Record, str]]) -> None:
        """Accept lines that agree (each at most `lateness` behind the newest before it)."""
        for rec, _ in group:
            self.lines += 1
            self.parsed += 1
            self.clock = rec.ts if self.clock is None else max(self.clock, rec.ts)
            self.records.append(rec)

    def count(self, counts: Counts) -> None:
        """Add the accepted lines to `counts`."""
        if self.records:
            ts, hosts, methods, sections, codes, sizes, rtimes, utimes, vhosts = zip(*self.records)
            counts.add(list(ts), hosts, list(zip(zip(methods, sections), codes)), sizes,
                       rtimes=_present(rtimes), utimes=_present(utimes), vhosts=_present(vhosts))
            self.records = []


def _present(column: Sequence[object]) -> Sequence[object] | None:
    """A column of optional values, or None when no line has one (the format has no such field)."""
    return column if any(v is not None for v in column) else None


class Counts:
    """Where accepted lines are counted: hits per second, and a Block per summary interval."""

    def __init__(self, interval: int, rules: RuleSet | None = None, counters: Counters | None = None) -> None:
        self.interval = interval
        # The alert rules, which count the same lines into buckets of their own, and the
        # counters since start of the metrics endpoint (None when it is off).
        self.rules = rules if rules is not None else RuleSet()
        self.counters = counters
        # Where a block's bytes saturate.
        self.max_bytes = interval * MAX_BYTES_PER_SECOND
        self.seconds: dict[int, int] = {}
        self.blocks: dict[int, Block] = {}
        # Fast-path cache: raw request-and-status text -> index into `meanings`, so that a request
        # seen before costs one C-level lookup, and lines are counted by small ints.
        self.kinds: dict[str, int] = {}
        self.meanings: list[tuple[tuple[str, str], int]] = []
        self._meaning_index: dict[tuple[tuple[str, str], int], int] = {}
        # Fast-path cache: request-time text -> seconds (None for `-`), for one latency scale.
        self._latencies: dict[str, float | None] = {}
        self._latency_scale = 1.0

    def latencies(self, column: list[str] | None, scale: float) -> list[float | None] | None | bool:
        """A latency column in seconds, each text not seen before read once; False if one does
        not read (the line goes down the slow path), None when the format has no such column."""
        if column is None:
            return None
        cache = self._latencies
        if scale != self._latency_scale or len(cache) > MAX_CACHED_LATENCIES:
            cache.clear()
            self._latency_scale = scale
        for text in set(column).difference(cache):
            seconds = latency_of(text, scale)
            if isinstance(seconds, str):
                return False
            cache[text] = seconds
        return list(map(cache.__getitem__, column))

    def learn(self, kinds: set[str]) -> bool:
        """Resolve request-and-status texts not seen before; False if one does not parse.

        Plain origin-form requests are resolved in one regex pass over all the new texts; the
        rest (absolute-form, odd ones) go through the reference parser one by one.
        """
        if len(self.kinds) + len(kinds) > MAX_CACHED_KINDS:
            self.kinds.clear()
            self.meanings.clear()
            self._meaning_index.clear()
        new = kinds.difference(self.kinds)
        if not new:
            return True
        rows = _KIND.findall("\n".join(new))
        meanings = {}
        if rows:
            texts, methods, sections, statuses = zip(*rows)
            meanings = dict(zip(texts, zip(zip(methods, sections), map(int, statuses))))
        for kind in new.difference(meanings):
            meaning = meaning_of(kind[:-KIND_SUFFIX], kind[-3:])
            if isinstance(meaning, str):
                return False
            meanings[kind] = meaning
        index = self._meaning_index
        for meaning in set(meanings.values()).difference(index):
            index[meaning] = len(self.meanings)
            self.meanings.append(meaning)
        self.kinds.update(zip(meanings, map(index.__getitem__, meanings.values())))
        return True

    def add(self, seconds: list[int], hosts: Sequence[str], kinds: Sequence[Hashable], sizes: Sequence[int],
            meaning: Callable[[Hashable], tuple[tuple[str, str], int]] | None = None, *,
            rtimes: Sequence[float | None] | None = None, utimes: Sequence[float | None] | None = None,
            vhosts: Sequence[str | None] | None = None) -> None:
        """Count accepted lines given column by column (parallel sequences).

        `kinds` are ((method, section), status) pairs, or keys that `meaning` turns into one;
        request and upstream times (seconds or None) and virtual hosts when the format has them.
        """
        for second, n in Counter(seconds).items():
            self.seconds[second] = self.seconds.get(second, 0) + n
        if self.rules:
            self.rules.count(seconds, kinds, meaning or _itself, rtimes, vhosts)
        if self.counters is not None:
            self.counters.count(kinds, meaning or _itself, sizes, rtimes)
        blocks = list(map(floordiv, seconds, repeat(self.interval)))
        columns = [c for c in (hosts, kinds, sizes, rtimes, utimes, vhosts)]
        region = _unsorted_region(blocks)
        if region:
            lo, hi = region
            order = sorted(range(lo, hi), key=blocks.__getitem__)
            blocks, *columns = ([*col[:lo], *map(col.__getitem__, order), *col[hi:]] if col is not None else None
                                for col in (blocks, *columns))
        hosts, kinds, sizes, rtimes, utimes, vhosts = columns
        resolve = meaning or _itself
        start = 0
        for blk, run in groupby(blocks):
            end = start + len(list(run))
            key = blk * self.interval
            block = self.blocks.get(key)
            if block is None:
                block = self.blocks[key] = Block()
            counted = Counter(kinds[start:end]).items()
            block.add_requests(counted if meaning is None else ((meaning(k), n) for k, n in counted))
            block.add_hosts(hosts[start:end])
            block.bytes = min(block.bytes + sum(sizes[start:end]), self.max_bytes)
            if rtimes is not None or utimes is not None:
                sections = [m[0][1] for m in map(resolve, kinds[start:end])] if rtimes is not None else ()
                block.add_timings(sections, None if rtimes is None else rtimes[start:end],
                                  None if utimes is None else utimes[start:end])
            if vhosts is not None:
                block.add_vhosts([v for v in vhosts[start:end] if v is not None])
            start = end


def _itself(kind: Hashable) -> tuple[tuple[str, str], int]:
    """The slow path's kinds are already ((method, section), status)."""
    return kind  # type: ignore[return-value]


def _unsorted_region(blocks: list[int]) -> tuple[int, int] | None:
    """[lo, hi) such that sorting just blocks[lo:hi] sorts the whole list; None if sorted.

    Lines are nearly in order, so only the few around a block boundary need moving.
    """
    drops = list(compress(count(), map(gt, blocks, islice(blocks, 1, None))))
    if not drops:
        return None
    lo, hi = drops[0], drops[-1] + 2
    middle = blocks[lo:hi]
    return bisect_right(blocks, min(middle), 0, lo), bisect_left(blocks, max(middle), hi, len(blocks))


def fast_chunk(text: str, fmt: LogFormat, counts: Counts, clock: int | None, lateness: int,
               horizon: int | None = None) -> Chunk | None:
    """Count `text` (complete lines, each ending in a newline), or return None, having counted
    nothing, to send it down the slow path. The caller holds no suspects (see Chunk.place)."""
    cols = fmt.columns(text)
    if cols is None:
        return None
    stamps, hosts, kinds, sizes = cols.stamps, cols.hosts, cols.kinds, cols.sizes
    lines = len(stamps)
    times = {s: fmt.read_time(s) for s in set(stamps)}
    if None in times.values() or not counts.learn(set(kinds)):
        return None
    seconds = list(map(times.__getitem__, stamps))
    start = seconds[0] if clock is None else clock
    top = max(seconds)
    newest = max(start, top)
    if horizon is not None and top > horizon:
        return None
    # A line far behind is late, and the lateness test below declines it; far ahead is a jump.
    if top > start + lateness + MAX_JUMP and not _no_jump(seconds, start, lateness + MAX_JUMP):
        return None
    if min(seconds) < newest - lateness and not _none_late(seconds, start, lateness):
        return None
    if not fmt.sizes_checked and not all(map(_DIGITS.fullmatch, set(sizes))):
        return None
    if "-" in sizes:
        sizes = list(map(methodcaller("replace", "-", "0"), sizes))
    nbytes = list(map(int, sizes))
    if max(nbytes) > MAX_BYTES_PER_LINE:
        return None
    timings = [counts.latencies(column, fmt.latency_scale) for column in (cols.rtimes, cols.utimes)]
    if False in timings:
        return None
    vhosts = None
    if cols.vhosts is not None:
        names = {v: vhost_of(v) for v in set(cols.vhosts)}
        vhosts = list(map(names.__getitem__, cols.vhosts))
    chunk = Chunk(newest)
    chunk.lines = chunk.parsed = lines
    counts.add(seconds, hosts, list(map(counts.kinds.__getitem__, kinds)), nbytes, counts.meanings.__getitem__,
               rtimes=timings[0] or None, utimes=timings[1] or None, vhosts=vhosts)
    return chunk


def _no_jump(seconds: list[int], clock: int, bound: int) -> bool:
    """True if no line is more than `bound` ahead of the newest line before it (or the clock)."""
    return max(map(sub, seconds, accumulate(seconds, max, initial=clock))) <= bound


def _none_late(seconds: list[int], clock: int, lateness: int) -> bool:
    """True if no line is more than `lateness` behind the newest line before it.

    First a cheap sufficient test on groups of _GROUP lines (each group's oldest line against the
    newest line up to the end of that group), then the exact line-by-line test if that fails.
    """
    tail = len(seconds) % _GROUP
    body = seconds[:len(seconds) - tail]
    groups = [iter(body)] * _GROUP
    newest = list(accumulate(map(max, zip(*groups)), max, initial=clock))[1:]
    oldest = list(map(min, zip(*[iter(body)] * _GROUP)))
    if tail:
        newest.append(max(newest[-1] if newest else clock, *seconds[-tail:]))
        oldest.append(min(seconds[-tail:]))
    if all(map(ge, oldest, map(sub, newest, repeat(lateness)))):
        return True
    return max(map(sub, accumulate(seconds, max, initial=clock), seconds)) <= lateness


def slow_chunk(data: bytes, fmt: LogFormat, counts: Counts, clock: int | None, lateness: int,
               groups: Sequence[Sequence[tuple[Record, str]]] = (), horizon: int | None = None) -> Chunk:
    """Count `data` (complete lines) line by line; never raises on any input.

    `groups` are the suspects the runs before left (Chunk); a line dated after `horizon` is
    malformed `clock`. A confirmed jump backwards stops the run: `rest` says where.
    """
    chunk = Chunk(clock, lateness, groups)
    taken = 0
    for raw in data.split(b"\n")[:-1]:
        taken += len(raw) + 1
        if len(raw) > MAX_LINE:
            chunk.lines += 1
            chunk.malformed.append((R_TOO_LONG, _sample(raw)))
            continue
        line = decode_line(raw)
        if line is None:
            rec = fmt.parse_bytes(raw)
            line = _sample(raw)
        elif not line.strip() or line == fmt.header:
            continue
        elif "\x00" in line:
            rec = R_BINARY
        else:
            rec = fmt.parse(line)
        if isinstance(rec, str) or (horizon is not None and rec.ts > horizon):
            chunk.lines += 1
            chunk.malformed.append((R_CLOCK if isinstance(rec, Record) else rec, line[:SAMPLE_CHARS]))
            continue
        if not chunk.place(rec, line[:SAMPLE_CHARS]):
            chunk.rest = taken
            break
    else:
        chunk.settle()
    chunk.count(counts)
    return chunk


def _sample(raw: bytes) -> str:
    return raw[:SAMPLE_CHARS].decode("utf-8", "replace")


def split_lines(data: bytes) -> list[str]:
    """Decoded non-blank lines of `data`, for format detection."""
    lines = (decode_line(raw) for raw in data.split(b"\n") if len(raw) <= MAX_LINE)
    return [line for line in lines if line and line.strip()]
