"""Real servers write the logs, `logmond --once --json` reads them (issue 8, "Tests against real
servers"): nginx with several access_log formats at once, Apache (vhost_combined and a LogFormat
with %D), Caddy's JSON access log, and files in no known format.

Every server gets the same known requests (REQUESTS). The expected numbers come from two sources
that do not involve logmond: the request table (method, section) with the status the client
received, and this file's own reading of the raw log lines (time, remote host, bytes, request time,
upstream time, virtual host). Each summary block is compared with the lines whose timestamps fall
in it; blocks are a day long (--summary-interval 86400), so all the requests are in one block
unless the test runs across midnight UTC, and the latency percentiles of a block are those of all
its lines. Percentiles are checked against nearest-rank quantiles of the times in the file, within
the 1 % relative error the issue allows (a time of 0 must be reported as 0).

The servers are started once per module (tests/servers.py); require() skips when a binary is
missing, except with CI=true, where it fails."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import pytest

from servers import TLS_CLIENT_HELLO, Apache, Caddy, Nginx, require, send_requests

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 86400  # one summary block a day: the longest interval the timeframe allows
INVALID = "(invalid)"
REL_ERROR = 0.01  # the sketch's bound on relative error
SPACE_IN_TARGET = b"GET /a b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


class Req(NamedTuple):
    send: str | bytes  # for send_requests
    method: str        # as logmond must count it
    section: str
    logged: str | None  # what the log line's request field starts with (None: TLS bytes)
    sleep_ms: int = 0   # nginx proxies /slow/N to an upstream that sleeps N ms


REQUESTS = [
    Req("GET /ok", "GET", "/ok", "GET /ok HTTP/1.1"),
    Req("GET /ok", "GET", "/ok", "GET /ok HTTP/1.1"),
    Req("GET /ok", "GET", "/ok", "GET /ok HTTP/1.1"),
    Req("GET /api/user/1", "GET", "/api", "GET /api/user/1 HTTP/1.1"),
    Req("GET /api/user/1", "GET", "/api", "GET /api/user/1 HTTP/1.1"),
    Req("GET /api/user/2", "GET", "/api", "GET /api/user/2 HTTP/1.1"),
    Req("GET /missing", "GET", "/missing", "GET /missing HTTP/1.1"),
    Req("POST /api/form", "POST", "/api", "POST /api/form HTTP/1.1"),
    Req("GET /fail", "GET", "/fail", "GET /fail HTTP/1.1"),
    Req("GET /slow/50", "GET", "/slow", "GET /slow/50 HTTP/1.1", 50),
    Req("GET /slow/200", "GET", "/slow", "GET /slow/200 HTTP/1.1", 200),
    # Requests the server cannot parse: a hit with its status in section (invalid), method too.
    # nginx logs "GET /a b HTTP/1.1", Apache only "GET /a b" (no protocol).
    Req(SPACE_IN_TARGET, INVALID, INVALID, "GET /a b"),
    Req(TLS_CLIENT_HELLO, INVALID, INVALID, None),
]
# The status each server answers (tests/servers.py's routing table): Apache has no /slow proxy and
# no /api/user/2 file; Caddy answers /slow with 404.
STATUSES = {
    "nginx": [200, 200, 200, 200, 200, 200, 404, 200, 503, 200, 200, 400, 400],
    "apache": [200, 200, 200, 200, 200, 404, 404, 200, 503, 404, 404, 400, 400],
    "caddy": [200, 200, 200, 200, 200, 200, 404, 200, 503, 404, 404, 400, 400],
}

# nginx log_format bodies as nginx sees them (the quotes nginx concatenates removed): the same
# strings are given to logmond's --format.
NGINX_TIMINGS = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                 '"$http_referer" "$http_user_agent" $request_time $upstream_response_time')
NGINX_JSON = ('{"time_iso8601":"$time_iso8601","remote_addr":"$remote_addr","request":"$request",'
              '"status":"$status","body_bytes_sent":"$body_bytes_sent","request_time":"$request_time",'
              '"upstream_response_time":"$upstream_response_time","host":"$host",'
              '"http_referer":"$http_referer","http_user_agent":"$http_user_agent"}')
NGINX_HOST_FIRST = '$host $remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time'
NGINX_LOGS = {
    "combined.log": ("combined", None, None),
    "timings.log": ("timings", NGINX_TIMINGS, None),
    "json.log": ("jsondoc", NGINX_JSON, "json"),
    "host_first.log": ("hostfirst", NGINX_HOST_FIRST, None),
}
APACHE_TIMED = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D'
APACHE_LOGS = {"vc.log": "vhost_combined", "timed.log": APACHE_TIMED}


# -- this file's own reading of the raw lines ----------------------------------------------------

class Line(NamedTuple):
    ts: int
    host: str
    request: str
    status: int
    nbytes: int
    rtime: float | None = None  # seconds
    utime: float | None = None
    vhost: str | None = None    # as written (empty for nginx's rejected requests)


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_CLF = (r'(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
        r'(?P<status>\d{3}) (?P<bytes>\d+|-)')
_REF_UA = f" {_QUOTED} {_QUOTED}"
TEXT_LAYOUTS = {
    "nginx-combined": re.compile(_CLF + _REF_UA),
    "nginx-timings": re.compile(_CLF + _REF_UA + r" (?P<rt>\d+\.\d{3}) (?P<urt>\S+)"),
    "nginx-host-first": re.compile(r'(?P<vhost>\S*) (?P<host>\S+) \[(?P<time>[^\]]+)\] '
                                   r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+) '
                                   r'(?P<rt>\d+\.\d{3})'),
    "apache-vc": re.compile(r"(?P<vhost>[^\s:]+):\d+ " + _CLF + _REF_UA),
    "apache-timed": re.compile(_CLF + _REF_UA + r" (?P<us>\d+)"),
}


def clf_ts(stamp: str) -> int:
    m = re.fullmatch(r"(\d\d)/(\w{3})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-]\d{4})", stamp)
    assert m, stamp
    day, mon, year, hh, mm, ss, zone = m.groups()
    dt = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss))
    offset = (int(zone[1:3]) * 60 + int(zone[3:])) * 60 * (1 if zone[0] == "+" else -1)
    return int((dt - datetime(1970, 1, 1)).total_seconds()) - offset


def seconds_list(text: str) -> float | None:
    """nginx's $upstream_response_time: `-` or empty (none), or a list of times added up."""
    parts = [p.strip() for p in re.split(r"[,:]", text)]
    times = [float(p) for p in parts if p not in ("", "-")]
    return sum(times) if times else None


