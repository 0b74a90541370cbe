"""JSON access logs (logmond/core/jsonformat.py): every key each preset reads, every way a line is
malformed, lines real servers wrote, and the fast path held to the reference parser."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logmond.core.formats import KIND_SUFFIX, Columns
from logmond.core.jsonformat import (JSON_FORMATS, MAX_FAST_CHARS, MAX_PLANS, CaddyFormat, JsonLogFormat,
                                     NginxJsonFormat, TraefikFormat, iso_time)
from logmond.core.parse import (INVALID, R_BINARY, R_BYTES, R_FIELDS, R_LATENCY, R_REQUEST, R_STATUS,
                                R_TIMESTAMP, Record, latency_of, record_of)
from logmond.tools.loggen import generate

NGINX, CADDY, TRAEFIK = NginxJsonFormat(), CaddyFormat(), TraefikFormat()
FORMATS = (NGINX, CADDY, TRAEFIK)
REASONS = {R_FIELDS, R_TIMESTAMP, R_STATUS, R_BYTES, R_REQUEST, R_LATENCY, R_BINARY}
T0 = 1796188521  # 2026-12-02T05:15:21Z

# -- lines the servers wrote on this machine --------------------------------------------------------

# nginx 1.22 with the documentation's escape=json format (all variables quoted), the requests of
# tests/test_servers_harness.py: the 400s are "GET /a b HTTP/1.1" and a TLS ClientHello, whose raw
# bytes >= 0x80 nginx writes unescaped, so that line is not UTF-8.
NGINX_DOC = [
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"GET /ok HTTP/1.1","status":"200","body_bytes_sent":"3","request_time":"0.000","upstream_response_time":"","host":"127.0.0.1","http_referer":"","http_user_agent":"logmon-test/1"}',
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"GET /api/user/1?x=1 HTTP/1.1","status":"200","body_bytes_sent":"4","request_time":"0.000","upstream_response_time":"","host":"127.0.0.1","http_referer":"","http_user_agent":"logmon-test/1"}',
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"GET /missing HTTP/1.1","status":"404","body_bytes_sent":"153","request_time":"0.000","upstream_response_time":"","host":"127.0.0.1","http_referer":"","http_user_agent":"logmon-test/1"}',
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"POST /api/form HTTP/1.1","status":"200","body_bytes_sent":"4","request_time":"0.000","upstream_response_time":"","host":"127.0.0.1","http_referer":"","http_user_agent":"logmon-test/1"}',
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"GET /fail HTTP/1.1","status":"503","body_bytes_sent":"197","request_time":"0.000","upstream_response_time":"","host":"127.0.0.1","http_referer":"","http_user_agent":"logmon-test/1"}',
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"GET /slow/50 HTTP/1.1","status":"200","body_bytes_sent":"9","request_time":"0.052","upstream_response_time":"0.052","host":"127.0.0.1","http_referer":"","http_user_agent":"logmon-test/1"}',
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"GET /a b HTTP/1.1","status":"400","body_bytes_sent":"157","request_time":"0.000","upstream_response_time":"","host":"","http_referer":"","http_user_agent":""}',
    b'{"time_iso8601":"2026-12-02T05:31:57+00:00","remote_addr":"127.0.0.1","request":"\\u0016\\u0003\\u0001\\u0000\xa5\\u0001\\u0000\\u0000\xa1\\u0003\\u0003\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t","status":"400","body_bytes_sent":"157","request_time":"0.000","upstream_response_time":"","host":"","http_referer":"","http_user_agent":""}',
]
# The same requests, another format: msec and time_local, request_method + request_uri, numbers
# unquoted, $http_host (with the port) and an empty $server_name. nginx leaves method and URI
# empty for the requests it rejected.
NGINX_ALT = [
    '{"msec":"1796189517.547","time_local":"02/Dec/2026:05:31:57 +0000","remote_addr":"127.0.0.1","request_method":"GET","request_uri":"/ok","status":200,"body_bytes_sent":3,"request_time":0.000,"http_host":"127.0.0.1:33239","server_name":""}',
    '{"msec":"1796189517.600","time_local":"02/Dec/2026:05:31:57 +0000","remote_addr":"127.0.0.1","request_method":"GET","request_uri":"/slow/50","status":200,"body_bytes_sent":9,"request_time":0.052,"http_host":"127.0.0.1:33239","server_name":""}',
    '{"msec":"1796189517.601","time_local":"02/Dec/2026:05:31:57 +0000","remote_addr":"127.0.0.1","request_method":"","request_uri":"","status":400,"body_bytes_sent":157,"request_time":0.000,"http_host":"","server_name":""}',
]
# The harness's own custom format: no time and no remote_addr.
NGINX_HARNESS = '{"host":"127.0.0.1","request":"GET /slow HTTP/1.1","status":200,"request_time":0.205,"upstream":"0.204"}'
CADDY_LINES = [
    '{"level":"info","ts":1796188522.132073,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"34730","proto":"HTTP/1.1","method":"GET","host":"127.0.0.1:38899","uri":"/ok","headers":{"User-Agent":["logmon-test/1"],"Connection":["close"]}},"user_id":"","duration":0.000020991,"size":2,"status":200,"resp_headers":{"Server":["Caddy"],"Content-Type":["text/plain; charset=utf-8"]}}',
    '{"level":"error","ts":1796188522.1333647,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"34731","proto":"HTTP/1.1","method":"GET","host":"127.0.0.1:38899","uri":"/fail","headers":{}},"duration":0.000002875,"size":0,"status":503}',
]
# Traefik 2/3 (keys sorted, as it writes them), the shape of a line reported from a real server.
TRAEFIK_LINE = ('{"ClientAddr":"203.0.113.9:63251","ClientHost":"203.0.113.9","ClientPort":"63251","ClientUsername":"-",'
                '"DownstreamContentSize":185,"DownstreamStatus":200,"Duration":8764859,"OriginContentSize":185,'
                '"OriginDuration":8147549,"OriginStatus":200,"Overhead":617310,"RequestAddr":"sub.example.com",'
                '"RequestContentSize":0,"RequestCount":17343,"RequestHost":"sub.example.com","RequestMethod":"GET",'
                '"RequestPath":"/pebble?x=1","RequestPort":"-","RequestProtocol":"HTTP/1.1","RequestScheme":"https",'
                '"RetryAttempts":0,"RouterName":"https-ns@docker","ServiceAddr":"172.21.0.3:8564",'
                '"ServiceName":"ns-ns@docker","ServiceURL":"http://172.21.0.3:8564",'
                '"StartLocal":"2024-12-29T12:42:41.965891254+01:00","StartUTC":"2024-12-29T11:42:41.965891254Z",'
                '"entryPointName":"https","level":"info","msg":"","time":"2024-12-29T12:42:41+01:00"}')


# -- helpers ------------------------------------------------------------------------------------

def derived(fmt: JsonLogFormat, cols: Columns) -> list[Record | str]:
    """What the batch makes of each line of a run from its columns (formats.Columns)."""
    n = len(cols.stamps)
    for col in (cols.hosts, cols.kinds, cols.sizes, cols.rtimes, cols.utimes, cols.vhosts):
        assert col is None or len(col) == n
    out = []
    for i, kind in enumerate(cols.kinds):
        assert kind[-KIND_SUFFIX] == '"'
        out.append(record_of(fmt.read_time(cols.stamps[i]), cols.hosts[i], kind[:-KIND_SUFFIX], kind[-3:],
                             cols.sizes[i],
                             rtime=None if cols.rtimes is None else latency_of(cols.rtimes[i], fmt.latency_scale),
                             utime=None if cols.utimes is None else latency_of(cols.utimes[i]),
                             vhost=None if cols.vhosts is None else cols.vhosts[i]))
    return out


def reference(fmt: JsonLogFormat, text: str) -> list[Record | str]:
    """parse() of each line, as the slow path hands them over (a trailing CR dropped)."""
    return [fmt.parse(line[:-1] if line.endswith("\r") else line) for line in text.split("\n")[:-1]]


def agrees(fmt: JsonLogFormat, lines: list[str]) -> bool:
    """True if the fast path took the run; either way, what it took is what parse() says."""
    text = "".join(line + "\n" for line in lines)
    cols = fmt.columns(text)
    if cols is None:
        return False
    assert all(line.strip() for line in text.split("\n")[:-1])
    assert derived(fmt, cols) == reference(fmt, text)
    return True


def fast(fmt: JsonLogFormat, lines: list[str]) -> list[Record | str]:
    """The run through the fast path, which must take it."""
    assert agrees(fmt, lines), lines
    return reference(fmt, "".join(line + "\n" for line in lines))


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def one(fmt: JsonLogFormat, obj: object) -> Record | str:
    """parse() of an object written as a line, checked against the fast path when it takes it."""
    line = dumps(obj)
    agrees(fmt, [line])
    return fmt.parse(line)


DOC = {"time_iso8601": "2026-12-02T05:15:21+00:00", "remote_addr": "198.51.100.7",
       "request": "GET /api/user/3?x=1 HTTP/1.1", "status": "200", "body_bytes_sent": "512",
       "request_time": "0.250", "upstream_response_time": "0.240", "host": "shop.example", "http_referer": "",
       "http_user_agent": "curl/8.0"}
DOC_RECORD = Record(T0, "198.51.100.7", "GET", "/api", 200, 512, 0.25, 0.24, "shop.example")
CADDY_OBJ = {"level": "info", "ts": T0 + 0.5, "logger": "http.log.access.log0", "msg": "handled request",
             "request": {"remote_ip": "198.51.100.7", "remote_port": "5000", "proto": "HTTP/2.0", "method": "POST",
                         "host": "shop.example:443", "uri": "/cart/add?id=9", "headers": {"Accept": ["*/*"]}},
             "duration": 0.125, "size": 77, "status": 201}
CADDY_RECORD = Record(T0, "198.51.100.7", "POST", "/cart", 201, 77, 0.125, None, "shop.example")
TRAEFIK_OBJ = json.loads(TRAEFIK_LINE)
TRAEFIK_RECORD = Record(1735472561, "203.0.113.9", "GET", "/pebble", 200, 185, 0.008764859, None, "sub.example.com")


def changed(base: dict, **keys: object) -> dict:
    """`base` with keys set (None: removed); a key "request__x" is x inside Caddy's request."""
    obj = json.loads(json.dumps(base))
    for key, value in keys.items():
        where, _, name = key.rpartition("__")
        target = obj[where] if where else obj
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return obj


