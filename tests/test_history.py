"""`logmonctl history` against a real logmond: the minutes of a log, counted on their own."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import csv_line, wait_for
from logmond.core import history
from logmonctl import render, when


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logmonctl", *args], capture_output=True, text=True, timeout=30,
                          env=os.environ)


def test_when_and_steps():
    now = 1_800_000_000.5
    assert when.parse("90m", now) == 1_800_000_000 - 5400 and when.parse("7d", now) == 1_800_000_000 - 7 * 86400
    assert when.parse("2026-12-01T03:00", now) == when.parse("2026-12-01T03:00:00Z", now) == 1796094000
    assert when.parse("2026-12-01T04:00+01:00", now) == 1796094000
    for bad in ("5x", "-3h", "0m", "yesterday", ""):
        with pytest.raises(ValueError):
            when.parse(bad, now)
    assert when.step(None, 0, 6 * 3600) == 300 and when.step(None, 0, 100 * 60) == 60
    assert when.step(None, 0, 31 * 86400) == 86400 and when.step("15m", 0, 60) == 900
    with pytest.raises(ValueError):
        when.step("2m", 0, 60)


def test_steps_sum_rows_merge_sketches_and_rank_keys():
    rows = [{"start": 600 + 60 * i, "hits": 10, "bytes": 100, "status": {"2xx": 9, "5xx": 1},
             "sections": [["/a", 6], ["/b", 4]], "latency_sketch": None} for i in range(10)]
    out = history.steps(rows, [{"id": 1, "type": "alert", "at": 650}], 600, 1500, 300, "section")
    assert [(s["start"], s["hits"], s["rate"]) for s in out] == [(600, 50, 0.167), (900, 50, 0.167), (1200, 0, 0.0)]
    assert out[0]["status"] == {"2xx": 45, "5xx": 5} and out[0]["top"] == [["/a", 30], ["/b", 20]]
    assert [len(s["alerts"]) for s in out] == [1, 0, 0] and out[2]["latency"] is None
    assert history.check(0, 60, 45, None) and history.check(60, 0, 60, None) and history.check(0, 60, 60, "x")
    assert history.check(0, 60, 60, "host") is None
    assert history.page_end(0, 10 ** 6, 60, 360) == 360 * 60 and history.page_end(0, 10 ** 6, 86400, 360) == 86400
    assert render.spark(0, 10) == " " and render.spark(10, 10) == "█" and render.spark(0.1, 10) == "▁"


def test_history_of_a_real_daemon_matches_the_log_minute_by_minute(logmond, short_tmp):
    log = short_tmp / "access.log"
    now = int(time.time())
    start = now // 60 * 60 - 15 * 60
    rnd = random.Random(10)
    lines = sorted((start + rnd.randrange(12 * 60), f"/s{rnd.randrange(3)}", rnd.choice([200, 404, 503]))
                   for _ in range(2000))
    log.write_text("".join(csv_line(t, n, path, status) for n, (t, path, status) in enumerate(lines)))
    d = logmond("--from-start", "--lateness", "2").start()
    d.wait_lines(len(lines))
    minutes = Counter(t // 60 * 60 for t, _, _ in lines)
    since, until = f"{start}", f"{start + 12 * 60}"
    iso = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(x))) for x in (since, until)]

    def rows() -> list[dict]:
        done = ctl("history", "--socket", d.socket, "--since", iso[0], "--until", iso[1], "--step", "1m", "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    got = wait_for(lambda: (r := rows()) and sum(s["hits"] for s in r) == len(lines) and r, 20,
                   "every minute in the history")
    assert {s["start"]: s["hits"] for s in got if s["hits"]} == dict(minutes)
    assert [s["start"] for s in got] == list(range(start, start + 12 * 60, 60)), "one row per step, empty ones too"
    for s in got:
        mine = [(p, c) for t, p, c in lines if s["start"] <= t < s["end"]]
        assert s["status"] == dict(sorted(Counter(f"{c // 100}xx" for _, c in mine).items()))
    by = ctl("history", "--socket", d.socket, "--since", iso[0], "--until", iso[1], "--step", "5m", "--by", "section",
             "--json")
    five = [json.loads(line) for line in by.stdout.splitlines()]
    for s in five:
        assert dict(s["top"]) == dict(Counter(p for t, p, _ in lines if s["start"] <= t < s["end"]))
    human = ctl("history", "--socket", d.socket, "--since", iso[0], "--until", iso[1], "--step", "5m")
    assert human.returncode == 0 and human.stdout.splitlines()[0].split()[:4] == ["start", "(UTC)", "hits", "hits/s"]
    assert any(glyph in human.stdout for glyph in render.SPARKS[1:])
    bad = ctl("history", "--socket", d.socket, "--since", "5x")
    assert bad.returncode == 64 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_a_backfill_adds_only_the_minutes_the_history_lacks_while_the_daemon_runs(logmond, short_tmp):
    now = int(time.time())
    m0 = now // 60 * 60 - 20 * 60
    live = [(m0 + 5 * 60 + i % 300, "/live") for i in range(900)]     # minutes 5..9, the daemon's
    old = [(m0 + i % 480, "/old") for i in range(1600)]              # minutes 0..7, rotated away
    log = short_tmp / "access.log"
    log.write_text("".join(csv_line(t, n, p) for n, (t, p) in enumerate(sorted(live))))
    rotated = short_tmp / "access.log.1"
    rotated.write_text("".join(csv_line(t, n, p) for n, (t, p) in enumerate(sorted(old))))
    d = logmond("--from-start", "--lateness", "2").start()
    d.wait_lines(len(live))
    span = {"since": m0, "until": m0 + 10 * 60, "step": 60, "by": None}
    wait_for(lambda: sum(s["hits"] for s in d.call("history", **span)["steps"]) == len(live), 20,
             "the daemon's minutes in its history")

    def backfill() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "logmond", "--once", "--file", str(rotated), "--state-dir",
                               str(d.state), "--save-history", "--lateness", "2"], capture_output=True, text=True,
                              timeout=60)

    done = backfill()
    assert done.returncode == 0, done.stderr
    assert "history: 5 minute rows added" in done.stderr and "3 it had already" in done.stderr, done.stderr
    steps = {s["start"]: s["hits"] for s in d.call("history", **span)["steps"]}
    mine = Counter((t - m0) // 60 for t, _ in live)
    theirs = Counter((t - m0) // 60 for t, _ in old)
    assert steps == {m0 + 60 * k: (mine[k] if k >= 5 else theirs[k]) for k in range(10)}, "no minute counted twice"
    again = backfill()
    assert again.returncode == 0 and "history: 0 minute rows added" in again.stderr
    assert {s["start"]: s["hits"] for s in d.call("history", **span)["steps"]} == steps
