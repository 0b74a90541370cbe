"""The alert rule, pinned to the second, and the monitor's evaluation order and summaries."""
from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from logmond.core.monitor import CoreConfig, Monitor
from shared.schema import alert_message

T0 = 1_549_573_800  # a multiple of 10 and of 60


def csv_lines(stamps: list[int], path: str = "/api/user", status: int = 200) -> bytes:
    return "".join(f'"10.0.0.{i % 7}","-","apache",{t},"GET {path} HTTP/1.0",{status},100\n'
                   for i, t in enumerate(stamps)).encode()


def burst(counts: dict[int, int]) -> list[int]:
    """Timestamps in order: counts[offset] hits at T0 + offset."""
    return [T0 + off for off in sorted(counts) for _ in range(counts[off])]


def run(stamps: list[int], pieces: int = 1, **config) -> tuple[list[dict], Monitor]:
    monitor = Monitor(CoreConfig(format="csv", **config))
    data = csv_lines(stamps).splitlines(keepends=True)
    events = []
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        events += monitor.feed(b"".join(data[i:i + step]))
    events += monitor.finish()
    return events, monitor


def alerts(events: list[dict]) -> list[tuple[str, int, int]]:
    return [(e["type"], e["at"] - T0, e["hits"]) for e in events if e["type"] in ("alert", "recover")]


def offline(stamps: list[int], window: int, threshold: Fraction, hysteresis: Fraction) -> list[tuple[str, int, int]]:
    """The rule as the issue states it, computed the slow obvious way."""
    if not stamps:
        return []
    hits = Counter(stamps)
    out, firing = [], False
    for t in range(min(stamps), max(stamps) + 1):
        n = sum(hits[s] for s in range(t - window + 1, t + 1))
        rate = Fraction(n, window)
        if not firing and rate > threshold:
            firing = True
            out.append(("alert", t - T0, n))
        elif firing and rate <= threshold * (1 - hysteresis):
            firing = False
            out.append(("recover", t - T0, n))
    return out


def test_exactly_at_threshold_never_fires():
    events, _ = run(burst({0: 10, 30: 1}), window=10, threshold=Fraction(1))
    assert alerts(events) == []


def test_one_hit_over_fires_at_that_second_and_recovers_when_it_leaves_the_window():
    events, _ = run(burst({0: 5, 3: 6, 30: 1}), window=10, threshold=Fraction(1))
    # (t-10, t] holds 11 hits from t=3 to t=9; at t=10 the 5 hits of t=0 leave.
    assert alerts(events) == [("alert", 3, 11), ("recover", 10, 6)]


def test_recovery_at_equality():
    # 11 hits fire; at t=10 the first hit leaves and exactly 10 remain: rate == threshold recovers.
    events, _ = run(burst({0: 1, 1: 10, 40: 1}), window=10, threshold=Fraction(1))
    assert alerts(events) == [("alert", 1, 11), ("recover", 10, 10)]


def test_empty_gap_is_evaluated_second_by_second():
    events, _ = run(burst({0: 50, 500: 1}), window=20, threshold=Fraction(2))
    assert alerts(events) == [("alert", 0, 50), ("recover", 20, 0)]


def test_hysteresis_band():
    counts = {0: 20, 5: 1}  # 21 hits, then they leave at 10 and 15
    events, _ = run(burst({**counts, 60: 1}), window=10, threshold=Fraction(1), hysteresis=Fraction(1, 2))
    assert alerts(events) == [("alert", 0, 20), ("recover", 10, 1)]
    # With 7 hits left in the window (> 5 = T*(1-H)*W) the alert holds.
    events, _ = run(burst({0: 20, 5: 7, 60: 1}), window=10, threshold=Fraction(1), hysteresis=Fraction(1, 2))
    assert alerts(events) == [("alert", 0, 20), ("recover", 15, 0)]


def test_decimal_threshold_is_exact():
    # 0.1 * 30 is 3.0000000000000004 in floating point; 3 hits must not fire, 4 must.
    assert alerts(run(burst({0: 3, 40: 1}), window=30, threshold=Fraction("0.1"))[0]) == []
    assert alerts(run(burst({0: 4, 40: 1}), window=30, threshold=Fraction("0.1"))[0])[0] == ("alert", 0, 4)


def test_out_of_order_within_lateness_matches_sorted_input():
    rnd = random.Random(7)
    stamps = burst({s: rnd.randrange(0, 30) for s in range(0, 300)})
    shuffled = sorted(stamps, key=lambda t: t + rnd.uniform(0, 4.9))  # never 5 s behind
    cfg = dict(window=20, threshold=Fraction(12), lateness=5)
    assert alerts(run(shuffled, pieces=7, **cfg)[0]) == alerts(run(stamps, **cfg)[0])
    assert run(shuffled, **cfg)[1].late == 0