# -- the lines real servers wrote -----------------------------------------------------------------

def test_presets_by_name() -> None:
    assert {name: cls().name for name, cls in JSON_FORMATS.items()} == {"json": "json", "caddy": "caddy",
                                                                        "traefik": "traefik"}
    assert NGINX.describe() == {"format": "json", "format_spec": None}
    assert (NGINX.latency, NGINX.upstream, NGINX.vhost, NGINX.latency_scale) == (True, True, True, 1.0)
    assert (CADDY.latency, CADDY.upstream, CADDY.vhost) == (True, False, True)
    assert (TRAEFIK.latency, TRAEFIK.upstream, TRAEFIK.vhost) == (True, False, True)


def test_nginx_documented_format_as_nginx_wrote_it() -> None:
    lines = [raw.decode() for raw in NGINX_DOC[:-1]]
    ts = 1796189517
    assert fast(NGINX, lines) == [
        Record(ts, "127.0.0.1", "GET", "/ok", 200, 3, 0.0, None, "127.0.0.1"),
        Record(ts, "127.0.0.1", "GET", "/api", 200, 4, 0.0, None, "127.0.0.1"),
        Record(ts, "127.0.0.1", "GET", "/missing", 404, 153, 0.0, None, "127.0.0.1"),
        Record(ts, "127.0.0.1", "POST", "/api", 200, 4, 0.0, None, "127.0.0.1"),
        Record(ts, "127.0.0.1", "GET", "/fail", 503, 197, 0.0, None, "127.0.0.1"),
        Record(ts, "127.0.0.1", "GET", "/slow", 200, 9, 0.052, 0.052, "127.0.0.1"),
        # rejected by nginx (a space in the target): a hit, its empty $host counted as "-"
        Record(ts, "127.0.0.1", INVALID, INVALID, 400, 157, 0.0, None, "-"),
    ]


