"""Exec hooks (`[[notify]]`): each alert or recovery event runs the matching commands, no shell.

Everything is driven from the daemon's event loop and nothing here blocks it: `submit` only
queues, the processes are asyncio subprocesses, and every wait is bounded (the hook's timeout,
then KILL_GRACE after SIGTERM, then KILL_GRACE after SIGKILL). A hook runs in a session of its
own, so a timeout kills what it started too.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Sequence

from logmond.core.targets import HookSpec
from shared.schema import Event, alert_message, iso_utc

# Hooks running at once: an alert storm must not become a fork storm (others wait in the queue).
MAX_RUNNING_HOOKS = 4
# Runs waiting for a free slot; past this the oldest waiting run is dropped (its news is stalest).
HOOK_QUEUE = 64
# Bytes of a hook's stderr kept, its end: enough for the last lines, whatever the hook writes.
STDERR_TAIL = 4 * 1024
# Seconds between SIGTERM and SIGKILL to a hook's process group; also how long a killed hook's
# pipes are waited for before it is given up (a descendant outside the group may hold them).
KILL_GRACE = 2.0
# Seconds between the summary lines while the queue keeps overflowing.
DROP_SUMMARY_EVERY = 60.0

log = logging.getLogger("logmond")


@dataclass(eq=False)
class _Run:
    """One hook for one event; `tail` is the end of its stderr so far."""

    spec: HookSpec
    event: Event
    tail: bytearray = field(default_factory=bytearray)

    @property
    def what(self) -> tuple[str, str, str]:
        return self.spec.command[0], self.event["rule"], self.event["type"]

    def __str__(self) -> str:
        return "hook {} for {} {}".format(*self.what)

    def last_line(self) -> str:
        lines = (line.strip() for line in reversed(self.tail.decode("utf-8", "replace").splitlines()))
        return next((line for line in lines if line), "")


class Hooks:
    """The `[[notify]]` hooks of a running daemon, for `submit` to call from its event loop;
    `close` must be awaited before the loop ends, since it is what kills the hooks still running.

    Counters: `started` processes; `failed` runs that could not start or exited non-zero (or by
    a signal not sent here); `killed` runs ended here at their timeout or at shutdown; `dropped`
    runs that never started (the queue overflowed, or shutdown came first).
    """

    def __init__(self, specs: Sequence[HookSpec], host: str) -> None:
        self._specs = tuple(specs)
        self.host = host
        self._queue: deque[_Run] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Set by `close` once its grace is over: the runs still going kill their hooks. (Not task
        # cancellation: Python 3.11 hangs cancelling a subprocess whose pipes are being connected.)
        self._stop = asyncio.Event()
        self.started = self.failed = self.killed = self.dropped = 0
        # Drops since the line that named the first one of this overflow, by (command, rule, type).
        self._unsaid: Counter[tuple[str, str, str]] = Counter()
        self._overflowing = False
        self._summarized = 0.0  # monotonic time of the last drop line

    @property
    def running(self) -> int:
        return len(self._tasks)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, event: Event) -> None:
        """Queue a run of every hook that wants this alert or recovery event; returns at once.
        Must be called from the running event loop; ignored once `close` has begun."""
        if self._closed:
            return
        for spec in self._specs:
            if spec.wants(event):
                self._queue.append(_Run(spec, event))
                if len(self._queue) > HOOK_QUEUE:
                    self._drop_oldest()
        self._start_waiting()

    def replace(self, specs: Sequence[HookSpec]) -> None:
        """A reloaded config's hooks, for the events submitted from now on. Running and queued
        runs keep the spec they were queued with: an event already announced is told as the
        config said when it happened."""
        self._specs = tuple(specs)

    async def close(self, grace: float) -> None:
        """At shutdown: drop the queued runs, give the running ones `grace` seconds, then kill
        them (SIGTERM, then SIGKILL); returns within grace + 2 * KILL_GRACE seconds."""
        self._closed = True
        self._summarize_drops()
        if self._queue:
            log.warning("shutting down: %d queued hook runs dropped", len(self._queue))
            self.dropped += len(self._queue)
            self._queue.clear()
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace)
        if late:
            self._stop.set()
            await asyncio.wait(late)

    # -- the queue -------------------------------------------------------------------------
    def _drop_oldest(self) -> None:
        """Make room: the first drop of an overflow is named at once, the next ones are summed
        up when the queue empties (and once a DROP_SUMMARY_EVERY while it stays full)."""
        run = self._queue.popleft()
        self.dropped += 1
        if not self._overflowing:
            self._overflowing = True
            self._summarized = time.monotonic()
            log.warning("hook queue full (%d waiting): dropped the oldest run, %s", HOOK_QUEUE, run)
            return
        self._unsaid[run.what] += 1
        if time.monotonic() - self._summarized >= DROP_SUMMARY_EVERY:
            self._summarize_drops()

    def _summarize_drops(self) -> None:
        if self._unsaid:
            runs = "; ".join(f"{command} for {rule} {kind} ({n})"
                             for (command, rule, kind), n in self._unsaid.most_common())
            log.warning("hook queue full: %d more dropped: %s", sum(self._unsaid.values()), runs)
            self._unsaid.clear()
        self._summarized = time.monotonic()

    def _start_waiting(self) -> None:
        while self._queue and len(self._tasks) < MAX_RUNNING_HOOKS and not self._closed:
            task = asyncio.get_running_loop().create_task(self._execute(self._queue.popleft()))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        if not self._queue and self._overflowing:
            self._overflowing = False
            self._summarize_drops()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug here must not stop the hooks that come after it.
            log.error("hook runner failed", exc_info=task.exception())
        self._start_waiting()

    # -- one run ---------------------------------------------------------------------------
    async def _execute(self, run: _Run) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *run.spec.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, start_new_session=True, env=self._environment(run.event))
        except OSError as exc:
            self.failed += 1
            log.warning("%s: cannot start: %s", run, exc.strerror or exc)
            return
        self.started += 1
        stdin = json.dumps({**run.event, "message": alert_message(run.event), "host": self.host}) + "\n"
        done = asyncio.ensure_future(_communicate(proc, stdin.encode(), run.tail))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({done, stop}, timeout=run.spec.timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The loop is being torn down without `close`: leave no hook behind.
            _signal_group(proc.pid, signal.SIGKILL)
            raise
        finally:
            stop.cancel()
        if not done.done():
            when = "at shutdown" if self._stop.is_set() else f"after {run.spec.timeout:g} s timeout"
            await self._kill(run, proc.pid, done, when)
            return
        code = done.result()
        if code == 0:
            log.info("%s: exit 0", run)
            return
        self.failed += 1
        log.warning("%s: %s%s", run, f"exit {code}" if code > 0 else f"killed by {_signal_name(-code)}", _said(run))

    async def _kill(self, run: _Run, pid: int, done: asyncio.Task[int], when: str) -> None:
        """SIGTERM to the hook's process group, SIGKILL after KILL_GRACE if it is still there;
        `done` is given up if even that does not end it (a descendant outside the group)."""
        _signal_group(pid, signal.SIGTERM)
        how = ""
        if not (await asyncio.wait({done}, timeout=KILL_GRACE))[0]:
            _signal_group(pid, signal.SIGKILL)
            how = f" (SIGKILL: it outlived SIGTERM by {KILL_GRACE:g} s)"
            await asyncio.wait({done}, timeout=KILL_GRACE)
        done.cancel()
        self.killed += 1
        log.warning("%s: killed %s%s%s", run, when, how, _said(run))

    def _environment(self, event: Event) -> dict[str, str]:
        """The daemon's environment and the event's LOGMON_* variables (LOGMON_METRIC says the
        unit of LOGMON_VALUE and LOGMON_THRESHOLD: hits/s, a fraction, seconds; LOGMON_SECTION and
        LOGMON_VHOST only when the event's rule is for one section or vhost)."""
        env = dict(os.environ)
        env.update(LOGMON_EVENT=event["type"], LOGMON_RULE=event["rule"], LOGMON_SEVERITY=event["severity"],
                   LOGMON_METRIC=event["metric"],
                   LOGMON_VALUE=repr(float(event["value"])), LOGMON_THRESHOLD=repr(float(event["threshold"])),
                   LOGMON_AT=iso_utc(event["at"]), LOGMON_MESSAGE=alert_message(event), LOGMON_HOST=self.host)
        for key in ("section", "vhost"):
            if key in event:
                env[f"LOGMON_{key.upper()}"] = str(event[key])
        return env


async def _communicate(proc: asyncio.subprocess.Process, stdin: bytes, tail: bytearray) -> int:
    """Stdin written, stderr read to its end and the exit, together (a hook may write before it
    reads); its exit status."""
    _, _, code = await asyncio.gather(_feed(proc.stdin, stdin), _tail(proc.stderr, tail), proc.wait())
    return code


async def _feed(stdin: asyncio.StreamWriter | None, data: bytes) -> None:
    assert stdin is not None
    try:
        stdin.write(data)
        await stdin.drain()
    except ConnectionError:
        pass  # the hook closed its stdin unread: its choice
    stdin.close()


async def _tail(stream: asyncio.StreamReader | None, tail: bytearray) -> None:
    """Read to the end, keeping the last STDERR_TAIL bytes."""
    assert stream is not None
    while chunk := await stream.read(STDERR_TAIL):
        tail += chunk
        del tail[:-STDERR_TAIL]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # gone already, or no longer ours to signal


def _said(run: _Run) -> str:
    line = run.last_line()
    return f": {line}" if line else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def check_commands(specs: Sequence[HookSpec]) -> str | None:
    """The first hook whose program cannot be run, as one line for the daemon to exit 2 with
    (a hook that fails at its first alert is found too late); None when all can."""
    for number, spec in enumerate(specs, 1):
        program = spec.command[0]
        if "/" not in program:
            if shutil.which(program) is None:
                return f"[[notify]] #{number}: command '{program}' is not found on PATH"
        elif not (os.path.isfile(program) and os.access(program, os.X_OK)):
            return f"[[notify]] #{number}: command '{program}' is not an executable file"
    return None
