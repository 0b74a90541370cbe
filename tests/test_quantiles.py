"""The latency quantile sketch against exact quantiles computed offline from the sorted data."""
from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from logmond.core.quantiles import ALPHA, MAX_BUCKETS, MIN_VALUE, QuantileSketch

# The quantiles checked, as decimal strings so that the offline rank is exact rational arithmetic.
QS = ("0", "0.5", "0.9", "0.99", "1")
# Slack on the 1 % bound for floating point rounding at bucket edges (about 1e-16 in practice).
ROUNDING = 1e-12

latency = st.one_of(
    st.just(0.0),
    st.floats(1e-5, 1e4),
    st.floats(-5, 4).map(lambda e: 10 ** e),  # log-uniform, so every decade is represented
    st.sampled_from([0.001, 0.002, 0.015, 0.25, 1.0, 60.0]),  # nginx-style repeats
)


def exact(values: list[float], q: str) -> float:
    """The nearest-rank quantile: the value of 1-based rank max(1, ceil(q n)) in sorted order."""
    ordered = sorted(values)
    rank = max(1, math.ceil(Fraction(q) * len(ordered)))
    return ordered[rank - 1]


def close(estimate: float, true: float) -> bool:
    return abs(estimate - true) <= (ALPHA + ROUNDING) * true


def sketch_of(values: list[float]) -> QuantileSketch:
    s = QuantileSketch()
    s.add_many(Counter(values).items())
    return s


@settings(max_examples=300, deadline=None)
@given(st.lists(latency, min_size=1, max_size=300))
def test_every_quantile_is_within_one_percent_of_the_exact_nearest_rank(values):
    s = sketch_of(values)
    assert s.count == len(values)
    for q in QS:
        true, estimate = exact(values, q), s.quantile(float(q))
        if true == 0:
            assert estimate == 0.0
        else:
            assert close(estimate, true), (q, estimate, true)
    assert (s.quantile(0), s.quantile(1)) == (min(values), max(values))


def test_the_rank_is_nearest_rank_on_the_decimal_q():
    s = sketch_of([float(k) for k in range(1, 101)])  # 1 .. 100: rank r is the value r
    assert math.ceil(0.07 * 100) == 8  # what binary floating point would give
    assert close(s.quantile(0.07), 7.0) and not close(s.quantile(0.07), 8.0)
    assert close(s.quantile(0.5), 50.0) and close(s.quantile(0.99), 99.0)
    assert close(s.quantile(0.001), 1.0)  # rank ceil(0.1) = 1


def test_a_quantile_between_two_far_apart_values_is_the_one_of_its_rank():
    s = sketch_of([0.001] * 9 + [10.0])
    assert close(s.quantile(0.9), 0.001) and s.quantile(0.91) == 10.0


def test_values_below_min_value_are_reported_as_zero_within_a_microsecond():
    values = [0.0, 3e-7, 5e-7, 9e-7, 2.0]
    s = sketch_of(values)
    for q in ("0.25", "0.5", "0.75"):
        assert abs(s.quantile(float(q)) - exact(values, q)) < MIN_VALUE
    s = sketch_of([0.0, 0.0, 0.0, 1.0])
    assert s.quantile(0.5) == 0.0 and s.quantile(0.75) == 0.0 and s.quantile(1) == 1.0
    assert sketch_of([MIN_VALUE]).to_state()["zero"] == 0  # the boundary itself is bucketed


@pytest.mark.parametrize("bad", [-0.001, -math.inf, math.inf, math.nan])
def test_a_latency_that_is_not_finite_and_non_negative_is_refused(bad):
    s = sketch_of([0.5, 1.5])
    before = s.to_state()
    with pytest.raises(ValueError):
        s.add(bad)
    with pytest.raises(ValueError):
        s.add_many([(0.25, 3), (bad, 1)])
    assert s.to_state() == before and s.count == 2  # nothing of the batch was counted


