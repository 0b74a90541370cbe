"""Blocks, the timeframe rollup and the distinct-host sketch, against offline computations."""
from __future__ import annotations

import random
import statistics
from array import array
from collections import Counter

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from conftest import T0
from logmond.core import window
from logmond.core.hosts import MAX_RANK, REGISTERS, HyperLogLog, SlidingHosts
from logmond.core.monitor import CoreConfig, Monitor
from logmond.core.window import OTHER, Block, Ranked, Rollup
from logmonctl.render import summary_text

INTERVAL = 10


def lines(seconds: range, per_second: int, host: str = "10.0.0.1", path: str = "/api/x") -> bytes:
    return "".join(f'"{host}","-","apache",{t},"GET {path} HTTP/1.0",200,100\n'
                   for t in seconds for _ in range(per_second)).encode()


def block(sections: dict[str, int], hosts: list[str], batches: int = 1) -> Block:
    """A block with these section hits (status 200, or 404 for sections ending in 4, 503 in 5), and
    these hosts added in `batches` columns as the fast path would."""
    b = Block()
    b.add_requests((((("GET" if n % 2 else "POST"), s), 404 if s.endswith("4") else 503 if s.endswith("5") else 200), n)
                   for s, n in sections.items())
    size = -(-len(hosts) // batches) if hosts else 1
    for i in range(0, len(hosts), size):
        b.add_hosts(hosts[i:i + size])
    b.bytes = 7 * b.hits
    return b


# -- defect 3: the rate is over the span the rollup covers ---------------------------------------

def test_the_timeframe_rate_is_over_the_span_seen_not_the_whole_timeframe():
    m = Monitor(CoreConfig(format="csv", lateness=0, summary_interval=10, timeframe=600))
    m.feed(lines(range(T0, T0 + 21), 300))  # 20 s complete, the second block closed by T0 + 20
    s = m.timeframe_summary()
    assert (s["start"], s["end"], s["hits"], s["rate"]) == (T0, T0 + 20, 6000, 300.0)
    text = summary_text("Timeframe", s)
    assert text[0].endswith("(20s)") and text[1].split() == ["hits", "6000", "(300.00/s)"]


def test_the_span_is_the_whole_timeframe_once_seen_for_that_long_quiet_or_not():
    m = Monitor(CoreConfig(format="csv", lateness=0, summary_interval=10, timeframe=600))
    m.feed(lines(range(T0, T0 + 5), 2) + lines(range(T0 + 900, T0 + 906), 3))
    s = m.timeframe_summary()
    # [T0 + 300, T0 + 900): the first block has left, the second is still open, and the quiet
    # blocks between count as seen, so the span is the whole timeframe.
    assert (s["start"], s["end"], s["hits"], s["rate"]) == (T0 + 300, T0 + 900, 0, 0.0)
    m.feed(lines(range(T0 + 910, T0 + 911), 1))
    s = m.timeframe_summary()
    assert (s["start"], s["end"], s["hits"], s["rate"]) == (T0 + 310, T0 + 910, 18, 0.03)


# -- defect 4: hosts are exact while their union is under the cap --------------------------------

def test_one_host_over_many_blocks_is_one_exact_host():
    m = Monitor(CoreConfig(format="csv", lateness=0, summary_interval=10, timeframe=600))
    m.feed(lines(range(T0, T0 + 61), 5))
    s = m.timeframe_summary()
    assert (s["hits"], s["hosts"], s["hosts_exact"], s["top_hosts"]) == (300, 1, True, [["10.0.0.1", 300]])
    assert "  hosts     1" in summary_text("Timeframe", s)


def test_hosts_are_exact_again_once_the_blocks_past_the_cap_have_left():
    r = Rollup(30, INTERVAL)
    many = [f"h{i}" for i in range(window.MAX_TRACKED + 1)]
    r.push(0, block({"/a": 1}, many))
    r.push(10, block({"/a": 1}, ["x", "y"]))
    assert (r.summary(20)["hosts_exact"], r.summary(30)["hosts_exact"]) == (False, False)
    assert (r.summary(40)["hosts"], r.summary(40)["hosts_exact"]) == (2, True)


def offline(blocks: list[tuple[int, dict[str, int], list[str], Block]], now: int, timeframe: int,
            origin: int, cap: int) -> dict:
    """The rollup summary from its definition: sums over the blocks starting at or after
    now - timeframe, top lists by count then name, hosts exact iff their union is within the cap."""
    covered = [(s, b) for s, _, _, b in blocks if s >= now - timeframe]
    union = set().union(*(set(h) for s, _, h, _ in blocks if s >= now - timeframe))
    sums = {name: Counter() for name in ("sections", "sec4xx", "sec5xx", "status", "codes", "methods", "hosts")}
    for _, b in covered:
        for name, total in sums.items():
            total.update(getattr(b, name))
    rank = lambda c, k: [(n, v) for n, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])) if n != OTHER][:k]
    hits = sum(b.hits for _, b in covered)
    start = max(now - timeframe, origin)
    exact = len(union) <= cap
    estimate = HyperLogLog()
    estimate.add(union)
    top = rank(sums["sections"], 10)
    return {
        "type": "summary", "start": start, "end": now, "hits": hits, "rate": round(hits / (now - start), 3),
        "sections": [[n, v] for n, v in top],
        "errors": {n: {"4xx": round(sums["sec4xx"][n] / v, 4), "5xx": round(sums["sec5xx"][n] / v, 4)} for n, v in top},
        "status": dict(sorted(sums["status"].items())), "methods": dict(rank(sums["methods"], len(sums["methods"]))),
        "bytes": 7 * hits, "bytes_mean": 7.0 if hits else 0.0,
        "hosts": len(union) if exact else estimate.estimate(), "hosts_exact": exact,
        "top_hosts": [[n, v] for n, v in rank(sums["hosts"], 5)],
        "codes": [[n, v] for n, v in rank(+sums["codes"], 10)],
        "sections_5xx": [[n, v] for n, v in rank(+sums["sec5xx"], 10)],
    }


