"""The Prometheus endpoint: bounded counters, the exposition as promtool and the OpenMetrics
parser read it, and a real logmond's HTTP endpoint (status codes, negotiation, hostile clients,
counters across a restart and a kill -9)."""
from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as classic_families

from conftest import T0, csv_line, wait_for
from logmond.core.counters import OTHER, Counters
from logmond.core.monitor import CoreConfig, Monitor
from logmond.exposition import Exposition, LogmondCollector
from logmond.metrics_server import MAX_CONNECTIONS, MAX_REQUEST_BYTES
from servers import free_port, require

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def json_line(ts: int, path: str, status: int = 200, rtime: str = "0.010") -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))
    return json.dumps({"time_iso8601": stamp, "remote_addr": "10.0.0.1", "request": f"GET {path} HTTP/1.1",
                       "status": str(status), "body_bytes_sent": "100", "request_time": rtime}) + "\n"


def samples(text: str, name: str, parse=classic_families) -> dict[tuple, float]:
    """{sorted label pairs: value} of one sample name in an exposition."""
    out = {}
    for family in parse(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def monitor_of(lines: list[str], fmt: str = "json", sections: int = 50) -> Monitor:
    m = Monitor(CoreConfig(format=fmt, metrics_sections=sections, lateness=0), metrics=True)
    for i in range(0, len(lines), 997):
        m.feed("".join(lines[i:i + 997]).encode())
    m.finish()
    return m


def exposition(m: Monitor) -> Exposition:
    return Exposition(LogmondCollector(lambda: m, lambda: {"offset": 300, "size": 1000}))


# -- the counters ------------------------------------------------------------------------------

def test_every_section_of_a_small_log_is_counted_exactly_from_its_first_line():
    lines = [csv_line(T0 + i // 10, i, path, status) for i, (path, status) in
             enumerate([("/api/user", 200), ("/api/user", 503), ("/report/x", 404), ("/blog/y", 200)] * 25)]
    m = monitor_of(lines, fmt="csv")
    c = m.counters
    assert c.requests == {("/api", "GET", 200): 25, ("/api", "GET", 503): 25, ("/report", "GET", 404): 25,
                          ("/blog", "GET", 200): 25}
    assert sum(c.bytes.values()) == sum(100 + i % 50 for i in range(100))


def test_a_hundred_thousand_sections_give_at_most_limit_plus_one_label_values_and_lose_no_hit():
    rng = random.Random(5)
    lines = [json_line(T0 + i // 1000, f"/s{rng.randrange(100_000)}/x") for i in range(100_000)]
    m = monitor_of(lines, sections=50)
    body = exposition(m).render("")[0].decode()
    requests = samples(body, "logmon_http_requests_total")
    labels = {dict(k)["section"] for k in requests}
    assert len(labels) == 51 and OTHER in labels
    assert sum(requests.values()) == 100_000
    assert len(m.counters.candidates) == 0  # no free slot: nothing more is tracked


def test_counters_never_go_back_as_sections_take_their_series():
    c = Counters(limit=3)
    seen: dict[tuple, int] = {}
    rng = random.Random(1)
    for batch in range(40):
        kinds = [((rng.choice(["GET", "BREW"]), f"/s{rng.randrange(8)}"), rng.choice([200, 500])) for _ in range(50)]
        c.count(kinds, lambda k: k, [10] * len(kinds), [rng.random() for _ in kinds])
        now = {**{("r",) + k: n for k, n in c.requests.items()}, **{("b", k): n for k, n in c.bytes.items()}}
        assert all(now.get(k, 0) >= n for k, n in seen.items()), batch
        seen = now
    assert len(c.sections) == 3 and {m for _, m, _ in c.requests} == {"GET", OTHER}
    assert sum(c.requests.values()) == 40 * 50 and sum(sum(v) for v in c.durations.values()) == 40 * 50


def test_counters_resume_exactly_from_their_state():
    lines = [json_line(T0 + i, f"/p{i % 7}/x", rtime=f"0.{i % 1000:03d}") for i in range(3000)]
    whole = monitor_of(lines)
    first = Monitor(CoreConfig(format="json", lateness=0), metrics=True)
    first.feed("".join(lines[:1200]).encode())
    second = Monitor(CoreConfig(format="json", lateness=0), metrics=True)
    second.load(first.to_state())
    second.feed("".join(lines[1200:]).encode())
    second.finish()
    assert second.counters.to_state() == whole.counters.to_state()


# -- the exposition --------------------------------------------------------------------------------

ODD_SECTIONS = ['/a"b', "/c\\d", "/é", "/日本", "/plain"]


def odd_monitor() -> Monitor:
    lines = [json_line(T0 + i // 5, path + "/x", 503 if i % 4 == 0 else 200, f"0.{i % 900 + 1:03d}")
             for i, path in enumerate(ODD_SECTIONS * 40)]
    return monitor_of(lines)


def test_promtool_check_metrics_passes_on_sections_with_quotes_backslashes_and_non_ascii():
    promtool = require("promtool")
    body, content_type = exposition(odd_monitor()).render("")
    assert content_type.startswith("text/plain; version=0.0.4")
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result
    requests = samples(body.decode(), "logmon_http_requests_total")
    assert {dict(k)["section"] for k in requests} == set(ODD_SECTIONS)
    assert requests[(("code", "503"), ("method", "GET"), ("section", '/a"b'))] == 10


def test_openmetrics_is_negotiated_and_reads_as_the_classic_text_does():
    m = odd_monitor()
    classic, _ = exposition(m).render("text/plain")
    open_body, content_type = exposition(m).render(OPENMETRICS + ",text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert open_body.endswith(b"# EOF\n")
    for name in ("logmon_http_requests_total", "logmon_http_request_duration_seconds_bucket",
                 "logmon_http_response_size_bytes_total", "logmon_lines_total", "logmon_alert_firing"):
        strict = samples(open_body.decode(), name, text_string_to_metric_families)
        assert strict == samples(classic.decode(), name) and strict, name
    buckets = samples(classic.decode(), "logmon_http_request_duration_seconds_bucket")
    assert buckets[(("le", "+Inf"), ("section", "/plain"))] == 40
    assert buckets[(("le", "0.005"), ("section", "/plain"))] == sum(1 for i in range(4, 200, 5) if i % 900 + 1 <= 5)


# -- a real logmond ----------------------------------------------------------------------------

def get(port: int, path: str = "/metrics", method: str = "GET", accept: str = "") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def requests_total(port: int) -> float:
    return sum(samples(get(port)[2].decode(), "logmon_http_requests_total").values())


@pytest.fixture
def scraped(logmond, short_tmp):
    port = free_port()
    (short_tmp / "access.log").write_text("".join(csv_line(T0 + i // 10, i) for i in range(500)))
    d = logmond("--from-start", "--metrics-listen", f"127.0.0.1:{port}").start()
    d.wait_lines(500)
    d.port = port
    return d


def test_get_metrics_and_nothing_else(scraped):
    status, headers, body = get(scraped.port, accept=OPENMETRICS)
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert headers["Connection"] == "close" and int(headers["Content-Length"]) == len(body)
    assert requests_total(scraped.port) == 500
    status, headers, _ = get(scraped.port)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert get(scraped.port, "/metrics?x=1")[0] == 200
    assert get(scraped.port, "/")[0] == 404 and get(scraped.port, "/metricsx")[0] == 404
    status, headers, _ = get(scraped.port, method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = get(scraped.port, method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000


def test_slow_oversized_and_too_many_clients_do_not_stall_logmond(scraped):
    stalled = [socket.create_connection(("127.0.0.1", scraped.port)) for _ in range(MAX_CONNECTIONS - 2)]
    for s in stalled:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    huge = socket.create_connection(("127.0.0.1", scraped.port))
    huge.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (MAX_REQUEST_BYTES + 10) + b"\r\n\r\n")
    assert huge.recv(100) == b""  # closed without an answer
    # While they stall, a scrape is answered and new lines are counted.
    with open(scraped.log, "a") as f:
        f.write("".join(csv_line(T0 + 50 + i // 10, i) for i in range(100)))
    wait_for(lambda: requests_total(scraped.port) == 600, 10, "the new lines in a scrape")
    # Past the cap a connection is closed at once.
    extra = [socket.create_connection(("127.0.0.1", scraped.port)) for _ in range(3)]
    extra[-1].settimeout(5)
    assert extra[-1].recv(100) == b""
    for s in stalled + extra + [huge]:
        s.close()
    assert scraped.status()["lines"] == 600


def test_counters_continue_across_a_restart_and_a_kill_9(logmond, short_tmp):
    port = free_port()
    log = short_tmp / "access.log"
    log.write_text("".join(csv_line(T0 + i // 10, i, "/api/x", 200 if i % 5 else 500) for i in range(400)))
    d = logmond("--from-start", "--metrics-listen", f"127.0.0.1:{port}").start()
    d.wait_lines(400)
    before = samples(get(port)[2].decode(), "logmon_http_requests_total")
    assert sum(before.values()) == 400
    assert d.stop() == 0
    with open(log, "a") as f:
        f.write("".join(csv_line(T0 + 40 + i // 10, i, "/api/x") for i in range(100)))
    d.start()
    wait_for(lambda: requests_total(port) == 500, 15, "the counters to go on from 400")
    with open(log, "a") as f:
        f.write("".join(csv_line(T0 + 50 + i // 10, i, "/api/x") for i in range(100)))
    wait_for(lambda: d.status()["lines"] == 600, 15, "600 lines")
    d.snapshots(2)  # a checkpoint since
    d.stop(signal.SIGKILL)
    d.start()
    wait_for(lambda: d.status()["lines"] == 600, 15, "the state back after kill -9")
    after = samples(get(port)[2].decode(), "logmon_http_requests_total")
    assert sum(after.values()) == 600
    assert after[(("code", "500"), ("method", "GET"), ("section", "/api"))] == 80
    assert d.stop() == 0


def test_a_port_in_use_is_refused_with_one_line(short_tmp):
    from test_daemon_config import assert_refused, run_logmond
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    code, err = run_logmond("--file", short_tmp / "access.log", "--socket", short_tmp / "s.sock",
                            "--state-dir", short_tmp / "state", "--metrics-listen", f"127.0.0.1:{port}")
    taken.close()
    assert_refused(code, err, f"cannot serve metrics on 127.0.0.1:{port}", "--metrics-listen")
    assert not (short_tmp / "s.sock").exists()


@pytest.mark.parametrize("value", ["9101", "host:", ":9101x", "127.0.0.1:70000"])
def test_a_bad_listen_address_is_refused(short_tmp, value):
    from test_daemon_config import assert_refused, run_logmond
    code, err = run_logmond("--file", short_tmp / "access.log", "--metrics-listen", value)
    assert_refused(code, err, "--metrics-listen")
