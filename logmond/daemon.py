"""The long-running logmond: wires a source, a clock, the monitor, the socket server and systemd.

Everything here is shell. The event loop wakes on the source (new data), on clients, and once a
second for the live clock, the checkpoint, the pushed snapshot and the watchdog. Whether the
lines come from the follower or from a replay is decided once, in `serve()`.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence

from logmond.alertmanager import AlertmanagerClient
from logmond.clock import LiveClock
from logmond.core.errors import OperatorError
from logmond.core.monitor import Monitor
from logmond.core.settings import CoreConfig, core_config
from logmond.core.targets import AlertmanagerSpec, HookSpec
from logmond.exposition import Exposition, LogmondCollector
from logmond.hooks import Hooks, check_commands
from logmond.metrics_server import MetricsServer
from logmond.notify import Notifier
from logmond.ops import DaemonState, Ops
from logmond.replay import ReplayClock, Replayer
from logmond.server import AlreadyRunning, Server
from logmond.source import Clock, Source
from logmond.store import Database, NoStore, snapshot
from logmond.tail import Follower, Position
from shared.schema import ALERT, RECOVER, Event, alert_message

# Seconds between ticks: live clock, checkpoint, snapshot push.
TICK = 1.0
# Seconds between the warnings that no format fits the log (the journal should not fill with them).
FORMAT_WARNING_EVERY = 60.0
# Bytes ingested before giving the event loop back to clients during a backlog.
INGEST_SLICE = 4 * 1024 * 1024
# Durations of the once-a-second work kept for status's `tick` figures: the last ten minutes.
TICK_SAMPLES = 600
# The state row is replaced at most as often as keeps it within this many bytes a second on
# average (a busy log's open blocks are large): a quarter of issue 10's 64 KiB/s once SQLite's WAL
# has written it twice, leaving room for closed blocks. An ordinary log's row is saved every second.
STATE_BYTES_PER_SECOND = 8 * 1024
# ... and at least this often (seconds): after a crash, at most this much log is read again
# (never counted twice: offsets and counts are saved together). Alert events force a save.
MAX_CHECKPOINT_GAP = 10.0
# Seconds between two warnings that the state database cannot be written (a full disk).
SAVE_WARNING_EVERY = 60.0
# Seconds a stop waits for running hooks before killing them, and for the last Alertmanager post
# (the resolutions not yet delivered): well inside systemd's 90 s stop timeout.
HOOKS_GRACE = 5.0
ALERTMANAGER_GRACE = 5.0

log = logging.getLogger("logmond")


@dataclass(frozen=True)
class Settings:
    file: str
    socket: str
    state_dir: str
    from_start: bool = False
    # --replay speed (log seconds per second); None follows the file live.
    replay_speed: float | None = None
    # Seconds between the source's safety checks, and a rotated file's drain grace.
    safety_check: float = 2.0
    drain_grace: float = 2.0
    # Days of history rows and alert events the state database keeps.
    history_days: int = 31
    # Where alert events go besides the socket and the journal.
    notify: tuple[HookSpec, ...] = ()
    alertmanager: AlertmanagerSpec | None = None
    # (host, port) of the Prometheus endpoint; None: off.
    metrics_listen: tuple[str, int] | None = None


class Store(Protocol):
    """Where the checkpoint lives (store.Database), or nowhere (NoStore)."""

    records: bool  # whether the monitor hands closed blocks and events out to it

    def prepare(self) -> None: ...
    def load(self) -> dict[str, Any] | None: ...
    def save(self, state: dict[str, Any]) -> int: ...
    def set_aside(self, why: str) -> None: ...
    def close(self) -> None: ...
    def history(self, since: int, until: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...
    def events(self, after: int, limit: int) -> list[dict[str, Any]] | None: ...
    def close_reader(self) -> None: ...


# (the monitor, positions to resume, read a new file from its start?) -> the source.
Opener = Callable[[Monitor, Sequence[Position], bool], Source]


class Daemon:
    def __init__(self, settings: Settings, core: CoreConfig, open_source: Opener, clock: Clock, store: Store,
                 reload: Callable[[], dict[str, Any]] | None = None) -> None:
        self.settings = settings
        self.core = core
        self._open_source = open_source
        self.clock = clock
        self.store = store
        self._reload = reload
        self.monitor = self._new_monitor()
        self.source: Source | None = None
        self.metrics: MetricsServer | None = None
        self.notifier = Notifier()
        self.started_at = time.time()
        self.server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._pending_read = False
        # Set once shutdown begins: no read may be scheduled after the source is closed.
        self._stopping = False
        self._last_check = 0.0
        self._format_warned: float | None = None
        self._next_checkpoint = 0.0  # monotonic time of the next unforced checkpoint
        self._save_warned: float | None = None  # monotonic time of the last failed-save warning
        # The one thread that reads history for the socket API, so that requests queue there.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logmond-history")
        # Seconds each of the last TICK_SAMPLES ticks took (perf_counter), newest last.
        self.tick_seconds: deque[float] = deque(maxlen=TICK_SAMPLES)
        host = socket.gethostname()
        self.hooks = Hooks(settings.notify, host)
        self.hook_specs = settings.notify
        self.alertmanager = None if settings.alertmanager is None else AlertmanagerClient(settings.alertmanager, host)

    # -- lifecycle -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the hooks' programs and the state dir, restore the checkpoint and open the log
        (OperatorError if not)."""
        problem = check_commands(self.settings.notify)
        if problem is not None:
            raise OperatorError(problem)
        self.store.prepare()
        resume = self._restore()
        # A checkpoint that followed no file (the log was absent) means whatever is there now is
        # new since: read it from its start.
        from_start = self.settings.from_start or resume == []
        self.source = self._open_source(self.monitor, resume or (), from_start)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        source = self.source
        assert source is not None
        self.ops = Ops(self._api_state(self._stop))
        self.server = Server(self.settings.socket, self.ops)
        if self.settings.metrics_listen is not None:
            await self._serve_metrics(*self.settings.metrics_listen)
        try:
            await self.server.start()
        except (AlreadyRunning, OSError) as exc:
            if self.metrics is not None:
                await self.metrics.close()
            if isinstance(exc, AlreadyRunning):
                raise OperatorError(str(exc)) from None
            raise OperatorError(f"cannot create socket {self.settings.socket}: {exc.strerror or exc}; "
                                f"choose another with --socket PATH") from None
        self._watch(source)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        # The loop's own objects are long-lived: keep the collector off them, and make young
        # collections rare, since ingestion allocates millions of short-lived tuples.
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        if self.alertmanager is not None:
            self.alertmanager.start()
            self.alertmanager.resume(self.monitor.firing_events())
        self.notifier.send("READY=1")
        log.info("following %s, socket %s", self.settings.file, self.settings.socket)
        self._schedule_read()
        tasks = [asyncio.create_task(self._tick())]
        if self.notifier.watchdog_interval:
            tasks.append(asyncio.create_task(self._watchdog(self.notifier.watchdog_interval)))
        try:
            await self._stop.wait()
        finally:
            await self._shut_down(tasks)
        log.info("stopped")
        return 0

    async def _shut_down(self, tasks: list[asyncio.Task[None]]) -> None:
        """The batch in hand is done (one thread); what is still unread waits for the next start.
        Each step runs even if one before it failed, so the socket is always removed."""
        assert self.source is not None and self.server is not None
        self._stopping = True
        self.notifier.send("STOPPING=1")
        for task in tasks:
            task.cancel()
        self._unwatch(self.source)
        try:
            self._checkpoint()
            self._reader.submit(self.store.close_reader)
            self._reader.shutdown(wait=True, cancel_futures=True)
            self.store.close()
            await self.hooks.close(HOOKS_GRACE)
            if self.alertmanager is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.alertmanager.close, ALERTMANAGER_GRACE)
        finally:
            try:
                await self.server.close()
                if self.metrics is not None:
                    await self.metrics.close()
            finally:
                self.source.close()

    def _new_monitor(self) -> Monitor:
        return Monitor(self.core, record=self.store.records, metrics=self.settings.metrics_listen is not None)

    async def _serve_metrics(self, host: str, port: int) -> None:
        """The Prometheus endpoint, reading the monitor and the file at each scrape."""
        exposition = Exposition(LogmondCollector(lambda: self.monitor, self._file_status))
        self.metrics = MetricsServer(host, port, exposition.render)
        try:
            await self.metrics.start()
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OperatorError(f"cannot serve metrics on {host}:{port}: {why}; "
                                f"choose another with --metrics-listen HOST:PORT") from None
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, self.metrics.port)

    def _watch(self, source: Source) -> None:
        """Wake on the source's descriptor, or read it on a timer if it has none."""
        fd = source.fileno()
        if fd is not None:
            asyncio.get_running_loop().add_reader(fd, self._schedule_read)
        if source.poll_interval is not None:
            self._poll = asyncio.create_task(self._read_every(source.poll_interval))

    def _unwatch(self, source: Source) -> None:
        fd = source.fileno()
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
        if source.poll_interval is not None:
            self._poll.cancel()

    async def _read_every(self, interval: float) -> None:
        while True:
            self._schedule_read()
            await asyncio.sleep(interval)

    # -- ingestion -------------------------------------------------------------------------
    def _schedule_read(self) -> None:
        if not self._pending_read and not self._stopping:
            self._pending_read = True
            asyncio.get_running_loop().call_soon(self._read)

    def _read(self) -> None:
        """Take one slice of what the source has; come back for more after the loop's other work,
        so that a backlog never keeps clients waiting."""
        self._pending_read = False
        if self._stopping:
            return
        assert self.source is not None
        self._ingest(self.source.read(INGEST_SLICE))
        if self.source.has_more():
            self._schedule_read()

    def _drain(self) -> None:
        """Everything the source has, now (before reopening it)."""
        assert self.source is not None
        self._ingest(self.source.read(INGEST_SLICE))
        while self.source.has_more():
            self._ingest(self.source.read(INGEST_SLICE))

    def _ingest(self, data: bytes) -> None:
        if not data:
            return
        before = self.monitor.clock
        self._announce(self.monitor.feed(data, horizon=self.clock.horizon(time.time())))
        if self.monitor.clock is not None and self.monitor.clock != before:
            self.clock.observe(self.monitor.clock, time.time())

    def _announce(self, events: list[Event]) -> None:
        """Log, push and notify alert events, once the checkpoint holds them: a daemon killed
        right after announcing one resumes past it, and never announces it again (Alertmanager
        is told again what still fires, see run())."""
        alerts = [event for event in events if event["type"] in (ALERT, RECOVER)]
        if not alerts:
            return
        self._checkpoint()
        assert self.server is not None
        for event in alerts:
            log.warning("%s", alert_message(event))
            self.server.publish_alert(event)
            self.hooks.submit(event)
            if self.alertmanager is not None:
                self.alertmanager.submit(event)

    # -- the once-a-second work ------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            started = time.perf_counter()
            try:
                self._second()
            except Exception:
                # Whatever went wrong, the next second must still come: log it loudly, go on.
                log.exception("error in the once-a-second work")
            self.tick_seconds.append(time.perf_counter() - started)
            await asyncio.sleep(TICK - time.time() % TICK)

    def _second(self) -> None:
        """Live clock, safety check, checkpoint, snapshot."""
        assert self.source is not None and self.server is not None
        now = self.clock.now(time.time())
        if now is not None:
            self._announce(self.monitor.advance(now))
        mono = time.monotonic()
        if mono - self._last_check >= self.settings.safety_check:
            self._last_check = mono
            self._ingest(self.source.check(INGEST_SLICE))
            if self.source.has_more():
                self._schedule_read()
        self._checkpoint(force=False)
        self._warn_unreadable()
        self.server.publish_snapshot(self.ops.tick())

    def _warn_unreadable(self) -> None:
        """Say loudly, at most once a minute, that no format fits the log (status says it too)."""
        reason = self.monitor.describe_format()["format_error"]
        mono = time.monotonic()
        if reason and (self._format_warned is None or mono - self._format_warned >= FORMAT_WARNING_EVERY):
            self._format_warned = mono
            log.warning("no known format fits %s: %s; a line: %r; set `format` to the server's log format",
                        self.settings.file, reason, self.monitor.unfit_sample())

    async def _watchdog(self, interval: float) -> None:
        """Ping from the event loop itself: if the loop is stuck, the pings stop and systemd acts."""
        while True:
            self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _checkpoint(self, force: bool = True) -> None:
        """Save positions and counts together. Unforced (the once-a-second one), it waits while
        the last state written is within the STATE_BYTES_PER_SECOND budget, at most
        MAX_CHECKPOINT_GAP. A failure is logged at most once a minute, never fatal: what was not
        written is in the next save."""
        assert self.source is not None
        mono = time.monotonic()
        if not force and mono < self._next_checkpoint:
            return
        try:
            written = self.store.save(snapshot(_core_key(self.core), [p.to_state() for p in self.source.positions()],
                                               self.monitor))
        except (sqlite3.Error, OSError, ValueError, TypeError, OverflowError) as exc:
            self._next_checkpoint = mono
            if self._save_warned is None or mono - self._save_warned >= SAVE_WARNING_EVERY:
                self._save_warned = mono
                log.warning("cannot write the state database in %s (%s): counting goes on in memory, "
                            "and the next save that succeeds writes it all", self.settings.state_dir, exc)
            return
        if self._save_warned is not None:
            log.info("the state database in %s is written again", self.settings.state_dir)
            self._save_warned = None
        self._next_checkpoint = mono + min(MAX_CHECKPOINT_GAP, max(TICK, written / STATE_BYTES_PER_SECOND)) - TICK / 2

    def _restore(self) -> list[Position] | None:
        """Positions to resume from (None: no usable checkpoint), loading the monitor's state."""
        state = self.store.load()
        if state is None:
            return None
        try:
            positions = [Position.from_state(p) for p in state["positions"]]
            if state["core"] == _core_key(self.core):
                self.monitor.load(state["monitor"], horizon=self.clock.horizon(time.time()),
                                  records=state.get("records"), legacy_hosts=state.get("legacy_hosts"))
            else:
                log.warning("monitoring settings changed since the checkpoint: windows and totals start afresh")
                self.monitor.journal.load(state["monitor"]["alert"])
        except (KeyError, TypeError, ValueError, AttributeError):
            self.store.set_aside("its contents do not fit")
            self.monitor = self._new_monitor()
            return None
        return positions

    def _on_hup(self) -> None:
        """Reload the config file (alert settings, rules and hooks apply at once) and reopen the log."""
        if self._reload is not None:
            try:
                values = self._reload()
                problem = check_commands(values["notify"])
                if problem is not None:
                    raise OperatorError(problem)
            except OperatorError as exc:
                log.error("reload failed, keeping the running configuration: %s", exc)
            else:
                self._apply(core_config(values))
                self.hooks.replace(values["notify"])
                self.hook_specs = values["notify"]
        assert self.source is not None
        self._unwatch(self.source)
        self._drain()
        try:
            reopened = self.source.reopen()
        except OSError as exc:
            log.error("cannot reopen %s (%s): still following the open file", self.settings.file,
                      exc.strerror or exc)
            reopened = self.source
        if reopened is not self.source:
            self.source.close()
            self.source = reopened
            log.info("reopened %s", self.settings.file)
        self._watch(self.source)
        self._schedule_read()

    def _apply(self, new: CoreConfig) -> None:
        firing = {name for name, rule in self.monitor.rules.rules.items() if rule.firing}
        needs_restart, changes = self.monitor.reconfigure(new)
        self.core = self.monitor.config
        if needs_restart:
            log.warning("%s: changes need a restart", ", ".join(needs_restart))
        for what, names in (("added", changes.added), ("changed, its state starts afresh", changes.changed),
                            ("removed", changes.removed)):
            for name in names:
                log.info("rule %s %s", name, what)
        # What fired under a rule no longer watched as it was is resolved at Alertmanager.
        if self.alertmanager is not None and self.monitor.clock is not None:
            for name in firing.intersection(changes.changed + changes.removed):
                self.alertmanager.withdraw(name, self.monitor.clock)

    # -- the socket API --------------------------------------------------------------------
    def _api_state(self, stop: asyncio.Event) -> DaemonState:
        """What logmond.ops may see of the daemon; read at each request, since reload and reopen
        replace the monitor and the source."""
        return DaemonState(file=self.settings.file, started_at=self.started_at,
                           monitor=lambda: self.monitor, file_status=self._file_status,
                           clients=lambda: self.server.clients if self.server is not None else 0,
                           tick_seconds=lambda: self.tick_seconds, history=self.store.history,
                           in_thread=self._in_reader, events=self.store.events, stop=stop.set,
                           notify=self._notify_status)

    def _notify_status(self) -> dict[str, Any]:
        """status's `notify`: what the hooks did, and how Alertmanager is being told (None: not set)."""
        h, am = self.hooks, self.alertmanager
        hooks = None if not self.hook_specs else {
            "count": len(self.hook_specs), "started": h.started, "failed": h.failed, "killed": h.killed,
            "dropped": h.dropped, "running": h.running, "queued": h.queued}
        return {"hooks": hooks, "alertmanager": None if am is None else {
            "url": am.spec.url, "firing": am.firing, "pending": am.pending, "sent": am.sent,
            "last_error": am.last_error}}

    def _in_reader(self, work: Callable[[], Any]) -> Awaitable[Any]:
        """Run `work` in the history thread (its reads and sums must not hold the loop)."""
        return asyncio.get_running_loop().run_in_executor(self._reader, work)

    def _file_status(self) -> dict[str, Any]:
        assert self.source is not None
        return self.source.status()


