"""Request latency quantiles per block: a log-bucketed histogram in the spirit of DDSketch.

Pure data: no clock, no I/O. Why this sketch: any quantile it reports is within ALPHA (1 %)
relative error of the true one whatever the distribution, two sketches merge exactly (bucket
counts add, so a rollup of blocks is the sketch of all their requests), and memory is bounded by
MAX_BUCKETS whatever the input.

Bucket i holds the values v with GAMMA^(i-1) < v <= GAMMA^i; its representative GAMMA^i (1 - ALPHA)
is within ALPHA of every one of them. Values below MIN_VALUE share a separate zero bucket,
reported as 0: an absolute error under 1 us, the finest any access log writes.
"""
from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterable
from fractions import Fraction
from functools import lru_cache
from typing import Any

# Relative accuracy of every quantile (1 %), and the bucket growth factor it implies.
ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
# Values below this (seconds) go to the zero bucket: Apache's %D counts whole microseconds.
MIN_VALUE = 1e-6
# Buckets kept: from MIN_VALUE that reaches 6e11 s, while nginx's 1 ms .. 60 s needs 551, so in
# practice nothing collapses. Past it the lowest buckets are folded into the lowest one kept: the
# low quantiles lose accuracy first (overestimated), and any quantile within GAMMA^2047 (17.8
# decades) of the max keeps its 1 %; the max and min themselves are always exact.
MAX_BUCKETS = 2048
# Distinct latency values whose bucket is remembered process-wide (about 200 bytes each): logs
# at millisecond precision repeat a few hundred values, each then costs one cache lookup.
INDEX_CACHE = 2048
# Index of the zero bucket, below every real one so that it sorts first; add_many counts it with
# the others, then moves its count out of the buckets into `_zero`.
_ZERO = -(1 << 62)
# Lowest bucket index (that of MIN_VALUE) and highest: values within 2 % of the largest float
# share the top bucket, so that every representative is a finite float.
MIN_INDEX = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)
MAX_INDEX = math.floor(math.log(sys.float_info.max) / _LOG_GAMMA)
# Quantiles summary() reports, by name.
SUMMARY_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


@lru_cache(maxsize=INDEX_CACHE)
def _index(value: float) -> int:
    """The bucket of a latency (_ZERO for the zero bucket); ValueError unless 0 <= value < inf."""
    if not 0 <= value < math.inf:  # NaN fails every comparison
        raise ValueError(f"latency must be finite and >= 0, not {value!r}")
    if value < MIN_VALUE:
        return _ZERO
    return min(math.ceil(math.log(value) / _LOG_GAMMA), MAX_INDEX)


def _representative(index: int) -> float:
    return GAMMA ** index * (1 - ALPHA)


