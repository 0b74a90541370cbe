"""Live benchmark: how far behind a growing log the daemon runs, and how fast it catches up.

1. Live lag. logmond follows an empty CSV log while a writer thread appends `--rate` lines/s
   for `--seconds` seconds, in one os.write (O_APPEND) every 10 ms, timestamped with the current
   wall second. A prober thread asks `status` every 20 ms on one connection; a batch's lag is the
   time from its write() returning to the first `status` reply whose `lines` covers it. The probe
   interval and the status round trip are part of that figure (resolution ~20 ms). The daemon's
   CPU comes from /proc/<pid>/stat over the run, its peak RSS from VmHWM (and `status` samples).
2. Catch-up. `logmond --from-start` with a fresh state dir on the deterministic --backlog-line
   CSV log of bench/data (shared with bench/ingest.py), timed from spawn until `status` counts
   every line (polled every 50 ms), against `logmond --once --json` on the same file (os.wait4).
   Runs are interleaved and the best of --repeat kept; the target is on wall time, the CPU-time
   ratio is printed beside it because this shared machine's stolen time inflates wall time.

It is a report, not a test: it exits 0 whatever the figures, non-zero only if logmond fails.

    .venv/bin/python bench/live.py [--rate 50000] [--seconds 30] [--backlog 2000000] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path

from ingest import LOGMOND, log_file, measure  # bench/ is on sys.path when run as a script
from logmond.tools.loggen import format_line, generate
from shared.client import Client, ClientError

TARGET_LAG_P99_MS, TARGET_CATCHUP_RATIO, TARGET_RSS_MIB = 250, 0.8, 80
WRITE_PERIOD = 0.010  # seconds between batches
PROBE_PERIOD = 0.020  # seconds between live status probes
CATCHUP_POLL = 0.050  # seconds between catch-up status polls
MAX_BEHIND = 0.100  # a writer this late drops the missed slots instead of bursting
POOL_LINES = 200_000  # distinct generated lines the writer cycles through
DRAIN_TIMEOUT = 30.0  # seconds after the last write for the daemon to count everything
START_TIMEOUT = 15.0
SENTINEL = b"1111111111"  # timestamp placeholder in the pre-formatted batches
CLK_TCK = os.sysconf("SC_CLK_TCK")


class DaemonFailed(Exception):
    """logmond exited, hung or misbehaved: the one case this report exits non-zero."""


class Daemon:
    """One logmond process; `spawned` is its perf_counter() start time."""

    def __init__(self, argv: list[str], root: Path) -> None:
        self.argv = argv
        self.stderr_path = root / "stderr.txt"
        with open(self.stderr_path, "wb") as err:
            self.spawned = time.perf_counter()
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise DaemonFailed(f"{' '.join(self.argv)} exited with {self.proc.returncode}: {self.stderr()}")

    def connect(self, socket: str, timeout: float = START_TIMEOUT, poll: float = 0.02) -> Client | None:
        """A connected Client, or None if the socket does not answer yet and `timeout` is 0."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            client = Client(socket, timeout=10, name="bench")
            try:
                client.connect()
                return client
            except ClientError:
                if time.monotonic() >= deadline:
                    if timeout == 0:
                        return None
                    raise DaemonFailed(f"logmond did not answer on {socket} within {timeout}s: {self.stderr()}")
            time.sleep(poll)

    def cpu_seconds(self) -> float:
        """utime + stime so far, from /proc/<pid>/stat (fields 14 and 15, after the comm)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def peak_rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        """SIGTERM and wait; DaemonFailed if it does not stop cleanly."""
        if not self.kill():
            raise DaemonFailed(f"logmond did not stop within 30s of SIGTERM: {self.stderr()}")
        if self.proc.returncode != 0:
            raise DaemonFailed(f"{' '.join(self.argv)} exited with {self.proc.returncode}: {self.stderr()}")

    def kill(self) -> bool:
        """SIGTERM, then SIGKILL after 30 s; False if it took the SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return False
        return True

    def stderr(self) -> str:
        text = self.stderr_path.read_text(errors="replace").strip() if self.stderr_path.exists() else ""
        return text[-2000:] or "(no stderr)"


