"""logmonctl: pure rendering with hand-made replies, then every command as a subprocess against a real logmond."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import msgpack
import pytest

from conftest import T0, Writer, csv_line, wait_for
from logmonctl import cli, render
from shared.cli import socket_help
from shared.client import Client
from shared.protocol import ApiError
from shared.schema import alert_message
from shared import units

# ---------------------------------------------------------------------------------------------
# render: hand-made replies

STATUS = {
    "version": "0.1.0", "protocol": 1, "pid": 4242, "started_at": 1.0, "uptime": 3725.5,
    "file": {"path": "/var/log/access.log", "device": 1, "inode": 2, "offset": 2048, "size": 4096},
    "format": "csv", "format_spec": None, "format_error": None, "lines": 1500, "parsed": 1496, "malformed": 3,
    "late": 1, "recent": {"lines": 1000, "malformed": 2, "top_reason": "fields"}, "clock": T0 + 250,
    "rate": 12.4, "threshold": 10.0, "window": 120,
    "alert": {"active": True, "since": T0, "hits": 1300, "rate": 10.83},
    "process": {"rss_bytes": 35_756_032, "cpu_percent": 1.25, "open_fds": 12}, "clients": 2,
    "tick": {"count": 600, "p50_ms": 2.1, "p99_ms": 9.8, "max_ms": 14.2},
}
QUIET = {**STATUS, "rate": 3.2, "alert": {"active": False, "since": None, "hits": None, "rate": None}}

SUMMARY = {
    "type": "summary", "start": T0, "end": T0 + 10, "hits": 40, "rate": 4.0,
    "sections": [["/api", 30], ["/report", 10]],
    "errors": {"/api": {"4xx": 0.1, "5xx": 0.0}, "/report": {"4xx": 0.0, "5xx": 0.5}},
    "status": {"2xx": 31, "4xx": 3, "5xx": 5, "3xx": 1}, "methods": {"GET": 36, "POST": 4},
    "bytes": 5120, "bytes_mean": 128.0, "hosts": 7, "hosts_exact": False,
    "top_hosts": [["10.0.0.1", 20], ["192.168.100.200", 5]],
}


def squeeze(text: str) -> list[str]:
    """Lines with runs of blanks made one, to assert values without pinning the padding."""
    return [" ".join(line.split()) for line in text.splitlines()]


def test_number_size_duration():
    assert [units.number(x) for x in (10.0, 0.5, 12.25)] == ["10", "0.5", "12.25"]
    assert [units.size(n) for n in (0, 1023, 1024, 35_756_032, 5 * 1024**5)] == \
        ["0 B", "1023 B", "1.0 KiB", "34.1 MiB", "5120.0 TiB"]
    assert [units.duration(s) for s in (-1, 7, 245, 3725.5, 2 * 86400 + 3 * 3600 + 59)] == \
        ["0s", "7s", "4m05s", "1h02m", "2d03h"]
    assert render.percent(1, 3) == "33.3%" and render.percent(0, 0) == "-"
    assert [units.thousands(n) for n in (0, 999, 1000, 12_345_678)] == ["0", "999", "1,000", "12,345,678"]
    assert [units.counted(n, "client") for n in (0, 1, 2, 1500)] == ["0 clients", "1 client", "2 clients",
                                                                     "1,500 clients"]
    assert units.counted(1, "entry", "entries") == "1 entry" and units.counted(3, "entry", "entries") == "3 entries"


def test_table_aligns_names_left_and_figures_right():
    assert render.table(("name", "hits"), [("/a", 5), ("/longer", 1234)]) == [
        "  name     hits",
        "  /a          5",
        "  /longer  1234",
    ]


def test_status_text_firing_says_since_when_and_how_long():
    last = {"start": 1549574040, "end": 1549574050, "rate": 14.2}
    assert render.status_text(STATUS, last).splitlines() == [
        "logmond   0.1.0, pid 4242, up 1h02m, 2 clients",
        "file      /var/log/access.log (csv), at 2.0 KiB of 4.0 KiB (2.0 KiB behind)",
        "log time  2019-02-07T21:14:10Z",
        "lines     1,500 read: 1,496 parsed, 3 malformed, 1 late",
        "now       14.20 hits/s over the last 10s (to 2019-02-07T21:14:10Z)",
        "traffic   12.40 hits/s over 120s (1,488 hits) > threshold 10",
        "alert     FIRING since 2019-02-07T21:10:00Z (4m10s)",
        "process   RSS 34.1 MiB, CPU 1.2%, 12 open fds",
    ]


def test_status_text_before_any_line_and_any_file():
    fresh = {**QUIET, "clock": None, "rate": 0.0,
             "file": {"path": "/x.log", "device": None, "inode": None, "offset": None, "size": None}}
    lines = render.status_text(fresh).splitlines()
    assert lines[1:3] == ["file      /x.log (csv), not there yet", "log time  no lines yet"]
    assert lines[4:7] == ["now       no complete interval yet",
                          "traffic   0.00 hits/s over 120s (0 hits) <= threshold 10", "alert     quiet"]


def test_status_text_groups_every_count_in_full_and_says_one_in_the_singular():
    big = {**QUIET, "lines": 12_345_678, "parsed": 12_345_000, "malformed": 1_234, "late": 1_000_000,
           "rate": 1 / 120, "clients": 1, "process": {**QUIET["process"], "open_fds": 1}}
    lines = render.status_text(big).splitlines()
    assert lines[0] == "logmond   0.1.0, pid 4242, up 1h02m, 1 client"
    assert lines[3] == "lines     12,345,678 read: 12,345,000 parsed, 1,234 malformed, 1,000,000 late"
    assert lines[5] == "traffic   0.01 hits/s over 120s (1 hit) <= threshold 10"
    assert lines[7] == "process   RSS 34.1 MiB, CPU 1.2%, 1 open fd"
    many = {**big, "rate": 12_000 / 120, "clients": 64, "process": {**big["process"], "open_fds": 1_024}}
    lines = render.status_text(many).splitlines()
    assert (lines[0].endswith(", 64 clients"), lines[5], lines[7].endswith(", 1,024 open fds")) == \
        (True, "traffic   100.00 hits/s over 120s (12,000 hits) > threshold 10", True)


def test_status_says_how_far_the_file_is_read():
    kib = 1024
    assert [render.position(offset, total) for offset, total in [
        (None, None), (311_808, 311_808), (100 * kib, 311_808), (0, 0), (512, None), (4 * kib, 0),
    ]] == [
        "not there yet",
        "read to the end (304.5 KiB)",
        "at 100.0 KiB of 304.5 KiB (204.5 KiB behind)",
        "read to the end (0 B)",
        "at 512 B (its size is unknown)",
        "at 4.0 KiB, past its end (0 B): truncated, to be read again from the start",
    ]


def test_check_line_is_the_nagios_format():
    assert render.check_line(STATUS) == \
        "LOGMON CRITICAL - 12.40 hits/s over 120s > 10 | rate=12.40;;10 hits=1488 malformed=3 malformed_ratio=0.002;0.1"
    assert render.check_line(QUIET) == \
        "LOGMON OK - 3.20 hits/s over 120s <= 10 | rate=3.20;;10 hits=384 malformed=3 malformed_ratio=0.002;0.1"
    held = {**STATUS, "rate": 9.5}  # hysteresis keeps the alert on below the threshold
    assert render.check_line(held) == ("LOGMON CRITICAL - 9.50 hits/s over 120s <= 10 (alert still firing) | "
                                       "rate=9.50;;10 hits=1140 malformed=3 malformed_ratio=0.002;0.1")
    assert render.check_unknown("no socket") == "LOGMON UNKNOWN - no socket"
    assert [render.state(s) for s in (STATUS, QUIET, held)] == [2, 0, 2]


def test_check_warns_on_a_log_much_malformed_and_is_unknown_when_no_format_fits():
    dirty = {**QUIET, "recent": {"lines": 100, "malformed": 11, "top_reason": "fields"}}
    assert render.state(dirty) == render.WARNING
    assert render.check_line(dirty) == (
        "LOGMON WARNING - 11% of the lines over 120s are malformed (11 of 100, mostly fields); "
        "3.20 hits/s over 120s <= 10 | rate=3.20;;10 hits=384 malformed=3 malformed_ratio=0.110;0.1")
    assert render.state({**dirty, "recent": {"lines": 100, "malformed": 10, "top_reason": "fields"}}) == render.OK
    # The alert wins over the warning.
    assert render.state({**dirty, "alert": STATUS["alert"]}) == render.CRITICAL
    blind = {**QUIET, "format": None, "format_error": "none of the formats tried fits (csv, combined)"}
    assert render.state(blind) == render.UNKNOWN and render.state({**blind, "alert": STATUS["alert"]}) == 3
    assert render.check_line(blind).startswith(
        "LOGMON UNKNOWN - no known format fits /var/log/access.log: none of the formats tried fits (csv, combined);")
    # No line yet is not a blind spot.
    assert render.state({**QUIET, "format": None, "format_error": None}) == render.OK


def test_summary_tables_have_shares_error_rates_and_estimates():
    text = render.stats_text({"interval": SUMMARY, "timeframe": None})
    lines = text.splitlines()
    assert lines[:4] == [
        "Last interval: 2019-02-07T21:10:00Z .. 2019-02-07T21:10:10Z (10s)",
        "  hits      40 (4.00/s)",
        "  bytes     5.0 KiB (mean 128 B)",
        "  hosts     ~7 (estimated)",
    ]
    assert lines[5:8] == [
        "  section  hits  share    4xx    5xx",
        "  /api       30  75.0%  10.0%   0.0%",
        "  /report    10  25.0%   0.0%  50.0%",
    ]
    assert "  192.168.100.200     5  12.5%" in lines
    squeezed = squeeze(text)
    assert ["status hits share", "2xx 31 77.5%", "4xx 3 7.5%", "5xx 5 12.5%", "3xx 1 2.5%"] == \
        squeezed[squeezed.index("status hits share"):squeezed.index("status hits share") + 5]
    assert "method hits share" in squeezed and "POST 4 10.0%" in squeezed
    assert lines[-1] == "Timeframe: nothing yet (no summary has closed)"


def test_an_empty_summary_has_no_tables():
    empty = {**SUMMARY, "hits": 0, "rate": 0.0, "sections": [], "errors": {}, "status": {}, "methods": {},
             "bytes": 0, "bytes_mean": 0.0, "hosts": 0, "hosts_exact": True, "top_hosts": []}
    assert render.summary_text("Timeframe", empty)[1:] == \
        ["  hits      0 (0.00/s)", "  bytes     0 B (mean 0 B)", "  hosts     0"]


def test_follow_takes_new_alerts_from_alert_pushes_and_snapshots_once():
    push = {"type": "recover", "at": T0, "hits": 2, "rate": 0.2, "threshold": 1.0, "window": 10, "id": 5,
            "event": "alert"}
    assert cli.fresh_alerts(push, 4) == [{"id": 5, "type": "recover", "at": T0, "hits": 2, "rate": 0.2,
                                          "threshold": 1.0, "window": 10}]
    assert cli.fresh_alerts(push, 5) == []
    snapshot = {"event": "snapshot", "seq": 9, "data": {"alerts": [{"id": 3}, {"id": 4}, {"id": 5}]}}
    assert cli.fresh_alerts(snapshot, 3) == [{"id": 4}, {"id": 5}]


def test_watch_and_top_hand_the_resolved_socket_to_the_viewer(monkeypatch):
    seen = []
    monkeypatch.setitem(sys.modules, "logmonctl.watch", types.SimpleNamespace(run=lambda p: seen.append(p) or 7))
    monkeypatch.setenv("LOGMOND_SOCKET", "/env.sock")
    assert cli.main(["watch"]) == 7 and cli.main(["top", "--socket", "/flag.sock"]) == 7
    assert seen == ["/env.sock", "/flag.sock"]


# ---------------------------------------------------------------------------------------------
# the real thing: logmonctl subprocesses against a logmond process


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return ctls(args, env=env)[0]


def ctls(*runs: tuple[str, ...], env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Independent logmonctl runs (none changes the daemon), side by side: their results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "logmonctl", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
             for args in runs]
    try:
        outputs = [p.communicate(timeout=30) for p in procs]
        return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def read_line(proc: subprocess.Popen, timeout: float = 20) -> str:
    """The next line proc prints, or "" if none comes within timeout."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0] if got else ""


