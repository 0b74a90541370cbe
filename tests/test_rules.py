"""The [[rule]] alert rules: declarations judged, each metric pinned to the second on crafted input,
and every metric checked against an independent offline computation of the rule as stated."""
from __future__ import annotations

import random
import time
from collections import Counter
from fractions import Fraction

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logmond.core.errors import InvalidSetting
from logmond.core.monitor import CoreConfig, Monitor
from logmond.core.quantiles import QuantileSketch
from logmond.core.rulespec import RuleSpec, parse_rules
from logmond.core.settings import validate
from shared.schema import alert_message

T0 = 1_549_573_800
# One nginx format with everything a rule can filter or measure: host, status, request time.
FMT = '$remote_addr [$time_local] $host "$request" $status $body_bytes_sent $request_time'


def line(ts: int, path: str = "/api/x", status: int = 200, rtime: str = "0.100", host: str = "shop") -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ts))
    return f'10.0.0.1 [{stamp}] {host} "GET {path} HTTP/1.1" {status} 100 {rtime}\n'


def run(lines: list[str], rules: list[dict], pieces: int = 1, **config) -> list[dict]:
    monitor = Monitor(CoreConfig(format=FMT, rules=parse_rules(rules), **config))
    events = []
    step = max(1, len(lines) // pieces)
    for i in range(0, len(lines), step):
        events += monitor.feed("".join(lines[i:i + step]).encode())
    events += monitor.finish()
    return [e for e in events if e["type"] in ("alert", "recover") and e["rule"] != "high_traffic"]


def fired(events: list[dict]) -> list[tuple[str, str, int]]:
    return [(e["rule"], e["type"], e["at"] - T0) for e in events]


def rule(**table) -> dict:
    return {"name": "r", "window": 10, **table}


# -- declarations ------------------------------------------------------------------------------

@pytest.mark.parametrize("tables, message", [
    ([rule(metric="rate", above=1, abov=2)], "rule 'r': unknown key 'abov'"),
    ([rule(metric="hits", above=1)], "rule 'r': 'metric' must be one of rate, status_share, latency"),
    ([rule(metric="rate", above=1), rule(metric="rate", above=2)], "rule 'r': 'name' is used by another rule"),
    ([rule(metric="status_share", status="5xx", above=0.05, recover_below=0.1)],
     "rule 'r': 'recover_below' must be at or below 'above'"),
    ([rule(metric="rate", below=1, recover_above=0.5)], "rule 'r': 'recover_above' must be at or above 'below'"),
    ([rule(metric="rate", below=1, recover_below=0.5)], "rule 'r': 'recover_below' does not go with 'below'"),
    ([rule(metric="rate", above=1, below=0.5)], "rule 'r': give exactly one of 'above' and 'below'"),
    ([rule(metric="status_share", above=0.1)], "rule 'r': 'status' must be a class"),
    ([rule(metric="status_share", status="5xx", above=5)], "rule 'r': 'above' must be a number >= 0 in a share"),
    ([rule(metric="latency", below=0.1)], "rule 'r': 'below' is for metric rate only"),
    ([rule(metric="rate", above=1, quantile=0.5)], "rule 'r': 'quantile' is for metric latency only"),
    ([rule(metric="rate", above=1, section="/api/user")], "rule 'r': 'section' must be a section"),
    ([rule(metric="rate", above=1, severity="page")], "rule 'r': 'severity' must be"),
    ([rule(metric="rate", above=1, name="high_traffic")], "rule 'high_traffic': 'name' is the built-in rule's"),
    ([rule(metric="rate", above=1, name="API errors")], "rule #1: 'name' must be"),
    ([rule(metric="rate", above=1, window=0)], "rule 'r': 'window' must be a whole number from 1 to 3600"),
])
def test_a_bad_rule_is_one_line_naming_the_rule_and_key(tables, message):
    with pytest.raises(ValueError) as caught:
        parse_rules(tables)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_latency_rule_needs_a_format_with_a_request_time():
    specs = parse_rules([rule(metric="latency", above=0.5)])
    with pytest.raises(InvalidSetting) as caught:
        validate({"format": "combined", "rule": specs})
    assert caught.value.text == "rule 'r': metric latency needs a request time, and format combined has none"
    validate({"format": FMT, "rule": specs})
    validate({"format": "auto", "rule": specs})  # known only once auto decides


def test_defaults_and_exact_bounds():
    share, rate = parse_rules([rule(metric="status_share", status="502", above=0.1),
                               {"name": "gone", "metric": "rate", "below": 0.3}])
    assert (share.bound, share.recover, share.min_hits, share.hold, share.severity) == \
        (Fraction(1, 10), Fraction(1, 10), 1, 0, "warning")
    assert (rate.falling, rate.window, rate.min_hits) == (True, 60, 0)
    assert share.matches_status(502) and not share.matches_status(503)


# -- each metric, to the second ----------------------------------------------------------------

def test_rate_fires_after_for_and_recovers_below_its_bound():
    lines = [line(T0 + s) for s in range(30) for _ in range(3 if s < 20 else 0)] + [line(T0 + 60)]
    events = run(lines, [rule(metric="rate", above=2, recover_below=1, **{"for": 3})])
    # 3/s: (t-10, t] holds 3(t+1) hits, > 20 from t=6 on; held for 3 s more at t=9.
    # Back to <= 10 hits when (t-10, t] holds at most 3 of seconds 0-19: t=29 (only s 19 left... 3 hits).
    assert fired(events) == [("r", "alert", 9), ("r", "recover", 26)]
    assert events[0]["value"] == 3.0 and events[0]["hits"] == 30 and events[1]["value"] == 0.9


def test_status_share_fires_and_recovers_for_its_section_only():
    lines = []
    for s in range(40):
        lines += [line(T0 + s, "/api/user", 503 if 5 <= s < 15 else 200), line(T0 + s, "/web", 503)]
    events = run(lines, [rule(metric="status_share", status="5xx", section="/api", above=0.5, recover_below=0.2,
                              severity="critical")])
    # /api's share in (t-10, t]: 5xx from s=5; > 1/2 once 6 of 10 are (t=10); at or below 2/10 at t=22.
    assert fired(events) == [("r", "alert", 10), ("r", "recover", 22)]
    assert alert_message(events[0]) == "r generated an alert - status_share = 60.00%, triggered at 2019-02-07T21:10:10Z"
    assert events[0]["severity"] == "critical" and events[0]["section"] == "/api"


def test_latency_quantile_fires_and_recovers():
    lines = [line(T0 + s, rtime="0.900" if 10 <= s < 15 else "0.100") for s in range(30) for _ in range(2)]
    events = run(lines, [rule(metric="latency", quantile=0.5, window=5, above=0.5, vhost="shop")])
    # p50 of the 10 requests of (t-5, t] is the 5th smallest: 0.9 once 6 of them are slow (t=12),
    # 0.1 again once 6 are fast (t=17).
    assert fired(events) == [("r", "alert", 12), ("r", "recover", 17)]
    assert abs(events[0]["value"] - 0.9) <= 0.9 * 0.01
    assert alert_message(events[1]) == "r alert recovered - latency = 100.0 ms, recovered at 2019-02-07T21:10:17Z"


def test_min_hits_holds_a_share_rule_until_the_window_has_them():
    lines = [line(T0 + s, status=500) for s in range(0, 20, 2)]
    assert fired(run(lines, [rule(metric="status_share", status="500", above=0.5, min_hits=4)])) == [("r", "alert", 6)]


def test_below_fires_when_traffic_stops_but_not_before_its_window_was_read():
    lines = [line(T0 + s) for s in range(20)] + [line(T0 + 40 + s) for s in range(15)]
    events = run(lines, [rule(metric="rate", below=0.5, **{"for": 2})])
    # 1/s from s=0 is no drop, even in the first 9 seconds whose window reaches before the log.
    # After s=19: (t-10, t] holds fewer than 5 hits from t=25, held 2 s more at t=27; back at
    # >= 5 hits at t=44 (40..44).
    assert fired(events) == [("r", "alert", 27), ("r", "recover", 44)]
    assert events[0]["value"] == 0.2


def test_below_fires_live_when_the_log_goes_silent():
    monitor = Monitor(CoreConfig(format=FMT, rules=parse_rules([rule(metric="rate", below=0.5)])))
    monitor.feed("".join(line(T0 + s) for s in range(12)).encode())
    events = []
    for now in range(T0 + 12, T0 + 30):
        events += monitor.advance(now)
    assert [(e["type"], e["at"] - T0) for e in events if e["type"] == "alert"] == [("alert", 17)]


def test_two_rules_fire_at_once_and_ids_follow_the_high_traffic_rules():
    lines = [line(T0 + s, status=500) for s in range(15) for _ in range(3)]
    monitor = Monitor(CoreConfig(format=FMT, window=10, threshold=Fraction(2), rules=parse_rules(
        [rule(name="errors", metric="status_share", status="5xx", above=0.5),
         rule(name="busy", metric="rate", above=2)])))
    events = [e for e in monitor.feed("".join(lines).encode()) + monitor.finish() if e["type"] == "alert"]
    assert [(e["rule"], e["at"] - T0, e["id"]) for e in events] == \
        [("errors", 0, 1), ("high_traffic", 6, 2), ("busy", 6, 3)]


# -- reload and state --------------------------------------------------------------------------

def test_reload_keeps_unchanged_rules_and_restarts_changed_ones():
    first = [rule(name="a", metric="rate", above=1), rule(name="b", metric="rate", above=1)]
    monitor = Monitor(CoreConfig(format=FMT, rules=parse_rules(first)))
    monitor.feed("".join(line(T0 + s) for s in range(20) for _ in range(2)).encode())
    assert {n for n, r in monitor.rules.rules.items() if r.firing} == {"a", "b"}
    later = [rule(name="a", metric="rate", above=1), rule(name="b", metric="rate", above=3),
             rule(name="c", metric="rate", above=1)]
    _, changes = monitor.reconfigure(CoreConfig(format=FMT, rules=parse_rules(later)))
    assert changes == (["c"], ["b"], [])
    assert monitor.rules.rules["a"].firing and not monitor.rules.rules["b"].firing
    _, changes = monitor.reconfigure(CoreConfig(format=FMT, rules=parse_rules(later[:1])))
    assert changes == ([], [], ["b", "c"])


def test_state_resumes_rules_exactly():
    tables = [rule(name="share", metric="status_share", status="5xx", above=0.3, **{"for": 2}),
              rule(name="slow", metric="latency", above=0.5, window=7), rule(name="gone", metric="rate", below=0.5)]
    rng = random.Random(7)
    lines = [line(T0 + s, status=rng.choice([200, 500]), rtime=rng.choice(["0.1", "0.9"]))
             for s in range(80) if s % 30 < 20 for _ in range(rng.randrange(3))]
    whole = run(lines, tables, lateness=2)
    for cut in (len(lines) // 3, len(lines) // 2):
        first = Monitor(CoreConfig(format=FMT, rules=parse_rules(tables), lateness=2))
        events = first.feed("".join(lines[:cut]).encode())
        second = Monitor(CoreConfig(format=FMT, rules=parse_rules(tables), lateness=2))
        second.load(msgpack.unpackb(msgpack.packb(first.to_state()), raw=False, strict_map_key=False))
        events += second.feed("".join(lines[cut:]).encode()) + second.finish()
        assert [e for e in events if e["type"] in ("alert", "recover") and e["rule"] != "high_traffic"] == whole
    assert whole


# -- against an independent offline computation -------------------------------------------------

def offline(lines: list[tuple[int, str, int, float]], spec: RuleSpec) -> list[tuple[str, int, float]]:
    """The rule as the issue states it, the slow obvious way: every second from the first line's
    to the last, the lines of (t - window, t] that pass the filter, and the state machine."""
    out: list[tuple[str, int, float]] = []
    firing, streak = False, 0
    first = min(ts for ts, *_ in lines)
    for t in range(first, max(ts for ts, *_ in lines) + 1):
        window = [(s, status, rt) for ts, s, status, rt in lines
                  if t - spec.window < ts <= t and (spec.section is None or s == spec.section)]
        n = len(window)
        if n < spec.min_hits or (spec.falling and t - spec.window + 1 < first):
            streak = 0
            continue
        if spec.metric == "rate":
            value = Fraction(n, spec.window)
        elif spec.metric == "status_share":
            value = Fraction(sum(spec.matches_status(status) for _, status, _ in window), n)
        else:
            sketch = QuantileSketch()
            sketch.add_many(Counter(rt for _, _, rt in window).items())
            value = sketch.quantile(spec.quantile)
        if not firing:
            if (value < spec.bound) if spec.falling else (value > spec.bound):
                streak += 1
                if streak > spec.hold:
                    firing, streak = True, 0
                    out.append(("alert", t, float(value)))
            else:
                streak = 0
        elif (value >= spec.recover) if spec.falling else (value <= spec.recover):
            firing = False
            out.append(("recover", t, float(value)))
    return out


RATE_RULES = st.builds(lambda w, above, drop, hold, falling, section: rule(
    metric="rate", window=w, **({"below": above, "recover_above": above + drop} if falling else
                                {"above": above, "recover_below": max(0, above - drop)}),
    **{"for": hold}, **({"section": section} if section else {})),
    st.integers(1, 15), st.sampled_from([0.2, 0.5, 1, 1.5, 3]), st.sampled_from([0, 0.1, 0.5]),
    st.integers(0, 4), st.booleans(), st.sampled_from([None, "/api"]))
SHARE_RULES = st.builds(lambda w, above, drop, hold, status, min_hits, section: rule(
    metric="status_share", window=w, status=status, above=above, recover_below=max(0, above - drop),
    min_hits=min_hits, **{"for": hold}, **({"section": section} if section else {})),
    st.integers(1, 15), st.sampled_from([0, 0.25, 0.5, 0.7]), st.sampled_from([0, 0.1, 0.3]),
    st.integers(0, 3), st.sampled_from(["5xx", "404", "2xx"]), st.integers(1, 5), st.sampled_from([None, "/api"]))
LATENCY_RULES = st.builds(lambda w, q, above, hold, section: rule(
    metric="latency", window=w, quantile=q, above=above, **{"for": hold}, **({"section": section} if section else {})),
    st.integers(1, 15), st.sampled_from([0.5, 0.9, 0.99, 1.0]), st.sampled_from([0.05, 0.2, 0.5]),
    st.integers(0, 3), st.sampled_from([None, "/api"]))
LOGS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["/api", "/web"]), st.sampled_from([200, 404, 500, 503]),
                          st.sampled_from(["0.010", "0.100", "0.300", "0.700", "1.500"])),
                min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(table=st.one_of(RATE_RULES, SHARE_RULES, LATENCY_RULES), log=LOGS, pieces=st.integers(1, 4),
       lateness=st.integers(0, 3), seed=st.integers(0, 1000))