def run_daemon(args: list[str], root: Path, body):
    """Start logmond with `args`, run body(daemon), stop it (cleanly, or kill it on error)."""
    daemon = Daemon([LOGMOND, *args], root)
    try:
        result = body(daemon)
    except BaseException:
        daemon.kill()
        raise
    daemon.stop()
    return result


def temp_root() -> Path:
    """A short directory: Unix socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="lm", dir="/tmp"))


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# -- 1. live lag --------------------------------------------------------------------------------
def batch_templates(per_batch: int) -> list[bytes]:
    """Pre-formatted batches of deterministic csv lines with SENTINEL for the timestamp, so the
    writer only does one bytes.replace per batch."""
    count = max(1, min(POOL_LINES // per_batch, 1000))
    hits = list(generate(count * per_batch, seed=1))
    templates = []
    for i in range(count):
        lines = (format_line(h._replace(ts=int(SENTINEL)), "csv") for h in hits[i * per_batch:(i + 1) * per_batch])
        block = ("\n".join(lines) + "\n").encode()
        assert block.count(SENTINEL) == per_batch, "sentinel collides with generated text"
        templates.append(block)
    return templates


class Recorded(threading.Thread):
    """A thread whose failure is kept in `error` for the main thread to report."""

    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        raise NotImplementedError


class Writer(Recorded):
    """Appends one batch every `period` seconds for `seconds`; records (write returned, cumulative lines)."""

    def __init__(self, path: Path, rate: int, seconds: float) -> None:
        super().__init__(name="writer", daemon=True)
        self.per_batch = max(1, round(rate * WRITE_PERIOD))
        self.period = self.per_batch / rate
        self.templates = batch_templates(self.per_batch)
        self.path, self.seconds = path, seconds
        self.batches: list[tuple[float, int]] = []
        self.dropped = 0
        self.started = self.finished = 0.0

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            total, k, n = 0, 0, len(self.templates)
            self.started = next_slot = time.perf_counter()
            end = self.started + self.seconds
            while next_slot < end:
                delay = next_slot - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -MAX_BEHIND:
                    missed = int(-delay / self.period)
                    self.dropped += missed
                    next_slot += missed * self.period
                data = self.templates[k % n].replace(SENTINEL, str(int(time.time())).encode())
                written = os.write(fd, data)
                done = time.perf_counter()
                if written != len(data):
                    raise OSError(f"short write: {written} of {len(data)} bytes")
                total += self.per_batch
                self.batches.append((done, total))
                k += 1
                next_slot += self.period
            self.finished = time.perf_counter()
        finally:
            os.close(fd)


class Prober(Recorded):
    """Asks `status` every PROBE_PERIOD until the writer is done and every line is counted."""

    def __init__(self, client: Client, writer: Writer) -> None:
        super().__init__(name="prober", daemon=True)
        self.client, self.writer = client, writer
        self.probes: list[tuple[float, int]] = []  # (reply received, lines)
        self.round_trips: list[float] = []
        self.rss_peak = 0
        self.drained = False

    def _run(self) -> None:
        next_probe = time.perf_counter()
        while True:
            sent = time.perf_counter()
            st = self.client.call("status")
            received = time.perf_counter()
            self.probes.append((received, st["lines"]))
            self.round_trips.append(received - sent)
            self.rss_peak = max(self.rss_peak, st["process"]["rss_bytes"])
            w = self.writer
            if not w.is_alive() and w.finished:
                if w.batches and st["lines"] >= w.batches[-1][1]:
                    self.drained = True
                    return
                if received > w.finished + DRAIN_TIMEOUT:
                    return
            if not w.is_alive() and not w.finished:
                return  # the writer failed
            next_probe += PROBE_PERIOD
            time.sleep(max(0.0, next_probe - time.perf_counter()))


def live(rate: int, seconds: float) -> dict:
    root = temp_root()
    try:
        log = root / "access.csv"
        log.touch()
        sock = str(root / "s.sock")
        writer = Writer(log, rate, seconds)  # formats its pool before the daemon starts

        def body(daemon: Daemon) -> dict:
            client = daemon.connect(sock)
            with client:
                prober = Prober(client, writer)
                cpu0, t0 = daemon.cpu_seconds(), time.perf_counter()
                writer.start()
                prober.start()
                writer.join()
                prober.join()
                cpu1, t1 = daemon.cpu_seconds(), time.perf_counter()
            if writer.error is not None:
                raise writer.error
            if prober.error is not None:
                daemon.check_alive()
                raise DaemonFailed(f"status failed: {prober.error}")
            daemon.check_alive()
            if not prober.drained:
                last = prober.probes[-1][1] if prober.probes else 0
                raise DaemonFailed(f"logmond counted {last:,} of {writer.batches[-1][1]:,} lines "
                                   f"{DRAIN_TIMEOUT:.0f}s after the last write: {daemon.stderr()}")
            return {"cpu": cpu1 - cpu0, "wall": t1 - t0, "hwm": daemon.peak_rss_mib(), "prober": prober}

        r = run_daemon(["--file", str(log), "--socket", sock, "--state-dir", str(root / "state"),
                        "--lateness", "30"], root, body)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    prober: Prober = r["prober"]
    seen_at = [t for t, _ in prober.probes]
    seen_lines = [n for _, n in prober.probes]  # non-decreasing
    lags = sorted(max(0.0, seen_at[bisect_left(seen_lines, total)] - wrote) for wrote, total in writer.batches)
    total = writer.batches[-1][1]
    rtt = sorted(prober.round_trips)
    return {
        "per_batch": writer.per_batch, "period": writer.period, "batches": len(writer.batches),
        "lines": total, "dropped": writer.dropped,
        "written_rate": total / (writer.batches[-1][0] - writer.started + writer.period),
        "lag": lags, "rtt": rtt, "probes": len(prober.probes),
        "cpu_pct": 100 * r["cpu"] / r["wall"], "us_per_line": 1e6 * r["cpu"] / total,
        "rss": max(r["hwm"], prober.rss_peak / 2**20),
    }


# -- 2. catch-up --------------------------------------------------------------------------------
def catch_up(path: Path, lines: int) -> tuple[float, float, float]:
    """(wall seconds from spawn to all lines counted, daemon CPU seconds by then, peak RSS MiB)."""
    root = temp_root()
    try:
        sock = str(root / "s.sock")
        timeout = max(120.0, lines / 10_000)

        def body(daemon: Daemon) -> tuple[float, float, float]:
            client = None
            try:
                while True:
                    if client is None:
                        client = daemon.connect(sock, timeout=0)
                    if client is not None:
                        counted = client.call("status")["lines"]
                        if counted >= lines:
                            wall = time.perf_counter() - daemon.spawned
                            return wall, daemon.cpu_seconds(), daemon.peak_rss_mib()
                    elapsed = time.perf_counter() - daemon.spawned
                    if elapsed > timeout:
                        raise DaemonFailed(f"logmond --from-start counted {counted if client else 0:,} of "
                                           f"{lines:,} lines in {timeout:.0f}s: {daemon.stderr()}")
                    time.sleep(CATCHUP_POLL)
            except ClientError as exc:
                daemon.check_alive()
                raise DaemonFailed(f"status failed during catch-up: {exc}") from exc
            finally:
                if client is not None:
                    client.close()

        return run_daemon(["--file", str(path), "--socket", sock, "--state-dir", str(root / "state"),
                           "--from-start"], root, body)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=50_000, help="lines/s appended in the live run (default 50,000)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the live run (default 30)")
    p.add_argument("--backlog", type=int, default=2_000_000, help="lines of the catch-up log (default 2,000,000)")
    p.add_argument("--repeat", type=int, default=2, help="catch-up runs of each, best kept (default 2)")
    args = p.parse_args()
    if args.rate < 1 or args.seconds <= 0 or args.backlog < 1 or args.repeat < 1:
        p.error("--rate, --seconds, --backlog and --repeat must be positive")

    try:
        lv = live(args.rate, args.seconds)
        backlog = log_file(args.backlog, "csv")
        best = {"daemon": [float("inf")] * 2, "once": [float("inf")] * 2}
        rss = {"daemon": 0.0, "once": 0.0}
        for _ in range(args.repeat):
            wall, cpu, mib = catch_up(backlog, args.backlog)
            once_cpu, once_wall, once_mib = measure([LOGMOND, "--once", "--json", "--file", str(backlog)])
            for name, w, c, m in (("daemon", wall, cpu, mib), ("once", once_wall, once_cpu, once_mib)):
                best[name] = [min(best[name][0], w), min(best[name][1], c)]
                rss[name] = max(rss[name], m)
    except DaemonFailed as exc:
        print(f"bench: logmond failed: {exc}", file=sys.stderr)
        return 1

    lag = lv["lag"]
    lag_p99 = pct(lag, 0.99) * 1000
    print(f"live: {args.rate:,} lines/s for {args.seconds:g} s, {lv['per_batch']:,} lines per write every "
          f"{lv['period'] * 1000:.1f} ms, status probed every {PROBE_PERIOD * 1000:.0f} ms")
    print(f"  lines/s written        {lv['written_rate']:>10,.0f}  ({lv['lines']:,} lines in {lv['batches']:,} writes, "
          f"{lv['dropped']} slots dropped)")
    print(f"  lag p50 / p99 / max    {pct(lag, 0.5) * 1000:>6.1f} / {lag_p99:.1f} / {lag[-1] * 1000:.1f} ms  "
          f"(resolution ~{PROBE_PERIOD * 1000:.0f} ms: probe interval + status round trip)")
    print(f"  status round trip      {pct(lv['rtt'], 0.5) * 1000:>6.2f} / {pct(lv['rtt'], 0.99) * 1000:.2f} / "
          f"{lv['rtt'][-1] * 1000:.2f} ms p50 / p99 / max over {lv['probes']:,} probes")
    print(f"  daemon CPU             {lv['cpu_pct']:>6.1f} % of one core  ({lv['us_per_line']:.2f} us/line, probes included)")
    print(f"  daemon peak RSS        {lv['rss']:>6.1f} MiB")
    ratio = best["once"][0] / best["daemon"][0]
    cpu_ratio = best["once"][1] / best["daemon"][1]
    print(f"catch-up: {args.backlog:,}-line csv (bench/data), best of {args.repeat}")
    print(f"  {'':26}{'wall s':>8}{'lines/s (wall)':>16}{'lines/s (CPU)':>15}{'peak RSS':>12}")
    for label, name in (("daemon --from-start", "daemon"), ("--once --json", "once")):
        w, c = best[name]
        print(f"  {label:26}{w:>8.2f}{args.backlog / w:>16,.0f}{args.backlog / c:>15,.0f}{rss[name]:>8.1f} MiB")
    print(f"  ratio once/daemon      {ratio:>6.2f} wall  (target >= {TARGET_CATCHUP_RATIO}; CPU time: {cpu_ratio:.2f})")

    daemon_rss = max(lv["rss"], rss["daemon"])
    print(f"{'target':24}{'value':>10}  goal")
    print(f"{'live lag p99':24}{lag_p99:>7.1f} ms  < {TARGET_LAG_P99_MS} ms")
    print(f"{'catch-up ratio':24}{ratio:>10.2f}  >= {TARGET_CATCHUP_RATIO}")
    print(f"{'daemon peak RSS':24}{daemon_rss:>6.1f} MiB  <= {TARGET_RSS_MIB} MiB")
    missed = []
    if not lag_p99 < TARGET_LAG_P99_MS:
        missed.append(f"lag p99 {lag_p99:.0f} ms >= {TARGET_LAG_P99_MS}")
    if ratio < TARGET_CATCHUP_RATIO:
        missed.append(f"catch-up ratio {ratio:.2f} < {TARGET_CATCHUP_RATIO}")
    if daemon_rss > TARGET_RSS_MIB:
        missed.append(f"peak RSS {daemon_rss:.1f} MiB > {TARGET_RSS_MIB}")
    print("targets: met" if not missed else f"targets: MISSED ({'; '.join(missed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
