"""Alert events posted to a Prometheus Alertmanager (`[alertmanager]`), from a thread of its own.

The event loop only hands events over (`submit`, a dict under a lock); one daemon thread posts
them, re-sends firing alerts so that Alertmanager keeps them active, and retries with backoff
while Alertmanager cannot be reached, so a slow or dead Alertmanager never holds the loop.
"""
from __future__ import annotations

import http.client
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterable

from logmond import __version__
from logmond.core.targets import AlertmanagerSpec
from shared.schema import ALERT, CRITICAL, HIGH_TRAFFIC, RATE, RECOVER, Event, alert_message, iso_utc, metric_text

# Seconds between two posts of a firing alert: each one moves its endsAt forward.
RESEND_EVERY = 60.0
# How far past now a firing alert's endsAt is set, seconds. If logmond disappears (killed, host
# down, cut off), Alertmanager resolves the alert by itself once four re-sends have been missed,
# instead of keeping it active for ever; a re-send in time keeps it firing.
ALERT_TTL = 4 * RESEND_EVERY
# Wait after the first failed post, seconds; it doubles with each further failure...
FIRST_BACKOFF = 1.0
# ... up to this (Alertmanager down for hours is retried every five minutes).
MAX_BACKOFF = 300.0
# Seconds between two warnings while posts keep failing (the journal should not fill with them).
WARNING_EVERY = 60.0
# Characters of Alertmanager's answer to a refused post kept in the error (its messages are a line).
ERROR_TEXT = 200
# Bytes of a successful post's answer read before the connection is closed (Alertmanager sends none).
MAX_ANSWER = 64 * 1024
JOB = "logmond"
USER_AGENT = f"logmond/{__version__}"

log = logging.getLogger("logmond")


def payload(event: Event, alert_event: Event, host: str, now: float) -> dict[str, Any]:
    """One alert as Alertmanager's POST /api/v2/alerts takes it: `event` is the alert or recovery
    event to tell, `alert_event` the alert event it belongs to (the same one while firing), `now`
    the wall clock. Events saved before there were other rules name no rule, severity or metric:
    they are the built-in rule's."""
    labels = {"alertname": alert_event.get("rule", HIGH_TRAFFIC),
              "severity": alert_event.get("severity", CRITICAL), "instance": host, "job": JOB}
    for key in ("section", "vhost"):
        if key in alert_event:
            labels[key] = str(alert_event[key])
    value = event["value"] if "value" in event else event["rate"]
    starts = alert_event["at"]
    # never before startsAt: Alertmanager refuses (400, the whole post) an alert that ends before it
    # starts, as one would with a log clock ahead of this one, or a recovery logged before its alert
    ends = max(now + ALERT_TTL if event["type"] == ALERT else event["at"], starts)
    summary = alert_message(event)
    if event.get("withdrawn"):
        summary = f"{alert_message(alert_event)}; resolved because a reload changed or removed the rule"
    annotations = {"summary": summary, "value": metric_text(event.get("metric", RATE), value)}
    return {"labels": labels, "annotations": annotations, "startsAt": iso_utc(starts), "endsAt": iso_utc(ends)}


def next_backoff(previous: float, first: float = FIRST_BACKOFF) -> float:
    """Seconds to wait after a failed post, given the wait after the one before (0: none failed):
    first, twice that, four times ... at most MAX_BACKOFF."""
    return min(previous * 2 if previous else first, MAX_BACKOFF)


@dataclass
class _Alert:
    """One rule's state as Alertmanager should have it: firing (`recovery` None) or resolved;
    `delivered` once a post holding this state has succeeded. A new state is a new object."""

    alert: Event
    recovery: Event | None = None
    delivered: bool = False

    @property
    def event(self) -> Event:
        return self.alert if self.recovery is None else self.recovery


