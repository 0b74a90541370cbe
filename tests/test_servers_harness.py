"""The real-server harness (tests/servers.py) on its own: each server started with its access logs
in a temporary directory, a known set of requests, and checks on the raw lines it wrote. No
logmond here: these tests pin what the servers really write, for the tests that parse it."""
from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

from servers import (TLS_CLIENT_HELLO, Apache, Caddy, Nginx, ServerError, free_port, port_accepts,
                     require, send_request, send_requests)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A fresh directory searchable by others (Apache, run as root, serves as www-data: pytest's
    tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="lmsrv", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# The requests every server gets, with the status each must answer.
COMMON = [("GET /ok", "GET /ok HTTP/1.1", 200),
          ("GET /api/user/1", "GET /api/user/1 HTTP/1.1", 200),
          ("GET /missing", "GET /missing HTTP/1.1", 404),
          ("POST /api/form", "POST /api/form HTTP/1.1", 200),
          ("GET /fail", "GET /fail HTTP/1.1", 503)]
SPACE_IN_TARGET = b"GET /a b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def requests_of(table: list[tuple[object, str, int]]) -> list[object]:
    return [r for r, _, _ in table]


# -- helpers that need no server -----------------------------------------------------------------

def test_require_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-server-binary is not installed"):
        require("no-such-server-binary")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no-such-server-binary"):
        require("no-such-server-binary")
    assert require("sh").endswith("/sh")


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port < 65536 and not port_accepts(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_send_requests_bounded_on_silent_and_closing_servers() -> None:
    """None when the server closes without a status line, or says nothing before the timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(5)
        port = listener.getsockname()[1]
        held: list[socket.socket] = []

        def serve() -> None:
            for reply in (b"HTTP/1.0 418 I'm a teapot\r\n\r\n", b"", None):
                conn, _ = listener.accept()
                conn.settimeout(5)
                conn.recv(65536)
                if reply is None:
                    held.append(conn)  # silent: keep it open until the client gives up
                    continue
                conn.sendall(reply)
                conn.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        assert send_requests(port, ["GET /x", "GET /y"]) == [418, None]
        status, raw = send_request(port, b"GET / HTTP/1.1\r\n\r\n", timeout=0.3)
        assert (status, raw) == (None, b"")
        t.join(5)
        for conn in held:
            conn.close()


# -- nginx ---------------------------------------------------------------------------------------

NGINX_LOGS = {
    "combined.log": ("combined", None, None),
    # starts with $host: empty for a request nginx cannot parse
    "timing.log": ("timing", '$host $remote_addr [$time_local] "$request" $status $body_bytes_sent '
                   '$request_time $upstream_response_time', None),
    "json.log": ("jsonfmt", '{"host":"$host","request":"$request","status":$status,'
                 '"request_time":$request_time,"upstream":"$upstream_response_time"}', "json"),
}
NGINX_TABLE = COMMON + [
    ("GET /slow/50", "GET /slow/50 HTTP/1.1", 200),
    ("GET /slow", "GET /slow HTTP/1.1", 200),
    (SPACE_IN_TARGET, "GET /a b HTTP/1.1", 400),
    (TLS_CLIENT_HELLO, None, 400),  # request text checked per format below
]
COMBINED = re.compile(rb'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                      rb'"(?P<request>[^"]*)" (?P<status>\d{3}) \d+ "-" "(?P<ua>[^"]*)"$')
TIMING = re.compile(rb'^(?P<host>\S*) 127\.0\.0\.1 \[[^\]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) \d+ '
                    rb'(?P<rt>\d+\.\d{3}) (?P<urt>\S+)$')


def test_nginx_writes_every_request_to_each_log(server_dir: Path) -> None:
    require("nginx")
    with Nginx(server_dir / "nginx", NGINX_LOGS) as srv:
        assert srv.pid() == srv.proc.pid
        statuses = send_requests(srv.port, requests_of(NGINX_TABLE))
    assert srv.proc is None and not port_accepts(srv.port)
    assert statuses == [s for _, _, s in NGINX_TABLE]
    n = len(NGINX_TABLE)  # nginx logs the 400s too

    combined = [COMBINED.match(line) for line in srv.lines("combined.log")]
    assert len(combined) == n and all(combined), srv.lines("combined.log")
    assert [(m["request"].decode(), int(m["status"])) for m in combined[:-1]] == \
        [(text, s) for _, text, s in NGINX_TABLE[:-1]]
    assert combined[-1]["request"].startswith(rb"\x16\x03\x01\x00\xA5") and combined[-1]["status"] == b"400"
    assert {m["ua"] for m in combined[:-2]} == {b"logmon-test/1"} and combined[-1]["ua"] == b"-"

    timing = [TIMING.match(line) for line in srv.lines("timing.log")]
    assert len(timing) == n and all(timing), srv.lines("timing.log")
    assert [int(m["status"]) for m in timing] == [s for _, _, s in NGINX_TABLE]
    assert {m["host"] for m in timing[:-2]} == {b"127.0.0.1"}
    assert [m["host"] for m in timing[-2:]] == [b"", b""]  # unparsed: the line starts with a space
    assert all(line.startswith(b" 127.0.0.1 ") for line in srv.lines("timing.log")[-2:])
    by_path = {m["request"].split(b" ")[1]: m for m in timing[:-1]}
    assert by_path[b"/ok"]["urt"] == b"-"  # not proxied: unset variables are "-"
    for path, sleep in ((b"/slow/50", 0.05), (b"/slow", 0.2)):
        rt, urt = float(by_path[path]["rt"]), float(by_path[path]["urt"])
        # two clocks, each rounded to ms: $upstream_response_time may exceed $request_time by 1 ms
        assert sleep <= rt < sleep + 2 and sleep <= urt < sleep + 2, (path, rt, urt)

    raw_json = srv.lines("json.log")
    assert len(raw_json) == n
    # escape=json writes bytes >= 0x80 as they came: the ClientHello's line is not UTF-8
    with pytest.raises(UnicodeDecodeError):
        raw_json[-1].decode("utf-8")
    assert b"\xa5" in raw_json[-1] and rb"\u0016\u0003\u0001" in raw_json[-1]
    records = [json.loads(line.decode("latin-1")) for line in raw_json]
    assert [(r["request"], r["status"]) for r in records[:-1]] == [(t, s) for _, t, s in NGINX_TABLE[:-1]]
    assert records[-1]["status"] == 400 and records[-1]["host"] == ""
    assert records[0]["upstream"] == ""  # escape=json writes an unset variable as empty, not "-"
    slow = {r["request"]: r for r in records}["GET /slow HTTP/1.1"]
    assert slow["request_time"] >= 0.2 and float(slow["upstream"]) >= 0.2


def test_nginx_startup_failure_reports_the_error_log(server_dir: Path) -> None:
    require("nginx")
    srv = Nginx(server_dir, {"x.log": ("bad", "$no_such_variable", None)})
    with pytest.raises(ServerError, match='unknown "no_such_variable" variable'):
        srv.start()
    assert srv.proc is None and srv.upstream is None


def test_taken_port_is_reported(server_dir: Path) -> None:
    """A port given explicitly is not retried: the server's own complaint is in the error. (Caddy
    gives up at once; nginx retries bind() for 2.5 s first.) The socket is bound, not listening,
    so that the readiness probe cannot mistake it for the server."""
    require("caddy")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        srv = Caddy(server_dir, port=s.getsockname()[1])
        with pytest.raises(ServerError, match="address already in use"):
            srv.start()
    assert srv.proc is None


# -- Apache --------------------------------------------------------------------------------------

APACHE_LOGS = {
    "combined.log": "combined",
    "custom.log": '%v:%p %a "%r" %>s %b %D "%{User-Agent}i"',
}
# Apache logs a request line it refuses only up to the bad part: "GET /a b", no protocol.
APACHE_TABLE = COMMON + [(SPACE_IN_TARGET, "GET /a b", 400)]
APACHE_CUSTOM = re.compile(rb'^localhost:(?P<port>\d+) 127\.0\.0\.1 "(?P<request>[^"]*)" (?P<status>\d{3}) '
                           rb'(?:\d+|-) (?P<us>\d+) "(?P<ua>[^"]*)"$')


def test_apache_writes_every_request_to_each_log(server_dir: Path) -> None:
    require("apache2")
    with Apache(server_dir / "apache", APACHE_LOGS) as srv:
        assert srv.pid() == srv.proc.pid
        statuses = send_requests(srv.port, requests_of(APACHE_TABLE))
    assert srv.proc is None and not port_accepts(srv.port)
    assert statuses == [s for _, _, s in APACHE_TABLE]
    expected = [(text, s) for _, text, s in APACHE_TABLE]

    combined = [COMBINED.match(line) for line in srv.lines("combined.log")]
    assert len(combined) == len(APACHE_TABLE) and all(combined), srv.lines("combined.log")
    assert [(m["request"].decode(), int(m["status"])) for m in combined] == expected

    custom = [APACHE_CUSTOM.match(line) for line in srv.lines("custom.log")]
    assert len(custom) == len(APACHE_TABLE) and all(custom), srv.lines("custom.log")
    assert [(m["request"].decode(), int(m["status"])) for m in custom] == expected
    assert {int(m["port"]) for m in custom} == {srv.port}
    assert [m["ua"] for m in custom] == [b"logmon-test/1"] * len(COMMON) + [b"-"]


# -- Caddy ---------------------------------------------------------------------------------------

def test_caddy_writes_a_json_line_per_parsed_request(server_dir: Path) -> None:
    require("caddy")
    table = COMMON + [(SPACE_IN_TARGET, None, 400), (TLS_CLIENT_HELLO, None, 400)]
    with Caddy(server_dir / "caddy", "access.json") as srv:
        assert srv.pid() == srv.proc.pid
        statuses = send_requests(srv.port, requests_of(table))
    assert srv.proc is None and not port_accepts(srv.port)
    assert statuses == [s for _, _, s in table]

    lines = srv.lines("access.json")
    assert len(lines) == len(COMMON), lines  # Go's net/http answers the 400s itself: not logged
    for line, (_, text, status) in zip(lines, COMMON):
        method, uri, _ = text.split(" ")
        assert f'"method":"{method}"'.encode() in line and f'"uri":"{uri}"'.encode() in line
        assert re.search(rb'"status":%d[,}]' % status, line), line
        record = json.loads(line)
        assert record["request"]["remote_ip"] == "127.0.0.1"
        assert record["request"]["host"] == f"127.0.0.1:{srv.port}"
        assert isinstance(record["ts"], float) and isinstance(record["duration"], float)
        assert record["level"] == ("info" if status < 400 else "error")