def read_text(raw: bytes, layout: str) -> Line:
    text = raw.decode("ascii")  # plain nginx/Apache formats escape every other byte as \xHH
    m = TEXT_LAYOUTS[layout].fullmatch(text)
    assert m, (layout, text)
    g = m.groupdict()
    rtime = float(g["rt"]) if g.get("rt") else (int(g["us"]) / 1e6 if g.get("us") else None)
    return Line(clf_ts(g["time"]), g["host"], g["request"], int(g["status"]),
                0 if g["bytes"] == "-" else int(g["bytes"]), rtime,
                seconds_list(g["urt"]) if g.get("urt") else None, g.get("vhost"))


def read_nginx_json(raw: bytes) -> Line:
    # escape=json writes a rejected request's bytes >= 0x80 raw: not UTF-8, so decode as latin-1
    r = json.loads(raw.decode("latin-1"))
    ts = int(datetime.fromisoformat(r["time_iso8601"]).timestamp())
    return Line(ts, r["remote_addr"], r["request"], int(r["status"]), int(r["body_bytes_sent"]),
                float(r["request_time"]), seconds_list(r["upstream_response_time"]), r["host"])


def read_caddy(raw: bytes) -> Line:
    r = json.loads(raw)
    req = r["request"]
    return Line(math.floor(r["ts"]), req["remote_ip"], f'{req["method"]} {req["uri"]} {req["proto"]}',
                int(r["status"]), int(r["size"]), float(r["duration"]), None, req["host"])