def backlog() -> str:
    """Two bursts (two alerts, two recoveries) in [T0+60, T0+120) log time, one malformed line."""
    lines, n = [], 0

    def quiet(a: int, b: int) -> None:
        nonlocal n
        for t in range(a, b, 5):
            lines.append(csv_line(T0 + t, n))
            n += 1

    def burst(a: int, b: int) -> None:
        nonlocal n
        for t in range(a, b):
            for i in range(30):
                lines.append(csv_line(T0 + t, n, path="/report" if i % 3 == 0 else "/api/user",
                                      status=503 if i % 10 == 0 else 200))
                n += 1

    quiet(0, 60)
    burst(60, 70)
    quiet(70, 95)
    lines.append("garbage\n")
    burst(95, 105)
    quiet(105, 120)
    lines.append(csv_line(T0 + 120, n))  # opens the next minute, so [T0+60, T0+120) is the last summary
    return "".join(lines)


BACKLOG_ALERTS = [
    "High traffic generated an alert - hits = 31, triggered at 2019-02-07T21:11:00Z (3.10/s over 10s)",
    "High traffic alert recovered - hits = 2, recovered at 2019-02-07T21:11:19Z (0.20/s over 10s)",
    "High traffic generated an alert - hits = 31, triggered at 2019-02-07T21:11:35Z (3.10/s over 10s)",
    "High traffic alert recovered - hits = 2, recovered at 2019-02-07T21:11:54Z (0.20/s over 10s)",
]


