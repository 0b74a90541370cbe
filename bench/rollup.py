"""Rollup benchmark: the once-a-second work of the timeframe rollup, incremental against a full re-merge.

Each second the daemon asks for the timeframe summary, and every `interval` seconds a block closes
and is pushed first. Blocks are realistic and busy: 3,000 hits (300 lines/s), sections and hosts
drawn from skewed pools of 5,000 sections and 200,000 hosts (about 1,000 sections and 2,300 hosts
per block), so closed blocks are compacted and the rollup's distinct hosts are estimated. The
baseline, run in the same process on the same blocks, is what the rollup did before: every
summary re-merges every block it holds (counters with the cap, and a 64 Kibit bitmap per block).
It is a report, not a test: it always exits 0.

    .venv/bin/python bench/rollup.py [--seconds S] [--baseline-seconds B]
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
import zlib
from collections import Counter
from itertools import accumulate, repeat
from operator import and_, methodcaller

from logmond.core.window import MAX_TRACKED, OTHER, TOP_HOSTS, TOP_SECTIONS, Block, ClosedBlock, Rollup, _cap

# (timeframe, interval): the defaults, and the longest timeframe.
CONFIGS = ((600, 10), (86_400, 10))
# Distinct blocks generated; pushes cycle through them.
TEMPLATES = 128
HITS_PER_BLOCK = 3_000
SECTION_POOL, HOST_POOL = 5_000, 200_000
# The old rollup's per-block unique-host bitmap (linear counting).
OLD_SKETCH_BITS = 1 << 16


def make_blocks(seed: int) -> list[Block]:
    rnd = random.Random(seed)
    section_weights = list(accumulate(1 / (i + 1) for i in range(SECTION_POOL)))
    host_weights = list(accumulate(1 / (i + 1) ** 0.7 for i in range(HOST_POOL)))
    statuses, methods = (200, 200, 200, 200, 301, 404, 404, 500), ("GET", "GET", "GET", "POST")
    blocks = []
    for _ in range(TEMPLATES):
        sections = rnd.choices(range(SECTION_POOL), cum_weights=section_weights, k=HITS_PER_BLOCK)
        kinds = Counter(((rnd.choice(methods), f"/s{s}"), rnd.choice(statuses)) for s in sections)
        hosts = [f"10.{h >> 16}.{h >> 8 & 255}.{h & 255}"
                 for h in rnd.choices(range(HOST_POOL), cum_weights=host_weights, k=HITS_PER_BLOCK)]
        block = Block()
        block.add_requests(kinds.items())
        block.add_hosts(hosts)
        block.bytes = HITS_PER_BLOCK * 1_200
        blocks.append(block)
    return blocks


def old_bitmap(hosts: list[str]) -> bytes:
    """The old per-block sketch: crc32 of each host, one bit of 65,536."""
    sketch = bytearray(OLD_SKETCH_BITS // 8)
    for bit in set(map(and_, map(zlib.crc32, map(methodcaller("encode", "utf-8", "surrogatepass"), hosts)),
                       repeat(OLD_SKETCH_BITS - 1))):
        sketch[bit >> 3] |= 1 << (bit & 7)
    return bytes(sketch)


def remerge(held: list[tuple[int, ClosedBlock, bytes]], now: int, timeframe: int) -> dict:
    """The old Rollup.summary: merge every block held into a fresh total, then summarise it."""
    start = now - timeframe
    hits = nbytes = 0
    status, methods, sections, sec4xx, sec5xx, hosts = (Counter() for _ in range(6))
    bitmap = 0
    for begin, block, sketch in held:
        if begin < start:
            continue
        hits += block.hits
        nbytes += block.bytes
        status.update(block.status)
        methods.update(block.methods)
        sections.update(block.sections)
        sec4xx.update(block.sec4xx)
        sec5xx.update(block.sec5xx)
        _cap(sections, MAX_TRACKED)
        bitmap |= int.from_bytes(sketch, "little")
        hosts.update(block.hosts)
        _cap(hosts, MAX_TRACKED)
    ones = bitmap.bit_count()
    top = [s for s in sections.most_common(TOP_SECTIONS + 1) if s[0] != OTHER][:TOP_SECTIONS]
    return {"hits": hits, "rate": hits / timeframe, "bytes": nbytes, "status": dict(sorted(status.items())),
            "methods": dict(methods.most_common()), "sections": top,
            "errors": {n: (sec4xx[n] / c, sec5xx[n] / c) for n, c in top},
            "hosts": round(-OLD_SKETCH_BITS * math.log((OLD_SKETCH_BITS - ones) / OLD_SKETCH_BITS)),
            "top_hosts": [h for h in hosts.most_common(TOP_HOSTS + 1) if h[0] != OTHER][:TOP_HOSTS]}


def quantiles(samples: list[float]) -> str:
    ms = sorted(s * 1e3 for s in samples)
    p99 = ms[min(len(ms) - 1, math.ceil(0.99 * len(ms)) - 1)]
    return f"median {statistics.median(ms):8.3f} ms   p99 {p99:8.3f} ms   max {ms[-1]:8.3f} ms   ({len(ms)} ticks)"


def run(timeframe: int, interval: int, blocks: list[Block], bitmaps: list[bytes], seconds: int,
        baseline_seconds: int) -> None:
    held_blocks = math.ceil(timeframe / interval)
    print(f"timeframe {timeframe} s, interval {interval} s: {held_blocks:,} blocks held", flush=True)
    rollup = Rollup(timeframe, interval)
    held: list[tuple[int, ClosedBlock, bytes]] = []
    t0 = time.perf_counter()
    for i in range(held_blocks):
        rollup.push(i * interval, blocks[i % len(blocks)])
        held.append((i * interval, rollup.blocks[-1][1], bitmaps[i % len(blocks)]))
    now = held_blocks * interval
    print(f"  filled in {time.perf_counter() - t0:.1f} s", flush=True)

    after, after_push = [], []
    for second in range(1, seconds + 1):
        closes = (now + second) % interval == 0
        t = time.perf_counter()
        if closes:
            rollup.push(now + second - interval, blocks[(now + second) // interval % len(blocks)])
        rollup.summary((now + second) // interval * interval)
        elapsed = time.perf_counter() - t
        after.append(elapsed)
        if closes:
            after_push.append(elapsed)
    print(f"  after  (incremental): {quantiles(after)}")
    print(f"         ticks with a push: {quantiles(after_push)}", flush=True)

    before = []
    for second in range(1, baseline_seconds + 1):
        t = time.perf_counter()
        if (now + second) % interval == 0:
            k = (now + second) // interval % len(blocks)
            held.append((now + second - interval, ClosedBlock.of(blocks[k]), bitmaps[k]))
            del held[0]
        remerge(held, (now + second) // interval * interval, timeframe)
        before.append(time.perf_counter() - t)
    print(f"  before (full re-merge): {quantiles(before)}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=1_200, help="ticks measured, incremental (default 1,200)")
    p.add_argument("--baseline-seconds", type=int, default=40, help="ticks measured, full re-merge (default 40)")
    args = p.parse_args()
    if args.seconds < 1 or args.baseline_seconds < 1:
        p.error("--seconds and --baseline-seconds must be at least 1")
    t0 = time.perf_counter()
    blocks = make_blocks(seed=1)
    bitmaps = [old_bitmap(list(b.hosts)) for b in blocks]
    sections = statistics.mean(len(b.sections) for b in blocks)
    hosts = statistics.mean(len(b.hosts) for b in blocks)
    print(f"{TEMPLATES} blocks of {HITS_PER_BLOCK:,} hits made in {time.perf_counter() - t0:.1f} s: "
          f"{sections:,.0f} sections, {hosts:,.0f} hosts per block on average", flush=True)
    for timeframe, interval in CONFIGS:
        run(timeframe, interval, blocks, bitmaps, args.seconds, args.baseline_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