def test_nginx_raw_bytes_of_a_rejected_request_read_through_parse_bytes() -> None:
    raw = NGINX_DOC[-1]
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert NGINX.parse_bytes(raw) == Record(1796189517, "127.0.0.1", INVALID, INVALID, 400, 157, 0.0, None, "-")
    assert NGINX.parse_bytes(raw + b"\r") == NGINX.parse_bytes(raw)
    # bytes that break the JSON itself, not a string's content, are still malformed
    assert NGINX.parse_bytes(b'{"time_iso8601":\xff}') == R_FIELDS
    assert NGINX.parse_bytes(b'{"a":"\x00"}') == R_BINARY
    # a valid line goes the same way as through parse()
    assert NGINX.parse_bytes(NGINX_DOC[0]) == NGINX.parse(NGINX_DOC[0].decode())


def test_nginx_other_keys_with_numbers_unquoted_as_nginx_wrote_them() -> None:
    ts = 1796189517
    assert fast(NGINX, NGINX_ALT) == [
        Record(ts, "127.0.0.1", "GET", "/ok", 200, 3, 0.0, None, "127.0.0.1"),
        Record(ts, "127.0.0.1", "GET", "/slow", 200, 9, 0.052, None, "127.0.0.1"),
        Record(ts, "127.0.0.1", INVALID, INVALID, 400, 157, 0.0, None, "-"),
    ]


def test_nginx_format_without_time_or_client_is_fields() -> None:
    assert NGINX.parse(NGINX_HARNESS) == R_FIELDS
    assert NGINX.columns(NGINX_HARNESS + "\n") is None


def test_caddy_as_caddy_wrote_it() -> None:
    assert fast(CADDY, CADDY_LINES) == [
        Record(1796188522, "127.0.0.1", "GET", "/ok", 200, 2, 0.000020991, None, "127.0.0.1"),
        Record(1796188522, "127.0.0.1", "GET", "/fail", 503, 0, 0.000002875, None, "127.0.0.1"),
    ]


def test_traefik_line() -> None:
    assert fast(TRAEFIK, [TRAEFIK_LINE]) == [TRAEFIK_RECORD]


# -- every key changes the Record -------------------------------------------------------------------

@pytest.mark.parametrize("keys, fields", [
    ({}, {}),
    ({"time_iso8601": "2026-12-02T06:15:21+01:00"}, {}),
    ({"time_iso8601": "2026-12-02T05:15:21.987654321Z"}, {}),
    ({"time_iso8601": "2026-12-02T05:15:22-00:30"}, {"ts": T0 + 1801}),
    ({"time_iso8601": None, "time_local": "02/Dec/2026:05:15:25 +0000"}, {"ts": T0 + 4}),
    ({"time_iso8601": None, "msec": "1796188530.999"}, {"ts": T0 + 9}),
    ({"time_iso8601": None, "msec": 1796188530.999}, {"ts": T0 + 9}),
    ({"time_iso8601": None, "msec": 1796188530}, {"ts": T0 + 9}),
    # the first of time_iso8601, time_local, msec is the time
    ({"time_local": "02/Dec/2026:07:00:00 +0000", "msec": "1"}, {}),
    ({"time_iso8601": None, "time_local": "02/Dec/2026:05:15:25 +0000", "msec": "1"}, {"ts": T0 + 4}),
    ({"remote_addr": "2001:db8::1"}, {"host": "2001:db8::1"}),
    ({"remote_addr": ""}, {"host": ""}),
    ({"request": "DELETE https://shop.example/cart/1 HTTP/2.0"}, {"method": "DELETE", "section": "/cart"}),
    ({"request": None, "request_method": "PUT", "request_uri": "/report?y=2"}, {"method": "PUT", "section": "/report"}),
    ({"request_method": "PUT", "request_uri": "/report"}, {}),  # request wins
    ({"status": "404"}, {"status": 404}),
    ({"status": 503}, {"status": 503}),
    ({"status": "400", "request": ""}, {"status": 400, "method": INVALID, "section": INVALID}),
    ({"body_bytes_sent": "0"}, {"nbytes": 0}),
    ({"body_bytes_sent": 4096}, {"nbytes": 4096}),
    ({"body_bytes_sent": "-"}, {"nbytes": 0}),
    ({"body_bytes_sent": None, "bytes_sent": "700"}, {"nbytes": 700}),
    ({"bytes_sent": "700"}, {}),  # body_bytes_sent wins
    ({"body_bytes_sent": None}, {"nbytes": 0}),
    ({"request_time": "1.5"}, {"rtime": 1.5}),
    ({"request_time": 0.004}, {"rtime": 0.004}),
    ({"request_time": 2.5e-05}, {"rtime": 2.5e-05}),
    ({"request_time": 3}, {"rtime": 3.0}),
    ({"request_time": ""}, {"rtime": None}),
    ({"request_time": None}, {"rtime": None}),
    ({"upstream_response_time": "0.001, 0.002 : 0.003"}, {"utime": latency_of("0.001, 0.002 : 0.003")}),
    ({"upstream_response_time": ""}, {"utime": None}),
    ({"upstream_response_time": "-"}, {"utime": None}),
    ({"upstream_response_time": 0.5}, {"utime": 0.5}),
    ({"upstream_response_time": None}, {"utime": None}),
    ({"host": "Shop.example:8443"}, {"vhost": "Shop.example"}),
    ({"host": ""}, {"vhost": "-"}),
    ({"host": None, "http_host": "api.example:443"}, {"vhost": "api.example"}),
    ({"host": None, "server_name": "srv.example"}, {"vhost": "srv.example"}),
    ({"http_host": "api.example", "server_name": "srv.example"}, {}),  # host wins
    ({"host": None, "http_host": "api.example", "server_name": "srv.example"}, {"vhost": "api.example"}),
    ({"host": None}, {"vhost": None}),
])
def test_nginx_key(keys: dict, fields: dict) -> None:
    assert one(NGINX, changed(DOC, **keys)) == DOC_RECORD._replace(**fields)