READERS: dict[str, Callable[[bytes], Line]] = {
    **{name: (lambda raw, name=name: read_text(raw, name)) for name in TEXT_LAYOUTS},
    "nginx-json": read_nginx_json,
    "caddy": read_caddy,
}


def vhost_name(written: str) -> str:
    """A virtual host as logmond counts it: `-` for an empty one, without the port."""
    if written in ("", "-"):
        return "-"
    name, sep, port = written.rpartition(":")
    return name if sep and port.isdigit() else written


# -- the servers, once per module ----------------------------------------------------------------

class Served(NamedTuple):
    logs: dict[str, Path]
    logged: list[tuple[Req, int]]  # the requests in the logs, in order, with their status


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    """Searchable by others: Apache run as root serves as www-data (see tests/servers.py)."""
    path = Path(tempfile.mkdtemp(prefix="lmreal", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(srv: Nginx | Apache | Caddy, name: str, logs_400: bool = True) -> Served:
    with srv:
        statuses = send_requests(srv.port, [r.send for r in REQUESTS])
    assert statuses == STATUSES[name], srv.diagnostics()
    logged = [(r, s) for r, s in zip(REQUESTS, statuses) if logs_400 or s != 400]
    return Served({f: srv.log_path(f) for f in srv.logs}, logged)


@pytest.fixture(scope="module")
def nginx_served(base_dir: Path) -> Served:
    require("nginx")
    served = serve(Nginx(base_dir / "nginx", NGINX_LOGS), "nginx")
    # the latency checks mean something: the slow requests took their time
    lines = [read_text(raw, "nginx-timings") for raw in served.logs["timings.log"].read_bytes().splitlines()]
    for line, (req, _) in zip(lines, served.logged):
        if req.sleep_ms:
            assert line.rtime >= req.sleep_ms / 1000 and line.utime >= req.sleep_ms / 1000, line
    return served


@pytest.fixture(scope="module")
def apache_served(base_dir: Path) -> Served:
    require("apache2")
    return serve(Apache(base_dir / "apache", APACHE_LOGS), "apache")


@pytest.fixture(scope="module")
def caddy_served(base_dir: Path) -> Served:
    require("caddy")
    # Go's net/http answers the requests it cannot parse itself: Caddy does not log them
    return serve(Caddy(base_dir / "caddy", "access.json"), "caddy", logs_400=False)


# -- running logmond and comparing ---------------------------------------------------------------

def run_logmond(path: Path, *args: str, json_mode: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "logmond", "--once", *(["--json"] if json_mode else []),
           "--summary-interval", str(BLOCK), "--timeframe", str(BLOCK), "--file", str(path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def nearest_rank(sorted_xs: list[float], percent: int) -> float:
    rank = max(1, -(-percent * len(sorted_xs) // 100))  # ceil(p n / 100), in integers
    return sorted_xs[rank - 1]


def close(got: object, want: float) -> bool:
    if not isinstance(got, (int, float)):
        return False
    if want == 0:
        return got == 0
    return abs(got - want) <= REL_ERROR * want * (1 + 1e-9)


def latency_problems(label: str, got: object, times: list[float]) -> list[str]:
    xs = sorted(times)
    if not isinstance(got, dict):
        return [f"{label}: {got!r}, expected quantiles of {len(xs)} times {xs}"]
    out = []
    if set(got) != {"count", "p50", "p90", "p99", "max"}:
        out.append(f"{label}: keys {sorted(got)}")
    if got.get("count") != len(xs):
        out.append(f"{label}.count = {got.get('count')!r}, expected {len(xs)} (lines with a time)")
    for key, p in (("p50", 50), ("p90", 90), ("p99", 99)):
        want = nearest_rank(xs, p)
        if not close(got.get(key), want):
            out.append(f"{label}.{key} = {got.get(key)!r}, nearest-rank {want!r} (within 1 %) of {xs}")
    if not close(got.get("max"), xs[-1]):
        out.append(f"{label}.max = {got.get('max')!r}, expected {xs[-1]!r} (within 1 %)")
    return out


def block_problems(summary: dict, items: list[tuple[Line, Req]], *, latency: bool, upstream: bool,
                   vhosts: bool) -> list[str]:
    """Everything a summary says, against the lines of its block."""
    out: list[str] = []
    at = f"summary {summary.get('start')}"

    def same(key: str, got: object, want: object) -> None:
        if got != want:
            out.append(f"{at} {key}: got {got!r}, expected {want!r}")

    n = len(items)
    sections = Counter(req.section for _, req in items)
    same("hits", summary.get("hits"), n)
    same("sections", dict(summary.get("sections", [])), dict(sections))
    counts = [c for _, c in summary.get("sections", [])]
    same("sections order", counts, sorted(counts, reverse=True))
    same("status", {k: v for k, v in summary.get("status", {}).items() if v},
         dict(Counter(f"{line.status // 100}xx" for line, _ in items)))
    same("methods", summary.get("methods"), dict(Counter(req.method for _, req in items)))
    same("bytes", summary.get("bytes"), sum(line.nbytes for line, _ in items))
    hosts = Counter(line.host for line, _ in items)
    same("hosts", summary.get("hosts"), len(hosts))
    same("top_hosts", dict(summary.get("top_hosts", [])), dict(hosts.most_common(5)))
    errors = {}
    for name, hits in sections.items():
        codes = [line.status // 100 for line, req in items if req.section == name]
        errors[name] = {"4xx": round(codes.count(4) / hits, 4), "5xx": round(codes.count(5) / hits, 4)}
    same("errors", summary.get("errors"), errors)

    if vhosts:
        same("vhosts", dict(summary.get("vhosts", [])),
             dict(Counter(vhost_name(line.vhost) for line, _ in items)))
    elif "vhosts" in summary:
        out.append(f"{at}: vhosts {summary['vhosts']!r} from a format without a virtual host")

    timed = [(line, req) for line, req in items if line.rtime is not None]
    if latency and timed:
        out += latency_problems(f"{at} latency", summary.get("latency"), [line.rtime for line, _ in timed])
        per_section = defaultdict(list)
        for line, req in timed:
            per_section[req.section].append(line.rtime)
        got = summary.get("section_latency")
        if not isinstance(got, dict) or set(got) != set(per_section):
            out.append(f"{at} section_latency: sections {sorted(got) if isinstance(got, dict) else got!r}, "
                       f"expected {sorted(per_section)}")
        for name, times in per_section.items():
            out += latency_problems(f"{at} section_latency[{name}]", (got or {}).get(name), times)
    else:
        for key in ("latency", "section_latency"):
            if key in summary:
                out.append(f"{at}: {key} {summary[key]!r} from a format without a request time")

    up = [line.utime for line, _ in items if line.utime is not None]
    if upstream and up:
        out += latency_problems(f"{at} upstream_latency", summary.get("upstream_latency"), up)
    elif "upstream_latency" in summary:
        out.append(f"{at}: upstream_latency {summary['upstream_latency']!r} without upstream times")
    return out


def check_reading(served: Served, log: str, reader: str, args: list[str], *, fmt: str,
                  spec: str | None = None, extra: bool = False, latency: bool = False,
                  upstream: bool = False, vhosts: bool = False) -> None:
    path = served.logs[log]
    raw_lines = path.read_bytes().splitlines()
    lines = [READERS[reader](raw) for raw in raw_lines]
    # the file holds the requests sent, in order, with the statuses the client saw
    assert len(lines) == len(served.logged), raw_lines
    for line, (req, status) in zip(lines, served.logged):
        assert line.status == status, (line, req)
        if req.logged is not None:
            assert line.request.startswith(req.logged), (line, req)
    if latency:
        assert all(line.rtime is not None for line in lines), lines

    proc = run_logmond(path, *args)
    shown = f"\n--- logmond {' '.join(args)} on {path}:\n{proc.stdout}{proc.stderr}"
    assert proc.returncode == 0, shown
    assert proc.stderr == "", shown
    events = [json.loads(e) for e in proc.stdout.splitlines()]
    assert events and events[-1]["type"] == "totals", shown
    totals, summaries = events[-1], events[:-1]
    assert {e["type"] for e in summaries} == {"summary"}, shown  # no alert at ~13 hits a day

    problems = []
    n = len(lines)
    for key, want in (("format", fmt), ("lines", n), ("parsed", n), ("malformed", 0), ("late", 0),
                      ("malformed_by_reason", {}), ("malformed_samples", [])):
        if totals.get(key) != want:
            problems.append(f"totals.{key}: got {totals.get(key)!r}, expected {want!r}")
    if totals.get("format_spec") != spec:
        problems.append(f"totals.format_spec: got {totals.get('format_spec')!r}, expected {spec!r}")
    if extra:  # combined plus timings, read by auto: it says that it took the extra fields as times
        if "request_time" not in str(totals.get("extra")):
            problems.append(f"totals.extra: got {totals.get('extra')!r}, expected it to name request_time")
    elif totals.get("extra"):
        problems.append(f"totals.extra: got {totals.get('extra')!r}, expected none")

    by_block: dict[int, list[tuple[Line, Req]]] = defaultdict(list)
    for line, (req, _) in zip(lines, served.logged):
        by_block[line.ts - line.ts % BLOCK].append((line, req))
    busy = {s["start"]: s for s in summaries if s.get("hits")}
    if set(busy) != set(by_block):
        problems.append(f"summaries with hits start at {sorted(busy)}, lines fall in blocks {sorted(by_block)}")
    if sum(s.get("hits", 0) for s in summaries) != n:
        problems.append(f"summaries count {sum(s.get('hits', 0) for s in summaries)} hits, the file has {n}")
    for start, items in sorted(by_block.items()):
        if start in busy:
            problems += block_problems(busy[start], items, latency=latency, upstream=upstream, vhosts=vhosts)
    assert not problems, "\n".join(problems) + shown


# -- nginx ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("log, reader, args, expect", [
    pytest.param("combined.log", "nginx-combined", ["--format", "auto"], dict(fmt="combined"),
                 id="combined-auto"),
    pytest.param("timings.log", "nginx-timings", [],
                 dict(fmt="combined", extra=True, latency=True, upstream=True), id="timings-auto"),
    pytest.param("timings.log", "nginx-timings", ["--format", NGINX_TIMINGS],
                 dict(fmt="nginx", spec=NGINX_TIMINGS, latency=True, upstream=True), id="timings-log_format"),
    pytest.param("json.log", "nginx-json", ["--format", "json"],
                 dict(fmt="json", latency=True, upstream=True, vhosts=True), id="escape_json-json"),
    pytest.param("json.log", "nginx-json", [],
                 dict(fmt="json", latency=True, upstream=True, vhosts=True), id="escape_json-auto"),
    pytest.param("host_first.log", "nginx-host-first", ["--format", NGINX_HOST_FIRST],
                 dict(fmt="nginx", spec=NGINX_HOST_FIRST, latency=True, vhosts=True), id="host_first-log_format"),
])
def test_nginx_log_read_exactly(nginx_served: Served, log: str, reader: str, args: list[str],
                                expect: dict) -> None:
    """nginx wrote the same requests to four logs (built-in combined, combined + request and
    upstream times, escape=json, a custom format with $host first, whose rejected requests have
    an empty $host); each reading counts every line: hits per section (the two 400s in
    (invalid)), status class, method, bytes, hosts, vhosts, and latency as in the file."""
    check_reading(nginx_served, log, reader, args, **expect)


# -- Apache --------------------------------------------------------------------------------------

@pytest.mark.parametrize("log, reader, args, expect", [
    pytest.param("vc.log", "apache-vc", ["--format", "vcombined"], dict(fmt="vcombined", vhosts=True),
                 id="vhost_combined-vcombined"),
    pytest.param("vc.log", "apache-vc", [], dict(fmt="vcombined", vhosts=True), id="vhost_combined-auto"),
    pytest.param("timed.log", "apache-timed", ["--format", APACHE_TIMED],
                 dict(fmt="apache", spec=APACHE_TIMED, latency=True), id="D-LogFormat"),
])
def test_apache_log_read_exactly(apache_served: Served, log: str, reader: str, args: list[str],
                                 expect: dict) -> None:
    """Apache's vhost_combined log (read with the preset and by auto, which must tell it from
    combined) and a LogFormat with %D (microseconds: latency); Apache logs a refused request as
    "GET /a b" (no protocol) or "\\x16\\x03\\x01" with 400: section and method (invalid)."""
    check_reading(apache_served, log, reader, args, **expect)


# -- Caddy ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [pytest.param(["--format", "caddy"], id="caddy"),
                                  pytest.param([], id="auto")])
def test_caddy_log_read_exactly(caddy_served: Served, args: list[str]) -> None:
    """Caddy's JSON access log: counts, vhosts (request.host without the port) and latency
    (`duration`, seconds, written to the nanosecond)."""
    check_reading(caddy_served, "access.json", "caddy", args, fmt="caddy", latency=True, vhosts=True)


# -- a file in no known format -------------------------------------------------------------------

SERVICES_HEAD = ("# Network services, Internet style. Updated from the IANA Service Name and Transport "
                 "Protocol Port Number Registry, with unofficial additions from other sources")
NOT_LOGS = {
    "services": "\n".join([SERVICES_HEAD, "", "tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer",
                           "echo\t\t7/tcp", "echo\t\t7/udp", "ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol",
                           "http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP", "https\t\t443/tcp"]) + "\n",
    "syslog": ("Dec  2 05:15:21 host sshd[123]: Accepted publickey for root from 10.0.0.7 port 50022 ssh2\n"
               "Dec  2 05:15:21 host systemd-logind[88]: New session 4 of user root.\n"
               "Dec  2 05:17:01 host CRON[456]: (root) CMD (cd / && run-parts --report /etc/cron.hourly)\n"),
}


@pytest.mark.parametrize("json_mode", [pytest.param(False, id="text"), pytest.param(True, id="json")])
@pytest.mark.parametrize("name", sorted(NOT_LOGS))
def test_no_known_format_exits_1_saying_so(tmp_path: Path, name: str, json_mode: bool) -> None:
    """No preset fits: --once exits 1 with a one-line message on stderr naming the file, the
    formats tried, the first line cut to 120 characters and "give --format" (after the human
    "N lines: ..." count, which text mode always writes to stderr); nothing is parsed."""
    path = tmp_path / name
    path.write_text(NOT_LOGS[name])
    content = [line for line in NOT_LOGS[name].splitlines() if line.strip()]
    proc = run_logmond(path, json_mode=json_mode)
    shown = f"\n--- stdout:\n{proc.stdout}--- stderr:\n{proc.stderr}"
    assert proc.returncode == 1, shown
    err = proc.stderr.splitlines()
    # JSON mode: the message is all of stderr; text mode also prints its "N lines: ..." count there
    assert len(err) == (1 if json_mode else 2), shown
    msg = err[-1]
    assert msg.startswith("logmond: no known format fits"), shown
    assert str(path) in msg and "give --format" in msg, shown
    for preset in ("csv", "common", "combined", "vcombined", "json", "caddy", "traefik"):
        assert re.search(rf"\b{preset}\b", msg), (preset, shown)
    first = content[0]
    assert first[:120] in msg, shown
    if len(first) > 120:
        assert first[:121] not in msg, shown
    if json_mode:
        events = [json.loads(e) for e in proc.stdout.splitlines()]
        assert [e["type"] for e in events] == ["totals"], shown
        totals = events[0]
        assert totals["format"] is None and totals["format_error"], shown
        assert (totals["lines"], totals["parsed"], totals["malformed"]) == (len(content), 0, len(content)), shown
        assert totals["malformed_by_reason"] == {"format": len(content)}, shown