SECTIONS = [f"/s{i}" for i in range(14)]
HOSTS = [f"10.0.0.{i}" for i in range(24)]
steps = st.lists(st.tuples(
    st.integers(0, 4),  # empty blocks before this one
    st.dictionaries(st.sampled_from(SECTIONS), st.integers(1, 9), max_size=12),
    st.lists(st.sampled_from(HOSTS), max_size=30),
    st.integers(1, 3),  # batches the hosts arrive in
    st.integers(0, 6),  # more intervals before the summary is asked for
), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([10, 30, 60]))
def test_the_rollup_agrees_with_the_offline_computation(steps, timeframe):
    cap = 8  # small, so that unions cross it often
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(window, "MAX_TRACKED", cap)
        r = Rollup(timeframe, INTERVAL)
        pushed: list = []
        now = T0
        for gap, sections, hosts, batches, idle in steps:
            start = now + gap * INTERVAL
            b = block(sections, hosts, batches)
            pushed.append((start, sections, hosts, b))
            r.push(start, b)
            now = start + INTERVAL
            assert r.summary(now) == offline(pushed, now, timeframe, pushed[0][0], cap)
            now += idle * INTERVAL
            assert r.summary(now) == offline(pushed, now, timeframe, pushed[0][0], cap)


def test_the_rollup_holds_the_timeframe_only_even_if_never_asked():
    r = Rollup(60, INTERVAL)
    for k in range(100):
        r.push(T0 + k * INTERVAL, block({"/a": 1}, [f"h{k}"]))
    assert [start - T0 for start, _ in r.blocks] == [k * INTERVAL for k in range(94, 100)]
    assert (r.summary(T0 + 1000)["hits"], r.summary(T0 + 1000)["hosts"]) == (6, 6)


def test_no_summary_before_the_first_block():
    assert Rollup(600, INTERVAL).summary(T0) is None


# -- defect 5: the top lists follow additions and removals ---------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.dictionaries(st.sampled_from(["a", "b", "c", "d", OTHER, "e"]),
                                                         st.integers(1, 5), max_size=4)), max_size=60),
       st.integers(1, 6))