@pytest.mark.parametrize("count", [0, -1, 1.0, True])
def test_a_count_that_is_not_a_positive_int_is_refused(count):
    s = QuantileSketch()
    with pytest.raises(ValueError):
        s.add_many([(0.25, 3), (0.5, count)])
    assert s.count == 0 and s.to_state()["buckets"] == []


@settings(max_examples=200, deadline=None)
@given(st.lists(latency, max_size=200), st.lists(latency, max_size=200))
def test_merging_gives_exactly_the_sketch_of_both(a, b):
    merged = sketch_of(a)
    merged.merge(sketch_of(b))
    assert merged.to_state() == sketch_of(a + b).to_state()
    assert merged.count == len(a) + len(b)


def test_merge_is_in_place_and_leaves_the_other_alone():
    a, b = sketch_of([0.1, 0.2]), sketch_of([5.0])
    b_state = b.to_state()
    a.merge(b)
    assert (a.count, a.max, a.min) == (3, 5.0, 0.1) and b.to_state() == b_state
    a.merge(QuantileSketch())
    assert a.count == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(latency, st.integers(1, 20)), max_size=50))
def test_add_many_with_counts_equals_adding_one_by_one(pairs):
    batched = QuantileSketch()
    batched.add_many(iter(pairs))  # any iterable, including repeated latencies
    single = QuantileSketch()
    for value, n in pairs:
        for _ in range(n):
            single.add(value)
    assert batched.to_state() == single.to_state()
    assert batched.count == sum(n for _, n in pairs)


def test_the_state_round_trips_through_msgpack():
    s = sketch_of([0.0, 0.003, 0.003, 0.12, 1.5, 42.0])
    state = msgpack.unpackb(msgpack.packb(s.to_state()))
    back = QuantileSketch.from_state(state)
    assert back.to_state() == s.to_state()
    assert back.summary() == s.summary() and (back.min, back.max, back.count) == (0.0, 42.0, 6)
    empty = QuantileSketch.from_state(msgpack.unpackb(msgpack.packb(QuantileSketch().to_state())))
    assert empty.count == 0 and empty.quantile(0.5) is None


def good_state() -> dict:
    return sketch_of([0.0, 0.003, 0.003, 0.12, 1.5]).to_state()


def damaged(change) -> dict:
    state = good_state()
    change(state)
    return state


BAD_STATES = {
    "not a dict": [1, 2],
    "missing key": damaged(lambda s: s.pop("range")),
    "extra key": damaged(lambda s: s.update(count=5)),
    "other accuracy": damaged(lambda s: s.update(alpha=0.02)),
    "negative zero bucket": damaged(lambda s: s.update(zero=-1)),
    "float zero bucket": damaged(lambda s: s.update(zero=1.0)),
    "buckets not a list": damaged(lambda s: s.update(buckets={"1": 2})),
    "pair of three": damaged(lambda s: s["buckets"][0].append(1)),
    "float index": damaged(lambda s: s["buckets"][0].__setitem__(0, 1.5)),
    "zero count": damaged(lambda s: s["buckets"][0].__setitem__(1, 0)),
    "negative count": damaged(lambda s: s["buckets"][0].__setitem__(1, -2)),
    "bool count": damaged(lambda s: s["buckets"][0].__setitem__(1, True)),
    "repeated index": damaged(lambda s: s["buckets"].insert(0, list(s["buckets"][0]))),
    "unsorted": damaged(lambda s: s["buckets"].reverse()),
    "index below the lowest": damaged(lambda s: s["buckets"].insert(0, [-10_000, 1])),
    "index above the highest": damaged(lambda s: s["buckets"].append([10 ** 6, 1])),
    "too many buckets": damaged(lambda s: s.update(buckets=[[i, 1] for i in range(MAX_BUCKETS + 1)])),
    "no range": damaged(lambda s: s.update(range=[])),
    "range when empty": {"alpha": ALPHA, "zero": 0, "buckets": [], "range": [0.0, 0.0]},
    "min above max": damaged(lambda s: s.update(range=[2.0, 1.0])),
    "negative min": damaged(lambda s: s.update(range=[-1.0, 1.5])),
    "nan max": damaged(lambda s: s.update(range=[0.0, math.nan])),
    "max not in the top bucket": damaged(lambda s: s.update(range=[0.0, 9.0])),
    "min above the zero bucket": damaged(lambda s: s.update(range=[0.003, 1.5])),
}