def test_every_metric_gives_the_events_of_the_offline_rule(table, log, pieces, lateness, seed):
    # Seconds move on by 0-2 per line (gaps included); each line may come up to `lateness`
    # seconds out of order.
    stamps, t = [], T0
    for step, *_ in log:
        t += step
        stamps.append(t)
    rng = random.Random(seed)
    order = sorted(range(len(log)), key=lambda i: stamps[i] + rng.uniform(0, lateness))
    lines = [(stamps[i], *log[i][1:]) for i in order]
    events = run([line(ts, section + "/x", status, rt) for ts, section, status, rt in lines], [table],
                 pieces=pieces, lateness=lateness)
    spec = parse_rules([table])[0]
    expected = offline([(ts, s, status, float(rt)) for ts, s, status, rt in lines], spec)
    assert [(e["type"], e["at"], e["value"]) for e in events] == expected


def test_with_auto_a_rule_the_detected_format_cannot_feed_says_so_and_check_warns():
    from logmond.core import replies
    from logmonctl import render
    monitor = Monitor(CoreConfig(rules=parse_rules([rule(metric="latency", above=0.5)])))
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(T0))
    monitor.feed("".join(f'10.0.0.1 - - [{stamp}] "GET /a HTTP/1.1" 200 5 "-" "ua"\n' for _ in range(60)).encode())
    found = {r["name"]: r for r in replies.rules(monitor)}
    assert monitor.format == "combined" and found["r"]["error"] == "format combined has no request time"
    status = {"format": "combined", "format_error": None, "alert": {"active": False}, "rules": list(found.values()),
              "recent": {"lines": 60, "malformed": 0}}
    assert render.state(status) == render.WARNING
    assert render.rule_state(found["r"]) == "r cannot be evaluated: format combined has no request time"