def test_ranked_counts_rank_like_a_sort_of_the_counts(ops, n):
    ranked, added = Ranked(), []
    for remove, counts in ops:
        if remove and added:
            ranked.add(added.pop(0), -1)
        else:
            ranked.add(counts, 1)
            added.append(counts)
        total = sum((Counter(c) for c in added), Counter())
        assert ranked.counts == {k: v for k, v in total.items() if v}
        expected = [(k, v) for k, v in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])) if k != OTHER and v]
        assert ranked.top(n) == expected[:n]
        assert len(ranked._heap) <= 2 * len(ranked.counts) + window.HEAP_SLACK


# -- defect 11: distinct hosts by HyperLogLog --------------------------------------------------

def relative_errors(n: int, seeds: int) -> list[float]:
    """Estimate / n - 1 for `seeds` streams of n random 64-bit hashes (what an ideal hash gives)."""
    errors = []
    for seed in range(seeds):
        sketch = HyperLogLog()
        sketch.add_hashes(array("Q", random.Random(seed).randbytes(8 * n)))
        errors.append(sketch.estimate() / n - 1)
    return errors


def test_the_estimate_is_unbiased_within_two_percent():
    # The small range (n < 2.5 registers), the switch-over zone of classic HyperLogLog, and the
    # raw estimator's range; 1.04 / sqrt(4096) = 1.6 % is the theoretical standard error.
    pooled = []
    for n, seeds in ((1_000, 40), (12_000, 40), (200_000, 10)):
        errors = relative_errors(n, seeds)
        rse = statistics.fmean(e * e for e in errors) ** 0.5
        assert rse < 0.025, (n, rse)
        pooled += errors
    assert abs(statistics.fmean(pooled)) < 0.005
    assert statistics.fmean(e * e for e in pooled) ** 0.5 < 0.02


def test_real_host_names_hash_like_random_bits():
    sketch = HyperLogLog()
    sketch.add(f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}" for i in range(100_000))
    assert abs(sketch.estimate() / 100_000 - 1) < 0.05  # 3 standard errors
    counts = Counter(sketch.registers)
    assert counts[0] < 20 and max(counts) <= MAX_RANK  # every register used, ranks in range


def test_a_million_hosts_over_the_rollup_are_estimated_not_saturated():
    r = Rollup(600, INTERVAL)
    per_block = 100_001
    for k in range(10):
        hosts = [f"{k}.{i >> 16}.{i >> 8 & 255}.{i & 255}" for i in range(per_block)]
        r.push(T0 + k * INTERVAL, block({"/a": 1}, hosts, batches=4))
    s = r.summary(T0 + 10 * INTERVAL)
    assert s["hosts_exact"] is False
    assert abs(s["hosts"] / 1_000_010 - 1) < 0.05, s["hosts"]


def test_one_block_past_the_cap_estimates_its_hosts():
    b = block({"/a": 1}, [f"h{i}" for i in range(50_000)], batches=5)
    s = b.summary(T0, T0 + INTERVAL)
    assert s["hosts_exact"] is False and abs(s["hosts"] / 50_000 - 1) < 0.05


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 5_000), max_size=400), st.sets(st.integers(0, 5_000), max_size=400))
def test_merging_sketches_is_sketching_the_union(a, b):
    sa, sb, union = HyperLogLog(), HyperLogLog(), HyperLogLog()
    sa.add(map(str, a))
    sb.add(map(str, b))
    union.add(map(str, a | b))
    sa.merge(sb)
    assert sa == union
    assert abs(union.estimate() - len(a | b)) <= len(a | b) // 20 + 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2**32), min_size=1, max_size=12), st.data())
def test_sliding_registers_are_the_maximum_over_the_blocks_covered(seeds, data):
    blocks, hosts = [], SlidingHosts(cap=5)
    for seq, seed in enumerate(seeds, 1):
        rnd = random.Random(seed)
        # Mostly small values, some blocks much larger ones, as register values are.
        registers = bytes(min(MAX_RANK, int(rnd.expovariate(1 / rnd.choice([1, 3, 12])))) for _ in range(REGISTERS))
        blocks.append(registers)
        hosts.push(seq, None, HyperLogLog(registers))
        first = data.draw(st.integers(hosts.first, seq + 1))
        hosts.expire(first)
        expected = bytes(map(max, *blocks[first - 1:], bytes(REGISTERS), bytes(REGISTERS)))
        assert hosts.registers() == expected


# -- checkpoints -----------------------------------------------------------------------------------