@pytest.fixture
def history(logmond, short_tmp):
    """A daemon that read a backlog with four alert events; its minute summaries stay put for a minute."""
    (short_tmp / "access.log").write_text(backlog())
    d = logmond("--from-start", "--alert-window", "10", "--threshold", "1", "--lateness", "0",
                "--summary-interval", "60").start()
    d.wait_lines(622)
    wait_for(lambda: (d.call("stats")["interval"] or {}).get("start") == T0 + 60, what="the burst minute to close")
    return d


def test_alerts_print_the_history_in_the_alert_format_oldest_first(history):
    out, as_json, since, none_after = ctls(
        ("alerts", "--socket", history.socket), ("--socket", history.socket, "alerts", "--json"),
        ("alerts", "--since", "2", "--socket", history.socket),
        ("alerts", "--since", "4", "--json", "--socket", history.socket))
    shown = [f"[critical high_traffic] {message}" for message in BACKLOG_ALERTS]
    assert (out.returncode, out.stdout.splitlines(), out.stderr) == (0, shown, "")
    events = history.call("alerts")["events"]
    assert [alert_message(e) for e in events] == BACKLOG_ALERTS
    assert as_json.returncode == 0 and [json.loads(line) for line in as_json.stdout.splitlines()] == events
    assert [e["id"] for e in events] == [1, 2, 3, 4]
    assert since.stdout.splitlines() == shown[2:]
    assert none_after.stdout == ""


