"""The `[[rule]]` alert rules, evaluated one log second at a time beside the high-traffic rule.

Each rule counts the accepted lines that pass its filters into buckets per second (hits, hits with
its status, or request times), and at each evaluated second t sums the buckets of (t - window, t]
exactly as the high-traffic rule does: seconds with no hits count, late lines never reach a
bucket, and a bucket is read once its second is complete. Memory per rule is one bucket per
second of its window plus the seconds not yet complete.

A rule fires at the first second its condition has held for `for` seconds (true at t - for … t,
as Prometheus' `for` reads) and recovers at the first second its value is back at its recovery
bound. A second whose window has fewer than `min_hits` hits is not evaluated: a firing rule stays
firing (recovery needs evidence) and a pending one starts over. A `below` rule is also not
evaluated until its whole window lies after the first second it evaluated: the seconds before
the log was read are not a traffic drop.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import astuple
from fractions import Fraction
from itertools import repeat
from typing import Any, Callable, Hashable, NamedTuple, Sequence

from logmond.core.quantiles import QuantileSketch, SlidingSketch
from logmond.core.rulespec import RuleSpec
from shared.schema import ALERT, LATENCY, RATE, RECOVER, STATUS_SHARE, Event

# ((method, section), status) of a line, as the batch layer resolves it.
Meaning = tuple[tuple[str, str], int]


class Rule:
    """One rule's buckets, window sums and firing state."""

    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec
        # Seconds not yet evaluated: [hits, hits with the status] (latency: request time -> hits).
        self.pending: dict[int, list[int]] = {}
        self.pending_times: dict[int, Counter[float]] = {}
        # The buckets of the window ending at the last evaluated second, and their sums.
        self.window: dict[int, list[int]] = {}
        self.sketches: dict[int, QuantileSketch] = {}
        self.sketch = SlidingSketch()
        self.hits = 0
        self.matching = 0
        self.firing = False
        self.since: int | None = None
        # Consecutive seconds the condition has held while not firing.
        self.streak = 0
        # The value at the last evaluated second (hits/s, a share, seconds), None when not evaluated.
        self.value: float | None = None
        # The first second this rule evaluated: its windows hold what was read from then on.
        self.first: int | None = None

    def wants(self, section: str, vhost: str | None) -> bool:
        spec = self.spec
        return (spec.section is None or section == spec.section) and (spec.vhost is None or vhost == spec.vhost)

    def tally(self, second: int, hits: int, status: int) -> None:
        bucket = self.pending.get(second)
        if bucket is None:
            bucket = self.pending[second] = [0, 0]
        bucket[0] += hits
        if self.spec.metric == STATUS_SHARE and self.spec.matches_status(status):
            bucket[1] += hits

    def tally_time(self, second: int, seconds: float, hits: int) -> None:
        times = self.pending_times.get(second)
        if times is None:
            times = self.pending_times[second] = Counter()
        times[seconds] += hits

    def evaluate(self, t: int) -> str | None:
        """Decide second t; ALERT, RECOVER or None."""
        self._slide(t)
        spec = self.spec
        if self.first is None:
            self.first = t
        if self.hits < spec.min_hits or (spec.falling and t - spec.window < self.first - 1):
            self.streak, self.value = 0, None
            return None
        value = self._value()
        self.value = float(value)
        if not self.firing:
            if (value < spec.bound) if spec.falling else (value > spec.bound):
                self.streak += 1
                if self.streak > spec.hold:
                    self.firing, self.since, self.streak = True, t, 0
                    return ALERT
            else:
                self.streak = 0
        elif (value >= spec.recover) if spec.falling else (value <= spec.recover):
            self.firing, self.since = False, None
            return RECOVER
        return None

    def _value(self) -> Fraction | float:
        spec = self.spec
        if spec.metric == RATE:
            return Fraction(self.hits, spec.window)
        if spec.metric == STATUS_SHARE:
            return Fraction(self.matching, self.hits)
        assert spec.quantile is not None
        value = self.sketch.quantile(spec.quantile)
        assert value is not None
        return value

    def _slide(self, t: int) -> None:
        """Take second t's bucket into the window and the one of t - window out of it."""
        old = t - self.spec.window
        if self.spec.metric == LATENCY:
            times = self.pending_times.pop(t, None)
            if times:
                sketch = self.sketches[t] = QuantileSketch()
                sketch.add_many(times.items())
                self.sketch.push(t, sketch)
                self.hits += sketch.count
            gone = self.sketches.pop(old, None)
            if gone is not None:
                self.sketch.remove(old, gone)
                self.hits -= gone.count
            return
        bucket = self.pending.pop(t, None)
        if bucket is not None:
            self.window[t] = bucket
            self.hits += bucket[0]
            self.matching += bucket[1]
        gone_bucket = self.window.pop(old, None)
        if gone_bucket is not None:
            self.hits -= gone_bucket[0]
            self.matching -= gone_bucket[1]

    def idle(self) -> bool:
        """True when seconds with no hits cannot change this rule (so they may be skipped)."""
        if self.window or self.sketches or self.streak:
            return False
        spec = self.spec
        if spec.min_hits > 0:
            return True
        # A rate rule evaluated at zero hits: idle unless zero would fire it or recover it.
        if self.firing:
            return not ((0 >= spec.recover) if spec.falling else (0 <= spec.recover))
        return not ((0 < spec.bound) if spec.falling else (0 > spec.bound))

    def event(self, kind: str, t: int) -> Event:
        """The event of an ALERT or RECOVER at second t (without its id: the journal gives it)."""
        assert self.value is not None
        return {"type": kind, "at": t, "rule": self.spec.name, "metric": self.spec.metric, "value": self.value,
                "hits": self.hits, **self.spec.describe()}

    def shift(self, delta: int) -> None:
        """Move the window's buckets by `delta` seconds: a new timeline goes on with them as the
        seconds before its first (see Monitor: a jump backwards)."""
        self.window = {s + delta: b for s, b in self.window.items()}
        if self.first is not None:
            self.first += delta
        sketches = sorted(self.sketches.items())
        self.sketches, self.sketch = {}, SlidingSketch()
        for s, sketch in sketches:
            self.sketches[s + delta] = sketch
            self.sketch.push(s + delta, sketch)

    def clear_window(self) -> None:
        """Forget the window (its seconds turned out to be wrong); the firing state stays."""
        self.window, self.sketches, self.sketch = {}, {}, SlidingSketch()
        self.hits = self.matching = self.streak = 0
        self.first = None

    def drop_after(self, second: int) -> None:
        """Forget the pending buckets of seconds after `second`."""
        for pending in (self.pending, self.pending_times):
            for s in [s for s in pending if s > second]:
                del pending[s]

    def to_state(self) -> dict[str, Any]:
        return {"spec": spec_key(self.spec), "firing": self.firing, "since": self.since, "streak": self.streak,
                "value": self.value, "first": self.first, "pending": [[s, *b] for s, b in self.pending.items()],
                "window": [[s, *b] for s, b in self.window.items()],
                "pending_times": [[s, list(c.items())] for s, c in self.pending_times.items()],
                "sketches": [[s, k.to_state()] for s, k in sorted(self.sketches.items())]}

    def load(self, state: dict[str, Any]) -> None:
        self.firing = bool(state["firing"])
        self.since = None if state["since"] is None else int(state["since"])
        self.streak = int(state["streak"])
        self.value = None if state["value"] is None else float(state["value"])
        self.first = None if state["first"] is None else int(state["first"])
        self.pending = {int(s): [int(n), int(m)] for s, n, m in state["pending"]}
        self.window = {int(s): [int(n), int(m)] for s, n, m in state["window"]}
        self.hits = sum(b[0] for b in self.window.values())
        self.matching = sum(b[1] for b in self.window.values())
        self.pending_times = {int(s): Counter({float(v): int(n) for v, n in pairs}) for s, pairs in state["pending_times"]}
        for s, sketch_state in state["sketches"]:
            sketch = self.sketches[int(s)] = QuantileSketch.from_state(sketch_state)
            self.sketch.push(int(s), sketch)
            self.hits += sketch.count


