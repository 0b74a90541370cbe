"""The clock guard: a corrupt timestamp never moves the clock, a real jump is followed, none lost."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import msgpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from logmond.core.batch import JUMP_CONFIRM, MAX_GROUPS, MAX_JUMP
from logmond.core.monitor import CoreConfig, Monitor
from test_alerts import alerts, burst, offline

T0 = 1_549_573_800
FAR_AHEAD = 99_999_999_999       # year 5138
FAR_BEHIND = 1_000_000_000       # 2001
LATENESS = 5
BOUND = LATENESS + MAX_JUMP
# 30 s at 10 hits/s, then 270 s more: 3,000 lines, ten per second, nothing out of order.
BEFORE = [T0 + i // 10 for i in range(300)]
AFTER = [T0 + 30 + i // 10 for i in range(2700)]


def csv_lines(stamps: list[int]) -> bytes:
    """One line per stamp; its host depends on its time only, so inserted lines change no other."""
    return "".join(f'"10.0.0.{t % 7}","-","apache",{t},"GET /api/user HTTP/1.0",200,100\n' for t in stamps).encode()


def run(stamps: list[int], pieces: int = 1, **config) -> tuple[list[dict], Monitor]:
    """Feed the lines in `pieces` runs (pieces = number of lines: one feed per line), then finish."""
    monitor = Monitor(CoreConfig(format="csv", **config))
    data = csv_lines(stamps).splitlines(keepends=True)
    step = max(1, -(-len(data) // pieces))
    events = []
    for i in range(0, len(data), step):
        events += monitor.feed(b"".join(data[i:i + step]))
    return events + monitor.finish(), monitor


def counts(monitor: Monitor) -> tuple:
    t = monitor.totals()
    return t["lines"], t["parsed"], t["malformed"], t["late"], t["malformed_by_reason"]


def summaries(events: list[dict]) -> list[tuple[int, int, int]]:
    return [(e["start"] - T0, e["end"] - T0, e["hits"]) for e in events if e["type"] == "summary"]


CLEAN_EVENTS = run(BEFORE + AFTER)[0]
PIECES = [1, 7, 3001]   # whole, several runs, one line per feed (suspects held across feeds)


# -- corrupt times: counted, never followed ------------------------------------------------------

@pytest.mark.parametrize("pieces", PIECES)
@pytest.mark.parametrize("n", [1, 2, JUMP_CONFIRM - 1])
def test_corrupt_times_ahead_are_malformed_clock(n, pieces):
    events, monitor = run(BEFORE + [FAR_AHEAD] * n + AFTER, pieces)
    assert counts(monitor) == (3000 + n, 3000, n, 0, {"clock": n})
    assert monitor.totals()["malformed_samples"][-1]["reason"] == "clock"
    assert str(FAR_AHEAD) in monitor.totals()["malformed_samples"][-1]["line"]
    # Exactly what the log without them gives: 30 summaries from T0 to T0 + 300.
    assert events == CLEAN_EVENTS
    assert summaries(events)[0] == (0, 10, 100) and summaries(events)[-1] == (290, 300, 100)


@pytest.mark.parametrize("pieces", PIECES)
@pytest.mark.parametrize("n", [1, 2, JUMP_CONFIRM - 1])
def test_corrupt_times_behind_stay_late(n, pieces):
    events, monitor = run(BEFORE + [FAR_BEHIND] * n + AFTER, pieces)
    assert counts(monitor) == (3000 + n, 3000 + n, 0, n, {})
    assert events == CLEAN_EVENTS


@pytest.mark.parametrize("pieces", PIECES)
def test_many_corrupt_times_that_disagree_never_confirm(pieces):
    rnd = random.Random(5)
    bad = [rnd.choice([FAR_AHEAD - rnd.randrange(10**9), FAR_BEHIND + rnd.randrange(10**8)]) for _ in range(40)]
    ahead = sum(t > T0 for t in bad)
    stamps = BEFORE[:150] + bad[:20] + BEFORE[150:] + AFTER[:1000] + bad[20:] + AFTER[1000:]
    events, monitor = run(stamps, pieces)
    assert counts(monitor) == (3040, 3000 + 40 - ahead, ahead, 40 - ahead, {"clock": ahead})
    assert events == CLEAN_EVENTS


@pytest.mark.parametrize("pieces", [1, 7, 1500])
@pytest.mark.parametrize("bad", [FAR_AHEAD, FAR_BEHIND])
def test_a_corrupt_first_line_does_not_set_the_clock(bad, pieces):
    events, monitor = run([bad] + BEFORE + AFTER, pieces)
    assert counts(monitor) == (3001, 3000, 1, 0, {"clock": 1})
    assert events == CLEAN_EVENTS


@pytest.mark.parametrize("bad", [FAR_AHEAD, FAR_BEHIND])
def test_first_lines_that_disagree_wait_for_more(bad):
    monitor = Monitor(CoreConfig(format="csv"))
    events = monitor.feed(csv_lines([bad, BEFORE[0]]))
    assert (monitor.clock, counts(monitor), len(monitor.groups)) == (None, (0, 0, 0, 0, {}), 2)
    events += monitor.feed(csv_lines(BEFORE[1:] + AFTER)) + monitor.finish()
    assert counts(monitor) == (3001, 3000, 1, 0, {"clock": 1})
    assert events == CLEAN_EVENTS


@pytest.mark.parametrize("bad", [FAR_AHEAD, FAR_BEHIND])
def test_a_first_line_arriving_alone_sets_the_clock_at_once(bad):
    # Nothing contradicts it yet, so it is counted at once (live, a lone line must show up); the
    # lines after it are then a jump, and nothing is lost.
    monitor = Monitor(CoreConfig(format="csv"))
    events = monitor.feed(csv_lines([bad]))
    assert (monitor.clock, counts(monitor)) == (bad, (1, 1, 0, 0, {}))
    events += monitor.feed(csv_lines(BEFORE + AFTER)) + monitor.finish()
    assert counts(monitor) == (3001, 3001, 0, 0, {})
    assert summaries(events)[0] == (bad // 10 * 10 - T0, bad // 10 * 10 + 10 - T0, 1)
    assert summaries(events)[-30:] == summaries(CLEAN_EVENTS)


@pytest.mark.parametrize("pieces, expected", [
    # Before any clock, neither is behind one: both are malformed `clock`.
    (1, (3002, 3000, 2, 0, {"clock": 2})),
    # One line per feed: the first sets the clock alone; the line far behind it is late.
    (3002, (3002, 3001, 1, 1, {"clock": 1})),
])
def test_corrupt_lines_among_the_first_leave_them_alone(pieces, expected):
    events, monitor = run(BEFORE[:1] + [FAR_AHEAD, FAR_BEHIND] + BEFORE[1:] + AFTER, pieces)
    assert counts(monitor) == expected
    assert events == CLEAN_EVENTS


def test_a_corrupt_line_while_a_jump_is_confirmed_is_refuted_alone():
    gap = [t + 7200 for t in AFTER]
    events, monitor = run(BEFORE + gap[:2] + [FAR_AHEAD] + gap[2:])
    assert counts(monitor) == (3001, 3000, 1, 0, {"clock": 1})
    assert events == run(BEFORE + gap)[0]


def test_suspect_groups_are_bounded():
    # Many distinct far times at once: the smallest oldest group goes first, nothing is lost.
    bad = [FAR_AHEAD - 10**7 * i for i in range(12)]
    monitor = Monitor(CoreConfig(format="csv"))
    events = monitor.feed(csv_lines(BEFORE))
    for t in bad:
        events += monitor.feed(csv_lines([t]))
        assert len(monitor.groups) <= MAX_GROUPS
    assert len(monitor.groups) == MAX_GROUPS and counts(monitor) == (308, 300, 8, 0, {"clock": 8})
    events += monitor.feed(csv_lines(AFTER)) + monitor.finish()
    assert counts(monitor) == (3012, 3000, 12, 0, {"clock": 12})
    assert events == CLEAN_EVENTS


# -- real jumps: followed after JUMP_CONFIRM lines, none lost --------------------------------------

@pytest.mark.parametrize("pieces", PIECES)
@pytest.mark.parametrize("gap", [2 * 3600, 400 * 86400])
def test_log_resuming_after_a_gap_is_followed(gap, pieces):
    later = [t + gap for t in AFTER]
    events, monitor = run(BEFORE + later, pieces)
    assert counts(monitor) == (3000, 3000, 0, 0, {})
    got = summaries(events)
    assert got[:3] == [(0, 10, 100), (10, 20, 100), (20, 30, 100)]
    # The lines that confirmed the jump are counted in their own seconds.
    after = [s for s in got if s[0] >= gap and s[2]]
    assert after[0] == (gap + 30, gap + 40, 100) and len(after) == 27 and sum(s[2] for s in after) == 2700
    # In between, empty blocks (one summary for a run of them longer than a day), contiguous.
    assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
    assert sum(s[2] for s in got) == 3000


@pytest.mark.parametrize("pieces", PIECES)
@pytest.mark.parametrize("back", [3600, 7 * 86400])
def test_clock_set_back_is_followed_in_a_new_timeline(back, pieces):
    earlier = [t - back for t in AFTER]
    events, monitor = run(BEFORE + earlier, pieces)
    assert counts(monitor) == (3000, 3000, 0, 0, {})
    # The old timeline is closed as at end of input, then the new one runs as a log of its own.
    assert events == run(BEFORE)[0] + run(earlier)[0]
    got = summaries(events)
    assert got[:3] == [(0, 10, 100), (10, 20, 100), (20, 30, 100)]
    assert got[3] == (30 - back, 40 - back, 100) and got[-1] == (290 - back, 300 - back, 100)
    assert len(got) == 30


def test_jump_confirm_agreeing_lines_confirm_one_fewer_do_not():
    gap = [T0 + 7200 + i for i in range(JUMP_CONFIRM)]
    _, monitor = run(BEFORE + gap)
    assert counts(monitor) == (300 + JUMP_CONFIRM, 300 + JUMP_CONFIRM, 0, 0, {})
    _, monitor = run(BEFORE + gap[:-1])
    assert counts(monitor) == (300 + JUMP_CONFIRM - 1, 300, JUMP_CONFIRM - 1, 0, {"clock": JUMP_CONFIRM - 1})
    # Suspects that do not agree with each other (the last is more than `lateness` behind) refute.
    _, monitor = run(BEFORE + gap[:-1] + [gap[0] - LATENESS - 1])
    assert monitor.totals()["malformed_by_reason"] == {"clock": JUMP_CONFIRM - 1}


def test_the_bound_is_lateness_plus_max_jump_either_way():
    clock = BEFORE[-1]
    # At the bound, a line is taken as any line: ahead it moves the clock, behind it is late.
    _, monitor = run(BEFORE + [clock + BOUND])
    assert (monitor.clock, counts(monitor)) == (clock + BOUND, (301, 301, 0, 0, {}))
    _, monitor = run(BEFORE + [clock - BOUND] * JUMP_CONFIRM)
    assert counts(monitor) == (300 + JUMP_CONFIRM, 300 + JUMP_CONFIRM, 0, JUMP_CONFIRM, {})
    # One second further it is a suspect: alone it is refuted, JUMP_CONFIRM of them are a jump.
    _, monitor = run(BEFORE + [clock + BOUND + 1])
    assert (monitor.clock, counts(monitor)) == (clock, (301, 300, 1, 0, {"clock": 1}))
    _, monitor = run(BEFORE + [clock - BOUND - 1] * JUMP_CONFIRM)
    assert counts(monitor) == (300 + JUMP_CONFIRM, 300 + JUMP_CONFIRM, 0, 0, {})


@pytest.mark.parametrize("pieces", PIECES)
def test_backward_jump_goes_on_with_the_alert_window(pieces):
    # 10 hits/s against a threshold of 5/s over 10 s: the alert fires in the old timeline and,
    # real time going on, is still firing after the clock is set back, with no recovery between.
    events, monitor = run(BEFORE + [t - 3600 for t in AFTER], pieces, window=10, threshold=Fraction(5))
    assert alerts(events) == [("alert", 5, 60)]
    assert monitor.alert.firing and monitor.alert.since == T0 + 5
    # It recovers when the traffic stops in the new timeline: 10 s after its last line.
    events, _ = run(BEFORE + [t - 3600 for t in AFTER] + [T0 - 3600 + 400], pieces, window=10,
                    threshold=Fraction(5))
    assert alerts(events) == [("alert", 5, 60), ("recover", 299 - 3600 + 5, 50)]


# -- the horizon ------------------------------------------------------------------------------------

def test_lines_beyond_the_horizon_are_malformed_clock_at_once():
    horizon = T0 + 100
    future = [T0 + 101] * (JUMP_CONFIRM + 3)        # inside MAX_JUMP, but past the horizon
    stamps = BEFORE + future + [T0 + 30 + i // 10 for i in range(700)]
    monitor = Monitor(CoreConfig(format="csv"))
    events = monitor.feed(csv_lines(stamps), horizon=horizon) + monitor.finish()
    n = len(future)
    assert counts(monitor) == (1000 + n, 1000, n, 0, {"clock": n})
    assert events == run(BEFORE + stamps[len(BEFORE) + n:])[0]
    # Without the horizon they are plausible: they move the clock and the lines after them are late.
    _, blind = run(stamps)
    assert blind.late == 660 and blind.malformed_by_reason == {}


def test_horizon_applies_line_by_line_across_feeds():
    monitor = Monitor(CoreConfig(format="csv"))
    for t in BEFORE:
        monitor.feed(csv_lines([t]), horizon=t + 1)
    monitor.feed(csv_lines([BEFORE[-1] + 3]), horizon=BEFORE[-1] + 2)
    monitor.finish()
    assert counts(monitor) == (301, 300, 1, 0, {"clock": 1})


# -- checkpoints ------------------------------------------------------------------------------------

def round_trip(state: dict) -> dict:
    return msgpack.unpackb(msgpack.packb(state), raw=False, strict_map_key=True)


def test_suspects_survive_a_checkpoint():
    gap = [t + 7200 for t in AFTER]
    first = Monitor(CoreConfig(format="csv"))
    events = first.feed(csv_lines(BEFORE + gap[:JUMP_CONFIRM - 1]))
    assert counts(first) == (300, 300, 0, 0, {})          # held: counted once decided
    second = Monitor(CoreConfig(format="csv"))
    second.load(round_trip(first.to_state()))
    events += second.feed(csv_lines(gap[JUMP_CONFIRM - 1:])) + second.finish()
    assert counts(second) == (3000, 3000, 0, 0, {})
    assert events == run(BEFORE + gap)[0]


def test_load_repairs_a_clock_far_beyond_its_data():
    first = Monitor(CoreConfig(format="csv"))
    events = first.feed(csv_lines(BEFORE))
    clock = first.clock
    state = round_trip(first.to_state())
    state["clock"] = FAR_AHEAD
    second = Monitor(CoreConfig(format="csv"))
    second.load(state)
    assert second.clock == clock
    events += second.feed(csv_lines(AFTER)) + second.finish()
    assert counts(second) == (3000, 3000, 0, 0, {})
    assert events == CLEAN_EVENTS


def test_load_with_a_horizon_repairs_a_checkpoint_left_by_a_corrupt_line():
    # What a monitor without the guard saved after a line dated in the year 5138: clock, cursor
    # and blocks evaluated up to it (advance() gets the same state without the guard's help).
    first = Monitor(CoreConfig(format="csv"))
    first.feed(csv_lines(BEFORE))
    first.advance(FAR_AHEAD)
    state = round_trip(first.to_state())
    unrepaired = Monitor(CoreConfig(format="csv"))
    unrepaired.load(state)
    assert unrepaired.clock == FAR_AHEAD        # self-consistent: only a horizon can tell
    second = Monitor(CoreConfig(format="csv"))
    second.load(state, horizon=T0 + 1000)
    assert second.clock is None and second.last_summary["end"] <= T0 + 1000
    events = second.feed(csv_lines(AFTER)) + second.finish()
    assert counts(second) == (3000, 3000, 0, 0, {})
    assert summaries(events) == summaries(CLEAN_EVENTS)[3:]
    rollup = second.timeframe_summary()
    assert rollup is not None and rollup["hits"] == 3000 and rollup["end"] == T0 + 300


def test_load_with_a_horizon_drops_only_what_lies_beyond_it():
    first = Monitor(CoreConfig(format="csv"))
    first.feed(csv_lines(BEFORE))
    state = round_trip(first.to_state())
    second = Monitor(CoreConfig(format="csv"))
    second.load(state, horizon=T0 + 100)        # a sane checkpoint: untouched
    assert second.to_state() == first.to_state()


# -- against the offline rule -----------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(
    counts_=st.lists(st.integers(0, 12), min_size=1, max_size=80),
    window=st.integers(1, 30),
    threshold=st.fractions(min_value=0, max_value=6, max_denominator=10),
    lateness=st.integers(0, 6),
    bad=st.lists(st.tuples(st.floats(0, 1), st.sampled_from([FAR_AHEAD, FAR_BEHIND, 0, T0 + 10**6, T0 - 10**6]),
                           st.integers(0, 3)), max_size=JUMP_CONFIRM - 1),
    seed=st.integers(0, 2**16),
    pieces=st.integers(1, 9),
)
def test_fewer_than_jump_confirm_corrupt_lines_change_no_alert(counts_, window, threshold, lateness, bad, seed,
                                                               pieces):
    rnd = random.Random(seed)
    stamps = burst(dict(enumerate(counts_)))
    # Enough real lines to outvote corrupt ones at the start (see the tests of a first line).
    assume(len(stamps) >= JUMP_CONFIRM)
    shuffled = sorted(stamps, key=lambda t: t + rnd.uniform(0, lateness))
    mixed = list(shuffled)
    for where, value, jitter in bad:                 # anywhere, the first and last line included
        mixed.insert(int(where * len(mixed)), value + jitter)
    # Runs long enough that corrupt first lines never end a run alone.
    pieces = max(1, min(pieces, len(mixed) // (JUMP_CONFIRM + len(bad))))
    events, monitor = run(mixed, pieces, window=window, threshold=threshold, lateness=lateness)
    assert alerts(events) == offline(stamps, window, threshold, Fraction(0))
    assert events == run(shuffled, window=window, threshold=threshold, lateness=lateness)[0]
    t = monitor.totals()
    assert (t["lines"], t["malformed"] + t["late"]) == (len(mixed), len(bad))


# -- logmond --once on a file ---------------------------------------------------------------------

def once_json(path: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "logmond", "--once", "--json", "--file", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


ONCE_CASES = {
    "one ahead": (BEFORE + [FAR_AHEAD] + AFTER, (3001, 3000, 1, 0, {"clock": 1}), (0, 300)),
    "few ahead": (BEFORE + [FAR_AHEAD] * (JUMP_CONFIRM - 1) + AFTER,
                  (3000 + JUMP_CONFIRM - 1, 3000, JUMP_CONFIRM - 1, 0, {"clock": JUMP_CONFIRM - 1}), (0, 300)),
    "gap ahead": (BEFORE + [t + 7200 for t in AFTER], (3000, 3000, 0, 0, {}), (0, 7500)),
    "one behind": (BEFORE + [FAR_BEHIND] + AFTER, (3001, 3001, 0, 1, {}), (0, 300)),
    "few behind": (BEFORE + [FAR_BEHIND] * (JUMP_CONFIRM - 1) + AFTER,
                   (3000 + JUMP_CONFIRM - 1, 3000 + JUMP_CONFIRM - 1, 0, JUMP_CONFIRM - 1, {}), (0, 300)),
    "gap behind": (BEFORE + [t - 3600 for t in AFTER], (3000, 3000, 0, 0, {}), (-3600, 300)),
}


@pytest.mark.parametrize("case", ONCE_CASES)
def test_once_json_on_a_file(tmp_path: Path, case: str):
    stamps, expected, (lo, hi) = ONCE_CASES[case]
    path = tmp_path / "access.csv"
    path.write_bytes(b'"remotehost","rfc931","authuser","date","request","status","bytes"\n' + csv_lines(stamps))
    events = once_json(path)
    totals = events[-1]
    assert totals["type"] == "totals"
    assert (totals["lines"], totals["parsed"], totals["malformed"], totals["late"],
            totals["malformed_by_reason"]) == expected
    got = [e for e in events if e["type"] == "summary"]
    assert sum(e["hits"] for e in got) == 3000
    assert all(T0 + lo <= e["start"] < e["end"] <= T0 + hi and e["end"] - e["start"] == 10 for e in got)
