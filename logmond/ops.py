"""Every request the socket API answers, in one place (as supervisor keeps all of its XML-RPC
methods in one rpcinterface): what ping, status, stats, alerts and shutdown reply, what hello
adds, and the snapshot pushed each second.

The server (logmond.server) owns connections, framing, limits, the hello handshake and the
subscribe stream, and calls `Ops.call()` for everything else. Ops sees the daemon only through
DaemonState, so that either side can change, and be tested, without the other.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import psutil

from logmond.core import history, replies
from logmond.core.monitor import Monitor
from shared.protocol import BAD_REQUEST, PERMISSION, UNKNOWN_OP, ApiError

log = logging.getLogger(__name__)

# Minute rows one history reply reads at most, unless one step holds more (a reply well under 1 MiB).
HISTORY_PAGE_ROWS = 360
# Alert events one `alerts` reply holds at most (about 150 bytes each: well under 1 MiB).
ALERTS_PAGE = 2000


@dataclass(frozen=True)
class DaemonState:
    """What the ops may see of the daemon, and the one thing they may ask of it. Read through
    callables because reload and reopen replace the monitor and the source: each call sees the
    current ones."""

    file: str                                   # the log, as configured (hello)
    started_at: float                           # time.time() when the daemon started
    monitor: Callable[[], Monitor]
    file_status: Callable[[], dict[str, Any]]   # the followed file: path, device, inode, offset, size
    clients: Callable[[], int]                  # connections served right now
    tick_seconds: Callable[[], Sequence[float]]  # how long the last ticks took, seconds, newest last
    # History rows and alert events in [since, until) from the state database (store.Database.history),
    # read in a thread of its own, through `in_thread` (which runs a function there for the loop).
    history: Callable[[int, int], tuple[list[dict[str, Any]], list[dict[str, Any]]]]
    in_thread: Callable[[Callable[[], Any]], Awaitable[Any]]
    # Alert events after an id from the state database, at most a number (None: not kept there).
    events: Callable[[int, int], list[dict[str, Any]] | None]
    stop: Callable[[], None]                    # ask the daemon to stop (it does so after this loop turn)
    notify: Callable[[], dict[str, Any]]        # the exec hooks' and Alertmanager's figures (status)


def shutdown_allowed(uid: int | None) -> bool:
    """Only root and the daemon's own user may stop it; group members may only read."""
    return uid is not None and uid in (0, os.geteuid())


class Ops:
    """The request/reply operations, answered from the daemon's state; ApiError for a client's mistake."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state
        self._process = psutil.Process()
        self._figures = self._measure()

    def hello_info(self) -> dict[str, Any]:
        """What hello tells a client besides the protocol, version and pid the server adds."""
        return {"file": self.state.file}

    def call(self, op: str, args: dict[str, Any], peer_uid: int | None) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """The result of one request (an awaitable of it for history, whose work runs in a
        thread); peer_uid is the caller's uid as the kernel saw it (SO_PEERCRED)."""
        if op == "ping":
            return {"pong": True}
        if op == "status":
            return self.status()
        if op == "stats":
            return replies.stats(self.state.monitor())
        if op == "alerts":
            return self.alerts(_since(args))
        if op == "history":
            return self.history(args)
        if op == "shutdown":
            if not shutdown_allowed(peer_uid):
                raise ApiError(PERMISSION, f"only root or uid {os.geteuid()} may stop logmond")
            log.info("shutdown requested by uid %d", peer_uid)
            self.state.stop()
            return {}
        raise ApiError(UNKNOWN_OP, f"unknown op {op!r}: try status, stats, alerts, history, subscribe, ping")

    def alerts(self, since: int | None) -> dict[str, Any]:
        """Alert events after id `since`, oldest first, ALERTS_PAGE at a time from the state
        database (`more`: ask again with the last id), or the monitor's recent ones."""
        kept = self.state.events(since or 0, ALERTS_PAGE + 1)
        if kept is None:
            return {**replies.alerts(self.state.monitor(), since), "more": False}
        return {"events": kept[:ALERTS_PAGE], "more": len(kept) > ALERTS_PAGE}

    async def history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Steps of history over [since, until), a page at a time: `next` says where the next
        request starts (None at the end), so that no reply nears the message limit. Reading and
        summing run in the history thread: a day of minute rows takes about 150 ms to unpack,
        which must not hold the loop."""
        since, until, step, by = args.get("since"), args.get("until"), args.get("step"), args.get("by")
        problem = history.check(since, until, step, by)
        if problem:
            raise ApiError(BAD_REQUEST, problem)
        end = history.page_end(since, until, step, HISTORY_PAGE_ROWS)

        def work() -> dict[str, Any]:
            rows, events = self.state.history(since // step * step, end)
            return {"steps": history.steps(rows, events, since, end, step, by), "next": end if end < until else None}
        return await self.state.in_thread(work)

    def status(self) -> dict[str, Any]:
        """The `status` reply, with the process figures of the last tick."""
        return replies.status(self.state.monitor(), pid=os.getpid(), started_at=self.state.started_at,
                              now=time.time(), file=self.state.file_status(), process=self._figures,
                              clients=self.state.clients(), tick=replies.tick_figures(self.state.tick_seconds()),
                              notify=self.state.notify())

    def tick(self) -> dict[str, Any]:
        """Once a second: measure the process anew and return the snapshot to push to subscribers."""
        self._figures = self._measure()
        return replies.push(self.status(), self.state.monitor())

    def _measure(self) -> dict[str, Any]:
        """Once a tick, so that CPU % is over the last second whoever asks in between."""
        with self._process.oneshot():
            return {"rss_bytes": self._process.memory_info().rss,
                    "cpu_percent": self._process.cpu_percent(None),
                    "open_fds": self._process.num_fds()}


def _since(args: dict[str, Any]) -> int | None:
    since = args.get("since")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
        raise ApiError(BAD_REQUEST, "'since' must be an alert id (integer)")
    return since