def spec_key(spec: RuleSpec) -> list[Any]:
    """A rule's declaration as plain data: saved state applies only to the same declaration."""
    return [str(v) if isinstance(v, Fraction) else v for v in astuple(spec)]


class Changes(NamedTuple):
    """What a reload did to the rules, by name."""

    added: list[str]
    changed: list[str]
    removed: list[str]


class RuleSet:
    """Every `[[rule]]` rule: counted together on each batch, evaluated in declaration order."""

    def __init__(self, specs: Sequence[RuleSpec] = ()) -> None:
        self.rules: dict[str, Rule] = {spec.name: Rule(spec) for spec in specs}
        self._split()

    def _split(self) -> None:
        rules = list(self.rules.values())
        self._counted = [r for r in rules if r.spec.metric != LATENCY]
        self._timed = [r for r in rules if r.spec.metric == LATENCY]
        self._by_vhost = any(r.spec.vhost is not None for r in rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def count(self, seconds: Sequence[int], kinds: Sequence[Hashable], resolve: Callable[[Hashable], Meaning],
              rtimes: Sequence[float | None] | None, vhosts: Sequence[str | None] | None) -> None:
        """Count accepted lines, given column by column as batch.Counts.add has them: each
        distinct (second, request kind, vhost) costs one pass over the rules."""
        hosts = vhosts if self._by_vhost and vhosts is not None else repeat(None)
        if self._counted:
            for (second, kind, vhost), n in Counter(zip(seconds, kinds, hosts)).items():
                (_, section), status = resolve(kind)
                for rule in self._counted:
                    if rule.wants(section, vhost):
                        rule.tally(second, n, status)
        if self._timed and rtimes is not None:
            for (second, kind, vhost, rtime), n in Counter(zip(seconds, kinds, hosts, rtimes)).items():
                if rtime is None:
                    continue
                section = resolve(kind)[0][1]
                for rule in self._timed:
                    if rule.wants(section, vhost):
                        rule.tally_time(second, rtime, n)

    def evaluate(self, t: int) -> list[Event]:
        """Decide second t for every rule; the events it causes, in declaration order."""
        events = []
        for rule in self.rules.values():
            kind = rule.evaluate(t)
            if kind is not None:
                events.append(rule.event(kind, t))
        return events

    def idle(self) -> bool:
        return all(rule.idle() for rule in self.rules.values())

    def reconfigure(self, specs: Sequence[RuleSpec]) -> Changes:
        """New declarations: an unchanged rule keeps its state, a changed one starts afresh."""
        old = self.rules
        self.rules = {spec.name: old[spec.name] if spec.name in old and old[spec.name].spec == spec else Rule(spec)
                      for spec in specs}
        self._split()
        return Changes(added=[n for n in self.rules if n not in old],
                       changed=[n for n in self.rules if n in old and self.rules[n] is not old[n]],
                       removed=[n for n in old if n not in self.rules])

    def shift(self, delta: int) -> None:
        for rule in self.rules.values():
            rule.shift(delta)

    def clear_windows(self) -> None:
        for rule in self.rules.values():
            rule.clear_window()

    def drop_after(self, second: int) -> None:
        for rule in self.rules.values():
            rule.drop_after(second)

    def to_state(self) -> dict[str, Any]:
        return {name: rule.to_state() for name, rule in self.rules.items()}

    def load(self, state: dict[str, Any]) -> list[str]:
        """Resume each rule saved with the same declaration; the names of those that start afresh."""
        fresh = []
        for name, rule in self.rules.items():
            saved = state.get(name)
            if saved is not None and saved["spec"] == spec_key(rule.spec):
                rule.load(saved)
            else:
                fresh.append(name)
        return fresh