@pytest.mark.parametrize("keys, fields", [
    ({"ts": T0 + 7.9999}, {"ts": T0 + 7}),
    ({"ts": T0}, {}),
    ({"request__remote_ip": "2001:db8::5"}, {"host": "2001:db8::5"}),
    ({"request__remote_ip": None, "request__remote_addr": "203.0.113.4:5123"}, {"host": "203.0.113.4"}),
    ({"request__remote_ip": None, "request__remote_addr": "[2001:db8::1]:5123"}, {"host": "2001:db8::1"}),
    ({"request__remote_ip": None, "request__remote_addr": "unix"}, {"host": "unix"}),
    ({"request__remote_addr": "203.0.113.4:5123"}, {}),  # remote_ip wins
    ({"request__method": "GET"}, {"method": "GET"}),
    ({"request__uri": "/"}, {"section": "/"}),
    ({"request__host": "other.example"}, {"vhost": "other.example"}),
    ({"request__host": ""}, {"vhost": "-"}),
    ({"status": 404}, {"status": 404}),
    ({"status": "404"}, {"status": 404}),
    ({"size": 0}, {"nbytes": 0}),
    ({"size": "12"}, {"nbytes": 12}),
    ({"duration": 2.875e-06}, {"rtime": 2.875e-06}),
    ({"duration": "0.5"}, {"rtime": 0.5}),
    ({"duration": 2}, {"rtime": 2.0}),
])
def test_caddy_key(keys: dict, fields: dict) -> None:
    assert one(CADDY, changed(CADDY_OBJ, **keys)) == CADDY_RECORD._replace(**fields)


@pytest.mark.parametrize("keys, fields", [
    ({"StartUTC": "2024-12-29T11:42:42Z"}, {"ts": 1735472562}),
    ({"StartUTC": "2024-12-29T11:42:42.5+00:00"}, {"ts": 1735472562}),
    ({"StartLocal": "2030-01-01T00:00:00+01:00", "time": "2030-01-01T00:00:00Z"}, {}),  # StartUTC only
    ({"ClientHost": "198.51.100.1"}, {"host": "198.51.100.1"}),
    ({"RequestMethod": "HEAD"}, {"method": "HEAD"}),
    ({"RequestPath": "/static/app.js"}, {"section": "/static"}),
    ({"RequestHost": "api.example:443"}, {"vhost": "api.example"}),
    ({"DownstreamStatus": 502, "OriginStatus": 200}, {"status": 502}),
    ({"DownstreamContentSize": 0, "OriginContentSize": 999}, {"nbytes": 0}),
    ({"Duration": 1_500_000_000, "OriginDuration": 5}, {"rtime": 1.5}),
    ({"Duration": 7}, {"rtime": 7e-09}),
    ({"Duration": 0}, {"rtime": 0.0}),
])
def test_traefik_key(keys: dict, fields: dict) -> None:
    assert one(TRAEFIK, changed(TRAEFIK_OBJ, **keys)) == TRAEFIK_RECORD._replace(**fields)


def test_iso_time() -> None:
    assert iso_time("2026-12-02T05:15:21+00:00") == iso_time("2026-12-02T05:15:21Z") == T0
    assert iso_time("2026-12-02T05:15:21.123456789Z") == T0
    assert iso_time("2026-12-02T07:15:21+02:00") == T0
    assert iso_time("2026-12-02T05:15:21+0000") == T0  # ISO 8601's basic offset, as Apache's %{%z}t writes it
    assert iso_time("1970-01-01T00:00:00Z") == 0
    assert iso_time("2024-02-29T00:00:00Z") == 1709164800
    for bad in ("2026-02-30T00:00:00Z", "2026-12-02T24:00:00Z", "2026-12-02T05:15:21", "2026-12-02 05:15:21Z",
                "2026-12-02T05:15:21.Z", "2026-12-02T05:15:21.1234567890Z",
                "2026-12-02T05:15:21+24:00", "0000-01-01T00:00:00Z", "２０２６-12-02T05:15:21Z", ""):
        assert iso_time(bad) is None, bad


# -- every way a line is malformed ----------------------------------------------------------------

