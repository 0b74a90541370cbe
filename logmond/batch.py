"""Turn a run of complete lines into a `Chunk` of per-second and per-block counts.

Two paths give the same result. The fast path matches every line of the run with one strict
regex and does the rest with C-level builtins (zip, map, Counter), touching Python code only once
per *distinct* request, status, date or host; it gives up (returns None) on anything unusual:
a blank or malformed line, bad UTF-8, a late line. The slow path then takes the run line by line
with the reference parsers of `parse.py`. The fast pattern accepts a strict subset of what the
reference parser accepts, with the same fields, so both paths count identically.
"""
from __future__ import annotations

import re
from collections import Counter
from itertools import accumulate, groupby, repeat
from operator import floordiv, itemgetter, methodcaller, sub
from typing import Iterable

from logmond.parse import (CSV_HEADER, MAX_LINE, R_ENCODING, R_TOO_LONG, SAMPLE_CHARS, Record,
                           clf_time, decode_line, parse_line, parse_request, status_of)
from logmond.window import Block

# Groups: host, time, request, status, bytes. Field lengths are bounded so that any line the
# pattern matches is shorter than MAX_LINE.
# No CR, LF or NUL inside any field: the reference parser treats those specially.
_Q = r'"[^"\r\n\x00]{0,1024}"'
_TAIL = r'([0-9]{3}),([0-9]{1,18}|-)\r?$'
_F = r'[^"\\\r\n\x00]'  # a character of a quoted CLF field: no quote, backslash escape, CR, LF, NUL
_TOKEN = r'[^\s"\[\]\x00]{1,1024}'
_CLF_HEAD = (rf'^({_TOKEN}) {_TOKEN} {_TOKEN} \[([^\]\r\n\x00]{{1,64}})\] "({_F}{{0,16384}})" '
             r'([0-9]{3}) ([0-9]{1,18}|-)')
FAST = {
    "csv": re.compile(
        rf'^"([^"\r\n\x00]{{0,1024}})",(?:{_Q}|[^",\r\n\x00]{{0,1024}}),(?:{_Q}|[^",\r\n\x00]{{0,1024}}),'
        rf'([0-9]{{1,12}}),"([^"\r\n\x00]{{0,16384}})",{_TAIL}', re.M | re.ASCII),
    "clf": re.compile(_CLF_HEAD + r'\r?$', re.M | re.ASCII),
    "combined": re.compile(_CLF_HEAD + rf' "{_F}{{0,8192}}" "{_F}{{0,8192}}"\r?$', re.M | re.ASCII),
}
# Any line a fast pattern matches is short enough for the reference parser to accept too.
assert MAX_LINE > 3 * 1024 + 16384 + 64 + 2 * 8192 + 64


class Chunk:
    """What a run of lines adds: counts, plus the bookkeeping the monitor needs."""

    __slots__ = ("lines", "parsed", "late", "malformed", "seconds", "blocks", "clock")

    def __init__(self, clock: int | None) -> None:
        self.lines = 0
        self.parsed = 0
        self.late = 0
        # (reason, sample) per malformed line, in input order.
        self.malformed: list[tuple[str, str]] = []
        self.seconds: Counter[int] = Counter()
        self.blocks: dict[int, Block] = {}
        # Newest log second seen, the clock after this run.
        self.clock = clock

    def block(self, start: int) -> Block:
        b = self.blocks.get(start)
        if b is None:
            b = self.blocks[start] = Block()
        return b


def fast_chunk(text: str, fmt: str, interval: int, clock: int | None, lateness: int) -> Chunk | None:
    """Counts for `text` (complete lines, each ending in a newline), or None to use the slow path."""
    rows = FAST[fmt].findall(text)
    if not rows or len(rows) != text.count("\n"):
        return None
    hosts, stamps, requests, statuses, sizes = zip(*rows)
    if fmt == "csv":
        seconds = list(map(int, stamps))
    else:
        dates = {d: clf_time(d) for d in set(stamps)}
        if None in dates.values():
            return None
        seconds = list(map(dates.__getitem__, stamps))
    start = seconds[0] if clock is None else clock
    if max(map(sub, accumulate(seconds, max, initial=start), seconds)) > lateness:
        return None
    reqs = {r: parse_request(r) for r in set(requests)}
    codes = {s: status_of(s) for s in set(statuses)}
    if None in reqs.values() or None in codes.values():
        return None

    if "-" in sizes:
        sizes = map(methodcaller("replace", "-", "0"), sizes)
    chunk = Chunk(max(start, max(seconds)))
    chunk.lines = chunk.parsed = len(rows)
    _count(chunk, interval, seconds, hosts, map(reqs.__getitem__, requests),
           map(codes.__getitem__, statuses), map(int, sizes))
    return chunk


def _count(chunk: Chunk, interval: int, seconds: list[int], hosts: Iterable[str],
           requests: Iterable[tuple[str, str]], codes: Iterable[int], sizes: Iterable[int]) -> None:
    """Add accepted lines, given column by column, to the chunk's seconds and blocks."""
    chunk.seconds.update(seconds)
    blocks = list(map(floordiv, seconds, repeat(interval)))
    for (blk, (method, section), code), n in Counter(zip(blocks, requests, codes)).items():
        chunk.block(blk * interval).add_requests((((method, section, code), n),))
    by_block: dict[int, list[tuple[str, int]]] = {}
    for (blk, host), n in Counter(zip(blocks, hosts)).items():
        by_block.setdefault(blk, []).append((host, n))
    for blk, counts in by_block.items():
        chunk.block(blk * interval).add_hosts(counts)
    for blk, group in groupby(zip(blocks, sizes), itemgetter(0)):
        chunk.block(blk * interval).bytes += sum(map(itemgetter(1), group))


def slow_chunk(data: bytes, fmt: str, interval: int, clock: int | None, lateness: int) -> Chunk:
    """Counts for `data` (complete lines), line by line; never raises on any input."""
    chunk = Chunk(clock)
    records: list[Record] = []
    for raw in data.split(b"\n")[:-1]:
        if len(raw) > MAX_LINE:
            chunk.lines += 1
            chunk.malformed.append((R_TOO_LONG, _sample(raw)))
            continue
        line = decode_line(raw)
        if line is None:
            chunk.lines += 1
            chunk.malformed.append((R_ENCODING, _sample(raw)))
            continue
        if not line.strip() or (fmt == "csv" and line == CSV_HEADER):
            continue
        chunk.lines += 1
        rec = parse_line(line, fmt)
        if isinstance(rec, str):
            chunk.malformed.append((rec, line[:SAMPLE_CHARS]))
            continue
        chunk.parsed += 1
        if chunk.clock is not None and rec.ts < chunk.clock - lateness:
            chunk.late += 1
            continue
        chunk.clock = rec.ts if chunk.clock is None else max(chunk.clock, rec.ts)
        records.append(rec)
    if records:
        ts, hosts, methods, sections, codes, sizes = zip(*records)
        _count(chunk, interval, list(ts), hosts, zip(methods, sections), codes, sizes)
    return chunk


def _sample(raw: bytes) -> str:
    return raw[:SAMPLE_CHARS].decode("utf-8", "replace")


def split_lines(data: bytes) -> list[str]:
    """Decoded non-blank lines of `data`, for format detection."""
    lines = (decode_line(raw) for raw in data.split(b"\n") if len(raw) <= MAX_LINE)
    return [line for line in lines if line and line.strip()]

