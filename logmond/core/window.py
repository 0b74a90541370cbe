"""Traffic statistics for one block of log time, and the rolling rollup over the timeframe.

Pure data: no clock, no I/O. Memory per block is bounded by MAX_TRACKED whatever the input.
"""
from __future__ import annotations

import math
import zlib
from collections import Counter, deque
from itertools import repeat
from operator import and_, methodcaller
from typing import Any, Iterable, Sequence

# Distinct sections (and hosts) counted exactly per block; past it the smaller half is folded
# into OTHER, a lossy heavy-hitter summary that keeps the top ones right.
MAX_TRACKED = 10_000
# Name of the bucket that holds everything folded away by the cap.
OTHER = "(other)"
# Entries a closed block keeps for the rollup: plenty to rank a top 10 over many blocks.
KEEP_CLOSED = 100
# Bits in the per-block unique-host sketch (linear counting): 8 KiB, good to ~1 % up to ~100k hosts.
SKETCH_BITS = 1 << 16
TOP_SECTIONS = 10
TOP_HOSTS = 5


def _sketch(hosts: Iterable[str], into: bytearray | None = None) -> bytearray:
    """A linear-counting bitmap of these hosts (crc32, so it means the same after a restart)."""
    sketch = into if into is not None else bytearray(SKETCH_BITS // 8)
    for bit in set(map(and_, map(zlib.crc32, map(methodcaller("encode", "utf-8", "surrogatepass"), hosts)),
                       repeat(SKETCH_BITS - 1))):
        sketch[bit >> 3] |= 1 << (bit & 7)
    return sketch


def _cap(counter: Counter, limit: int) -> None:
    """Fold all but the `limit // 2` largest entries into OTHER once `limit` is passed."""
    if len(counter) <= limit:
        return
    keep = counter.most_common(limit // 2 + (OTHER in counter))
    folded = sum(counter.values()) - sum(n for _, n in keep)
    counter.clear()
    counter.update(dict(keep))
    counter[OTHER] += folded


def _estimate(sketch: bytearray) -> int:
    ones = int.from_bytes(sketch, "little").bit_count()
    if ones >= SKETCH_BITS:
        return ones
    return round(-SKETCH_BITS * math.log((SKETCH_BITS - ones) / SKETCH_BITS))


class Block:
    """Counts for one span of log time; merging two blocks adds them."""

    __slots__ = ("hits", "bytes", "sections", "sec4xx", "sec5xx", "status", "methods", "hosts", "sketch")

    def __init__(self) -> None:
        self.hits = 0
        self.bytes = 0
        self.sections: Counter[str] = Counter()
        self.sec4xx: Counter[str] = Counter()
        self.sec5xx: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        # Unique-host sketch, made once `hosts` no longer holds every host (None: exact).
        self.sketch: bytearray | None = None

    def add_requests(self, counts: Iterable[tuple[tuple[tuple[str, str], int], int]]) -> None:
        """Add (((method, section), status), hits) pairs."""
        for ((method, section), status), n in counts:
            self.hits += n
            self.methods[method] += n
            self.sections[section] += n
            cls = status // 100
            self.status[f"{cls}xx"] += n
            if cls == 4:
                self.sec4xx[section] += n
            elif cls == 5:
                self.sec5xx[section] += n
        _cap(self.methods, MAX_TRACKED)
        if len(self.sections) > MAX_TRACKED:
            _cap(self.sections, MAX_TRACKED)
            for errs in (self.sec4xx, self.sec5xx):
                kept = {s: n for s, n in errs.items() if s in self.sections}
                folded = sum(errs.values()) - sum(kept.values())
                errs.clear()
                errs.update(kept)
                if folded:
                    errs[OTHER] += folded

    def add_hosts(self, hosts: Sequence[str]) -> None:
        """Count one hit per element (a column of host names)."""
        if self.sketch is not None:
            _sketch(hosts, self.sketch)
        self.hosts.update(hosts)
        if len(self.hosts) > MAX_TRACKED:
            if self.sketch is None:
                self.sketch = _sketch(self.hosts)
            _cap(self.hosts, MAX_TRACKED)

    @property
    def exact_hosts(self) -> bool:
        return self.sketch is None

    def merge(self, other: Block) -> None:
        """Add another block's counts (used for the rollup, a few times a second at most)."""
        self.hits += other.hits
        self.bytes += other.bytes
        self.status.update(other.status)
        self.methods.update(other.methods)
        self.sections.update(other.sections)
        self.sec4xx.update(other.sec4xx)
        self.sec5xx.update(other.sec5xx)
        _cap(self.sections, MAX_TRACKED)
        if self.sketch is None:
            self.sketch = _sketch(self.hosts)
        merged = int.from_bytes(self.sketch, "little") | int.from_bytes(other.host_sketch(), "little")
        self.sketch[:] = merged.to_bytes(SKETCH_BITS // 8, "little")
        self.hosts.update(other.hosts)
        _cap(self.hosts, MAX_TRACKED)

    def host_sketch(self) -> bytearray:
        return self.sketch if self.sketch is not None else _sketch(self.hosts)

    def unique_hosts(self) -> int:
        return len(self.hosts) if self.sketch is None else _estimate(self.sketch)

    def compact(self) -> Block:
        """A copy small enough to keep for the rollup: top entries only, hosts counted by sketch."""
        small = Block()
        small.hits, small.bytes = self.hits, self.bytes
        small.status, small.methods = Counter(self.status), Counter(self.methods)
        small.sections = Counter(self.sections)
        _cap(small.sections, KEEP_CLOSED * 2)
        small.sec4xx = Counter({s: n for s, n in self.sec4xx.items() if s in small.sections})
        small.sec5xx = Counter({s: n for s, n in self.sec5xx.items() if s in small.sections})
        small.sketch = bytearray(self.host_sketch())
        small.hosts = Counter(self.hosts)
        _cap(small.hosts, KEEP_CLOSED * 2)
        return small

    def summary(self, start: int, end: int) -> dict[str, Any]:
        """The summary event for [start, end): the keys of the JSON contract plus detail."""
        span = max(end - start, 1)
        top = [s for s in self.sections.most_common(TOP_SECTIONS + 1) if s[0] != OTHER][:TOP_SECTIONS]
        return {
            "type": "summary",
            "start": start,
            "end": end,
            "hits": self.hits,
            "rate": round(self.hits / span, 3),
            "sections": [[name, n] for name, n in top],
            "errors": {name: {"4xx": round(self.sec4xx[name] / n, 4), "5xx": round(self.sec5xx[name] / n, 4)}
                       for name, n in top},
            "status": dict(sorted(self.status.items())),
            "methods": dict(self.methods.most_common()),
            "bytes": self.bytes,
            "bytes_mean": round(self.bytes / self.hits, 1) if self.hits else 0.0,
            "hosts": self.unique_hosts(),
            "hosts_exact": self.exact_hosts,
            "top_hosts": [[h, n] for h, n in self.hosts.most_common(TOP_HOSTS + 1) if h != OTHER][:TOP_HOSTS],
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "hits": self.hits, "bytes": self.bytes, "sections": dict(self.sections),
            "sec4xx": dict(self.sec4xx), "sec5xx": dict(self.sec5xx), "status": dict(self.status),
            "methods": dict(self.methods), "hosts": dict(self.hosts),
            "sketch": None if self.sketch is None else bytes(self.sketch),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Block:
        b = cls()
        b.hits, b.bytes = int(state["hits"]), int(state["bytes"])
        for name in ("sections", "sec4xx", "sec5xx", "status", "methods", "hosts"):
            setattr(b, name, Counter({str(k): int(v) for k, v in state[name].items()}))
        if state["sketch"] is not None:
            if len(state["sketch"]) != SKETCH_BITS // 8:
                raise ValueError("sketch size")
            b.sketch = bytearray(state["sketch"])
        return b


class Rollup:
    """Closed blocks of the last `timeframe` seconds, merged on demand."""

    def __init__(self, timeframe: int, interval: int) -> None:
        self.timeframe = timeframe
        self.blocks: deque[tuple[int, Block]] = deque(maxlen=math.ceil(timeframe / interval) + 1)

    def push(self, start: int, block: Block) -> None:
        self.blocks.append((start, block.compact()))

    def summary(self, now: int) -> dict[str, Any] | None:
        """Statistics over [now - timeframe, now), or None before any block closed."""
        start = now - self.timeframe
        total = Block()
        total.sketch = bytearray(SKETCH_BITS // 8)
        for begin, block in self.blocks:
            if begin >= start:
                total.merge(block)
        if not self.blocks:
            return None
        return total.summary(start, now)

    def to_state(self) -> list[Any]:
        return [[start, block.to_state()] for start, block in self.blocks]

    def load(self, state: list[Any]) -> None:
        for start, block in state:
            self.blocks.append((int(start), Block.from_state(block)))