@pytest.mark.parametrize("fmt, base, keys", [
    (NGINX, DOC, {"time_iso8601": None}),
    (NGINX, DOC, {"remote_addr": None}),
    (NGINX, DOC, {"status": None}),
    (NGINX, DOC, {"request": None}),
    (NGINX, DOC, {"request": None, "request_method": "GET"}),
    (NGINX, DOC, {"request": None, "request_uri": "/"}),
    (CADDY, CADDY_OBJ, {"ts": None}),
    (CADDY, CADDY_OBJ, {"msg": None}),
    (CADDY, CADDY_OBJ, {"request": None}),
    (CADDY, CADDY_OBJ, {"request__remote_ip": None}),
    (CADDY, CADDY_OBJ, {"request__method": None}),
    (CADDY, CADDY_OBJ, {"request__uri": None}),
    (CADDY, CADDY_OBJ, {"request__host": None}),
    (CADDY, CADDY_OBJ, {"status": None}),
    (CADDY, CADDY_OBJ, {"size": None}),
    (CADDY, CADDY_OBJ, {"duration": None}),
] + [(TRAEFIK, TRAEFIK_OBJ, {key: None}) for key in sorted(TraefikFormat.KEYS)])
def test_missing_key_is_fields(fmt: JsonLogFormat, base: dict, keys: dict) -> None:
    assert one(fmt, changed(base, **keys)) == R_FIELDS


@pytest.mark.parametrize("fmt, base, keys", [
    (NGINX, DOC, {"status": True}),
    (NGINX, DOC, {"status": 200.0}),
    (NGINX, DOC, {"status": [200]}),
    (NGINX, DOC, {"remote_addr": 7}),
    (NGINX, DOC, {"request": ["GET / HTTP/1.1"]}),
    (NGINX, DOC, {"request": None, "request_method": "GET", "request_uri": 5}),
    (NGINX, DOC, {"time_iso8601": 1796188521}),
    (NGINX, DOC, {"time_iso8601": None, "time_local": None, "msec": True}),
    (NGINX, DOC, {"time_iso8601": None, "msec": [1]}),
    (NGINX, DOC, {"body_bytes_sent": 1.5}),
    (NGINX, DOC, {"body_bytes_sent": False}),
    (NGINX, DOC, {"request_time": True}),
    (NGINX, DOC, {"upstream_response_time": {"a": 1}}),
    (NGINX, DOC, {"host": 443}),
    (CADDY, CADDY_OBJ, {"ts": "1796188521"}),
    (CADDY, CADDY_OBJ, {"ts": False}),
    (CADDY, CADDY_OBJ, {"request": "GET /"}),
    (CADDY, CADDY_OBJ, {"request__remote_ip": None, "request__remote_addr": 5}),
    (CADDY, CADDY_OBJ, {"size": 1.0}),
    (CADDY, CADDY_OBJ, {"msg": "handled request!"}),
    (TRAEFIK, TRAEFIK_OBJ, {"Duration": 1.5}),
    (TRAEFIK, TRAEFIK_OBJ, {"Duration": "8764859"}),
    (TRAEFIK, TRAEFIK_OBJ, {"StartUTC": 1735472561}),
    (TRAEFIK, TRAEFIK_OBJ, {"DownstreamStatus": None, "OriginStatus": 200}),
    (TRAEFIK, TRAEFIK_OBJ, {"RequestHost": ["a"]}),
])
def test_wrong_type_is_fields(fmt: JsonLogFormat, base: dict, keys: dict) -> None:
    assert one(fmt, changed(base, **keys)) == R_FIELDS


@pytest.mark.parametrize("line", [
    "", "   ", "[]", "1", '"text"', "null", "true", "{", "}", '{"a":1', "{'a': 1}", "nonsense",
    dumps(DOC)[:-1], dumps(DOC) + "}", dumps(DOC) + dumps(DOC), dumps(DOC) + "," + dumps(DOC), f"[{dumps(DOC)}]",
    dumps(DOC).replace('"status":"200"', '"status":0200'), dumps(DOC).replace('"status":"200"', '"status":2e2x'),
    "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000,
    dumps(DOC)[:-1] + ',"big":' + "9" * 5000 + "}",  # more digits than Python converts
])
def test_not_one_json_object_is_fields(line: str) -> None:
    for fmt in FORMATS:
        assert fmt.parse(line) == R_FIELDS
        assert fmt.columns(line + "\n") is None


def test_other_caddy_loggers_are_fields() -> None:
    startup = {"level": "info", "ts": T0 + 0.1, "logger": "http", "msg": "server running", "name": "srv0",
               "protocols": ["h1", "h2", "h3"]}
    tls = {"level": "warn", "ts": T0 + 0.2, "logger": "tls", "msg": "stapling OCSP", "request": {"method": "GET"}}
    for obj in (startup, tls, changed(CADDY_OBJ, msg="received request")):
        assert one(CADDY, obj) == R_FIELDS
    assert CADDY.columns(dumps(CADDY_OBJ) + "\n" + dumps(startup) + "\n") is None


