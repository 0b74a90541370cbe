"""logmond's Alertmanager client against a real Prometheus Alertmanager (tests/servers.py): what
Alertmanager shows for an alert event and its recovery, the re-sends that keep it active, riding
out Alertmanager being down, resume() and close(). The payload and the backoff on their own,
without a network."""
from __future__ import annotations

import logging
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import T0, wait_for
from logmond.alertmanager import ALERT_TTL, MAX_BACKOFF, AlertmanagerClient, next_backoff, payload
from logmond.core.targets import AlertmanagerSpec
from servers import Alertmanager, require
from shared.schema import alert_message, iso_utc

HOST = "web-1"
RULE = "api_errors"
# Seconds a request of the client under test may take (Alertmanager on loopback answers in ms).
REQUEST_TIMEOUT = 2.0


def alert_event(**fields: Any) -> dict[str, Any]:
    event = {"id": 7, "type": "alert", "at": T0 + 60, "rule": RULE, "severity": "critical",
             "metric": "status_share", "value": 0.075, "threshold": 0.05, "window": 60, "hits": 120,
             "section": "/api", "status": "5xx"}
    event.update(fields)
    return event


def recovery_of(alert: dict[str, Any], after: int = 120, value: float = 0.01) -> dict[str, Any]:
    return {**alert, "id": alert["id"] + 1, "type": "recover", "at": alert["at"] + after, "value": value}


def stamp(text: str) -> float:
    """Alertmanager's RFC 3339 time (with milliseconds and Z) as a Unix time."""
    return datetime.fromisoformat(text).timestamp()


def listed(am: Alertmanager, rule: str) -> dict[str, Any] | None:
    """The active alert of that rule in Alertmanager, or None."""
    found = [a for a in am.alerts() if a["labels"]["alertname"] == rule]
    assert len(found) <= 1, found
    return found[0] if found else None


def warnings(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "logmond" and r.levelno == level and "alertmanager" in r.getMessage()]


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Alertmanager]:
    require("prometheus-alertmanager")
    server = Alertmanager(tmp_path / "am").start()
    yield server
    server.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., AlertmanagerClient]]:
    """Factory: clients(url, **keywords) -> a started client; each is closed after the test."""
    made: list[AlertmanagerClient] = []

    def make(url: str, **keywords: Any) -> AlertmanagerClient:
        client = AlertmanagerClient(AlertmanagerSpec(url, REQUEST_TIMEOUT), HOST, **keywords)
        client.start()
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(1.0)


# -- against a real Alertmanager -----------------------------------------------------------------

def test_alert_is_listed_with_its_labels_and_message(am: Alertmanager, clients) -> None:
    client = clients(am.url)
    event = alert_event()
    before = time.time()
    client.submit(event)
    got = wait_for(lambda: listed(am, RULE), timeout=5, what="the alert in Alertmanager")
    assert got["labels"] == {"alertname": RULE, "severity": "critical", "instance": HOST, "job": "logmond",
                             "section": "/api"}
    assert got["annotations"] == {"summary": alert_message(event), "value": "7.50%"}
    assert got["status"]["state"] == "active"
    assert stamp(got["startsAt"]) == event["at"]  # the log's time, not the post's
    assert before + ALERT_TTL - 1 <= stamp(got["endsAt"]) <= time.time() + ALERT_TTL
    wait_for(lambda: client.sent == 1, timeout=5, what="the post counted")
    assert (client.firing, client.pending, client.last_error, client.failures) == ([RULE], 0, None, 0)


def test_recovery_resolves_the_alert(am: Alertmanager, clients) -> None:
    client = clients(am.url)
    event = alert_event(severity="warning")
    client.submit(event)
    assert wait_for(lambda: listed(am, RULE), timeout=5)["labels"]["severity"] == "warning"
    client.submit(recovery_of(event))
    wait_for(lambda: listed(am, RULE) is None, timeout=5, what="the alert to leave the active list")
    assert am.received() == {"firing": 1, "resolved": 1}
    wait_for(lambda: client.sent == 2, timeout=5, what="the resolution's post counted")
    assert (client.firing, client.pending, client.last_error) == ([], 0, None)
    # a post holds every alert the client knows of: the resolved one is forgotten, not sent again
    client.submit(alert_event(rule="other"))
    wait_for(lambda: listed(am, "other"), timeout=5, what="the other alert in Alertmanager")
    assert am.received() == {"firing": 2, "resolved": 1}