def _rank(q: float, n: int) -> int:
    """The nearest rank, 1-based: max(1, ceil(q n)), with q read as the decimal it prints as, so
    that 0.07 x 100 is rank 7 as written, not 8 as binary floating point has it."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be in [0, 1], not {q!r}")
    return max(1, math.ceil(Fraction(str(q)) * n))


def _digits(seconds: float) -> float:
    """Six significant digits: far inside the sketch's 1 %, and exact for Caddy's nanoseconds."""
    return float(f"{seconds:.6g}")


class QuantileSketch:
    """Latencies in seconds: counts per log bucket, a zero bucket, and the exact min and max."""

    __slots__ = ("_buckets", "_zero", "_count", "_min", "_max")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self._zero = 0
        self._count = 0
        self._min = math.inf
        self._max = -math.inf

    @property
    def count(self) -> int:
        return self._count

    @property
    def min(self) -> float | None:
        return self._min if self._count else None

    @property
    def max(self) -> float | None:
        return self._max if self._count else None

    def add(self, value: float, count: int = 1) -> None:
        """Count `count` requests of this latency; ValueError as for add_many."""
        self.add_many(((value, count),))

    def add_many(self, values: Iterable[tuple[float, int]]) -> None:
        """Count (latency, requests) pairs, best with each latency once, as a Counter gives them.

        ValueError, with nothing counted, for a latency that is negative, NaN or infinite (the
        parser never passes one) or a count that is not an int >= 1.
        """
        pairs = list(values)
        if not pairs:
            return
        latencies, counts = zip(*pairs)
        indexes = list(map(_index, latencies))
        if set(map(type, counts)) != {int} or min(counts) < 1:
            raise ValueError("request counts must be ints >= 1")
        buckets = self._buckets
        get = buckets.get
        for i, n in zip(indexes, counts):
            buckets[i] = get(i, 0) + n
        self._zero += buckets.pop(_ZERO, 0)
        self._count += sum(counts)
        self._min = min(self._min, float(min(latencies)))
        self._max = max(self._max, float(max(latencies)))
        self._collapse()

    def merge(self, other: QuantileSketch) -> None:
        """Become the sketch of both: bucket counts add, exactly."""
        buckets = self._buckets
        get = buckets.get
        for i, n in other._buckets.items():
            buckets[i] = get(i, 0) + n
        self._zero += other._zero
        self._count += other._count
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        self._collapse()

    def _collapse(self) -> None:
        """Past MAX_BUCKETS, fold the lowest buckets into the lowest one kept."""
        buckets = self._buckets
        excess = len(buckets) - MAX_BUCKETS
        if excess > 0:
            low = sorted(buckets)[:excess + 1]
            buckets[low[-1]] += sum(map(buckets.pop, low[:-1]))

    def quantile(self, q: float) -> float | None:
        """The latency of nearest rank max(1, ceil(q n)) (see _rank), within ALPHA of the true one;
        q = 0 gives the exact min, q = 1 the exact max, None when empty."""
        if not self._count:
            return None
        return self._at([_rank(q, self._count)])[0]

    def _at(self, ranks: list[int]) -> list[float]:
        """The values at these ascending ranks, in one walk up the buckets; each representative
        is clamped to [min, max], which holds the true value, so that only brings it closer."""
        lo, hi, n = self._min, self._max, self._count
        found = []
        walk = iter(sorted(self._buckets.items()))
        index, seen = _ZERO, self._zero
        for rank in ranks:
            while seen < rank:
                index, c = next(walk)
                seen += c
            if rank == 1:
                found.append(lo)
            elif rank == n:
                found.append(hi)
            else:
                found.append(min(max(0.0 if index == _ZERO else _representative(index), lo), hi))
        return found

    def summary(self) -> dict[str, Any] | None:
        """{"count", "p50", "p90", "p99", "max"}, in seconds to 6 decimals; None when empty."""
        if not self._count:
            return None
        found = self._at([_rank(q, self._count) for _, q in SUMMARY_QUANTILES])
        return {"count": self._count, **{name: _digits(v) for (name, _), v in zip(SUMMARY_QUANTILES, found)},
                "max": _digits(self._max)}

    def copy(self) -> QuantileSketch:
        twin = QuantileSketch()
        twin._buckets = dict(self._buckets)
        twin._zero, twin._count, twin._min, twin._max = self._zero, self._count, self._min, self._max
        return twin

    def to_state(self) -> dict[str, Any]:
        """Plain msgpack-able data: buckets as [index, count] pairs by index, "range" [min, max]
        or [] when empty, and ALPHA so that a sketch of another accuracy is refused."""
        return {"alpha": ALPHA, "zero": self._zero, "buckets": [[i, n] for i, n in sorted(self._buckets.items())],
                "range": [self._min, self._max] if self._count else []}

    @classmethod
    def from_state(cls, state: Any) -> QuantileSketch:
        """The sketch to_state() gave; ValueError for anything else, such as a damaged checkpoint."""
        if not isinstance(state, dict) or set(state) != {"alpha", "zero", "buckets", "range"}:
            raise ValueError("not a quantile sketch state")
        if state["alpha"] != ALPHA:
            raise ValueError("quantile sketch of another accuracy")
        zero, pairs, bounds = state["zero"], state["buckets"], state["range"]
        if type(zero) is not int or zero < 0:
            raise ValueError("quantile sketch zero bucket")
        if not isinstance(pairs, (list, tuple)) or len(pairs) > MAX_BUCKETS:
            raise ValueError("quantile sketch buckets")
        buckets: dict[int, int] = {}
        previous = MIN_INDEX - 1
        for pair in pairs:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and type(pair[0]) is int
                    and type(pair[1]) is int and previous < pair[0] <= MAX_INDEX and pair[1] >= 1):
                raise ValueError("quantile sketch bucket")
            previous = pair[0]
            buckets[pair[0]] = pair[1]
        sketch = cls()
        sketch._buckets, sketch._zero = buckets, zero
        sketch._count = zero + sum(buckets.values())
        if not isinstance(bounds, (list, tuple)) or len(bounds) != (2 if sketch._count else 0):
            raise ValueError("quantile sketch range")
        if bounds:
            lo, hi = bounds
            if not (type(lo) is float and type(hi) is float and 0 <= lo <= hi < math.inf):
                raise ValueError("quantile sketch range")
            # The min is in the zero bucket or at most the lowest bucket (more after a collapse),
            # the max in the highest.
            lowest = _ZERO if zero else min(buckets)
            highest = max(buckets) if buckets else _ZERO
            if _index(lo) > lowest or _index(hi) != highest:
                raise ValueError("quantile sketch range does not match its buckets")
            sketch._min, sketch._max = lo, hi
        return sketch


class SlidingSketch:
    """The sketch of the blocks a rollup holds, as blocks arrive and leave in order.

    Bucket counts are added and taken away exactly, so a summary costs the same whatever the
    number of blocks; the min and max are the blocks' own, from monotonic queues. (Only if the
    union of the blocks' buckets passed MAX_BUCKETS, which nginx's 1 ms .. 60 s never does, would
    a collapse make the counts taken away approximate.)
    """

    __slots__ = ("_sum", "_mins", "_maxes")

    def __init__(self) -> None:
        self._sum = QuantileSketch()
        self._mins: deque[tuple[int, float]] = deque()
        self._maxes: deque[tuple[int, float]] = deque()

    @property
    def count(self) -> int:
        return self._sum.count

    def push(self, seq: int, sketch: QuantileSketch) -> None:
        """Add block number `seq` (numbers increase)."""
        if not sketch.count:
            return
        self._sum.merge(sketch)
        for queue, value, worse in ((self._mins, sketch._min, float.__ge__), (self._maxes, sketch._max, float.__le__)):
            while queue and worse(queue[-1][1], value):
                queue.pop()
            queue.append((seq, value))

    def remove(self, seq: int, sketch: QuantileSketch) -> None:
        """Take away block number `seq`, the oldest held."""
        total = self._sum
        buckets = total._buckets
        for i, n in sketch._buckets.items():
            left = buckets.get(i, 0) - n
            if left > 0:
                buckets[i] = left
            else:
                buckets.pop(i, None)
        total._zero = max(total._zero - sketch._zero, 0)
        total._count = max(total._count - sketch._count, 0)
        for queue in (self._mins, self._maxes):
            while queue and queue[0][0] <= seq:
                queue.popleft()

    def summary(self) -> dict[str, Any] | None:
        """As QuantileSketch.summary, over the blocks held."""
        total = self._held()
        return None if total is None else total.summary()

    def quantile(self, q: float) -> float | None:
        """As QuantileSketch.quantile, over the blocks held."""
        total = self._held()
        return None if total is None else total.quantile(q)

    def _held(self) -> QuantileSketch | None:
        """The sum of the blocks held, with their min and max; None when empty."""
        total = self._sum
        if not total.count or not self._maxes:
            return None
        total._min, total._max = self._mins[0][1], self._maxes[0][1]
        return total
