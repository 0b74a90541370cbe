"""Traffic statistics for one block of log time, and the rolling rollup over the timeframe.

Pure data: no clock, no I/O. Memory per block is bounded by MAX_TRACKED whatever the input, and
the rollup keeps a small fixed part of each closed block.
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from heapq import heapify, heappop, heappush, nsmallest
from typing import Any, Iterable, Sequence

from logmond.core.hosts import HyperLogLog, SlidingHosts
from logmond.core.quantiles import QuantileSketch, SlidingSketch

# Distinct sections (and hosts) counted exactly per block; past it the smaller half is folded
# into OTHER, a lossy heavy-hitter summary that keeps the top ones right.
MAX_TRACKED = 10_000
# Name of the bucket that holds everything folded away by the cap.
OTHER = "(other)"
# Entries a closed block keeps for the rollup: plenty to rank a top 10 over many blocks.
KEEP_CLOSED = 100
TOP_SECTIONS = 10
TOP_HOSTS = 5
TOP_VHOSTS = 10
# Sections and hosts a history row names (issue 10: a minute's top 50 sections, top 20 hosts).
HISTORY_SECTIONS = 50
HISTORY_HOSTS = 20
# Sections and hosts a history row keeps while it fills (and the state database saves with it):
# twenty times what it names, which keeps the top 50 right for all but contrived traffic, and the
# row small enough to save within a tick. Past it, a minute's distinct hosts are estimated.
HISTORY_TRACKED = 1_000
# Exact status codes and sections by 5xx answers a summary names (the viewer's extra panels).
TOP_CODES = 10
TOP_5XX = 10
# Sections with a latency sketch of their own per block (a few KiB each); the others share OTHER's.
MAX_SECTION_SKETCHES = 100
# Distinct (section, request time) pairs and upstream times a block holds before it adds them to
# its sketches (about 150 bytes each): lines are counted column by column at C speed, and the
# sketches are updated once per distinct value, when read or when this many are waiting.
MAX_PENDING = 20_000
# Stale heap entries a ranked count tolerates beyond its live entries before rebuilding its heap.
HEAP_SLACK = 1_024


def _cap(counter: Counter, limit: int) -> None:
    """Fold all but the `limit // 2` largest entries into OTHER once `limit` is passed."""
    if len(counter) <= limit:
        return
    keep = counter.most_common(limit // 2 + (OTHER in counter))
    folded = sum(counter.values()) - sum(n for _, n in keep)
    counter.clear()
    counter.update(dict(keep))
    counter[OTHER] += folded


def _ranked(counts: Mapping[str, int], n: int) -> list[tuple[str, int]]:
    """The `n` largest non-zero entries other than OTHER, largest first, ties by name."""
    return nsmallest(n, ((k, v) for k, v in counts.items() if v and k != OTHER), key=lambda kv: (-kv[1], kv[0]))


def _event(start: int, end: int, hits: int, nbytes: int, sections: list[tuple[str, int]],
           sec4xx: Mapping[str, int], sec5xx: Mapping[str, int], status: dict[str, int],
           methods: dict[str, int], hosts: int, hosts_exact: bool,
           top_hosts: list[tuple[str, int]], codes: list[tuple[str, int]], sections_5xx: list[tuple[str, int]],
           timings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary event for [start, end): the keys of the JSON contract plus detail; `timings`
    adds latency, upstream_latency, section_latency and vhosts when the format has them."""
    return {
        "type": "summary",
        "start": start,
        "end": end,
        "hits": hits,
        "rate": round(hits / max(end - start, 1), 3),
        "sections": [[name, n] for name, n in sections],
        "errors": {name: {"4xx": round(sec4xx.get(name, 0) / n, 4), "5xx": round(sec5xx.get(name, 0) / n, 4)}
                   for name, n in sections},
        "status": status,
        "methods": methods,
        "bytes": nbytes,
        "bytes_mean": round(nbytes / hits, 1) if hits else 0.0,
        "hosts": hosts,
        "hosts_exact": hosts_exact,
        "top_hosts": [[h, n] for h, n in top_hosts],
        "codes": [[code, n] for code, n in codes],
        "sections_5xx": [[name, n] for name, n in sections_5xx],
        **(timings or {}),
    }


