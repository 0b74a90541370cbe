"""State benchmark (issue 10, "Write volume"): what a live logmond writes to its state directory.

The checkpoint re-packs and fsyncs every closed block of the timeframe each second, whether it
changed or not; this measures what that costs a real daemon on busy traffic. A writer thread
appends combined-format lines at --rate (2,000/s) to a log in a temporary directory, one
O_APPEND write every 100 ms, each line dated with the current wall second, so that the log's own
time advances with real time and the daemon closes seconds and blocks as it would in production.
Every 5 s of traffic names each of 10,000 sections (/s0/x ... /s9999/x) and 10,000 hosts once.
A real `logmond --format combined` follows it at the default settings, and again with
`--timeframe 86400`, for --seconds each. Bytes written come from /proc/PID/io `write_bytes`
(what the daemon sent to the block layer: the checkpoint and its fsyncs; it writes nothing else),
sampled once the daemon answers on its socket and again when the writer stops; the
once-a-second work's median, p99 and max come from the daemon's own `status` (`tick`), read
once at the end, as are the lines it read.
The checkpoint grows as blocks close (one per 10 s until the timeframe is full), so the figure
depends on the run's length: 120 s is the issue's.
It is a report, not a test: it exits 0 whatever the figures, 1 only if logmond fails.

    .venv/bin/python bench/state.py [--seconds 120] [--rate 2000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from random import Random

from ingest import LOGMOND  # bench/ is on sys.path when run as a script
from live import Daemon, DaemonFailed, temp_root
from shared.client import ClientError

# The runs: None is the default timeframe (no flag given), then the longest one.
TIMEFRAMES = (None, 86_400)
DEFAULT_TIMEFRAME = 600  # logmond's default, for the table
# Issue 10's targets: average bytes written per second to the state dir, and the tick's p99.
TARGET_KIB_S = 64
TARGET_TICK_P99_MS = 20
# Distinct sections and hosts: each one appears once in every DISTINCT lines of traffic.
DISTINCT = 10_000
WRITE_PERIOD = 0.100  # seconds between the writer's appends
# Seconds between the writer's stop and the final status, for the daemon to read the last append.
END_GRACE = 0.5
DATE = b"@DATE@"  # the timestamp placeholder in the pre-formatted batches


class Writer(threading.Thread):
    """Appends `rate` lines/s, one batch every WRITE_PERIOD, until stop(); a late slot writes the
    lines it missed, so that `lines` stays rate x elapsed. A failure is kept in `error`."""

    def __init__(self, path: Path, rate: int) -> None:
        super().__init__(name="writer", daemon=True)
        self.path = path
        self.per_batch = max(1, round(rate * WRITE_PERIOD))
        self.period = self.per_batch / rate
        self.templates = batch_templates(self.per_batch)
        self.lines = 0
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join()

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            try:
                self._write(fd)
            finally:
                os.close(fd)
        except BaseException as exc:
            self.error = exc

    def _write(self, fd: int) -> None:
        k, n, slot = 0, len(self.templates), time.perf_counter()
        while not self._stopping.wait(max(0.0, slot - time.perf_counter())):
            date = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()).encode()
            due = 1 + max(0, int((time.perf_counter() - slot) / self.period))
            data = b"".join(self.templates[(k + i) % n] for i in range(due)).replace(DATE, date)
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {self.path}")
            k, slot = k + due, slot + due * self.period
            self.lines += data.count(b"\n")


def batch_templates(per_batch: int) -> list[bytes]:
    """DISTINCT combined lines, section k with its own host (a fixed shuffle pairs them) and a status
    mix, cut into batches with DATE for the timestamp, so the writer does one replace per append."""
    hosts = [f"10.{k >> 16}.{k >> 8 & 255}.{k & 255}" for k in range(1, DISTINCT + 1)]
    Random(1).shuffle(hosts)
    lines = [f'{hosts[k]} - - [{DATE.decode()}] "GET /s{k}/x HTTP/1.1" '
             f'{404 if k % 25 == 0 else 500 if k % 100 == 7 else 200} {200 + k * 37 % 5000} "-" "bench-state/1"\n'
             for k in range(DISTINCT)]
    lines *= -(-per_batch // DISTINCT)  # a batch larger than the pool repeats it
    return ["".join(lines[i:i + per_batch]).encode() for i in range(0, DISTINCT, per_batch)]


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise DaemonFailed(f"/proc/{pid}/io has no write_bytes (a kernel without task I/O accounting?)")


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(timeframe: int | None, rate: int, seconds: float) -> dict:
    """One daemon on fresh traffic for `seconds`: its figures as the table prints them."""
    root = temp_root()
    try:
        log, sock, state = root / "access.log", str(root / "s.sock"), root / "state"
        log.touch()
        writer = Writer(log, rate)  # formats its batches before the daemon starts
        argv = [LOGMOND, "--file", str(log), "--socket", sock, "--state-dir", str(state), "--format", "combined"]
        if timeframe is not None:
            argv += ["--timeframe", str(timeframe)]
        daemon = Daemon(argv, root)
        try:
            r = measure(daemon, writer, sock, seconds)
        except BaseException:
            try:
                daemon.kill()  # first: whatever else fails here, no daemon is left behind
            finally:
                if writer.is_alive():
                    writer.stop()
            raise
        daemon.stop()
        # After the daemon's last checkpoint, so that no half-written temporary file is counted.
        r["size"] = dir_bytes(state)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    r["timeframe"] = timeframe or DEFAULT_TIMEFRAME
    return r


def measure(daemon: Daemon, writer: Writer, sock: str, seconds: float) -> dict:
    """Start the writer once the daemon answers; after `seconds`, its write rate, ticks and lines."""
    try:
        # A fresh connection at each end: the daemon closes one idle for a minute.
        with daemon.connect(sock) as client:
            client.call("status")
        io0, t0 = write_bytes(daemon.proc.pid), time.perf_counter()
        writer.start()
        while time.perf_counter() - t0 < seconds and writer.is_alive():
            time.sleep(min(1.0, max(0.0, seconds - (time.perf_counter() - t0))))
            daemon.check_alive()
        writer.stop()
        io1, t1 = write_bytes(daemon.proc.pid), time.perf_counter()
        if writer.error is not None:
            raise writer.error
        time.sleep(END_GRACE)
        with daemon.connect(sock) as client:
            st = client.call("status")
    except ClientError as exc:
        daemon.check_alive()
        raise DaemonFailed(f"status failed: {exc}") from exc
    return {"kib_s": (io1 - io0) / 1024 / (t1 - t0), "tick": st["tick"], "read": st["lines"],
            "written": writer.lines, "written_rate": writer.lines / (t1 - t0)}


def size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def missed(r: dict) -> list[str]:
    why = []
    if r["kib_s"] > TARGET_KIB_S:
        why.append(f"{r['kib_s']:.1f} KiB/s > {TARGET_KIB_S}")
    p99 = r["tick"]["p99_ms"]
    if p99 is None:
        why.append("no tick measured")
    elif p99 > TARGET_TICK_P99_MS:
        why.append(f"tick p99 {p99:.1f} ms > {TARGET_TICK_P99_MS}")
    return why


def one_line(exc: BaseException) -> str:
    """The failure as one line: its first line and, when it goes on (a daemon's stderr), its last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [exc.__class__.__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0, help="length of each run (default 120)")
    p.add_argument("--rate", type=int, default=2_000, help="lines/s appended (default 2,000)")
    args = p.parse_args()
    if args.seconds <= 0 or args.rate < 1:
        p.error("--seconds and --rate must be positive")

    results = []
    try:
        for timeframe in TIMEFRAMES:
            print(f"running logmond at timeframe {timeframe or DEFAULT_TIMEFRAME} s for {args.seconds:g} s ...",
                  file=sys.stderr, flush=True)
            results.append(run(timeframe, args.rate, args.seconds))
    except (DaemonFailed, OSError) as exc:
        print(f"bench: logmond failed: {one_line(exc)}", file=sys.stderr)
        return 1

    print(f"{args.rate:,} lines/s of combined, {DISTINCT:,} sections and {DISTINCT:,} hosts, {args.seconds:g} s "
          f"per run, default settings otherwise; ticks over the whole run (status `tick`)")
    print(f"{'timeframe':>10}{'KiB/s written':>15}{'tick p50':>10}{'p99':>9}{'max':>9}{'ticks':>7}"
          f"{'state dir':>12}{'lines read / written':>30}  targets")
    for r in results:
        t = r["tick"]
        ms = [f"{t[key]:.1f}" if t[key] is not None else "-" for key in ("p50_ms", "p99_ms", "max_ms")]
        lines = f"{r['read']:,} / {r['written']:,} ({100 * r['read'] / max(1, r['written']):.1f} %)"
        verdict = "met" if not missed(r) else "MISSED"
        print(f"{r['timeframe']:>8} s{r['kib_s']:>15.1f}{ms[0]:>7} ms{ms[1]:>6} ms{ms[2]:>6} ms{t['count']:>7}"
              f"{size_text(r['size']):>12}{lines:>30}  {verdict}")
    rates = ", ".join(f"{r['written_rate']:,.0f}" for r in results)
    print(f"lines/s written: {rates}; targets: <= {TARGET_KIB_S} KiB/s written, "
          f"tick p99 <= {TARGET_TICK_P99_MS} ms, at each timeframe")
    why = [f"timeframe {r['timeframe']}: {', '.join(missed(r))}" for r in results if missed(r)]
    print("targets: met" if not why else f"targets: MISSED ({'; '.join(why)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
