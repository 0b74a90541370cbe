"""`logmond --once` as a user runs it: a real process, real files, stdin, pipes and bad flags."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

T0 = 1_549_573_800
LOGMOND = [sys.executable, "-m", "logmond"]


def traffic() -> str:
    """15 quiet seconds, 20 s at 20 hits/s, then quiet again: one alert, one recovery (W=10, T=10)."""
    lines = []
    for s in range(60):
        n = 20 if 15 <= s < 35 else 2
        for i in range(n):
            section = "/api/user" if i % 3 else "/report"
            status = 500 if i == 7 else 200
            lines.append(f'"10.0.0.{i % 4}","-","apache",{T0 + s},"GET {section} HTTP/1.0",{status},{100 + i}')
    return "\n".join(lines) + "\n"


def once(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LOGMOND, "--once", *args], input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "access.log"
    path.write_text('"remotehost","rfc931","authuser","date","request","status","bytes"\n' + traffic())
    return path


def test_json_lines_schema_and_order(log: Path):
    out = once("--file", str(log), "--json", "--alert-window", "10", "--threshold", "10")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("alert") == 1 and kinds.count("recover") == 1 and kinds[-1] == "totals"
    alert = next(e for e in events if e["type"] == "alert")
    # 10 s window over (t-10, t]: first above 100 hits at T0+19 (5x2 + 5x20), first back at or
    # below it at T0+40 (4x20 + 6x2).
    assert alert == {"id": 1, "type": "alert", "at": T0 + 19, "hits": 110, "rate": 11.0, "threshold": 10.0,
                     "window": 10, "rule": "high_traffic", "severity": "critical", "metric": "rate", "value": 11.0}
    recover = next(e for e in events if e["type"] == "recover")
    assert recover["at"] == T0 + 40 and recover["hits"] == 92 and recover["id"] == 2
    summary = events[0]
    assert set(summary) >= {"type", "start", "end", "hits", "rate", "sections", "status", "methods", "bytes", "hosts"}
    assert summary["sections"] == [["/report", 10], ["/api", 10]] and summary["hosts"] == 2
    totals = events[-1]
    assert totals == {"type": "totals", "format": "csv", "format_spec": None, "format_error": None, "lines": 480,
                      "parsed": 480, "malformed": 0, "late": 0, "malformed_by_reason": {}, "malformed_samples": []}
    assert sum(e["hits"] for e in events if e["type"] == "summary") == 480


def test_human_mode_prints_exact_alert_lines_and_detected_format(log: Path):
    out = once("--file", str(log), "--alert-window", "10")
    assert out.returncode == 0
    assert ("High traffic generated an alert - hits = 110, triggered at 2019-02-07T21:10:19Z (11.00/s over 10s)"
            in out.stdout.splitlines())
    assert any(line.startswith("High traffic alert recovered - hits = 92, recovered at 2019-02-07T21:10:40Z")
               for line in out.stdout.splitlines())
    assert "format csv (auto-detected)" in out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 100


def test_stdin_gives_the_same_events(log: Path):
    from_file = once("--file", str(log), "--json")
    from_stdin = once("--file", "-", "--json", stdin=log.read_text())
    assert from_stdin.returncode == 0
    assert from_stdin.stdout == from_file.stdout


def test_malformed_lines_are_counted_not_fatal(tmp_path: Path):
    path = tmp_path / "bad.log"
    path.write_bytes(traffic().encode() + b"garbage\n\xff\xfe\n" + b'"a","-","-",12x,"GET / HTTP/1.0",200,1\n\n')
    out = once("--file", str(path), "--json", "--format", "csv")
    assert out.returncode == 0
    totals = json.loads(out.stdout.splitlines()[-1])
    assert totals["malformed"] == 3 and totals["parsed"] == 480
    assert totals["malformed_by_reason"] == {"fields": 1, "encoding": 1, "timestamp": 1}


@pytest.mark.parametrize("args, words", [
    (["--file", "/nonexistent/access.log"], "cannot read /nonexistent/access.log"),
    (["--file", "LOG", "--threshold", "-1"], "threshold"),
    (["--file", "LOG", "--alert-window", "0"], "window"),
    (["--file", "LOG", "--hysteresis", "1"], "hysteresis"),
    (["--file", "LOG", "--threshold", "ten"], "not a number"),
    (["--file", "LOG", "--format", "xml"], "--format is not a preset"),
    (["--file", "LOG", "--bogus"], "unrecognized arguments"),
    ([], "--file"),
])
def test_bad_usage_is_one_line_and_exit_2(log: Path, args: list[str], words: str):
    out = once(*[str(log) if a == "LOG" else a for a in args])
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and words in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_a_directory_is_refused_cleanly(tmp_path: Path):
    out = once("--file", str(tmp_path))
    assert out.returncode == 2 and out.stderr.startswith("logmond: cannot read") and "Traceback" not in out.stderr


def test_closed_pipe_is_quiet():
    # Far more output than a pipe buffer holds, so logmond really writes into a closed pipe.
    log = "".join(f'"10.0.0.1","-","-",{T0 + s},"GET /a HTTP/1.0",200,1\n' for s in range(5000))
    pipeline = subprocess.run(
        f"{sys.executable} -m logmond --once --json --file - --summary-interval 1 | head -1",
        shell=True, input=log, capture_output=True, text=True, timeout=60)
    assert pipeline.stdout.count("\n") == 1 and json.loads(pipeline.stdout)["type"] == "summary"
    assert pipeline.stderr == ""


def test_several_files_are_one_stream_and_gzip_is_read_by_its_magic(tmp_path: Path):
    """A rotated set, oldest first: access.log.2.gz (named without .gz too), access.log.1, access.log."""
    lines = traffic().splitlines(keepends=True)
    third = len(lines) // 3
    oldest, middle, newest = tmp_path / "access.log.2", tmp_path / "access.log.1", tmp_path / "access.log"
    oldest.write_bytes(gzip.compress("".join(lines[:third]).encode()))
    # The middle file's last line has no newline: the end of a file ends its line.
    middle.write_text("".join(lines[third:2 * third]).rstrip("\n"))
    newest.write_text("".join(lines[2 * third:]))
    whole = tmp_path / "whole.log"
    whole.write_text("".join(lines))
    together = once("--json", "--file", str(oldest), "--file", str(middle), str(newest))
    assert together.returncode == 0, together.stderr
    assert together.stdout == once("--json", "--file", str(whole)).stdout
    assert json.loads(together.stdout.splitlines()[-1])["lines"] == len(lines)
    piped = subprocess.run([*LOGMOND, "--once", "--json", "--file", "-"], input=oldest.read_bytes(),
                           capture_output=True, timeout=60)
    assert json.loads(piped.stdout.splitlines()[-1])["lines"] == third


def test_a_broken_gzip_file_is_one_line_and_exit_2(tmp_path: Path):
    path = tmp_path / "access.log.1.gz"
    path.write_bytes(gzip.compress(traffic().encode())[:200])
    out = once("--file", str(path))
    assert out.returncode == 2 and out.stderr.splitlines()[-1].startswith(f"logmond: cannot read {path}")
    assert "Traceback" not in out.stderr


def test_the_daemon_follows_one_file(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "logmond", "--file", "a.log", "--file", "b.log"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr == \
        "logmond: the daemon follows one file: give --file once (several work with --once)\n"


def test_a_file_in_no_known_format_exits_1_and_says_what_to_do(tmp_path: Path):
    services = tmp_path / "services"
    services.write_text("".join(f"service{i}\t{1000 + i}/tcp\t\t# a port\n" for i in range(30)))
    for mode in ([], ["--json"]):
        out = once("--file", str(services), *mode)
        assert out.returncode == 1, out.stderr
        last = out.stderr.splitlines()[-1]
        assert last.startswith(f"logmond: no known format fits {services} (tried csv, vcombined, combined, common")
        assert "first line: 'service0\\t1000/tcp\\t\\t# a port'" in last and last.endswith("LogFormat string)")
    totals = json.loads(once("--file", str(services), "--json").stdout.splitlines()[-1])
    assert (totals["format"], totals["lines"], totals["malformed_by_reason"]) == (None, 30, {"format": 30})


def test_more_than_a_tenth_malformed_is_a_warning_in_json_mode_too(tmp_path: Path):
    path = tmp_path / "access.log"
    path.write_text(traffic() + "garbage line\n" * 60)
    out = once("--file", str(path), "--json", "--format", "csv")
    assert out.returncode == 0
    assert out.stderr.splitlines()[-1] == \
        "logmond: warning: 11% of the lines are malformed, mostly fields, e.g. 'garbage line'"
    path.write_text(traffic() + "garbage line\n" * 48)  # exactly a tenth: no warning
    assert "warning" not in once("--file", str(path), "--json", "--format", "csv").stderr
