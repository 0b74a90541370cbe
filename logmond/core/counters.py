"""Counters since the state began, for the Prometheus endpoint: requests by section, method and
status code, response bytes and a request-time histogram by section.

The number of series is bounded whatever the log holds: at most `limit` sections get series of
their own, every other one is counted as "(other)", and methods outside the standard ones are
"(other)" too. Counters never go backwards, as Prometheus requires, so a section keeps its series
for good once it has one, and its series counts from then on (what it had before stays in
"(other)"). While there are free slots, each batch of lines first gives them to the sections with
the most hits since the state began (this batch's included) that have none yet: a log of at
most `limit` sections has every one counted exactly from its first line.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from typing import Any, Callable, Hashable, Sequence

OTHER = "(other)"
# RFC 9110's methods and PATCH (RFC 5789); any other is "(other)".
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
# Upper bounds of the request-time histogram, seconds (Prometheus' client default buckets).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Sections without a series whose hits are counted while there are free slots, to pick the next
# ones to get one: past it the less frequent half is forgotten (ids in paths cannot make it grow).
MAX_CANDIDATES = 10_000
# Distinct request times whose bucket is remembered (the cache starts over when full).
MAX_CACHED_TIMES = 100_000

Meaning = tuple[tuple[str, str], int]


class Counters:
    """Cumulative counts by label values; `limit` sections at most get series of their own."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sections: set[str] = set()
        self.candidates: Counter[str] = Counter()
        # (section label, method label, code) -> requests; section label -> bytes.
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.bytes: Counter[str] = Counter()
        # Section label -> requests per bucket (not cumulative; the last one is +Inf) and the sum
        # of their request times.
        self.durations: dict[str, list[int]] = {}
        self.duration_sums: dict[str, float] = {}
        self._buckets: dict[float, int] = {}

    def label(self, section: str) -> str:
        return section if section in self.sections else OTHER

    def count(self, kinds: Sequence[Hashable], resolve: Callable[[Hashable], Meaning], sizes: Sequence[int],
              rtimes: Sequence[float | None] | None) -> None:
        """Count accepted lines column by column, as batch.Counts.add has them."""
        by_kind = Counter(kinds)
        meanings = {kind: resolve(kind) for kind in by_kind}
        if len(self.sections) < self.limit:
            for kind, n in by_kind.items():
                section = meanings[kind][0][1]
                if section not in self.sections:
                    self.candidates[section] += n
            self._admit()
        labels: dict[Hashable, str] = {}
        for kind, n in by_kind.items():
            (method, section), code = meanings[kind]
            label = labels[kind] = self.label(section)
            self.requests[label, method if method in STANDARD_METHODS else OTHER, code] += n
        sums: Counter[Hashable] = Counter()
        for kind, size in zip(kinds, sizes):
            sums[kind] += size
        for kind, size in sums.items():
            self.bytes[labels[kind]] += size
        if rtimes is not None:
            self._time(Counter(zip(map(labels.__getitem__, kinds), rtimes)))
        if len(self.candidates) > MAX_CANDIDATES:
            self.candidates = Counter(dict(self.candidates.most_common(MAX_CANDIDATES // 2)))

    def _time(self, pairs: Counter[tuple[str, float | None]]) -> None:
        cache = self._buckets
        if len(cache) > MAX_CACHED_TIMES:
            cache.clear()
        for (label, seconds), n in pairs.items():
            if seconds is None:
                continue
            bucket = cache.get(seconds)
            if bucket is None:
                bucket = cache[seconds] = bisect_left(DURATION_BUCKETS, seconds)
            counts = self.durations.get(label)
            if counts is None:
                counts = self.durations[label] = [0] * (len(DURATION_BUCKETS) + 1)
                self.duration_sums[label] = 0.0
            counts[bucket] += n
            self.duration_sums[label] += seconds * n

    def _admit(self) -> None:
        """The sections with most hits take the free slots; once none is left, no section is a
        candidate any more."""
        for section, _ in self.candidates.most_common(self.limit - len(self.sections)):
            self.sections.add(section)
            del self.candidates[section]
        if len(self.sections) >= self.limit:
            self.candidates.clear()

    def histogram(self, label: str) -> list[tuple[str, int]]:
        """A section label's buckets as Prometheus has them: (le, cumulative count), +Inf last."""
        out, total = [], 0
        for le, n in zip([*map(repr, DURATION_BUCKETS), "+Inf"], self.durations[label]):
            total += n
            out.append((le, total))
        return out

    def to_state(self) -> dict[str, Any]:
        return {"limit": self.limit, "sections": sorted(self.sections), "candidates": list(self.candidates.items()),
                "requests": [[*key, n] for key, n in self.requests.items()], "bytes": list(self.bytes.items()),
                "durations": [[label, counts, self.duration_sums[label]] for label, counts in self.durations.items()]}

    def load(self, state: dict[str, Any]) -> None:
        """Resume; a state of another limit keeps its counts (they stay monotonic) and admits no
        more than the new limit from then on."""
        self.sections = {str(s) for s in state["sections"]}
        self.candidates = Counter({str(s): int(n) for s, n in state["candidates"]})
        self.requests = Counter({(str(s), str(m), int(c)): int(n) for s, m, c, n in state["requests"]})
        self.bytes = Counter({str(s): int(n) for s, n in state["bytes"]})
        self.durations, self.duration_sums = {}, {}
        for label, counts, total in state["durations"]:
            if len(counts) != len(DURATION_BUCKETS) + 1:
                raise ValueError("request-time histogram of other buckets")
            self.durations[str(label)] = [int(n) for n in counts]
            self.duration_sums[str(label)] = float(total)
