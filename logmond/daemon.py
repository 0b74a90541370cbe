"""The long-running logmond: wires the follower, the monitor, the socket server and systemd.

Everything here is shell. The event loop wakes on inotify (new data), on clients, and once a
second for the live clock, the checkpoint, the pushed snapshot and the watchdog.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import psutil

from logmond import checkpoint
from logmond.core import replies
from logmond.clock import LiveClock
from logmond.core.monitor import CoreConfig, Monitor
from logmond.notify import Notifier
from logmond.replay import Replayer
from logmond.server import AlreadyRunning, Server
from logmond.tail import Follower, Position
from shared.protocol import ApiError, UNKNOWN_OP, BAD_REQUEST
from shared.schema import ALERT, RECOVER, Event, alert_message

# Seconds between ticks: live clock, checkpoint, snapshot push.
TICK = 1.0
# Seconds between the follower's safety checks (lost events, network filesystems).
SAFETY_CHECK = 2.0
# Bytes ingested before giving the event loop back to clients during a backlog.
INGEST_SLICE = 4 * 1024 * 1024

log = logging.getLogger("logmond")


# Seconds between releases of due lines in --replay.
REPLAY_STEP = 0.1


@dataclass(frozen=True)
class Settings:
    file: str
    socket: str
    state_dir: str
    from_start: bool = False
    # --replay speed (log seconds per second); None follows the file live.
    replay_speed: float | None = None


class StartupError(Exception):
    """A problem the operator must fix before logmond can start: one line, exit 2."""


class Daemon:
    def __init__(self, settings: Settings, core: CoreConfig, reload: Callable[[], CoreConfig] | None = None) -> None:
        self.settings = settings
        self.core = core
        self._reload = reload
        self.monitor = Monitor(core)
        self.clock: LiveClock | Replayer = LiveClock()
        self.source: Follower | Replayer | None = None
        self.notifier = Notifier()
        self.process = psutil.Process()
        self._process_figures = self._measure_process()
        self.started_at = time.time()
        self.server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._pending_read = False
        self._last_check = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the state dir, restore the checkpoint and open the log (StartupError if not)."""
        if self.settings.replay_speed is not None:
            try:
                self.source = self.clock = Replayer(self.settings.file, self.core.format,
                                                    self.settings.replay_speed, time.time())
            except OSError as exc:
                raise StartupError(f"cannot replay {self.settings.file}: {exc.strerror}") from None
            return
        _writable_dir(self.settings.state_dir, "state dir", "--state-dir DIR")
        resume = self._restore()
        # A checkpoint that followed no file (the log was absent) means whatever is there now is
        # new since: read it from its start.
        from_start = self.settings.from_start or resume == []
        try:
            self.source = Follower(self.settings.file, resume=resume or (), from_start=from_start)
        except (FileNotFoundError, NotADirectoryError):
            raise StartupError(f"the directory of {self.settings.file} does not exist: "
                               f"create it or fix --file") from None
        except PermissionError:
            raise StartupError(f"cannot read the directory of {self.settings.file}: give logmond's user "
                               f"read access (e.g. add it to the log's group)") from None
        except OSError as exc:
            raise StartupError(f"cannot watch {self.settings.file}: {exc.strerror or exc} "
                               f"(inotify limits: see fs.inotify.max_user_watches)") from None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        source = self.source
        assert source is not None
        self.server = Server(self.settings.socket, self._handle, self._hello_info, self._stop.set)
        try:
            await self.server.start()
        except AlreadyRunning as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"cannot create socket {self.settings.socket}: {exc.strerror or exc}; "
                               f"choose another with --socket PATH") from None
        if source.fileno() is not None:
            loop.add_reader(source.fileno(), self._schedule_read)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        # The loop's own objects are long-lived: keep the collector off them, and make young
        # collections rare, since ingestion allocates millions of short-lived tuples.
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        self.notifier.send("READY=1")
        log.info("following %s, socket %s", self.settings.file, self.settings.socket)
        self._schedule_read()
        tasks = [asyncio.create_task(self._tick())]
        if self.notifier.watchdog_interval:
            tasks.append(asyncio.create_task(self._watchdog(self.notifier.watchdog_interval)))
        if source.fileno() is None:
            tasks.append(asyncio.create_task(self._pace()))
        try:
            await self._stop.wait()
        finally:
            self.notifier.send("STOPPING=1")
            for task in tasks:
                task.cancel()
            if self.source.fileno() is not None:
                loop.remove_reader(self.source.fileno())
            # The batch in hand is done (one thread); what is still unread waits for next start.
            self._checkpoint()
            await self.server.close()
            self.source.close()
        log.info("stopped")
        return 0

    # -- ingestion -------------------------------------------------------------------------
    def _schedule_read(self) -> None:
        if not self._pending_read:
            self._pending_read = True
            asyncio.get_running_loop().call_soon(self._read)

    def _read(self) -> None:
        """Take one slice of what the source has; come back for more after the loop's other work,
        so that a backlog never keeps clients waiting."""
        self._pending_read = False
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

    async def _pace(self) -> None:
        """--replay: release due lines often enough that the replay looks live."""
        while True:
            self._schedule_read()
            await asyncio.sleep(REPLAY_STEP)

    def _ingest(self, data: bytes) -> None:
        if not data:
            return
        before = self.monitor.clock
        for event in self.monitor.feed(data):
            self._emit(event)
        if self.monitor.clock is not None and self.monitor.clock != before:
            self.clock.observe(self.monitor.clock, time.time())

    def _emit(self, event: Event) -> None:
        if event["type"] in (ALERT, RECOVER):
            log.warning("%s", alert_message(event))
            assert self.server is not None
            self.server.publish_alert({**event, "id": self.monitor.alert.last_id})

    # -- the once-a-second work ------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            try:
                self._second()
            except Exception:
                # Whatever went wrong, the next second must still come: log it loudly, go on.
                log.exception("error in the once-a-second work")
            await asyncio.sleep(TICK - time.time() % TICK)

    def _second(self) -> None:
        """Live clock, safety check, checkpoint, snapshot."""
        assert self.source is not None and self.server is not None
        now = self.clock.now(time.time())
        if now is not None:
            for event in self.monitor.advance(now):
                self._emit(event)
        mono = time.monotonic()
        if mono - self._last_check >= SAFETY_CHECK:
            self._last_check = mono
            self._ingest(self.source.check(INGEST_SLICE))
            if self.source.has_more():
                self._schedule_read()
        self._checkpoint()
        self._process_figures = self._measure_process()
        self.server.publish_snapshot(replies.push(self._status(), self.monitor))

    async def _watchdog(self, interval: float) -> None:
        """Ping from the event loop itself: if the loop is stuck, the pings stop and systemd acts."""
        while True:
            self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _checkpoint(self) -> None:
        assert self.source is not None
        if self.settings.replay_speed is not None:
            return
        try:
            checkpoint.save(self.settings.state_dir, {
                "core": _core_key(self.core),
                "positions": [p.to_state() for p in self.source.positions()],
                "monitor": self.monitor.to_state(),
            })
        except OSError as exc:
            log.error("cannot write checkpoint in %s: %s", self.settings.state_dir, exc.strerror or exc)

    def _restore(self) -> list[Position] | None:
        """Positions to resume from (None: no usable checkpoint), loading the monitor's state."""
        state = checkpoint.load(self.settings.state_dir)
        if state is None:
            return None
        try:
            positions = [Position.from_state(p) for p in state["positions"]]
            if state["core"] == _core_key(self.core):
                self.monitor.load(state["monitor"])
            else:
                log.warning("monitoring settings changed since the checkpoint: windows and totals start afresh")
        except (KeyError, TypeError, ValueError, AttributeError):
            checkpoint.set_aside(self.settings.state_dir, "its contents do not fit")
            self.monitor = Monitor(self.core)
            return None
        return positions

    def _on_hup(self) -> None:
        """Reload the config file (alert settings apply at once) and reopen the log."""
        if self._reload is not None:
            try:
                new = self._reload()
            except ValueError as exc:
                log.error("reload failed, keeping the running configuration: %s", exc)
            else:
                self._apply(new)
        if self.settings.replay_speed is not None:
            return
        assert isinstance(self.source, Follower)
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.source.fileno())
        self._drain()
        positions = self.source.positions()
        try:
            reopened = Follower(self.settings.file, resume=positions, from_start=not positions)
        except OSError as exc:
            log.error("cannot reopen %s (%s): still following the open file", self.settings.file,
                      exc.strerror or exc)
            reopened = self.source
        else:
            self.source.close()
            self.source = reopened
            log.info("reopened %s", self.settings.file)
        loop.add_reader(reopened.fileno(), self._schedule_read)
        self._schedule_read()

    def _apply(self, new: CoreConfig) -> None:
        hot = replace(self.core, threshold=new.threshold, hysteresis=new.hysteresis)
        if hot != new:
            log.warning("window, interval, timeframe, lateness and format changes need a restart")
        self.core = hot
        self.monitor.config = hot
        self.monitor.alert.retune(hot.threshold, hot.hysteresis)

    # -- the socket API --------------------------------------------------------------------
    def _hello_info(self) -> dict[str, Any]:
        return {"file": self.settings.file}

    def _handle(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "status":
            return self._status()
        if op == "stats":
            return replies.stats(self.monitor)
        if op == "alerts":
            since = args.get("since")
            if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
                raise ApiError(BAD_REQUEST, "'since' must be an alert id (integer)")
            return replies.alerts(self.monitor, since)
        raise ApiError(UNKNOWN_OP, f"unknown op {op!r}: try status, stats, alerts, subscribe, ping")

    def _status(self) -> dict[str, Any]:
        assert self.source is not None and self.server is not None
        return replies.status(self.monitor, pid=os.getpid(), started_at=self.started_at, now=time.time(),
                               file=self.source.status(), process=self._process_figures,
                               clients=self.server.clients)

    def _measure_process(self) -> dict[str, Any]:
        """Once a tick, so that CPU % is over the last second whoever asks in between."""
        with self.process.oneshot():
            return {"rss_bytes": self.process.memory_info().rss,
                    "cpu_percent": self.process.cpu_percent(None),
                    "open_fds": self.process.num_fds()}


def _core_key(core: CoreConfig) -> list[Any]:
    """The settings the saved windows depend on; a change means the saved windows do not apply."""
    return [core.format, core.window, core.lateness, core.summary_interval, core.timeframe]


def _writable_dir(path: str, what: str, flag: str) -> None:
    try:
        os.makedirs(path, mode=0o750, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create {what} {path}: {exc.strerror}; create it or pass {flag}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"{what} {path} is not writable by uid {os.geteuid()}: fix its owner or pass {flag}")


def serve(settings: Settings, core: CoreConfig, reload: Callable[[], CoreConfig] | None = None) -> int:
    """Run logmond in the foreground until SIGTERM/SIGINT; 2 on a startup problem."""
    logging.basicConfig(level=logging.INFO, format="logmond: %(levelname)s %(message)s")
    logging.getLogger("pyinotify").handlers.clear()
    daemon = Daemon(settings, core, reload)
    try:
        daemon.prepare()
        return asyncio.run(daemon.run())
    except StartupError as exc:
        print(f"logmond: {exc}", file=sys.stderr)
        return 2
