"""The pure figures of the status reply: the once-a-second work's durations as `tick`."""
from __future__ import annotations

from logmond.core.replies import tick_figures


def test_no_tick_yet_has_no_figures() -> None:
    assert tick_figures([]) == {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_one_tick_is_every_figure() -> None:
    assert tick_figures([0.0123456]) == {"count": 1, "p50_ms": 12.346, "p99_ms": 12.346, "max_ms": 12.346}


def test_percentiles_are_nearest_rank_of_the_measured_values() -> None:
    # 1..100 ms in any order: the median is the 50th value, p99 the 99th, max the 100th.
    seconds = [ms / 1000 for ms in range(100, 0, -1)]
    assert tick_figures(seconds) == {"count": 100, "p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}
    # 600 ticks with six slow ones: p99 (the 594th) is still a fast one, the seventh slow tick is not.
    fast, slow = [0.002] * 594, [0.5] * 6
    assert tick_figures(fast + slow)["p99_ms"] == 2.0
    assert tick_figures(fast[1:] + slow + [0.5])["p99_ms"] == 500.0


def test_even_count_median_is_the_lower_middle_value() -> None:
    assert tick_figures([0.001, 0.002, 0.003, 0.004])["p50_ms"] == 2.0