def _core_key(core: CoreConfig) -> list[Any]:
    """The settings the saved windows depend on; a change means the saved windows do not apply."""
    return [core.format, core.window, core.lateness, core.summary_interval, core.timeframe]


def _follow(path: str, drain_grace: float) -> Opener:
    """The live wiring: the follower, woken by inotify (its clock is the LiveClock)."""
    def open_source(monitor: Monitor, resume: Sequence[Position], from_start: bool) -> Source:
        try:
            return Follower(path, resume=resume, from_start=from_start, drain_grace=drain_grace)
        except (FileNotFoundError, NotADirectoryError):
            raise OperatorError(f"the directory of {path} does not exist: create it or fix --file") from None
        except PermissionError:
            raise OperatorError(f"cannot read the directory of {path}: give logmond's user "
                                f"read access (e.g. add it to the log's group)") from None
        except OSError as exc:
            raise OperatorError(f"cannot watch {path}: {exc.strerror or exc} "
                                f"(inotify limits: see fs.inotify.max_user_watches)") from None
    return open_source


def _replay(path: str, speed: float, clock: ReplayClock) -> Opener:
    """--replay: the file paced by its own timestamps, moving the replay's clock."""
    def open_source(monitor: Monitor, resume: Sequence[Position], from_start: bool) -> Source:
        try:
            return Replayer(path, speed, time.time(), monitor.decide_format, clock)
        except OSError as exc:
            raise OperatorError(f"cannot replay {path}: {exc.strerror}") from None
    return open_source


def serve(settings: Settings, core: CoreConfig, reload: Callable[[], dict[str, Any]] | None = None) -> int:
    """Run logmond in the foreground until SIGTERM/SIGINT; 2 on a startup problem."""
    logging.basicConfig(level=logging.INFO, format="logmond: %(levelname)s %(message)s")
    if settings.replay_speed is None:
        daemon = Daemon(settings, core, _follow(settings.file, settings.drain_grace), LiveClock(),
                        Database(settings.state_dir, settings.history_days), reload)
    else:
        clock = ReplayClock()
        daemon = Daemon(settings, core, _replay(settings.file, settings.replay_speed, clock), clock,
                        NoStore(), reload)
    try:
        daemon.prepare()
        return asyncio.run(daemon.run())
    except OperatorError as exc:
        print(f"logmond: {exc}", file=sys.stderr)
        return 2