@pytest.mark.parametrize("fmt, base, keys, reason", [
    (NGINX, DOC, {"time_iso8601": "yesterday"}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": "1796188521"}, R_TIMESTAMP),  # seconds are for msec
    (NGINX, DOC, {"time_iso8601": "02/Dec/2026:05:15:21 +0000"}, R_TIMESTAMP),  # a CLF date is for time_local
    (NGINX, DOC, {"time_iso8601": None, "time_local": "2026-12-02T05:15:21Z"}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": "1796188521.5x"}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": " 1796188521"}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": "1e9"}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": -1}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": -0.5}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": 1e20}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": 10**400}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": float("inf")}, R_TIMESTAMP),
    (NGINX, DOC, {"time_iso8601": None, "msec": float("nan")}, R_TIMESTAMP),
    (NGINX, DOC, {"status": "abc"}, R_STATUS),
    (NGINX, DOC, {"status": "1200"}, R_STATUS),
    (NGINX, DOC, {"status": 10**400}, R_STATUS),
    (NGINX, DOC, {"status": -200}, R_STATUS),
    (NGINX, DOC, {"request": "hello"}, R_REQUEST),
    (NGINX, DOC, {"body_bytes_sent": "lots"}, R_BYTES),
    (NGINX, DOC, {"body_bytes_sent": ""}, R_BYTES),
    (NGINX, DOC, {"body_bytes_sent": -5}, R_BYTES),
    (NGINX, DOC, {"body_bytes_sent": 10**30}, R_BYTES),
    (NGINX, DOC, {"body_bytes_sent": 2**40 + 1}, R_BYTES),
    (NGINX, DOC, {"request_time": "-0.1"}, R_LATENCY),
    (NGINX, DOC, {"request_time": -0.1}, R_LATENCY),
    (NGINX, DOC, {"request_time": "fast"}, R_LATENCY),
    (NGINX, DOC, {"request_time": 1e999}, R_LATENCY),
    (NGINX, DOC, {"request_time": float("nan")}, R_LATENCY),
    (NGINX, DOC, {"request_time": 10**400}, R_LATENCY),
    (NGINX, DOC, {"request_time": 86_401}, R_LATENCY),
    (NGINX, DOC, {"upstream_response_time": "0.1, x"}, R_LATENCY),
    (CADDY, CADDY_OBJ, {"ts": -1.5}, R_TIMESTAMP),
    (CADDY, CADDY_OBJ, {"ts": 1e300}, R_TIMESTAMP),
    (CADDY, CADDY_OBJ, {"duration": -0.5}, R_LATENCY),
    (CADDY, CADDY_OBJ, {"duration": "1.2ms"}, R_LATENCY),
    (CADDY, CADDY_OBJ, {"status": 0}, R_STATUS),
    (CADDY, CADDY_OBJ, {"size": -1}, R_BYTES),
    (TRAEFIK, TRAEFIK_OBJ, {"Duration": -5}, R_LATENCY),
    (TRAEFIK, TRAEFIK_OBJ, {"Duration": 10**400}, R_LATENCY),
    (TRAEFIK, TRAEFIK_OBJ, {"Duration": 86_401 * 10**9}, R_LATENCY),
    (TRAEFIK, TRAEFIK_OBJ, {"StartUTC": "2024-12-29T11:42:41.965891254+01"}, R_TIMESTAMP),
    (TRAEFIK, TRAEFIK_OBJ, {"StartUTC": "2024-12-29T11:42:41.5.5Z"}, R_TIMESTAMP),
    (TRAEFIK, TRAEFIK_OBJ, {"RequestPath": "pebble"}, R_REQUEST),
])
def test_bad_value_is_its_reason(fmt: JsonLogFormat, base: dict, keys: dict, reason: str) -> None:
    assert one(fmt, changed(base, **keys)) == reason


def test_nul_and_lone_surrogates() -> None:
    assert NGINX.parse(dumps(DOC)[:-1] + ',"x":"\x00"}') == R_BINARY
    # escaped, they reach no Record string: a NUL or a lone surrogate becomes U+FFFD
    line = dumps(changed(DOC, request="GET /a\u0000b HTTP/1.1", remote_addr="\ud800", host="x\udfff"))
    assert "\\u0000" in line and "\\ud800" in line
    assert NGINX.parse(line) == DOC_RECORD._replace(section="/a\ufffdb", host="\ufffd", vhost="x\ufffd")
    assert NGINX.columns(line + "\n") is None
    # a surrogate pair is one character
    assert NGINX.parse(dumps(changed(DOC, remote_addr="\U0001f600"))).host == "\U0001f600"


# -- the fast path ------------------------------------------------------------------------------

def nginx_lines(n: int, **dump: object) -> list[str]:
    """`n` generated hits in the documentation's escape=json format."""
    return [json.dumps({"time_iso8601": _iso(h.ts), "remote_addr": h.host, "request": f"{h.method} {h.path} HTTP/1.1",
                        "status": str(h.status), "body_bytes_sent": str(h.nbytes),
                        "request_time": f"{i % 400 / 1000:.3f}",
                        "upstream_response_time": "" if i % 3 else f"{i % 300 / 1000:.3f}", "host": "shop.example",
                        "http_referer": h.referer, "http_user_agent": h.agent}, **dump)
            for i, h in enumerate(generate(n, seed=3))]


def _iso(ts: int, fraction: str = "") -> str:
    return "%04d-%02d-%02dT%02d:%02d:%02d%sZ" % (*time.gmtime(ts)[:6], fraction)


def test_fast_path_takes_runs_of_every_shape() -> None:
    compact = nginx_lines(300, separators=(",", ":"))
    assert len(set(fast(NGINX, compact))) > 100
    # spaced as Python writes it; with escapes (the decoder reads those); with all of null, true
    # and false in the run (each line decoded alone); CRLF endings
    spaced = nginx_lines(50)
    escaped = [line.replace("/", "\\/") for line in compact[:50]]
    literals = compact[:50] + [dumps(DOC)[:-1] + ',"x":null,"y":true,"z":false}']
    crlf = [line + "\r" for line in spaced]
    for lines in (spaced, escaped, literals, crlf):
        fast(NGINX, lines)
    # keys in another order, one line shape after another
    mixed = [dumps(changed(DOC, remote_addr=None) | {"remote_addr": "198.51.100.8"})] + compact[:3]
    fast(NGINX, mixed)
    fast(CADDY, [dumps(changed(CADDY_OBJ, ts=T0 + i / 7)) for i in range(20)])
    fast(TRAEFIK, [dumps(changed(TRAEFIK_OBJ, Duration=i * 999_999_937)) for i in range(20)])


