"""logmond as a service: a real process following a real file, queried over its real socket."""
from __future__ import annotations

import os
import signal
import time

from conftest import Writer, csv_line, saved_state, wait_for
from shared.client import Client
from shared.protocol import EVENT_ALERT


def test_appended_lines_show_up_at_once_and_partial_lines_wait(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond().start()
    with open(log, "a") as f:
        f.write(csv_line(int(time.time()), 1) * 3)
    written = time.monotonic()
    d.wait_lines(3, timeout=5)
    assert time.monotonic() - written < 1.0, "appended lines must be counted within a second"
    with open(log, "a") as f:
        f.write(csv_line(int(time.time()), 2)[:20])
    size = log.stat().st_size
    st = wait_for(lambda: (s := d.status())["file"]["size"] == size and s, what="the partial line to be seen")
    assert st["lines"] == 3 and st["file"]["offset"] < size
    with open(log, "a") as f:
        f.write(csv_line(int(time.time()), 2)[20:])
    st = d.wait_lines(4, timeout=5)
    assert st["lines"] == 4 and st["parsed"] == 4 and st["malformed"] == 0


def test_kill_9_restart_counts_every_line_once_and_keeps_the_alert(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--alert-window", "10", "--threshold", "50")
    d.start()
    writer = Writer(log, rate=2000)
    writer.start()
    firing = wait_for(lambda: (s := d.status())["alert"]["active"] and s, timeout=20, what="the alert to fire")
    since = firing["alert"]["since"]
    wait_for(lambda: d.status()["lines"] > 6000, timeout=20, what="heavy writing")
    # Once the checkpoint holds the alert, die without warning.
    wait_for(lambda: (saved_alert(d) or {}).get("firing"), timeout=10, what="a checkpoint with the alert firing")
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    assert os.path.exists(d.socket), "a killed daemon leaves its socket behind"
    d.start()
    st = d.status()
    assert st["alert"]["active"] and st["alert"]["since"] == since
    # The writer went on meanwhile: see the restarted daemon take new lines before stopping it.
    wait_for(lambda: d.status()["lines"] > st["lines"], timeout=10, what="lines counted after the restart")
    written = writer.stop()
    st = d.wait_lines(written, timeout=30)
    assert (st["lines"], st["parsed"], st["malformed"], st["late"]) == (written, written, 0, 0)
    assert d.call("alerts")["events"][0]["at"] == since


def saved_alert(d) -> dict | None:
    """The alert state in the daemon's state database, or None."""
    state = saved_state(d.state)
    return None if state is None else state["monitor"]["alert"]


def test_alert_fires_on_a_burst_and_recovers_by_itself_when_traffic_stops(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    # A short window and lateness: the recovery comes window + lateness + 1 s after the last line.
    d = logmond("--alert-window", "3", "--threshold", "1", "--lateness", "1").start()
    writer = Writer(log, rate=100)
    writer.start()
    wait_for(lambda: d.status()["alert"]["active"], timeout=15, what="the alert to fire")
    stopped = int(time.time())
    writer.stop()
    # No more lines: the log clock keeps moving with the wall clock and the window empties.
    wait_for(lambda: not d.status()["alert"]["active"], timeout=30, what="the alert to recover")
    events = d.call("alerts")["events"]
    assert [e["type"] for e in events] == ["alert", "recover"]
    assert events[1]["at"] > events[0]["at"] and events[1]["at"] >= stopped
    assert events[1]["hits"] <= 3 and [e["id"] for e in events] == [1, 2]


def test_a_backlog_is_read_by_log_time_and_is_no_spike(logmond, short_tmp):
    log = short_tmp / "access.log"
    # An hour of old traffic at one hit every two seconds, read in one go at start-up.
    log.write_text("".join(csv_line(1_549_573_800 + 2 * i, i) for i in range(1800)))
    d = logmond("--from-start", "--alert-window", "10", "--threshold", "2").start()
    st = d.wait_lines(1800)
    assert st["clock"] == 1_549_573_800 + 2 * 1799
    assert not st["alert"]["active"] and d.call("alerts")["events"] == []
    assert d.call("stats")["interval"]["hits"] == 5


def test_sigterm_checkpoints_removes_the_socket_and_exits_0(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("".join(csv_line(int(time.time()), i) for i in range(10)))
    d = logmond("--from-start").start()
    d.wait_lines(10)
    assert d.stop() == 0
    assert not os.path.exists(d.socket)
    assert saved_state(d.state)["monitor"]["lines"] == 10
    assert "Traceback" not in d.stderr()
    with open(log, "a") as f:
        f.write("".join(csv_line(int(time.time()), i) for i in range(5)))
    assert d.start().wait_lines(15)["lines"] == 15


def test_an_alert_and_its_recovery_in_one_read_are_pushed_with_their_own_ids(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--alert-window", "2", "--threshold", "1", "--lateness", "0").start()
    t = int(time.time()) - 60
    with Client(d.socket, timeout=10) as watcher:
        pushes = watcher.subscribe(timeout=10)
        # One append, so one feed: a burst at t fires, the quiet seconds up to t+10 recover.
        with open(log, "a") as f:
            f.write("".join(csv_line(t, i) for i in range(10)) + csv_line(t + 10, 10))
        alerts = []
        while len(alerts) < 2:
            push = next(pushes)
            if push["event"] == EVENT_ALERT:
                alerts.append(push)
    assert [(a["type"], a["id"]) for a in alerts] == [("alert", 1), ("recover", 2)]
    assert [(e["type"], e["id"]) for e in d.call("alerts")["events"]] == [("alert", 1), ("recover", 2)]


def test_sigterm_right_after_a_status_call_and_a_new_file_is_clean(logmond, short_tmp):
    """Shutdown closes the follower only after the last read that can be scheduled."""
    log = short_tmp / "access.log"
    log.write_text(csv_line(int(time.time()), 0))
    for attempt in range(8):
        d = logmond("--from-start")
        d.start()
        d.status()
        (short_tmp / f"other-{attempt}.log").write_text("x\n")
        with open(log, "a") as f:
            f.write(csv_line(int(time.time()), attempt))
        assert d.stop() == 0, d.stderr()
    assert "Traceback" not in d.stderr() and "closed Follower" not in d.stderr()


def test_a_live_line_dated_far_ahead_of_this_machine_is_malformed_clock(logmond, short_tmp):
    """Live, the log cannot be from the future: the line is refused at once, the clock stays."""
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond().start()
    now = int(time.time())
    with open(log, "a") as f:
        # 1,000 s ahead: within what a jump in the log may be, beyond what this clock allows.
        f.write(csv_line(now, 0) + csv_line(now + 1000, 1) + csv_line(now, 2))
    st = d.wait_lines(3, timeout=5)
    assert (st["lines"], st["parsed"], st["malformed"], st["late"]) == (3, 2, 1, 0)
    assert abs(st["clock"] - now) <= 2


def test_an_alert_killed_at_the_moment_it_fires_is_announced_exactly_once(logmond, short_tmp):
    """The checkpoint holds an alert event before it is logged or pushed: kill -9 the instant a
    subscriber hears it, and the restarted daemon, resuming from that checkpoint, neither loses
    the alert nor announces it again."""
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--alert-window", "5", "--threshold", "20", "--lateness", "1")
    d.start()
    writer = Writer(log, rate=300)
    writer.start()
    with Client(d.socket, timeout=5) as c:
        fired = next(push for push in c.subscribe(timeout=20) if push["event"] == "alert")
        d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.start()
    st = d.status()
    assert st["alert"]["active"] and st["alert"]["since"] == fired["at"]
    written = writer.stop()
    d.wait_lines(written, timeout=30)
    d.snapshots(3)
    alerts = [e for e in d.call("alerts")["events"] if e["type"] == "alert"]
    assert [(e["id"], e["at"]) for e in alerts] == [(fired["id"], fired["at"])]
    assert d.stderr().count("High traffic generated an alert") == 1, d.stderr()