def request_waiting(port: int) -> bool:
    """Whether a connection to 127.0.0.1:port holds bytes its server has not read (a request
    posted to a frozen server): /proc/net/tcp's rx_queue of the server's end."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if local == f"0100007F:{port:04X}" and state == "01" and int(queues.split(":")[1], 16) > 0:
            return True
    return False


def test_a_fire_while_its_resolution_is_in_flight_wins(am: Alertmanager, clients) -> None:
    client = clients(am.url)
    first = alert_event()
    client.submit(first)
    wait_for(lambda: client.sent == 1, timeout=5, what="the alert posted")
    am.freeze()
    try:
        client.submit(recovery_of(first))
        wait_for(lambda: request_waiting(am.port), timeout=5, what="the resolution's post to be in flight")
        again = alert_event(id=9, at=first["at"] + 400)
        client.submit(again)
    finally:
        am.thaw()
    # the resolution's post succeeds, but the rule fired again meanwhile: that is sent, not forgotten
    wait_for(lambda: client.sent == 3, timeout=5, what="the new fire posted after the resolution")
    assert client.pending == 0 and client.firing == [RULE]
    assert am.received() == {"firing": 2, "resolved": 1}
    assert stamp(listed(am, RULE)["startsAt"]) == again["at"]


def test_alertmanager_down_then_back_gets_the_alert_again(tmp_path: Path, clients,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    require("prometheus-alertmanager")
    caplog.set_level(logging.INFO, logger="logmond")
    am = Alertmanager(tmp_path / "am").start()
    try:
        client = clients(am.url, resend_every=0.2, first_backoff=0.05)
        event = alert_event()
        client.submit(event)
        wait_for(lambda: listed(am, RULE), timeout=5, what="the alert in Alertmanager")
        am.stop()
        # the re-sends fail, then the retries: 0.05 s, 0.1 s, 0.2 s, 0.4 s ... apart
        wait_for(lambda: client.failures >= 4, timeout=10, what="four failed posts")
        assert "Connection refused" in (client.last_error or "")
        assert client.firing == [RULE]
        logged = warnings(caplog)
        assert len(logged) == 1 and am.url in logged[0] and "Connection refused" in logged[0], logged

        am.start()  # same port and storage; Alertmanager kept no alerts
        got = wait_for(lambda: listed(am, RULE), timeout=10, what="the alert after Alertmanager came back")
        assert stamp(got["startsAt"]) == event["at"]
        assert got["annotations"]["summary"] == alert_message(event)
        wait_for(lambda: client.last_error is None, timeout=5, what="the client to see the post succeed")
        assert client.failures == 0
        assert len(warnings(caplog)) == 1
        back = warnings(caplog, logging.INFO)
        assert len(back) == 1 and "again" in back[0], back
    finally:
        am.stop()


def test_firing_alert_is_re_sent_and_reaches_a_fresh_alertmanager(tmp_path: Path, am: Alertmanager,
                                                                   clients) -> None:
    client = clients(am.url, resend_every=1.0)
    client.submit(alert_event())
    first = wait_for(lambda: listed(am, RULE), timeout=5, what="the alert in Alertmanager")
    # no new submit: the client posts it again every second
    wait_for(lambda: am.received()["firing"] >= 3 and client.sent >= 3, timeout=6, what="three posts of the alert")
    assert client.failures == 0
    am.stop()
    fresh = Alertmanager(tmp_path / "fresh", port=am.port).start()
    try:
        got = wait_for(lambda: listed(fresh, RULE), timeout=5, what="the alert in the fresh Alertmanager")
        assert got["labels"] == first["labels"] and got["startsAt"] == first["startsAt"]
        assert stamp(got["endsAt"]) > stamp(first["endsAt"])  # each post moves it forward
    finally:
        fresh.stop()


def test_resume_sends_every_firing_alert_at_once_in_one_post(am: Alertmanager, clients) -> None:
    client = clients(am.url)  # re-sends only every minute: what arrives is resume's post
    api = alert_event()
    slow = {k: v for k, v in alert_event(rule="slow_shop", severity="warning", metric="latency", value=0.8123,
                                         quantile=0.99, vhost="shop").items() if k != "section"}
    # saved before there were other rules: no rule, severity, metric or value
    old = {"id": 3, "type": "alert", "at": T0, "hits": 1500, "rate": 12.5, "window": 120}
    client.resume([api, slow, old])
    wait_for(lambda: len(am.alerts()) == 3, timeout=5, what="three alerts in Alertmanager")
    by_rule = {a["labels"]["alertname"]: a for a in am.alerts()}
    assert by_rule["slow_shop"]["labels"] == {"alertname": "slow_shop", "severity": "warning",
                                              "instance": HOST, "job": "logmond", "vhost": "shop"}
    assert by_rule["slow_shop"]["annotations"]["value"] == "812.3 ms"
    assert by_rule["high_traffic"]["labels"] == {"alertname": "high_traffic", "severity": "critical",
                                                 "instance": HOST, "job": "logmond"}
    assert by_rule["high_traffic"]["annotations"] == {"summary": alert_message(old), "value": "12.50 hits/s"}
    assert stamp(by_rule["high_traffic"]["startsAt"]) == T0
    wait_for(lambda: client.pending == 0, timeout=5)
    assert client.sent == 1 and client.firing == ["api_errors", "high_traffic", "slow_shop"]


def test_close_makes_a_last_attempt_for_a_resolution(am: Alertmanager, clients) -> None:
    client = clients(am.url, first_backoff=60.0)
    event = alert_event()
    client.submit(event)
    wait_for(lambda: client.sent == 1, timeout=5, what="the alert posted")
    am.stop()
    client.submit(recovery_of(event))
    wait_for(lambda: client.failures == 1, timeout=5, what="the resolution's post to fail")
    assert client.pending == 1  # and the next retry is a minute away
    am.start()
    started = time.monotonic()
    client.close(5.0)
    assert time.monotonic() - started < 2.0
    assert (client.pending, client.sent, client.last_error) == (0, 2, None)
    assert am.received() == {"firing": 0, "resolved": 1}  # a restarted Alertmanager counts afresh


def test_close_returns_within_its_timeout_when_alertmanager_hangs(clients) -> None:
    """A listening socket that never answers: the post in flight does not hold close() longer."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = clients(f"http://127.0.0.1:{silent.getsockname()[1]}")
        event = alert_event()
        client.submit(event)
        client.submit(recovery_of(event))
        started = time.monotonic()
        client.close(0.5)
        assert time.monotonic() - started < 1.0
        assert client.pending == 1 and client.sent == 0