def round_trip(state):
    return msgpack.unpackb(msgpack.packb(state), raw=False, strict_map_key=True)


def test_blocks_and_rollups_resume_from_their_state():
    big = block({"/a": 3, "/b4": 2}, [f"h{i}" for i in range(window.MAX_TRACKED + 500)])
    again = Block.from_state(round_trip(big.to_state()))
    assert again.sketch == big.sketch and again.summary(T0, T0 + 10) == big.summary(T0, T0 + 10)
    first, second = Rollup(30, INTERVAL), Rollup(30, INTERVAL)
    for k, b in enumerate([big, block({"/c5": 1}, ["x"]), block({"/a": 1}, ["y", "x"])]):
        first.push(T0 + k * INTERVAL, b)
    second.load(round_trip(first.to_state()))
    assert second.summary(T0 + 30) == first.summary(T0 + 30)
    for r in (first, second):
        r.push(T0 + 40, block({"/d": 4}, ["z"]))
    assert second.summary(T0 + 50) == first.summary(T0 + 50)
    assert second.summary(T0 + 50)["hosts_exact"] is True


def test_a_checkpoint_with_the_old_sketch_is_refused():
    old_block = {**Block().to_state(), "sketch": bytes(8192)}  # the former 64 Kibit bitmap
    with pytest.raises(ValueError):
        Block.from_state(old_block)
    with pytest.raises(ValueError):
        HyperLogLog.from_bytes(bytes([MAX_RANK + 1]) + bytes(REGISTERS - 1))
    m = Monitor(CoreConfig(format="csv"))
    m.feed(lines(range(T0, T0 + 30), 1))
    state = round_trip(m.to_state())
    state["rollup"] = [[T0, old_block]]  # the former rollup: a list of blocks, each with a bitmap
    with pytest.raises(ValueError):
        Monitor(CoreConfig(format="csv")).load(state)


def test_times_counted_in_many_calls_past_the_pending_bound_sketch_like_one_call(monkeypatch):
    """Block.add_timings defers sketch updates; settling early (past MAX_PENDING) or late (when
    read) gives the sketches that all the times added at once give, per section and overall."""
    monkeypatch.setattr(window, "MAX_PENDING", 50)
    monkeypatch.setattr(window, "MAX_SECTION_SKETCHES", 3)
    rng = random.Random(7)
    rows = [(f"/s{rng.randrange(5)}", rng.choice([None, round(rng.uniform(0, 3), 3)]), rng.choice([None, 0.5, 1.25]))
            for _ in range(2_000)]
    deferred = Block()
    for start in range(0, len(rows), 37):
        part = rows[start:start + 37]
        deferred.add_timings([s for s, _, _ in part], [r for _, r, _ in part], [u for _, _, u in part])
    times = [r for _, r, _ in rows if r is not None]
    assert deferred.latency.count == len(times)
    assert (deferred.latency.min, deferred.latency.max) == (min(times), max(times))
    assert deferred.upstream.count == sum(u is not None for _, _, u in rows)
    sections = deferred.section_latency
    assert len(sections) == 3 + 1 and OTHER in sections
    assert sum(sk.count for sk in sections.values()) == len(times)
    for name, sketch in sections.items():
        if name != OTHER:
            mine = [r for s, r, _ in rows if s == name and r is not None]
            assert (sketch.count, sketch.max) == (len(mine), max(mine))


def test_summaries_name_the_exact_codes_and_the_sections_by_5xx():
    b = Block()
    b.add_requests([((("GET", "/a"), 200), 5), ((("GET", "/a"), 502), 1), ((("GET", "/b"), 503), 3),
                    ((("POST", "/b"), 404), 5), ((("GET", "/c"), 301), 2)])
    s = b.summary(T0, T0 + 10)
    assert s["codes"] == [["200", 5], ["404", 5], ["503", 3], ["301", 2], ["502", 1]]
    assert s["sections_5xx"] == [["/b", 3], ["/a", 1]]
    r = Rollup(30, INTERVAL)
    r.push(T0, b)
    r.push(T0 + 10, Block.from_state(b.to_state()))
    rolled = r.summary(T0 + 20)
    assert rolled["codes"][:2] == [["200", 10], ["404", 10]] and rolled["sections_5xx"] == [["/b", 6], ["/a", 2]]
