"""Counting distinct hosts: a HyperLogLog sketch per block, and a sliding count over the rollup's blocks.

Pure data: no clock, no I/O. Hosts are hashed with blake2b, so a sketch means the same after a
restart (Python's hash() is salted per process) and sketches of different blocks can be merged.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable
from functools import partial
from hashlib import blake2b
from itertools import repeat
from operator import and_, methodcaller
from typing import Any

# Register index bits: 4,096 one-byte registers (4 KiB), relative standard error
# 1.04 / sqrt(4096) = 1.6 % at any count (the target is 2 %; 11 bits would give 2.3 %).
PRECISION = 12
REGISTERS = 1 << PRECISION
# Bits of a 64-bit hash left to rank once the index is taken; a register holds their leading
# zeros plus one, from 1 up to MAX_RANK (all zero), so counts far beyond 10^8 stay in range.
RANK_BITS = 64 - PRECISION
MAX_RANK = RANK_BITS + 1
# The HyperLogLog constant for many registers, 1 / (2 ln 2).
ALPHA = 1 / (2 * math.log(2))

_encode = methodcaller("encode", "utf-8", "surrogatepass")
_hasher = partial(blake2b, digest_size=8)
_digest = methodcaller("digest")

# The sliding count keeps block numbers in 32-bit lanes of one big int per register value, so that
# updating and reading all 4,096 registers is a handful of big-int operations, not a Python loop.
_LANE_BYTES = 4
_ONES = int.from_bytes(b"\x01\x00\x00\x00" * REGISTERS, "little")
_HIGH = _ONES << 31
# Block numbers must stay below 2^31 (68 years of 1-second blocks) for the lane arithmetic.
MAX_SEQ = (1 << 31) - 1
# Per byte of a register array: 0x80 in every byte, for the byte-wise maximum in merge().
_HIGH8 = int.from_bytes(b"\x80" * REGISTERS, "little")


def _host_hashes(hosts: Iterable[str]) -> Iterable[int]:
    """The stable 64-bit hash of each host."""
    return map(int.from_bytes, map(_digest, map(_hasher, map(_encode, hosts))))


class HyperLogLog:
    """A distinct-count sketch of 4,096 registers; two sketches merge by register-wise maximum."""

    __slots__ = ("registers",)

    def __init__(self, registers: bytes | bytearray | None = None) -> None:
        self.registers = bytearray(registers) if registers is not None else bytearray(REGISTERS)

    def add(self, hosts: Iterable[str]) -> None:
        """Count these hosts (each costs a hash, so pass distinct ones)."""
        self.add_hashes(_host_hashes(hosts))

    def add_hashes(self, hashes: Iterable[int]) -> None:
        """Count 64-bit hashes: the low PRECISION bits pick the register, the rest give the rank.

        Sorted descending, the last hash kept per register is its smallest, the one with the most
        leading zeros, so only one rank per register is computed in Python.
        """
        ordered = sorted(hashes, reverse=True)
        best = dict(zip(map(and_, ordered, repeat(REGISTERS - 1)), ordered))
        registers = self.registers
        for index, h in best.items():
            rank = MAX_RANK - (h >> PRECISION).bit_length()
            if rank > registers[index]:
                registers[index] = rank

    def merge(self, other: HyperLogLog) -> None:
        """Become the sketch of both sets: the byte-wise maximum, computed on whole big ints."""
        a = int.from_bytes(self.registers, "little")
        b = int.from_bytes(other.registers, "little")
        # Registers are < 0x80, so (a | 0x80) - b never borrows across bytes; its top bit says a >= b.
        ge = (((a | _HIGH8) - b) & _HIGH8) >> 7
        keep_a = (ge << 8) - ge
        self.registers[:] = (b ^ ((a ^ b) & keep_a)).to_bytes(REGISTERS, "little")

    def estimate(self) -> int:
        """Distinct hosts added, estimated with Ertl's improved raw estimator ("New cardinality
        estimation algorithms for HyperLogLog sketches", 2017): from the histogram of register
        values, no bias table, the small range (many empty registers) and the large range
        corrected, so the error stays near 1.6 % from one host to far beyond 10^8."""
        registers = self.registers
        counts = [registers.count(k) for k in range(MAX_RANK + 1)]
        if counts[0] == REGISTERS:
            return 0
        z = REGISTERS * _tau(1 - counts[MAX_RANK] / REGISTERS)
        for k in range(RANK_BITS, 0, -1):
            z = 0.5 * (z + counts[k])
        z += REGISTERS * _sigma(counts[0] / REGISTERS)
        return round(ALPHA * REGISTERS * REGISTERS / z)

    def to_bytes(self) -> bytes:
        return bytes(self.registers)

    @classmethod
    def from_bytes(cls, data: bytes) -> HyperLogLog:
        """The sketch `to_bytes()` gave; ValueError for anything else (such as an older sketch)."""
        if len(data) != REGISTERS or max(data) > MAX_RANK:
            raise ValueError("not a HyperLogLog sketch of this precision")
        return cls(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HyperLogLog) and self.registers == other.registers


def _sigma(x: float) -> float:
    """x + sum_k x^(2^k) 2^(k-1): the share of empty registers' term."""
    if x == 1:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous, z = z, z + x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    """(1 - x - sum_k (1 - x^(2^-k))^2 2^-k) / 3: the share of saturated registers' term."""
    if x == 0 or x == 1:
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = math.sqrt(x)
        y *= 0.5
        previous, z = z, z - (1 - x) ** 2 * y
        if z == previous:
            return z / 3