def _timings(latency: dict[str, Any] | None, upstream: dict[str, Any] | None,
             section_latency: dict[str, Any], vhosts: list[tuple[str, int]] | None) -> dict[str, Any]:
    """The optional summary keys, each present only when there is something to say."""
    extra: dict[str, Any] = {}
    if latency is not None:
        extra["latency"] = latency
        extra["section_latency"] = section_latency
    if upstream is not None:
        extra["upstream_latency"] = upstream
    if vhosts:
        extra["vhosts"] = [[name, n] for name, n in vhosts]
    return extra


class Block:
    """Counts for one span of log time, as lines arrive."""

    __slots__ = ("hits", "bytes", "sections", "sec4xx", "sec5xx", "status", "codes", "methods", "hosts", "sketch",
                 "vhosts", "_latency", "_upstream", "_section_latency", "_pending", "_upending")

    def __init__(self) -> None:
        self.hits = 0
        self.bytes = 0
        self.sections: Counter[str] = Counter()
        self.sec4xx: Counter[str] = Counter()
        self.sec5xx: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        # Hits per exact status code ("200", "404"): at most 500 of them, so never capped.
        self.codes: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        # Distinct-host sketch, made once `hosts` no longer holds every host (None: exact).
        self.sketch: HyperLogLog | None = None
        self.vhosts: Counter[str] = Counter()
        # Request and upstream times, overall and for up to MAX_SECTION_SKETCHES sections (the
        # rest under OTHER); empty when the format has none. Read them through the properties,
        # which first add what is pending.
        self._latency = QuantileSketch()
        self._upstream = QuantileSketch()
        self._section_latency: dict[str, QuantileSketch] = {}
        # Times counted but not yet in the sketches (see MAX_PENDING); None: a line without one.
        self._pending: Counter[tuple[str, float | None]] = Counter()
        self._upending: Counter[float | None] = Counter()

    def add_timings(self, sections: Sequence[str], rtimes: Sequence[float | None] | None,
                    utimes: Sequence[float | None] | None) -> None:
        """Count request and upstream times in seconds (None: the line has none), given as columns
        parallel to `sections`; a column is None when the format has no such time."""
        if rtimes is not None:
            self._pending.update(zip(sections, rtimes))
        if utimes is not None:
            self._upending.update(utimes)
        if len(self._pending) + len(self._upending) > MAX_PENDING:
            self._settle()

    def _settle(self) -> None:
        """Add the pending times to the sketches, each distinct value once."""
        if self._pending:
            per: dict[str, list[tuple[float, int]]] = {}
            sketches = self._section_latency
            for (section, seconds), n in self._pending.items():
                if seconds is None:
                    continue
                if section not in sketches and section not in per and len(sketches) + len(per) >= MAX_SECTION_SKETCHES:
                    section = OTHER
                per.setdefault(section, []).append((seconds, n))
            self._pending.clear()
            for section, times in per.items():
                sketch = sketches.get(section)
                if sketch is None:
                    sketch = sketches[section] = QuantileSketch()
                sketch.add_many(times)
                self._latency.add_many(times)
        if self._upending:
            self._upending.pop(None, None)
            self._upstream.add_many(self._upending.items())
            self._upending.clear()

    @property
    def latency(self) -> QuantileSketch:
        self._settle()
        return self._latency

    @property
    def upstream(self) -> QuantileSketch:
        self._settle()
        return self._upstream

    @property
    def section_latency(self) -> dict[str, QuantileSketch]:
        self._settle()
        return self._section_latency

    def add_vhosts(self, vhosts: Sequence[str]) -> None:
        """Count one hit per element (a column of virtual hosts)."""
        self.vhosts.update(vhosts)
        _cap(self.vhosts, MAX_TRACKED)

    def add_requests(self, counts: Iterable[tuple[tuple[tuple[str, str], int], int]]) -> None:
        """Add (((method, section), status), hits) pairs."""
        for ((method, section), status), n in counts:
            self.hits += n
            self.methods[method] += n
            self.sections[section] += n
            cls = status // 100
            self.status[f"{cls}xx"] += n
            self.codes[str(status)] += n
            if cls == 4:
                self.sec4xx[section] += n
            elif cls == 5:
                self.sec5xx[section] += n
        self._cap_sections(MAX_TRACKED)

    def _cap_sections(self, limit: int) -> None:
        """Keep methods and sections (with their error counts) within `limit`."""
        _cap(self.methods, limit)
        if len(self.sections) > limit:
            _cap(self.sections, limit)
            for errs in (self.sec4xx, self.sec5xx):
                kept = {s: n for s, n in errs.items() if s in self.sections}
                folded = sum(errs.values()) - sum(kept.values())
                errs.clear()
                errs.update(kept)
                if folded:
                    errs[OTHER] += folded

    def merge(self, other: Block, limit: int = MAX_TRACKED) -> None:
        """Add another block's counts, keeping `limit` sections, hosts and vhosts (a minute of
        history made of the summary blocks in it); past it, distinct hosts are estimated."""
        self.hits += other.hits
        self.bytes += other.bytes
        for name in ("sections", "sec4xx", "sec5xx", "status", "codes", "methods", "vhosts"):
            getattr(self, name).update(getattr(other, name))
        self._cap_sections(limit)
        _cap(self.vhosts, limit)
        if self.sketch is not None or other.sketch is not None or len(self.hosts.keys() | other.hosts.keys()) > limit:
            sketch = self.host_sketch()
            sketch.merge(other.host_sketch())
            self.sketch = sketch
        self.hosts.update(other.hosts)
        _cap(self.hosts, limit)
        self.latency.merge(other.latency)
        self.upstream.merge(other.upstream)
        mine = self.section_latency
        for section, sketch in other.section_latency.items():
            if section not in mine and len(mine) >= MAX_SECTION_SKETCHES:
                section = OTHER
            mine.setdefault(section, QuantileSketch()).merge(sketch)

    def add_hosts(self, hosts: Sequence[str]) -> None:
        """Count one hit per element (a column of host names)."""
        if self.sketch is not None:
            # A host still counted is in the sketch already: hash only the others, once each.
            self.sketch.add(set(hosts).difference(self.hosts))
        self.hosts.update(hosts)
        if len(self.hosts) > MAX_TRACKED:
            if self.sketch is None:
                self.sketch = HyperLogLog()
                self.sketch.add(self.hosts)
            _cap(self.hosts, MAX_TRACKED)

    @property
    def exact_hosts(self) -> bool:
        return self.sketch is None

    def unique_hosts(self) -> int:
        return len(self.hosts) if self.sketch is None else self.sketch.estimate()

    def host_sketch(self) -> HyperLogLog:
        """The sketch of every host seen (made from the exact hosts if there is none yet)."""
        if self.sketch is not None:
            return self.sketch
        sketch = HyperLogLog()
        sketch.add(self.hosts)
        return sketch

    def summary(self, start: int, end: int, sections: int = TOP_SECTIONS, hosts: int = TOP_HOSTS) -> dict[str, Any]:
        """The summary event for [start, end), with the top `sections` and `hosts`."""
        top = [s for s in self.sections.most_common(sections + 1) if s[0] != OTHER][:sections]
        timings = _timings(self.latency.summary(), self.upstream.summary(),
                           {name: self.section_latency[name].summary() for name, _ in top
                            if name in self.section_latency},
                           [v for v in self.vhosts.most_common(TOP_VHOSTS + 1) if v[0] != OTHER][:TOP_VHOSTS])
        return _event(start, end, self.hits, self.bytes, top, self.sec4xx, self.sec5xx,
                      dict(sorted(self.status.items())), dict(self.methods.most_common()),
                      self.unique_hosts(), self.exact_hosts,
                      [h for h in self.hosts.most_common(hosts + 1) if h[0] != OTHER][:hosts],
                      _ranked(self.codes, TOP_CODES), _ranked(self.sec5xx, TOP_5XX), timings)

    def to_state(self) -> dict[str, Any]:
        return {
            "hits": self.hits, "bytes": self.bytes, "sections": dict(self.sections),
            "sec4xx": dict(self.sec4xx), "sec5xx": dict(self.sec5xx), "status": dict(self.status),
            "codes": dict(self.codes), "methods": dict(self.methods), "hosts": dict(self.hosts),
            "sketch": None if self.sketch is None else self.sketch.to_bytes(),
            **_timing_state(self),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Block:
        """The block `to_state()` gave; ValueError for a sketch of another kind (an older version)."""
        b = cls()
        b.hits, b.bytes = int(state["hits"]), int(state["bytes"])
        for name in ("sections", "sec4xx", "sec5xx", "status", "methods", "hosts"):
            setattr(b, name, Counter({str(k): int(v) for k, v in state[name].items()}))
        b.codes = Counter({str(k): int(v) for k, v in state.get("codes", {}).items()})
        if state["sketch"] is not None:
            b.sketch = HyperLogLog.from_bytes(state["sketch"])
        b.vhosts, b._latency, b._upstream, b._section_latency = _load_timings(state, b)
        return b


def _timing_state(block: Block | ClosedBlock) -> dict[str, Any]:
    return {"vhosts": dict(block.vhosts), "latency": block.latency.to_state(), "upstream": block.upstream.to_state(),
            "section_latency": {name: sk.to_state() for name, sk in block.section_latency.items()}}


def _load_timings(state: dict[str, Any], block: Block | ClosedBlock) -> tuple[
        Counter[str], QuantileSketch, QuantileSketch, dict[str, QuantileSketch]]:
    """vhosts, latency, upstream and section_latency from a block's state, or as `block` has them
    where the state has none (a checkpoint from before they existed)."""
    vhosts = Counter({str(k): int(v) for k, v in state.get("vhosts", {}).items()})
    if "latency" not in state:
        return vhosts, block.latency, block.upstream, block.section_latency
    return (vhosts, QuantileSketch.from_state(state["latency"]), QuantileSketch.from_state(state["upstream"]),
            {str(k): QuantileSketch.from_state(v) for k, v in state["section_latency"].items()})


# Counters of a closed block, and of the rollup's totals.
_COUNTERS = ("status", "codes", "methods", "sections", "sec4xx", "sec5xx", "hosts")


def history_row(start: int, end: int, block: Block) -> dict[str, Any]:
    """One row of history for [start, end): its summary with the top HISTORY_SECTIONS sections
    and HISTORY_HOSTS hosts, and the mergeable latency sketches, so that percentiles can be
    given over any span of rows."""
    row = block.summary(start, end, HISTORY_SECTIONS, HISTORY_HOSTS)
    del row["type"]
    row["latency_sketch"] = block.latency.to_state() if block.latency.count else None
    row["upstream_sketch"] = block.upstream.to_state() if block.upstream.count else None
    return row


class ClosedBlock:
    """What the rollup keeps of a closed block: its totals and its top KEEP_CLOSED * 2 sections and
    hosts (the rest folded into OTHER). Its distinct hosts live in the rollup's SlidingHosts."""

    __slots__ = ("hits", "bytes", *_COUNTERS, "vhosts", "latency", "upstream", "section_latency")

    def __init__(self, hits: int, nbytes: int, counters: Mapping[str, dict[str, int]]) -> None:
        self.hits, self.bytes = hits, nbytes
        for name in _COUNTERS:
            setattr(self, name, counters[name])
        self.vhosts: Counter[str] = Counter()
        self.latency = QuantileSketch()
        self.upstream = QuantileSketch()
        self.section_latency: dict[str, QuantileSketch] = {}

    @classmethod
    def of(cls, block: Block) -> ClosedBlock:
        sections = Counter(block.sections)
        _cap(sections, KEEP_CLOSED * 2)
        hosts = Counter(block.hosts)
        _cap(hosts, KEEP_CLOSED * 2)
        closed = cls(block.hits, block.bytes, {
            "status": dict(block.status), "codes": dict(block.codes), "methods": dict(block.methods),
            "sections": dict(sections),
            "sec4xx": {s: n for s, n in block.sec4xx.items() if s in sections},
            "sec5xx": {s: n for s, n in block.sec5xx.items() if s in sections},
            "hosts": dict(hosts)})
        closed.vhosts = Counter(block.vhosts)
        _cap(closed.vhosts, KEEP_CLOSED * 2)
        closed.latency, closed.upstream = block.latency, block.upstream
        closed.section_latency = {s: sk for s, sk in block.section_latency.items() if s in sections}
        return closed

    def to_state(self) -> dict[str, Any]:
        return {"hits": self.hits, "bytes": self.bytes, **{name: getattr(self, name) for name in _COUNTERS},
                **_timing_state(self)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ClosedBlock:
        closed = cls(int(state["hits"]), int(state["bytes"]),
                     {name: {str(k): int(v) for k, v in state.get(name, {}).items()} for name in _COUNTERS})
        closed.vhosts, closed.latency, closed.upstream, closed.section_latency = _load_timings(state, closed)
        return closed


def _add(into: dict[str, int], counts: Mapping[str, int], sign: int) -> None:
    """Add (sign 1) or take away (sign -1) counts, dropping entries that reach zero."""
    for key, n in counts.items():
        total = into.get(key, 0) + sign * n
        if total:
            into[key] = total
        else:
            del into[key]


class Ranked:
    """Counts that blocks are added to and taken from, with the top entries at hand: a heap of
    (-count, name) in which an entry whose count has changed since is skipped when met, rebuilt
    once such stale entries outnumber the live ones (so its cost is spread over the updates)."""

    __slots__ = ("counts", "_heap")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def add(self, counts: Mapping[str, int], sign: int) -> None:
        mine, heap = self.counts, self._heap
        for key, n in counts.items():
            total = mine.get(key, 0) + sign * n
            if total:
                mine[key] = total
                heappush(heap, (-total, key))
            else:
                del mine[key]
        if len(heap) > 2 * len(mine) + HEAP_SLACK:
            self._heap = [(-n, key) for key, n in mine.items()]
            heapify(self._heap)

    def top(self, n: int) -> list[tuple[str, int]]:
        """The `n` largest entries other than OTHER, largest first, ties by name."""
        mine, heap = self.counts, self._heap
        live: list[tuple[int, str]] = []
        taken: set[str] = set()
        while heap and len(live) - (OTHER in taken) < n:
            neg, key = heappop(heap)
            if mine.get(key) == -neg and key not in taken:
                taken.add(key)
                live.append((neg, key))
        for entry in live:
            heappush(heap, entry)
        return [(key, -neg) for neg, key in live if key != OTHER]


class _Totals:
    """The sums of the closed blocks the rollup holds."""

    def __init__(self) -> None:
        self.hits = self.bytes = 0
        self.status: dict[str, int] = {}
        self.codes: dict[str, int] = {}
        self.methods: dict[str, int] = {}
        self.sec4xx: dict[str, int] = {}
        self.sec5xx: dict[str, int] = {}
        self.sections = Ranked()
        self.hosts = Ranked()
        self.vhosts = Ranked()
        self.latency = SlidingSketch()
        self.upstream = SlidingSketch()
        self.section_latency: dict[str, SlidingSketch] = {}

    def add(self, block: ClosedBlock, sign: int, seq: int) -> None:
        """Add (sign 1) the newest block, number `seq`, or take away (sign -1) the oldest."""
        self.hits += sign * block.hits
        self.bytes += sign * block.bytes
        for name in ("status", "codes", "methods", "sec4xx", "sec5xx"):
            _add(getattr(self, name), getattr(block, name), sign)
        self.sections.add(block.sections, sign)
        self.hosts.add(block.hosts, sign)
        self.vhosts.add(block.vhosts, sign)
        pairs = [(self.latency, block.latency), (self.upstream, block.upstream)]
        for section, sketch in block.section_latency.items():
            pairs.append((self.section_latency.setdefault(section, SlidingSketch()), sketch))
        for sliding, sketch in pairs:
            if sign > 0:
                sliding.push(seq, sketch)
            else:
                sliding.remove(seq, sketch)
        if sign < 0:
            for section in [s for s, sliding in self.section_latency.items() if not sliding.count]:
                del self.section_latency[section]


class Rollup:
    """Closed blocks of the last `timeframe` seconds and their running totals.

    The totals follow each block that arrives or leaves (counts added and taken away, distinct
    hosts in a SlidingHosts), and the summary's top lists are worked out once per such change, so
    a summary costs the same at any timeframe. Blocks arrive in order and `now` never goes back.
    """

    def __init__(self, timeframe: int, interval: int, record: bool = False) -> None:
        self.timeframe = timeframe
        self.interval = interval
        # Recording (for the state database): each closed block is handed out once by
        # take_closed() with what rebuilding the rollup needs, and to_state() is only the head.
        self.record = record
        self._unsaved: list[dict[str, Any]] = []
        # A 0.1 checkpoint's distinct hosts of the blocks numbered up to `through`, which its
        # blocks do not carry one by one: (through, SlidingHosts state), until handed out.
        self._legacy_hosts: tuple[int, dict[str, Any]] | None = None
        self.blocks: deque[tuple[int, ClosedBlock]] = deque()
        # Start of the first block pushed: before it nothing was seen, so the span starts there.
        self.origin: int | None = None
        # Number of the next block pushed; the blocks held are the ones just before it.
        self.next_seq = 1
        self._totals = _Totals()
        self._hosts = SlidingHosts(MAX_TRACKED)
        # The summary's figures that depend only on the blocks held (None: changed since).
        self._figures: dict[str, Any] | None = None

    def push(self, start: int, block: Block) -> None:
        """Add the block [start, start + interval) that just closed."""
        if self.origin is None:
            self.origin = start
        self._expire(start + self.interval - self.timeframe)
        closed = ClosedBlock.of(block)
        self.blocks.append((start, closed))
        self._totals.add(closed, 1, self.next_seq)
        self._hosts.push(self.next_seq, block.hosts if block.exact_hosts else None, block.host_sketch())
        if self.record:
            self._unsaved.append({"seq": self.next_seq, "start": start, "block": closed.to_state(),
                                  "hosts": list(block.hosts) if block.exact_hosts else None,
                                  "sketch": None if block.exact_hosts else block.host_sketch().to_bytes()})
        self.next_seq += 1
        self._figures = None

    @property
    def first_seq(self) -> int:
        """The number of the oldest block held (next_seq when none is)."""
        return self.next_seq - len(self.blocks)

    def take_closed(self) -> list[dict[str, Any]]:
        """The blocks closed since the last call, each as a record for load(records=...)."""
        taken, self._unsaved = self._unsaved, []
        return taken

    def take_legacy_hosts(self) -> tuple[int, dict[str, Any]] | None:
        """Once, after loading a 0.1 checkpoint: (through, hosts state) for load(legacy_hosts=...)."""
        taken, self._legacy_hosts = self._legacy_hosts, None
        return taken

    def summary(self, now: int) -> dict[str, Any] | None:
        """Statistics over [max(now - timeframe, origin), now), or None before any block closed."""
        if self.origin is None:
            return None
        self._expire(now - self.timeframe)
        if self._figures is None:
            self._figures = self._measure()
        return _event(max(now - self.timeframe, self.origin), now, **self._figures)

    def _expire(self, cut: int) -> None:
        """Drop the blocks that start before `cut`."""
        blocks = self.blocks
        if not blocks or blocks[0][0] >= cut:
            return
        while blocks and blocks[0][0] < cut:
            self._totals.add(blocks[0][1], -1, self.next_seq - len(blocks))
            blocks.popleft()
        self._hosts.expire(self.next_seq - len(blocks))
        self._figures = None

    def _measure(self) -> dict[str, Any]:
        t = self._totals
        top = t.sections.top(TOP_SECTIONS)
        hosts, exact = self._hosts.count()
        timings = _timings(t.latency.summary(), t.upstream.summary(),
                           {name: t.section_latency[name].summary() for name, _ in top if name in t.section_latency},
                           t.vhosts.top(TOP_VHOSTS))
        return {"hits": t.hits, "nbytes": t.bytes, "sections": top, "timings": timings,
                "sec4xx": {name: t.sec4xx.get(name, 0) for name, _ in top},
                "sec5xx": {name: t.sec5xx.get(name, 0) for name, _ in top},
                "status": dict(sorted(t.status.items())),
                "methods": dict(sorted(t.methods.items(), key=lambda kv: (-kv[1], kv[0]))),
                "hosts": hosts, "hosts_exact": exact, "top_hosts": t.hosts.top(TOP_HOSTS),
                "codes": _ranked(t.codes, TOP_CODES), "sections_5xx": _ranked(t.sec5xx, TOP_5XX)}

    def to_state(self) -> dict[str, Any]:
        """Everything, or when recording only the head (the blocks are in the records)."""
        head = {"origin": self.origin, "next_seq": self.next_seq}
        if self.record:
            return head
        return {**head, "blocks": [[start, block.to_state()] for start, block in self.blocks],
                "hosts": self._hosts.to_state()}

    def load(self, state: dict[str, Any], records: list[dict[str, Any]] | None = None,
             legacy_hosts: tuple[int, dict[str, Any]] | None = None) -> None:
        """Resume from `to_state()` output, with, for a recording rollup's head, the records
        take_closed() gave (any order; those the timeframe has left are dropped) and the
        legacy hosts state if one was handed out. ValueError for an older format."""
        if not isinstance(state, dict):
            raise ValueError("rollup state of an older format")
        self.origin = None if state["origin"] is None else int(state["origin"])
        self.next_seq = int(state["next_seq"])
        if "blocks" in state:
            self._load_blocks(state)
        else:
            self._rebuild(records or [], legacy_hosts)
        self._figures = None

    def _load_blocks(self, state: dict[str, Any]) -> None:
        """A whole rollup in one state (also a 0.1 checkpoint's, which a recording rollup then
        hands out as records, its hosts state apart)."""
        first_seq = self.next_seq - len(state["blocks"])
        for seq, (start, block) in enumerate(state["blocks"], first_seq):
            closed = ClosedBlock.from_state(block)
            self.blocks.append((int(start), closed))
            self._totals.add(closed, 1, seq)
            if self.record:
                self._unsaved.append({"seq": seq, "start": int(start), "block": block, "hosts": None, "sketch": None})
        self._hosts = SlidingHosts.from_state(state["hosts"], MAX_TRACKED)
        if self.record and state["blocks"]:
            self._legacy_hosts = (self.next_seq - 1, state["hosts"])

    def _rebuild(self, records: list[dict[str, Any]], legacy_hosts: tuple[int, dict[str, Any]] | None) -> None:
        """The blocks numbered below next_seq, from their records, oldest first."""
        kept = sorted((r for r in records if int(r["seq"]) < self.next_seq), key=lambda r: int(r["seq"]))
        through = 0
        if legacy_hosts is not None:
            through = int(legacy_hosts[0])
            self._hosts = SlidingHosts.from_state(legacy_hosts[1], MAX_TRACKED)
        for record in kept:
            seq = int(record["seq"])
            closed = ClosedBlock.from_state(record["block"])
            self.blocks.append((int(record["start"]), closed))
            self._totals.add(closed, 1, seq)
            if seq > through:
                hosts = None if record["hosts"] is None else [str(h) for h in record["hosts"]]
                sketch = HyperLogLog() if record["sketch"] is None else HyperLogLog.from_bytes(record["sketch"])
                if record["sketch"] is None:
                    sketch.add(hosts or ())
                self._hosts.push(seq, hosts, sketch)
        if [int(r["seq"]) for r in kept] != list(range(self.next_seq - len(kept), self.next_seq)):
            raise ValueError("the rollup's blocks are not a run ending at next_seq")
        self._hosts.expire(self.first_seq)