@pytest.mark.parametrize("lines", [
    [dumps(DOC), ""],
    [dumps(DOC), " "],
    [dumps(DOC), "not json"],
    [dumps(DOC), dumps(changed(DOC, request_time=None))],        # a key some lines lack
    [dumps(changed(DOC, request_time=None)), dumps(DOC)],
    [dumps(DOC), dumps(changed(DOC, time_iso8601=None, time_local="02/Dec/2026:05:15:21 +0000"))],
    [dumps(DOC), dumps(changed(DOC, status=True))],
    [dumps(DOC) + dumps(DOC)],
    [dumps(DOC) + "," + dumps(DOC), dumps(DOC)],
    # two lines that are not JSON alone, but would be one object each if joined by a comma
    [dumps(DOC) + "," + dumps(DOC)[:-1] + ',"x":[{}', "{}]}"],
    # ... or by null (the decoder then joins them by true)
    [dumps(DOC) + ",null," + dumps(DOC)[:-1] + ',"x":[1', "1]}"],
    # a string running over a line end: two malformed lines, one match of a careless pattern
    [dumps(DOC), dumps(DOC)[:-5], dumps(DOC)[-5:]],
    [dumps(changed(DOC, http_user_agent="x" * MAX_FAST_CHARS))],  # long enough to be too_long
    [dumps(changed(DOC, status="1200"))],                          # would read as 200
    [dumps(changed(DOC, request="GET /\u0000 HTTP/1.1"))],
])
def test_fast_path_declines(lines: list[str]) -> None:
    for fmt in (NGINX, NginxJsonFormat()):
        assert fmt.columns("".join(line + "\n" for line in lines)) is None


def test_a_string_over_a_line_end_is_two_malformed_lines() -> None:
    line = dumps(DOC)
    assert line.endswith('"curl/8.0"}')
    assert NGINX.parse(line[:-5]) == NGINX.parse(line[-5:]) == R_FIELDS


def test_shape_cache_is_bounded() -> None:
    fmt = NginxJsonFormat()
    for i in range(100):
        assert agrees(fmt, [dumps(changed(DOC, **{f"k{i}": "v"}))])
    assert 0 < len(fmt._plans) <= MAX_PLANS


# -- properties ---------------------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-10**30, max_value=10**30)
                | st.floats() | st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@PROPERTY
@given(st.text(max_size=300))
def test_parse_never_raises_on_text(text: str) -> None:
    for fmt in FORMATS:
        got = fmt.parse(text)
        assert isinstance(got, Record) or got in REASONS


@PROPERTY
@given(JSON_VALUES)
def test_parse_never_raises_on_json_values(value: object) -> None:
    for fmt in FORMATS:
        got = fmt.parse(json.dumps(value))
        assert isinstance(got, Record) or got in REASONS


@PROPERTY
@given(st.binary(max_size=300))
def test_parse_bytes_never_raises(raw: bytes) -> None:
    for fmt in FORMATS:
        got = fmt.parse_bytes(raw)
        assert isinstance(got, Record) or got in REASONS


@PROPERTY
@given(st.lists(st.text(max_size=60) | st.sampled_from([dumps(DOC), dumps(CADDY_OBJ), TRAEFIK_LINE]),
                min_size=1, max_size=4))
def test_columns_on_any_text_agrees_with_parse(lines: list[str]) -> None:
    for fmt in FORMATS:
        agrees(fmt, lines)


# A key left out of the line.
ABSENT = object()
SECONDS = st.integers(min_value=T0 - 5, max_value=T0 + 5)


def _often(*valid: st.SearchStrategy, rarely: st.SearchStrategy) -> st.SearchStrategy:
    """One of the valid values most of the time, now and then a wrong one."""
    return st.one_of(*valid, *valid, *valid, rarely)


TEXTS = _often(st.sampled_from(["198.51.100.7", "shop.example:443", "", "-", "é", 'a"b', "[::1]:80"]),
               rarely=st.text(max_size=8))
REQUESTS = _often(st.sampled_from(["GET /a/b?c HTTP/1.1", "POST /api HTTP/2.0", "GET http://x.example/y/z HTTP/1.0",
                                   'GET /q"uote\\ HTTP/1.1']),
                  rarely=st.sampled_from(["GET /a b HTTP/1.1", "", "-", "nonsense", "\u0016\u0003\u0001"]))
STATUSES = _often(st.sampled_from(["200", "404", "400", "503"]), st.integers(min_value=100, max_value=599),
                  rarely=st.sampled_from(["1200", "20", "abc", 1200, -200]))
SIZES = _often(st.sampled_from(["0", "512", "-"]), st.integers(min_value=0, max_value=2**41),
               rarely=st.sampled_from(["", "x", -1]))
SECONDS_TEXT = _often(st.sampled_from(["0.000", "0.052", "1.5", "", "-", "12"]), st.floats(min_value=0, max_value=100),
                      st.integers(min_value=0, max_value=100),
                      rarely=st.sampled_from(["0.1, 0.2 : 0.3", "86401", "-1", "1e-3", -0.5, float("nan")]))
ISO = _often(SECONDS.map(_iso), rarely=st.sampled_from(["2026-12-02T05:15:21", "1796188521", "x"]))
CLF = _often(SECONDS.map(lambda t: "02/Dec/2026:05:15:%02d +0000" % (t % 60)), rarely=st.just("02/Dec/2026"))
MSEC = _often(SECONDS.map(str), SECONDS.map(lambda t: t + 0.25), SECONDS.map(lambda t: f"{t}.999"),
              rarely=st.sampled_from(["1e9", " 1", -1, 1e300]))