class SlidingHosts:
    """Distinct hosts over the newest blocks of a sliding window, blocks numbered 1, 2, 3, ... as
    they arrive and leaving oldest first.

    Exact while the union of the covered blocks' hosts has at most `cap` hosts: `seen` holds every
    host of the longest run of newest blocks whose union fits, each with the newest block that had
    it, oldest first, so a leaving block takes exactly the hosts no newer block has. Otherwise
    estimated: for each register value v, `levels[v - 1]` holds per register the newest block
    whose register reached v, so the register over the window is the number of levels whose block
    is still covered. Memory: `cap` hosts and at most MAX_RANK levels of 16 KiB, whatever the
    number of blocks.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: OrderedDict[str, int] = OrderedDict()
        # `seen` has every host of the blocks numbered above this.
        self.exact_after = 0
        self.levels: list[int] = []
        # Oldest block still covered.
        self.first = 1

    def push(self, seq: int, hosts: Collection[str] | None, sketch: HyperLogLog) -> None:
        """Add block `seq` (newer than any before): its hosts if known exactly (None if not, when it
        had more than `cap`) and its sketch."""
        if not 0 < seq <= MAX_SEQ:
            raise ValueError("block number out of range")
        self._fold(seq, sketch.registers)
        seen = self.seen
        if hosts is None:
            seen.clear()
            self.exact_after = seq
            return
        deque(map(seen.pop, hosts, repeat(None)), maxlen=0)  # re-inserted below, so newest last
        seen.update(zip(hosts, repeat(seq)))
        if len(seen) > self.cap:
            # Drop the oldest hosts down to the cap: the blocks up to the last one dropped from
            # are no longer complete (what is left of that one goes when it leaves).
            pop = partial(seen.popitem, last=False)
            for _ in range(len(seen) - self.cap):
                _, oldest = pop()
            self.exact_after = max(self.exact_after, oldest)

    def expire(self, first: int) -> None:
        """Blocks numbered below `first` have left the window."""
        self.first = max(self.first, first)
        seen = self.seen
        while seen and next(iter(seen.values())) < self.first:
            seen.popitem(last=False)

    def count(self) -> tuple[int, bool]:
        """(distinct hosts, exact) over the covered blocks."""
        if self.exact_after < self.first:
            return len(self.seen), True
        return HyperLogLog(self.registers()).estimate(), False

    def registers(self) -> bytes:
        """The registers of the covered blocks' union: their register-wise maximum."""
        first = self.first * _ONES
        total = 0
        for level in self.levels:
            reached = (((level | _HIGH) - first) >> 31) & _ONES
            if not reached:
                break  # levels only fall with the value: none above is covered either
            total += reached
        return total.to_bytes(_LANE_BYTES * REGISTERS, "little")[::_LANE_BYTES]

    def _fold(self, seq: int, registers: bytes | bytearray) -> None:
        """Record block `seq` as the newest to reach each of its register values."""
        low, high = min(registers), max(registers)
        levels = self.levels
        levels.extend(repeat(0, high - len(levels)))
        stamp = seq * _ONES
        levels[:low] = repeat(stamp, low)
        lanes = bytearray(_LANE_BYTES * REGISTERS)
        lanes[::_LANE_BYTES] = registers
        # Each lane is 2^31 + register - v after v subtractions: its top bit says register >= v.
        x = (int.from_bytes(lanes, "little") | _HIGH) - low * _ONES
        for v in range(low, high):
            x -= _ONES
            reached = (x & _HIGH) >> 31
            levels[v] ^= (levels[v] ^ stamp) & ((reached << 32) - reached)

    def to_state(self) -> dict[str, Any]:
        return {"seen": dict(self.seen), "exact_after": self.exact_after, "first": self.first,
                "levels": [level.to_bytes(_LANE_BYTES * REGISTERS, "little") for level in self.levels]}

    @classmethod
    def from_state(cls, state: dict[str, Any], cap: int) -> SlidingHosts:
        hosts = cls(cap)
        hosts.seen.update((str(h), int(seq)) for h, seq in state["seen"].items())
        hosts.exact_after, hosts.first = int(state["exact_after"]), int(state["first"])
        if len(state["levels"]) > MAX_RANK or any(len(b) != _LANE_BYTES * REGISTERS for b in state["levels"]):
            raise ValueError("sliding host levels size")
        hosts.levels = [int.from_bytes(b, "little") for b in state["levels"]]
        return hosts