def test_lines_beyond_lateness_are_late_and_excluded():
    events, monitor = run([T0, T0 + 6, T0, T0 + 1, T0 + 7, T0 + 1], lateness=5, window=10,
                          threshold=Fraction(0))
    # T0 is 6 s behind T0+6: late. T0+1 is exactly 5 s behind: accepted; after T0+7 it is 6 behind.
    assert monitor.late == 2
    assert monitor.parsed == 6
    summary = [e for e in events if e["type"] == "summary"]
    assert sum(s["hits"] for s in summary) == 4


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(0, 12), min_size=1, max_size=120),
    window=st.integers(1, 30),
    threshold=st.fractions(min_value=0, max_value=6, max_denominator=10),
    hysteresis=st.sampled_from([Fraction(0), Fraction(1, 20), Fraction(1, 2)]),
    lateness=st.integers(0, 6),
    seed=st.integers(0, 2**16),
    pieces=st.integers(1, 9),
)
def test_matches_offline_rule_for_any_input_within_lateness(counts, window, threshold, hysteresis, lateness,
                                                             seed, pieces):
    rnd = random.Random(seed)
    stamps = burst(dict(enumerate(counts)))
    if not stamps:
        return
    # Disorder strictly bounded by `lateness`: a line is never more than `lateness` s behind.
    shuffled = sorted(stamps, key=lambda t: t + rnd.uniform(0, lateness))
    events, monitor = run(shuffled, pieces=pieces, window=window, threshold=threshold,
                          hysteresis=hysteresis, lateness=lateness)
    assert monitor.late == 0
    assert alerts(events) == offline(stamps, window, threshold, hysteresis)


def test_events_come_in_log_time_order_and_blocks_are_aligned():
    events, _ = run(burst({3: 30, 4: 30, 47: 1}), window=10, threshold=Fraction(5), summary_interval=10)
    times = [e["at"] if "at" in e else e["end"] - 1 for e in events]
    assert times == sorted(times)
    summaries = [(e["start"] - T0, e["end"] - T0, e["hits"]) for e in events if e["type"] == "summary"]
    # Empty blocks between busy ones are reported with 0 hits.
    assert summaries == [(0, 10, 60), (10, 20, 0), (20, 30, 0), (30, 40, 0), (40, 50, 1)]


def test_summary_statistics():
    monitor = Monitor(CoreConfig(format="csv", summary_interval=10))
    lines = (csv_lines([T0] * 3, "/api/user", 200) + csv_lines([T0 + 1] * 2, "/report", 404)
             + csv_lines([T0 + 2], "/api/x?y=/z", 503) + csv_lines([T0 + 20], "/", 200))
    events = monitor.feed(lines) + monitor.finish()
    first = events[0]
    assert first["type"] == "summary" and (first["start"], first["end"]) == (T0, T0 + 10)
    assert first["hits"] == 6 and first["rate"] == 0.6
    assert first["sections"] == [["/api", 4], ["/report", 2]]
    assert first["errors"]["/api"] == {"4xx": 0.0, "5xx": 0.25}
    assert first["errors"]["/report"] == {"4xx": 1.0, "5xx": 0.0}
    assert first["status"] == {"2xx": 3, "4xx": 2, "5xx": 1}
    assert first["methods"] == {"GET": 6}
    assert first["bytes"] == 600 and first["bytes_mean"] == 100.0
    assert first["hosts"] == 3 and first["hosts_exact"] is True
    assert events[-1]["sections"] == [["/", 1]]


def test_far_future_timestamp_does_not_print_forever():
    events, monitor = run([T0, T0 + 10**9], window=10, threshold=Fraction(1))
    assert len(events) < 20
    assert monitor.lines == 2


def test_alert_messages():
    event = {"type": "alert", "at": 1549574556, "hits": 1206, "rate": 10.05, "threshold": 10.0, "window": 120}
    assert alert_message(event) == ("High traffic generated an alert - hits = 1206, triggered at "
                                    "2019-02-07T21:22:36Z (10.05/s over 120s)")
    event["type"] = "recover"
    assert alert_message(event).startswith("High traffic alert recovered - hits = 1206, recovered at 2019-02-07T21:22:36Z")


def test_state_round_trip_resumes_exactly():
    rnd = random.Random(3)
    stamps = burst({s: rnd.randrange(0, 25) for s in range(0, 400)})
    cfg = dict(window=30, threshold=Fraction(10), summary_interval=10, timeframe=60)
    whole, uninterrupted = run(stamps, **cfg)
    data = csv_lines(stamps)
    cut = data.index(b"\n", len(data) // 2) + 1
    first = Monitor(CoreConfig(format="csv", **cfg))
    events = first.feed(data[:cut])
    state = msgpack.unpackb(msgpack.packb(first.to_state()), raw=False, strict_map_key=True)
    second = Monitor(CoreConfig(format="csv", **cfg))
    second.load(state)
    events += second.feed(data[cut:]) + second.finish()
    assert events == whole
    assert second.alert.to_state() == uninterrupted.alert.to_state()
