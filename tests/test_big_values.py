"""The largest values the parser accepts never make a total that msgpack cannot encode."""
from __future__ import annotations

import math

import msgpack
import pytest

from logmond.core.batch import MAX_BYTES_PER_SECOND
from logmond.core.monitor import CoreConfig, Monitor
from logmond.core.catalog import parse_line
from logmond.core.parse import MAX_BYTES_PER_LINE, R_BYTES
from logmond.core.window import Block

# The formats the hand-made samples of these tests are written in.
FORMATS = ("csv", "clf", "combined")
from test_parse import make_line

T0 = 1_549_573_800
INT64 = 2**63


def csv_lines(stamps: list[int], size: int | str) -> bytes:
    return "".join(f'"10.0.0.{t % 7}","-","apache",{t},"GET /api/user HTTP/1.0",200,{size}\n' for t in stamps).encode()


def encodable(value: object) -> bytes:
    return msgpack.packb(value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_bound_in_every_format(fmt):
    assert parse_line(make_line(fmt, nbytes=str(MAX_BYTES_PER_LINE)), fmt).nbytes == MAX_BYTES_PER_LINE
    assert parse_line(make_line(fmt, nbytes="0" * 17 + "1"), fmt).nbytes == 1
    for bad in (str(MAX_BYTES_PER_LINE + 1), "9" * 13, "9" * 18, "1" + "0" * 17):
        assert parse_line(make_line(fmt, nbytes=bad), fmt) == R_BYTES, bad


def test_eighteen_digit_bytes_are_malformed_and_the_state_encodes():
    # The defect: twenty such lines in one block pushed the totals past 64 bits.
    monitor = Monitor(CoreConfig(format="csv"))
    events = monitor.feed(csv_lines([T0] * 20, "9" * 18) + csv_lines([T0 + 1], 5)) + monitor.finish()
    totals = monitor.totals()
    assert (totals["parsed"], totals["malformed_by_reason"]) == (1, {R_BYTES: 20})
    assert [e["bytes"] for e in events if e["type"] == "summary"] == [5]
    encodable(monitor.to_state())


def test_many_lines_of_the_largest_size_are_summed_exactly_and_encode():
    # 20 lines of 1 TiB in each of 30 blocks: far below saturation, so the totals are exact.
    monitor = Monitor(CoreConfig(format="csv", summary_interval=10, timeframe=600))
    events = []
    for block in range(30):
        events += monitor.feed(csv_lines([T0 + 10 * block + i // 2 for i in range(20)], MAX_BYTES_PER_LINE))
        encodable(monitor.to_state())
        encodable(monitor.timeframe_summary())
    events += monitor.finish()
    summaries = [e for e in events if e["type"] == "summary"]
    assert [s["bytes"] for s in summaries] == [20 * MAX_BYTES_PER_LINE] * 30
    assert monitor.timeframe_summary()["bytes"] == 600 * MAX_BYTES_PER_LINE
    for event in events:
        encodable(event)
    encodable(monitor.to_state())


def test_a_block_saturates():
    # 400 lines of 1 TiB in one 10 s block exceed 32 TiB/s: the block's bytes stop there.
    monitor = Monitor(CoreConfig(format="csv", summary_interval=10))
    events = monitor.feed(csv_lines([T0 + i // 40 for i in range(400)], MAX_BYTES_PER_LINE)) + monitor.finish()
    [summary] = [e for e in events if e["type"] == "summary"]
    assert 400 * MAX_BYTES_PER_LINE > 10 * MAX_BYTES_PER_SECOND
    assert summary["bytes"] == 10 * MAX_BYTES_PER_SECOND and summary["hits"] == 400
    encodable(summary)
    encodable(monitor.timeframe_summary())


# The most blocks (8640), and the most seconds of blocks (two intervals of nearly a day each).
@pytest.mark.parametrize("interval, timeframe", [(1, 8640), (3600, 86400), (86399, 86400), (86400, 86400)])
def test_a_rollup_of_saturated_blocks_still_encodes(interval, timeframe):
    # The worst case: every block the rollup can hold is saturated (it holds at most
    # ceil(timeframe / interval) of them, so at most timeframe + interval seconds of blocks).
    monitor = Monitor(CoreConfig(format="csv", summary_interval=interval, timeframe=timeframe))
    start = T0 // interval * interval
    held = math.ceil(timeframe / interval)
    for k in range(held + 3):
        block = Block()
        block.add_requests([((("GET", "/a"), 200), 1)])
        block.add_hosts(["h"])
        block.bytes = monitor.counts.max_bytes
        monitor.rollup.push(start + k * interval, block)
    summary = monitor.rollup.summary(start + (held + 3) * interval)
    assert 1 <= len(monitor.rollup.blocks) <= held
    assert summary["bytes"] == len(monitor.rollup.blocks) * monitor.counts.max_bytes
    assert held * interval * MAX_BYTES_PER_SECOND < INT64
    encodable(summary)