class AlertmanagerClient:
    """Keeps Alertmanager's view of logmond's alerts, one alert per rule (its label set).

    Every post holds every alert the client knows of: the new and the re-sent ones go in one
    request. A resolution is kept until a post of it has succeeded, then the rule is forgotten;
    if the rule fires again first, the newer state is the one sent.
    """

    def __init__(self, spec: AlertmanagerSpec, host: str, *, resend_every: float = RESEND_EVERY,
                 first_backoff: float = FIRST_BACKOFF) -> None:
        self.spec = spec
        self.host = host
        self._resend_every = resend_every
        self._first_backoff = first_backoff
        # Alertmanager is reached directly, as Prometheus does: a proxy in the environment is not for it
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._cond = threading.Condition()
        self._alerts: dict[str, _Alert] = {}
        # monotonic times: the next re-send, and the next attempt after a failure (0: none failed)
        self._resend_at = 0.0
        self._retry_at = 0.0
        self._backoff = 0.0
        self._failures = 0
        self._warned_at: float | None = None
        self._last_error: str | None = None
        self._sent = 0
        self._stopping = False
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._run, name="alertmanager", daemon=True)

    # -- the event loop's side: none of these waits for the network --------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, event: Event) -> None:
        """An alert or recovery event, to be posted at once (or at the next retry while posts are
        failing). A recovery of a rule the client does not know of has nothing to resolve."""
        self._take((event,))

    def resume(self, events: Iterable[Event]) -> None:
        """After a restart, the last alert event of each rule still firing: sent again at once, in
        one post, as Alertmanager may have resolved them by their endsAt (or lost them, it keeps
        no alerts across its own restarts) while logmond was down."""
        self._take(events)

    def withdraw(self, rule: str, at: int) -> None:
        """Resolve a rule's alert at log time `at` without a recovery: a reload changed or removed
        the rule, so what fired is no longer watched."""
        with self._cond:
            if rule in self._alerts and self._alerts[rule].recovery is None:
                alert = self._alerts[rule].alert
                self._alerts[rule] = _Alert(alert, {**alert, "type": RECOVER, "at": at, "withdrawn": True})
                self._cond.notify()

    def _take(self, events: Iterable[Event]) -> None:
        """The events' states, under the lock at once so that the thread posts them together."""
        with self._cond:
            for event in events:
                rule = event.get("rule", HIGH_TRAFFIC)
                if event["type"] == ALERT:
                    self._alerts[rule] = _Alert(event)
                elif event["type"] == RECOVER and rule in self._alerts:
                    self._alerts[rule] = _Alert(self._alerts[rule].alert, event)
            self._cond.notify()

    def close(self, timeout: float) -> None:
        """Stop the thread within `timeout` seconds, after one last attempt to post the resolutions
        not yet delivered. Firing alerts are left to their endsAt (or to resume() after a restart)."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def firing(self) -> list[str]:
        """Names of the rules firing, as far as logmond knows (delivered or not)."""
        with self._cond:
            return sorted(rule for rule, a in self._alerts.items() if a.recovery is None)

    @property
    def pending(self) -> int:
        """Alerts and resolutions not yet delivered."""
        with self._cond:
            return sum(not a.delivered for a in self._alerts.values())

    @property
    def last_error(self) -> str | None:
        """Why the last post failed; None once one has succeeded."""
        with self._cond:
            return self._last_error

    @property
    def failures(self) -> int:
        """Posts failed in a row (0 once one has succeeded)."""
        with self._cond:
            return self._failures

    @property
    def sent(self) -> int:
        """Successful posts."""
        with self._cond:
            return self._sent

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._wait_due()
            if batch is None:
                break
            self._outcome(batch, self._post(batch, self.spec.timeout))
        with self._cond:
            batch = [(rule, a) for rule, a in self._alerts.items() if a.recovery is not None]
            left = self._deadline - time.monotonic()
        if batch and left > 0:
            error = self._post(batch, min(self.spec.timeout, left))
            if error is None:
                self._outcome(batch, None)
            else:
                log.warning("alertmanager: %d resolution(s) not delivered to %s before shutdown: %s",
                            len(batch), self.spec.alerts_url, error)

    def _wait_due(self) -> list[tuple[str, _Alert]] | None:
        """(Under the lock) wait until a post is due; every alert known, or None when closing."""
        while not self._stopping:
            now = time.monotonic()
            if self._alerts:
                undelivered = any(not a.delivered for a in self._alerts.values())
                when = max(self._retry_at, 0.0 if undelivered else self._resend_at)
            else:
                when = math.inf
            if when <= now:
                return list(self._alerts.items())
            self._cond.wait(None if when == math.inf else when - now)
        return None

    def _post(self, batch: list[tuple[str, _Alert]], timeout: float) -> str | None:
        """POST the batch; None when Alertmanager took it, else what went wrong."""
        now = time.time()
        body = json.dumps([payload(a.event, a.alert, self.host, now) for _, a in batch]).encode()
        request = urllib.request.Request(self.spec.alerts_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(MAX_ANSWER)
        except urllib.error.HTTPError as e:
            with e:
                text = e.read(ERROR_TEXT).decode("utf-8", "replace").strip()
            return f"HTTP {e.code} {e.reason}" + (f": {text}" if text else "")
        except urllib.error.URLError as e:
            return str(e.reason)
        except (OSError, http.client.HTTPException) as e:
            return str(e) or type(e).__name__
        return None

    def _outcome(self, batch: list[tuple[str, _Alert]], error: str | None) -> None:
        """Record a post's outcome: forget delivered resolutions and schedule the re-send, or back
        off; warn on the first failure and then at most every WARNING_EVERY seconds."""
        warn = recovered = 0
        with self._cond:
            now = time.monotonic()
            if error is None:
                for rule, a in batch:
                    if self._alerts.get(rule) is not a:
                        continue  # a newer state came in meanwhile: it is still to be sent
                    if a.recovery is None:
                        a.delivered = True
                    else:
                        del self._alerts[rule]
                recovered, self._failures = self._failures, 0
                self._sent += 1
                self._resend_at = now + self._resend_every
                self._retry_at = self._backoff = 0.0
                self._last_error = self._warned_at = None
            else:
                self._failures += 1
                self._backoff = next_backoff(self._backoff, self._first_backoff)
                self._retry_at = now + self._backoff
                self._last_error = error
                if self._warned_at is None or now - self._warned_at >= WARNING_EVERY:
                    self._warned_at, warn = now, self._failures
        if warn:
            log.warning("alertmanager: cannot post alerts to %s: %s (%d failed attempt(s); retrying with "
                        "backoff up to %gs)", self.spec.alerts_url, error, warn, MAX_BACKOFF)
        if recovered:
            log.info("alertmanager: posting to %s again, after %d failed attempt(s)",
                     self.spec.alerts_url, recovered)
