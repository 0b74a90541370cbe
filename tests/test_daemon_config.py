"""Starting a real logmond: the config file and the flags over it, refusals with one clear line and
exit 2, one daemon per socket, stale sockets, and --replay pacing.
"""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import T0, csv_line, saved_state, wait_for
from shared.client import Client, ClientError

# How long a refused start may take; a daemon still running after this has accepted its input.
REFUSAL_TIMEOUT = 4.0


def run_logmond(*args: str | Path, cwd: Path | None = None) -> tuple[int | None, str]:
    """Run logmond to its exit: (exit code, stderr); (None, stderr) if it was still running."""
    proc = subprocess.Popen([sys.executable, "-m", "logmond", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        _, err = proc.communicate(timeout=REFUSAL_TIMEOUT)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, err


def assert_refused(code: int | None, err: str, *needles: str) -> str:
    """Exit 2 with exactly one line on stderr that contains every needle, and no traceback."""
    assert code is not None, f"logmond kept running instead of refusing; stderr: {err!r}"
    assert "Traceback" not in err, f"a traceback instead of one line, ending: {err.strip().splitlines()[-1]}"
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("logmond: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def four_lines(log: Path) -> None:
    now = int(time.time())
    log.write_text("".join(csv_line(now, i) for i in range(4)))


# -- the config file --------------------------------------------------------------------------

def test_config_file_values_are_used(logmond, short_tmp):
    four_lines(short_tmp / "access.log")
    cfg = short_tmp / "logmond.toml"
    cfg.write_text('format = "clf"\nthreshold = 2.5\nalert_window = 42\nlateness = 30\nfrom_start = true\n'
                   'summary_interval = 5\ntimeframe = 60\nhysteresis = 0.25\n')
    d = logmond("--config", str(cfg)).start()
    st = d.wait_lines(4)  # from_start = true: the existing lines are read
    assert (st["threshold"], st["window"], st["format"]) == (2.5, 42, "clf")
    assert (st["lines"], st["parsed"], st["malformed"]) == (4, 0, 4)  # csv lines are not clf


def test_flags_override_the_config_file(logmond, short_tmp):
    four_lines(short_tmp / "access.log")
    cfg = short_tmp / "logmond.toml"
    cfg.write_text('format = "clf"\nthreshold = 2.5\nalert_window = 42\nlateness = 30\nfrom_start = true\n')
    d = logmond("--config", str(cfg), "--format", "csv", "--threshold", "7", "--alert-window", "9").start()
    st = d.wait_lines(4)
    assert (st["threshold"], st["window"], st["format"]) == (7.0, 9, "csv")
    assert (st["lines"], st["parsed"], st["malformed"]) == (4, 4, 0)


def test_config_file_can_name_the_file_socket_and_state_dir(short_tmp):
    log, sock, state = short_tmp / "access.log", short_tmp / "c.sock", short_tmp / "cstate"
    four_lines(log)
    cfg = short_tmp / "logmond.toml"
    cfg.write_text(f'file = "{log}"\nsocket = "{sock}"\nstate_dir = "{state}"\nfrom_start = true\nlateness = 30\n')
    proc = subprocess.Popen([sys.executable, "-m", "logmond", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def counted() -> dict | None:
            assert proc.poll() is None, proc.stderr.read()
            try:
                with Client(str(sock)) as c:
                    st = c.call("status")
            except Exception:
                return None
            return st if st["lines"] == 4 else None
        st = wait_for(counted, 15, "logmond to count the file named in its config")
        assert st["file"]["path"] == str(log)
        wait_for(lambda: saved_state(state), 5, "a checkpoint in the configured state dir")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        proc.stderr.close()


BAD_CONFIGS = {
    "unknown-key": ("bogus = 1", "bogus"),
    "unknown-table": ('[daemon]\nfile = "/x"', "daemon"),
    "window-as-string": ('alert_window = "10"', "alert_window"),
    "threshold-as-bool": ("threshold = true", "threshold"),
    "from-start-as-int": ("from_start = 1", "from_start"),
    "lateness-as-float": ("lateness = 1.5", "lateness"),
    "file-as-int": ("file = 3", "file"),
    "window-zero": ("alert_window = 0", "alert_window"),
    "threshold-negative": ("threshold = -1", "threshold"),
    "hysteresis-one": ("hysteresis = 1.0", "hysteresis"),
    "timeframe-below-interval": ("summary_interval = 10\ntimeframe = 5", "timeframe"),
    "format-unknown": ('format = "xml"', "format"),
    "threshold-nan": ("threshold = nan", "threshold"),
    "threshold-inf": ("threshold = inf", "threshold"),
    "hysteresis-nan": ("hysteresis = nan", "hysteresis"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_with_one_line_naming_the_key(short_tmp, case):
    text, key = BAD_CONFIGS[case]
    (short_tmp / "access.log").write_text("")
    cfg = short_tmp / "bad.toml"
    cfg.write_text(text + "\n")
    code, err = run_logmond("--config", cfg, "--file", short_tmp / "access.log", "--socket", short_tmp / "s.sock",
                            "--state-dir", short_tmp / "state")
    line = assert_refused(code, err, f"'{key}'", str(cfg))
    assert not (short_tmp / "s.sock").exists(), line


def test_invalid_toml_is_refused_with_one_line(short_tmp):
    cfg = short_tmp / "bad.toml"
    cfg.write_text("threshold = = 3\n")
    code, err = run_logmond("--config", cfg, "--file", short_tmp / "access.log", "--socket", short_tmp / "s.sock",
                            "--state-dir", short_tmp / "state")
    assert_refused(code, err, str(cfg), "TOML")


def test_missing_config_file_is_refused(short_tmp):
    code, err = run_logmond("--config", short_tmp / "nope.toml", "--file", short_tmp / "access.log",
                            "--socket", short_tmp / "s.sock", "--state-dir", short_tmp / "state")
    assert_refused(code, err, str(short_tmp / "nope.toml"))


BAD_FLAGS = {
    "window-zero": (["--alert-window", "0"], "--alert-window"),
    "threshold-text": (["--threshold", "lots"], "--threshold"),
    "hysteresis-one": (["--hysteresis", "1"], "--hysteresis"),
    "timeframe-below-interval": (["--timeframe", "5"], "--timeframe"),
    "lateness-negative": (["--lateness", "-1"], "--lateness"),
    "speed-zero": (["--replay", "--speed", "0"], "--speed"),
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_bad_flag_is_refused_with_one_line_naming_it(short_tmp, case):
    flags, name = BAD_FLAGS[case]
    (short_tmp / "access.log").write_text("")
    code, err = run_logmond("--file", short_tmp / "access.log", "--socket", short_tmp / "s.sock",
                            "--state-dir", short_tmp / "state", *flags)
    assert_refused(code, err, name)


HUGE = {
    "config-lateness-beyond-64-bit": ("lateness = 100000000000000000000", [], "lateness"),
    "config-window-of-31710-years": ("alert_window = 1000000000000", [], "alert_window"),
    "flag-lateness-beyond-64-bit": ("", ["--lateness", "100000000000000000000"], "--lateness"),
}


@pytest.mark.parametrize("case", list(HUGE))
def test_huge_value_is_refused_or_works(short_tmp, case):
    """A value no log can need: either refused like any impossible value, or the daemon works with
    it (pushes snapshots, stops cleanly). Accepting it and then failing is neither."""
    text, flags, key = HUGE[case]
    log, sock = short_tmp / "access.log", short_tmp / "s.sock"
    log.write_text("")
    cfg = short_tmp / "huge.toml"
    cfg.write_text(text + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "logmond", "--config", str(cfg), "--file", str(log),
                             "--socket", str(sock), "--state-dir", str(short_tmp / "state"), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is not None or sock.exists(), 10, "logmond to refuse or listen")
        if proc.poll() is not None:
            assert_refused(proc.returncode, proc.stderr.read(), key)
            return
        with open(log, "a") as f:
            f.write(csv_line(int(time.time()), 1))
        with Client(str(sock), timeout=5) as c:
            pushes = c.subscribe(timeout=4)
            try:
                first = next(pushes)
            except ClientError as exc:
                raise AssertionError(f"accepted {key} but pushes no snapshot: {exc}") from None
            assert first["event"] == "snapshot"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err, err
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# -- paths logmond cannot use -----------------------------------------------------------------

def test_startup_errors_name_the_path_and_the_fix(short_tmp):
    (short_tmp / "access.log").write_text("")
    regular = short_tmp / "regular"
    regular.write_text("not a directory\n")
    log, sock, state = short_tmp / "access.log", short_tmp / "s.sock", short_tmp / "state"
    long_dir = short_tmp / ("d" * 100)
    cases = [
        # (what, args, needles in the one line)
        ("log directory missing", dict(file=short_tmp / "nodir" / "access.log"),
         [str(short_tmp / "nodir" / "access.log"), "--file"]),
        ("log directory is a file", dict(file=regular / "access.log"), [str(regular / "access.log"), "--file"]),
        ("socket directory cannot be created", dict(socket=regular / "sub" / "s.sock"),
         [str(regular / "sub" / "s.sock"), "--socket"]),
        ("socket path is a regular file", dict(socket=regular), [str(regular), "--socket"]),
        ("socket path too long", dict(socket=long_dir / "s.sock"), [str(long_dir / "s.sock"), "--socket"]),
        ("state dir is a regular file", dict(state=regular), [str(regular), "--state-dir"]),
        ("state dir under a regular file", dict(state=regular / "state"), [str(regular / "state"), "--state-dir"]),
    ]
    failures = []
    for what, override, needles in cases:
        args = {"file": log, "socket": sock, "state": state, **override}
        code, err = run_logmond("--file", args["file"], "--socket", args["socket"], "--state-dir", args["state"])
        try:
            assert_refused(code, err, *needles)
        except AssertionError as exc:
            failures.append(f"{what}: {exc}")
        assert regular.read_text() == "not a directory\n"
    assert not failures, "\n".join(failures)
    assert not long_dir.exists() or not any(long_dir.iterdir())


def test_missing_log_in_existing_directory_is_not_an_error(logmond, short_tmp):
    d = logmond("--lateness", "30").start()
    assert d.status()["file"]["inode"] is None
    four_lines(short_tmp / "access.log")
    st = d.wait_lines(4)
    assert (st["lines"], st["parsed"]) == (4, 4)


# -- one daemon per socket --------------------------------------------------------------------

def test_second_logmond_on_the_same_socket_is_refused(logmond, short_tmp):
    four_lines(short_tmp / "access.log")
    first = logmond("--from-start", "--lateness", "30").start()
    first.wait_lines(4)
    inode = os.stat(first.socket).st_ino
    code, err = run_logmond("--file", short_tmp / "access.log", "--socket", first.socket,
                            "--state-dir", short_tmp / "other-state")
    line = assert_refused(code, err, "already running")
    assert str(first.proc.pid) in line and first.socket in line
    # The first one was not disturbed.
    assert first.proc.poll() is None
    assert os.stat(first.socket).st_ino == inode
    with open(short_tmp / "access.log", "a") as f:
        f.write(csv_line(int(time.time()), 9))
    st = first.wait_lines(5)
    assert (st["lines"], st["pid"]) == (5, first.proc.pid)
    assert first.stop() == 0


def test_stale_socket_is_replaced(logmond, short_tmp):
    four_lines(short_tmp / "access.log")
    d = logmond("--from-start", "--lateness", "30")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(d.socket)
    stale.close()
    assert stat.S_ISSOCK(os.lstat(d.socket).st_mode)
    d.start()
    assert d.wait_lines(4)["lines"] == 4
    assert "stale" in d.stderr()


def test_socket_left_by_a_killed_logmond_is_replaced(logmond, short_tmp):
    four_lines(short_tmp / "access.log")
    d = logmond("--from-start", "--lateness", "30").start()
    d.wait_lines(4)
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    assert os.path.exists(d.socket)  # left behind, with its lock file
    d.start()
    assert d.wait_lines(4)["lines"] == 4
    assert d.stop() == 0
    assert not os.path.exists(d.socket) and not os.path.exists(d.socket + ".lock")


# -- --replay ---------------------------------------------------------------------------------

def test_replay_paces_the_file_by_its_own_timestamps(logmond, short_tmp):
    log = short_tmp / "access.log"
    # 60 s of log time, 5 hits a second: 3 s of wall time at --speed 20.
    log.write_text("".join(csv_line(T0 + s, s * 5 + i) for s in range(60) for i in range(5)))
    d = logmond("--replay", "--speed", "20").start()
    samples: list[tuple[float, int, int | None]] = []

    def sample() -> bool:
        st = d.status()
        samples.append((time.monotonic(), st["lines"], st["clock"]))
        return st["lines"] >= 300

    wait_for(sample, 20, "the replay to finish")
    first_t, first_lines, _ = samples[0]
    assert first_lines < 150, f"half the file was there at once: {samples[:3]}"
    done_t = next(t for t, n, _ in samples if n == 300)
    assert 1.0 < done_t - first_t < 8, f"paced over {done_t - first_t:.1f}s, not ~3s"
    counts = [n for _, n, _ in samples]
    assert counts == sorted(counts)
    assert len({n for n in counts if 0 < n < 300}) >= 5, "lines came in a few lumps, not paced"
    clocks = [c for _, _, c in samples if c is not None]
    assert clocks == sorted(clocks) and clocks[0] < T0 + 30 and clocks[-1] >= T0 + 59
    # Lines counted track the clock: every line up to a few log seconds (one release step of
    # 0.1 s at --speed 20 is 2 s) before the clock's second is in.
    for _, n, c in samples:
        if c is not None and c < T0 + 59:
            assert n >= (c - T0 - 3) * 5, f"{n} lines at clock T0+{c - T0}"
    st = d.status()
    assert (st["lines"], st["parsed"], st["malformed"], st["late"]) == (300, 300, 0, 0)
    assert st["file"]["path"] == str(log)


def test_fast_replay_finds_no_line_late(logmond, short_tmp):
    """A file in order, replayed at its own pace, has no late line whatever the speed: replaying
    must give the same statistics and alerts as living through the log."""
    log = short_tmp / "access.log"
    log.write_text("".join(csv_line(T0 + s, s) for s in range(3000)))  # 50 min of log, 1 hit/s
    d = logmond("--replay", "--speed", "1000").start()  # ~3 s of wall time, default --lateness 5
    st = d.wait_lines(3000)
    assert (st["lines"], st["parsed"], st["malformed"], st["late"]) == (3000, 3000, 0, 0)