def test_history_rows_name_the_rule_of_each_alert_but_the_built_in_one():
    from logmonctl import render
    step = {"start": T0, "end": T0 + 60, "hits": 60, "rate": 1.0, "status": {"5xx": 30}, "bytes": 6000,
            "latency": None, "alerts": [{"type": "alert", "at": T0 + 5, "rule": "high_traffic"},
                                        {"type": "alert", "at": T0 + 7, "rule": "api_errors"},
                                        {"type": "recover", "at": T0 + 50}]}
    row = render.history_text([step], 60, None)[-1]
    assert row.endswith("ALERT 21:10:05, api_errors ALERT 21:10:07, recovered 21:10:50"), row


def test_a_rules_memory_is_its_window_whatever_the_length_of_the_log():
    tables = [rule(name="share", metric="status_share", status="5xx", window=7),
              rule(name="slow", metric="latency", window=7, above=0.5)]
    monitor = Monitor(CoreConfig(format=FMT, lateness=3, rules=parse_rules([{**t, "above": 0.5} for t in tables])))
    rng = random.Random(3)
    for chunk in range(20):
        monitor.feed("".join(line(T0 + chunk * 50 + s, status=rng.choice([200, 500]), rtime=f"0.{rng.randrange(1000):03d}")
                             for s in range(50) for _ in range(3)).encode())
        for r in monitor.rules.rules.values():
            held = len(r.window) + len(r.sketches)
            assert held <= 7 and len(r.pending) + len(r.pending_times) <= 3 + 2, (r.spec.name, held)