NGINX_VARIANTS = [
    {"time_iso8601": ISO, "remote_addr": TEXTS, "request": REQUESTS, "status": STATUSES, "body_bytes_sent": SIZES,
     "request_time": SECONDS_TEXT, "upstream_response_time": SECONDS_TEXT, "host": TEXTS, "http_referer": TEXTS,
     "http_user_agent": TEXTS},
    {"msec": MSEC, "time_local": CLF, "remote_addr": TEXTS, "request_method": st.sampled_from(["GET", "", "get"]),
     "request_uri": st.sampled_from(["/x/y", "", "z"]), "status": STATUSES, "body_bytes_sent": SIZES,
     "request_time": SECONDS_TEXT, "http_host": TEXTS, "server_name": TEXTS},
    {"time_local": CLF, "remote_addr": TEXTS, "request": REQUESTS, "status": STATUSES},
    {"msec": MSEC, "remote_addr": TEXTS, "request": REQUESTS, "status": STATUSES, "bytes_sent": SIZES,
     "server_name": TEXTS},
]
CADDY_REQUEST = {"remote_ip": TEXTS, "remote_port": st.just("5000"), "method": st.sampled_from(["GET", "PUT", ""]),
                 "host": TEXTS, "uri": _often(st.sampled_from(["/a/b", "/"]), rarely=st.sampled_from(["x", ""])),
                 "headers": st.just({"Accept": ["*/*"]})}
CADDY_VARIANTS = [
    {"level": st.just("info"), "ts": _often(SECONDS, SECONDS.map(lambda t: t + 0.9999999), rarely=JSON_SCALARS),
     "msg": _often(st.just("handled request"), rarely=st.just("x")), "request": st.fixed_dictionaries(CADDY_REQUEST),
     "duration": SECONDS_TEXT, "size": SIZES, "status": STATUSES},
    {"ts": SECONDS.map(float), "msg": st.just("handled request"),
     "request": st.fixed_dictionaries({**CADDY_REQUEST, "remote_ip": st.just(ABSENT), "remote_addr": TEXTS}),
     "duration": SECONDS_TEXT, "size": SIZES, "status": STATUSES},
]
TRAEFIK_VARIANTS = [
    {"ClientHost": TEXTS, "DownstreamContentSize": SIZES, "DownstreamStatus": STATUSES,
     "Duration": _often(st.integers(min_value=0, max_value=10**14), rarely=st.integers(min_value=-10, max_value=-1)),
     "RequestHost": TEXTS, "RequestMethod": st.sampled_from(["GET", "DELETE", ""]),
     "RequestPath": _often(st.sampled_from(["/a/b?c=1", "/"]), rarely=st.just("nope")),
     "StartUTC": _often(SECONDS.map(lambda t: _iso(t, ".123456789")), SECONDS.map(_iso),
                        rarely=st.sampled_from(["2026-12-02T05:15:21.5.5Z", "2026-12-02T05:15:21.1234567890Z"])),
     "level": st.just("info")},
]


def _edited(pair: tuple[dict, list[tuple[str, object]]]) -> dict:
    """An object with some keys ("request__x": inside Caddy's request) set to other values or left out."""
    obj, edits = pair
    for key, value in edits:
        where, _, name = key.rpartition("__")
        target = obj.get(where) if where else obj
        if isinstance(target, dict):
            target[name] = value
    return _present(obj)


def _present(value: object) -> object:
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not ABSENT}
    return value


def _runs(variants: list[dict[str, st.SearchStrategy]]) -> st.SearchStrategy[list[dict]]:
    """Runs of objects with one variant's keys, in its order, a line now and then edited."""
    def run(variant: dict[str, st.SearchStrategy]) -> st.SearchStrategy[list[dict]]:
        keys = sorted(variant) + [f"request__{k}" for k in CADDY_REQUEST if "request" in variant]
        edits = st.lists(st.tuples(st.sampled_from(keys), JSON_SCALARS | st.just(ABSENT)), min_size=1, max_size=2)
        line = st.tuples(st.fixed_dictionaries(variant), st.just([]) | st.just([]) | st.just([]) | edits)
        return st.lists(line.map(_edited), min_size=1, max_size=5)
    return st.sampled_from(variants).flatmap(run)


DUMPS = st.sampled_from([{"separators": (",", ":")}, {"separators": (",", ":"), "ensure_ascii": False}, {}])
CASES = st.one_of(st.tuples(st.just(NGINX), _runs(NGINX_VARIANTS), DUMPS),
                  st.tuples(st.just(CADDY), _runs(CADDY_VARIANTS), DUMPS),
                  st.tuples(st.just(TRAEFIK), _runs(TRAEFIK_VARIANTS), DUMPS))


@PROPERTY
@given(CASES)
def test_fast_path_agrees_with_parse(case: tuple) -> None:
    fmt, objects, dump = case
    lines = [json.dumps(obj, **dump) for obj in objects]
    agrees(fmt, lines)
    # the first line three times: one shape, so the regex reads it when the run has no backslash
    agrees(fmt, [lines[0]] * 3)


def test_the_fast_path_property_is_not_vacuous() -> None:
    """The generated runs above include ones the fast path takes, in both of its ways."""
    valid = [(NGINX, DOC), (CADDY, CADDY_OBJ), (TRAEFIK, TRAEFIK_OBJ)]
    for fmt, obj in valid:
        for dump in ({"separators": (",", ":")}, {}):
            assert agrees(fmt, [json.dumps(obj, **dump)] * 3)