@pytest.mark.parametrize("state", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_from_state_refuses_a_malformed_state(state):
    with pytest.raises(ValueError):
        QuantileSketch.from_state(state)


def test_the_good_state_used_above_is_accepted():
    assert QuantileSketch.from_state(good_state()).count == 5


def test_one_bucket_past_the_cap_folds_the_lowest_into_the_next():
    s = QuantileSketch()
    values = [1.03 ** k for k in range(MAX_BUCKETS + 1)]  # 1.03 > GAMMA: one bucket each
    s.add_many((v, 1) for v in values)
    buckets = s.to_state()["buckets"]
    assert len(buckets) == MAX_BUCKETS and buckets[0][1] == 2 and all(n == 1 for _, n in buckets[1:])
    s.add(1e-5)  # a new lowest bucket folds into the lowest kept
    assert s.to_state()["buckets"][0][1] == 3 and len(s.to_state()["buckets"]) == MAX_BUCKETS


def test_a_million_distinct_values_over_a_huge_range_stay_within_max_buckets():
    rng = random.Random(7)
    values = [10 ** rng.uniform(-6, 300) for _ in range(10 ** 6)]
    s = QuantileSketch()
    for start in range(0, len(values), 10_000):
        s.add_many((v, 1) for v in values[start:start + 10_000])
        assert len(s.to_state()["buckets"]) <= MAX_BUCKETS
    merged = s.copy()
    merged.merge(sketch_of([1e-5] * 10))  # a merge collapses too
    assert len(merged.to_state()["buckets"]) <= MAX_BUCKETS
    values.sort()  # once, so that each exact() below re-sorts sorted data in linear time
    assert s.count == 10 ** 6 and (s.min, s.max) == (values[0], values[-1])
    # The 2,048 buckets kept span the top 17.8 of the 306 decades, past p95: the high quantiles
    # keep their accuracy; the low ones, folded upwards, only overestimate.
    for q in ("0.99", "0.999"):
        assert close(s.quantile(float(q)), exact(values, q))
    for q in ("0.5", "0.9"):
        assert s.quantile(float(q)) > exact(values, q) * (1 + ALPHA)


def test_summary_keys_and_exact_max():
    s = sketch_of([0.0123456789] * 98 + [0.5, 7.654321987])
    summary = s.summary()
    assert list(summary) == ["count", "p50", "p90", "p99", "max"]
    assert summary["count"] == 100 and summary["max"] == 7.65432  # exact, to 6 significant digits
    assert sketch_of([0.000003565]).summary()["max"] == 0.000003565  # Caddy's nanoseconds are kept
    assert close(summary["p50"], 0.0123456789) and close(summary["p90"], 0.0123456789)
    assert close(summary["p99"], 0.5)
    assert all(v == float(f"{v:.6g}") for v in summary.values())
    assert QuantileSketch().summary() is None


def test_an_empty_sketch_reports_nothing():
    s = QuantileSketch()
    assert (s.count, s.min, s.max, s.quantile(0.5), s.summary()) == (0, None, None, None, None)
    s.add_many([])
    assert s.count == 0


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_a_quantile_outside_zero_one_is_refused(q):
    with pytest.raises(ValueError):
        sketch_of([1.0]).quantile(q)


def test_copy_is_independent():
    s = sketch_of([0.1, 0.2])
    twin = s.copy()
    twin.add(9.0, 5)
    assert (s.count, s.max) == (2, 0.2) and (twin.count, twin.max) == (7, 9.0)
    assert twin.to_state()["buckets"] != s.to_state()["buckets"]