def test_follow_prints_the_history_after_since_first(history):
    follow = subprocess.Popen([sys.executable, "-m", "logmonctl", "alerts", "-f", "--json", "--since", "3",
                               "--socket", history.socket], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = read_line(follow)
    # Snapshots repeat the recent alerts, which must not print again: the one the follower gets
    # as it subscribes, then two more published to every subscriber (one a second later at least).
    history.snapshots(2)
    follow.send_signal(signal.SIGINT)
    out, err = follow.communicate(timeout=10)
    assert (follow.returncode, json.loads(first), out, err) == (0, history.call("alerts")["events"][3], "", "")


def test_a_closed_pipe_ends_output_quietly(history):
    piped = subprocess.run(f"{sys.executable} -m logmonctl alerts --json --socket {history.socket} | head -1",
                           shell=True, capture_output=True, text=True, timeout=30)
    assert piped.stderr == "" and json.loads(piped.stdout) == history.call("alerts")["events"][0]
    # A reader that is gone before the first write: EPIPE for sure.
    proc = subprocess.Popen([sys.executable, "-m", "logmonctl", "alerts", "--socket", history.socket],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    assert (proc.wait(timeout=30), proc.stderr.read()) == (0, "")
    proc.stderr.close()


def test_stats_prints_the_last_summary_and_the_rollup_as_tables(history):
    as_json = ctl("stats", "--json", "--socket", history.socket)
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == history.call("stats")
    out = ctl("stats", "--socket", history.socket)
    assert (out.returncode, out.stderr) == (0, "")
    lines = squeeze(out.stdout)
    assert lines[:4] == ["Last interval: 2019-02-07T21:11:00Z .. 2019-02-07T21:12:00Z (1m00s)",
                         "hits 608 (10.13/s)", "bytes 73.9 KiB (mean 124 B)", "hosts 5"]
    i = lines.index("section hits share 4xx 5xx")
    assert lines[i + 1:i + 3] == ["/api 408 67.1% 0.0% 9.8%", "/report 200 32.9% 0.0% 10.0%"]
    i = lines.index("status hits share")
    assert lines[i + 1:i + 3] == ["2xx 548 90.1%", "5xx 60 9.9%"]
    assert "GET 608 100.0%" in lines
    # The rollup covers the data it has seen: from the first block, not the whole timeframe.
    assert lines.index("Timeframe: 2019-02-07T21:10:00Z .. 2019-02-07T21:12:00Z (2m00s)") > i
    assert lines.count("hits 620 (5.17/s)") == 1  # the rollup: every parsed line but the one at T0+120


def test_status_and_check_without_alert_exit_0(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--alert-window", "100", "--lateness", "0").start()
    now = int(time.time())
    # One line in ten malformed: at the warning's edge, not past it.
    log.write_text("".join(csv_line(now, i) for i in range(9)) + "garbage\n")
    wait_for(lambda: d.status()["rate"] == 0.09, what="nine hits in the window")

    check = ctl("check", "--socket", d.socket)
    assert (check.returncode, check.stdout, check.stderr) == \
        (0, "LOGMON OK - 0.09 hits/s over 100s <= 10 | rate=0.09;;10 hits=9 malformed=1 malformed_ratio=0.100;0.1\n",
         "")

    out = ctl("status", env={"LOGMOND_SOCKET": d.socket})  # resolved as logmond resolves it
    assert (out.returncode, out.stderr) == (0, "")
    lines = out.stdout.splitlines()
    size = log.stat().st_size
    assert lines[1] == f"file      {log} (csv), read to the end ({size} B)"
    # Whether a 10 s block has completed yet depends on the wall clock: either form is right.
    assert re.fullmatch(r"now       (no complete interval yet|0\.[0-9]{2} hits/s over the last 10s \(to .*Z\))",
                        lines[4]), lines[4]
    del lines[4]
    assert lines[3:6] == ["lines     10 read: 9 parsed, 1 malformed, 0 late",
                          "traffic   0.09 hits/s over 100s (9 hits) <= threshold 10",
                          "alert     quiet"]

    as_json = ctl("status", "--json", "--socket", d.socket)
    assert as_json.returncode == 0 and as_json.stdout.count("\n") == 1
    got, want = json.loads(as_json.stdout), d.status()
    assert got.keys() == want.keys()
    for key in ("version", "protocol", "pid", "started_at", "file", "format", "lines", "parsed", "malformed",
                "late", "rate", "threshold", "window", "alert"):
        assert got[key] == want[key], key


def test_a_firing_alert_exits_2_and_reaches_a_follower_as_it_happens(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--alert-window", "10", "--threshold", "1", "--lateness", "0").start()
    follow = subprocess.Popen([sys.executable, "-m", "logmonctl", "alerts", "--follow", "--socket", d.socket],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = Writer(log, rate=100)  # over the threshold within the first second
    try:
        wait_for(lambda: d.status()["clients"] >= 2, what="the follower to connect")
        assert d.call("alerts")["events"] == []
        writer.start()
        line = read_line(follow)
        event = d.call("alerts")["events"][0]
        assert line == f"[critical high_traffic] {alert_message(event)}\n" and event["type"] == "alert"

        status = ctl("status", "--socket", d.socket)
        assert status.returncode == 2
        assert f"alert     FIRING since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(event['at']))}" \
            in status.stdout
        assert json.loads(ctl("status", "--json", "--socket", d.socket).stdout)["alert"]["active"] is True
        check = ctl("check", "--socket", d.socket)
        m = re.fullmatch(r"LOGMON CRITICAL - (\d+\.\d\d) hits/s over 10s > 1 \| rate=\1;;1 hits=(\d+) malformed=0"
                         r" malformed_ratio=0\.000;0\.1\n",
                         check.stdout)
        assert check.returncode == 2 and m, check.stdout
        assert int(m[2]) == round(float(m[1]) * 10) > 10
    finally:
        writer.stop()
        follow.send_signal(signal.SIGINT)
        code = follow.wait(timeout=10)
        rest, err = follow.stdout.read(), follow.stderr.read()
        follow.stdout.close()
        follow.stderr.close()
    assert (code, err) == (0, "")
    assert all(line.startswith("[critical high_traffic] High traffic") for line in rest.splitlines())


def test_no_daemon_exits_3_naming_the_socket(short_tmp):
    missing = str(short_tmp / "none.sock")
    commands = ("status", "stats", "alerts", "check")
    for command, out in zip(commands, ctls(*[(command, "--socket", missing) for command in commands])):
        assert out.returncode == 3, command
        assert out.stderr == f"logmonctl: no logmond socket at {missing}: " \
                             f"is a logmond running with --socket {missing}?\n"
    assert ctl("check", "--socket", missing).stdout == f"LOGMON UNKNOWN - no logmond socket at {missing}: " \
                                                      f"is a logmond running with --socket {missing}?\n"
    # No --socket and no $LOGMOND_SOCKET: this user's default, and what to do about it.
    env = {k: v for k, v in os.environ.items() if k != "LOGMOND_SOCKET"} | {"XDG_RUNTIME_DIR": str(short_tmp)}
    default = subprocess.run([sys.executable, "-m", "logmonctl", "status"], capture_output=True, text=True,
                             env=env, timeout=30)
    if os.geteuid() == 0:
        hint = "no logmond socket at /run/logmond/logmond.sock: is logmond running? start it with " \
               "`systemctl start logmond`"
    else:
        hint = (f"no logmond socket at {short_tmp}/logmond.sock: is logmond running? the service listens on "
                "/run/logmond/logmond.sock (give --socket or set LOGMOND_SOCKET), or start your own with "
                "`logmond --file LOG`")
    assert (default.returncode, default.stdout, default.stderr) == (3, "", f"logmonctl: {hint}\n")
    stale = str(short_tmp / "stale.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(stale)  # leaves a socket file nobody listens on
    out = ctl("status", env={"LOGMOND_SOCKET": stale})
    assert (out.returncode, out.stdout) == (3, "") and out.stderr.startswith(f"logmonctl: nothing listens on {stale}")


def test_a_refusal_by_the_daemon_is_one_line_and_exit_3(logmond, short_tmp):
    (short_tmp / "access.log").write_text("")
    d = logmond().start()
    clients: list[Client] = []
    try:
        with pytest.raises(ApiError, match="busy"):
            while True:  # fill every slot; the next one is refused with `busy`
                clients.append(Client(d.socket, timeout=5))
                clients[-1].connect()
        out = ctl("status", "--socket", d.socket)
        assert (out.returncode, out.stdout, out.stderr.count("\n")) == (3, "", 1)
        assert out.stderr.startswith(f"logmonctl: logmond on {d.socket} refused: ") and "(busy)" in out.stderr
        check = ctl("check", "--socket", d.socket)
        assert check.returncode == 3 and check.stdout.startswith(f"LOGMON UNKNOWN - logmond on {d.socket} refused")
    finally:
        for c in clients:
            c.close()


def fake_daemon(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    server.settimeout(20)
    return server


def test_ctrl_c_exits_130_quietly_and_a_foreign_protocol_exits_3(short_tmp):
    path = str(short_tmp / "fake.sock")
    with fake_daemon(path) as server:
        proc = subprocess.Popen([sys.executable, "-m", "logmonctl", "status", "--socket", path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        conn, _ = server.accept()  # it said hello and waits: Ctrl-C now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        conn.close()
        assert (proc.returncode, out, err) == (130, "", "")

        proc = subprocess.Popen([sys.executable, "-m", "logmonctl", "status", "--socket", path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        conn, _ = server.accept()
        conn.sendall(msgpack.packb({"id": 1, "ok": True, "result": {"protocol": 99}}))
        out, err = proc.communicate(timeout=10)
        conn.close()
    assert (proc.returncode, out) == (3, "")
    assert err == f"logmonctl: logmond on {path} answered with protocol 99, this client speaks 1: " \
                  "use the logmonctl installed with logmond\n"


def test_bad_usage_exits_64_with_one_line(short_tmp):
    bad = (["status", "--bogus"], ["alerts", "--since", "x"], ["frobnicate"], ["check", "--json"])
    none, version, *outs = ctls((), ("--version",), *[(*args, "--socket", str(short_tmp / "none.sock")) for args in bad])
    assert none.returncode == 64 and none.stdout == "" and "usage: logmonctl" in none.stderr
    for args, out in zip(bad, outs):
        assert out.returncode == 64, args
        assert out.stderr.count("\n") == 1 and re.fullmatch(r"logmonctl: .+ \(see --help\)\n", out.stderr), out.stderr
    assert (version.returncode, version.stdout) == (0, "logmonctl 0.1.0\n")


def test_help_names_the_socket_a_command_would_use(short_tmp):
    env = {k: v for k, v in os.environ.items() if k != "LOGMOND_SOCKET"} | {"XDG_RUNTIME_DIR": str(short_tmp),
                                                                              "COLUMNS": "200"}
    default = "/run/logmond/logmond.sock" if os.geteuid() == 0 else f"{short_tmp}/logmond.sock"
    chosen = f"{short_tmp}/100%.sock"

    def help_line(*args: str, **extra: str) -> str:
        out = subprocess.run([sys.executable, "-m", "logmonctl", *args, "--help"], capture_output=True, text=True,
                             env={**env, **extra}, timeout=30)
        assert (out.returncode, out.stderr) == (0, "")
        return " ".join(next(ln for ln in out.stdout.splitlines() if "--socket PATH " in ln).split())

    assert help_line() == help_line("status") == \
        f"--socket PATH logmond's socket (default: {default}, $LOGMOND_SOCKET overrides it)"
    assert help_line("alerts", LOGMOND_SOCKET=chosen) == \
        f"--socket PATH logmond's socket (default: {chosen}, from $LOGMOND_SOCKET)"
    assert socket_help({}, 0) == "logmond's socket (default: /run/logmond/logmond.sock, $LOGMOND_SOCKET overrides it)"
    assert socket_help({"LOGMOND_SOCKET": "/a%b"}, 1000) == "logmond's socket (default: /a%%b, from $LOGMOND_SOCKET)"


def test_check_warns_when_a_tenth_is_malformed_and_is_unknown_when_no_format_fits(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--alert-window", "100", "--lateness", "0").start()
    now = int(time.time())
    log.write_text("".join(csv_line(now, i) for i in range(8)) + "garbage\n" * 2)
    wait_for(lambda: d.status()["rate"] == 0.08, what="eight hits in the window")
    check = ctl("check", "--socket", d.socket)
    assert check.returncode == 1 and check.stdout.startswith(
        "LOGMON WARNING - 20% of the lines over 100s are malformed (2 of 10, mostly fields); 0.08 hits/s"), check.stdout
    assert ctl("status", "--socket", d.socket).returncode == 1
    assert d.stop() == 0

    services = short_tmp / "services"
    services.write_text("".join(f"service{i}\t{1000 + i}/tcp\t\t# a port\n" for i in range(20)))
    blind = logmond("--from-start", "--state-dir", str(short_tmp / "blind-state"), log=services).start()
    wait_for(lambda: blind.status()["format_error"], what="the daemon to say no format fits")
    st = blind.status()
    assert st["format"] is None and st["lines"] == 0
    check = ctl("check", "--socket", blind.socket)
    assert check.returncode == 3 and check.stdout.startswith(f"LOGMON UNKNOWN - no known format fits {services}: ")
    assert "give the server's format" in check.stdout
    wait_for(lambda: "no known format fits" in blind.stderr(), what="the warning in the daemon's log")
    assert "a line: 'service0\\t1000/tcp\\t\\t# a port'" in blind.stderr()


def test_stats_show_latency_per_section_and_vhosts_when_the_format_has_them():
    timed = {**SUMMARY, "latency": {"count": 40, "p50": 0.012, "p90": 0.2, "p99": 1.5, "max": 2.0},
             "upstream_latency": {"count": 30, "p50": 0.0004, "p90": 0.01, "p99": 0.1, "max": 0.2},
             "section_latency": {"/api": {"count": 30, "p50": 0.01, "p90": 0.1, "p99": 1.2, "max": 2.0}},
             "vhosts": [["shop.example", 30], ["-", 10]]}
    lines = squeeze("\n".join(render.summary_text("Last interval", timed)))
    assert "latency p50 12.0 ms p90 200.0 ms p99 1.50 s max 2.00 s (40 timed)" in lines
    assert "upstream p50 400 µs p90 10.0 ms p99 100.0 ms max 200.0 ms (30 timed)" in lines
    assert "section hits share 4xx 5xx p50 p99" in lines
    assert "/api 30 75.0% 10.0% 0.0% 10.0 ms 1.20 s" in lines and "/report 10 25.0% 0.0% 50.0% - -" in lines
    assert "vhost hits share" in lines and "shop.example 30 75.0%" in lines
    plain = squeeze("\n".join(render.summary_text("Last interval", SUMMARY)))
    assert not any(line.startswith(("latency", "upstream", "vhost")) for line in plain)
    assert "section hits share 4xx 5xx" in plain