# -- no network ----------------------------------------------------------------------------------

def test_payload_of_a_firing_alert() -> None:
    event = alert_event(vhost="shop")
    now = T0 + 3600.7
    assert payload(event, event, HOST, now) == {
        "labels": {"alertname": RULE, "severity": "critical", "instance": HOST, "job": "logmond",
                   "section": "/api", "vhost": "shop"},
        "annotations": {"summary": alert_message(event), "value": "7.50%"},
        "startsAt": iso_utc(T0 + 60), "endsAt": iso_utc(now + ALERT_TTL)}
    # a log clock ahead of this one: the alert never ends before it starts (Alertmanager refuses it)
    ahead = alert_event(at=T0 + 10_000)
    assert payload(ahead, ahead, HOST, now)["endsAt"] == iso_utc(T0 + 10_000)


def test_payload_of_a_recovery() -> None:
    alert = alert_event()
    recovery = recovery_of(alert, after=300, value=0.02)
    sent = payload(recovery, alert, HOST, T0 + 99_999)
    assert sent == {
        "labels": payload(alert, alert, HOST, T0)["labels"],
        "annotations": {"summary": alert_message(recovery), "value": "2.00%"},
        "startsAt": iso_utc(alert["at"]), "endsAt": iso_utc(alert["at"] + 300)}  # log time, not now
    early = recovery_of(alert, after=-5)
    assert payload(early, alert, HOST, T0)["endsAt"] == iso_utc(alert["at"])


def test_payload_of_an_event_saved_before_rules_had_names() -> None:
    old = {"id": 1, "type": "alert", "at": T0, "hits": 1500, "rate": 12.5, "window": 120}
    sent = payload(old, old, HOST, T0)
    assert sent["labels"] == {"alertname": "high_traffic", "severity": "critical", "instance": HOST,
                              "job": "logmond"}
    assert sent["annotations"] == {"summary": alert_message(old), "value": "12.50 hits/s"}


def test_backoff_doubles_up_to_its_cap() -> None:
    waits, wait = [], 0.0
    for _ in range(12):
        wait = next_backoff(wait)
        waits.append(wait)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    assert next_backoff(0.0, 0.05) == 0.05 and next_backoff(0.05, 0.05) == 0.1


def test_the_newest_state_of_a_rule_wins() -> None:
    """States only (the client is not started): a fire after an unsent resolution replaces it."""
    client = AlertmanagerClient(AlertmanagerSpec("http://127.0.0.1:9"), HOST)
    alert = alert_event()
    client.submit(alert)
    client.submit(recovery_of(alert))
    assert (client.firing, client.pending) == ([], 1)
    client.submit(alert_event(id=9, at=T0 + 400))
    assert (client.firing, client.pending) == ([RULE], 1)
    client.submit(recovery_of(alert_event(rule="never_fired")))  # nothing to resolve
    assert (client.firing, client.pending) == ([RULE], 1)
