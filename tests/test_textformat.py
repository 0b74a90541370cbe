"""Format strings (nginx, Apache), the presets built from them, combined plus extras, and the fast
path (`columns`) against the reference parser (`parse`)."""
from __future__ import annotations

import calendar
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logmond.core.formats import KIND_SUFFIX, Columns
from logmond.core.parse import (INVALID, MAX_LINE, R_BINARY, R_BYTES, R_FIELDS, R_LATENCY, R_REQUEST,
                                R_STATUS, R_TIMESTAMP, Record, bytes_of, clf_time, decode_line, latency_of,
                                meaning_of, record_of, vhost_of)
from logmond.core.textformat import (MAX_EXTRA, PRESETS, Field, TextFormat, apache_format, combined_plus,
                                     compile_text, detect_extras, epoch_time, iso_time, nginx_format, preset)
from test_fast_path import clean_line, line_for, mutate
from test_parse import CLF, COMBINED, FORMAT_MALFORMED, T0

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# nginx combined with the timings most often appended.
NGINX_TIMED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
               '"$http_referer" "$http_user_agent" $request_time $upstream_response_time')
# As the harness's nginx writes them (tests/servers.py), the same request in two formats.
TIMINGS = '"$request" $status $body_bytes_sent $request_time $upstream_response_time'
NGINX_HOST_SECOND = f"$remote_addr $host [$time_local] {TIMINGS}"
NGINX_HOST_FIRST = f"$host $remote_addr [$time_local] {TIMINGS}"
DATE = "10/Oct/2000:13:55:36 -0700"     # T0
REAL_TS = calendar.timegm((2026, 12, 2, 5, 15, 21))


# The reference regex of clf and combined before they were presets of this engine: the presets
# keep its meaning of every line.
OLD_CLF = re.compile(
    r'(\S+) (\S+) (.+?) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\S+) (\S+)'
    r'(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?',
    re.ASCII,
)


def old_parse(line: str, fmt: str) -> Record | str:
    """What clf and combined meant before."""
    if "\x00" in line:
        return R_BINARY
    m = OLD_CLF.fullmatch(line)
    if not m or (m.group(8) is not None) != (fmt == "combined"):
        return R_FIELDS
    return record_of(clf_time(m.group(4)), m.group(1), m.group(5), m.group(6), m.group(7))


def rec(**changes: object) -> Record:
    """The record of the base lines below, with some fields changed."""
    return Record(T0, "10.0.0.1", "GET", "/api", 200, 512)._replace(**changes)


# -- presets ---------------------------------------------------------------------------------------

def test_presets_on_known_lines():
    expected = Record(T0, "127.0.0.1", "GET", "/apache_pb.gif", 200, 2326)
    assert preset("common").parse(CLF) == preset("clf").parse(CLF) == expected
    assert preset("combined").parse(COMBINED) == expected
    vhost = "www.example.com:80 " + COMBINED
    assert preset("vcombined").parse(vhost) == expected._replace(vhost="www.example.com")


@pytest.mark.parametrize("fmt, line, reason", [case for case in FORMAT_MALFORMED if case[0] != "csv"])
def test_presets_give_the_reasons_they_gave(fmt, line, reason):
    assert preset(fmt).parse(line) == old_parse(line, fmt) == reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fmt=st.sampled_from(["clf", "combined"]))
def test_presets_parse_as_before(data, fmt):
    # The reference semantics of clf and combined are kept, on clean, nasty and mutated lines.
    line = data.draw(st.one_of(line_for(fmt, T0), line_for(fmt, T0).flatmap(mutate),
                               clean_line(fmt, T0).flatmap(mutate)))
    assert preset(fmt).parse(line) == old_parse(line, fmt)


def test_preset_quirks_kept():
    assert preset("clf").parse('1.2.3.4 - John Smith [10/Oct/2000:13:55:36 -0700] "GET /a/b HTTP/1.0" 404 -') \
        == Record(T0, "1.2.3.4", "GET", "/a", 404, 0)
    escaped = CLF + r' "http://x/\"q\"" "agent \"with\" quotes"'
    assert preset("combined").parse(escaped) == Record(T0, "127.0.0.1", "GET", "/apache_pb.gif", 200, 2326)
    assert preset("combined").parse(COMBINED + " 0.052") == R_FIELDS     # combined plus extras is not combined


def test_preset_names_and_description():
    assert set(PRESETS) == {"common", "clf", "combined", "vcombined"}
    for name in PRESETS:
        fmt = preset(name)
        assert (fmt.name, fmt.spec, fmt.describe()) == (name, None, {"format": name, "format_spec": None})
        assert not (fmt.latency or fmt.upstream)
        assert fmt.vhost == (name == "vcombined")
    assert preset("combined") is preset("combined")
    with pytest.raises(ValueError, match="unknown preset 'json'"):
        preset("json")


# -- nginx variables -------------------------------------------------------------------------------

NGINX_BASE = '$remote_addr [$time_local] "$request" $status $body_bytes_sent'
LINE_BASE = f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 200 512'


@pytest.mark.parametrize("spec, line, expected", [
    (NGINX_BASE, LINE_BASE, rec()),
    ("${remote_addr} [${time_local}] \"${request}\" ${status} ${body_bytes_sent}", LINE_BASE, rec()),
    # $remote_user: a user name may hold spaces
    ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent',
     f'10.0.0.1 - John Smith [{DATE}] "GET /api/x HTTP/1.1" 200 512', rec()),
    # $time_local outside brackets, $time_iso8601, $msec
    ('$remote_addr $time_local "$request" $status $body_bytes_sent',
     f'10.0.0.1 {DATE} "GET /api/x HTTP/1.1" 200 512', rec()),
    ('$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent',
     '10.0.0.1 [2000-10-10T13:55:36-07:00] "GET /api/x HTTP/1.1" 200 512', rec()),
    ('$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent',
     '10.0.0.1 [2000-10-10T20:55:36Z] "GET /api/x HTTP/1.1" 200 512', rec()),
    ('$msec $remote_addr "$request" $status $body_bytes_sent',
     f'{T0}.999 10.0.0.1 "GET /api/x HTTP/1.1" 200 512', rec()),
    # $request_method with $request_uri, $uri, or $uri$is_args$args: the request text
    ('$remote_addr [$time_local] "$request_method $request_uri $server_protocol" $status $body_bytes_sent',
     f'10.0.0.1 [{DATE}] "POST /report/x?a=1 HTTP/1.1" 200 512', rec(method="POST", section="/report")),
    ('$remote_addr [$time_local] $request_method $uri $status $body_bytes_sent',
     f'10.0.0.1 [{DATE}] DELETE /a/b 200 512', rec(method="DELETE", section="/a")),
    ('$remote_addr [$time_local] $request_method $uri$is_args$args $status $body_bytes_sent',
     f'10.0.0.1 [{DATE}] GET /a?x=/b/c 200 512', rec(section="/a")),
    ('$remote_addr [$time_local] "$request" $request_method $uri $status $body_bytes_sent',  # $request wins
     f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" PUT /other 200 512', rec()),
    # $status; $body_bytes_sent and $bytes_sent (the body preferred)
    (NGINX_BASE, f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 503 512', rec(status=503)),
    ('$remote_addr [$time_local] "$request" $status $bytes_sent', LINE_BASE, rec()),
    ('$remote_addr [$time_local] "$request" $status $bytes_sent $body_bytes_sent', LINE_BASE + " 300",
     rec(nbytes=300)),
    (NGINX_BASE, f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 304 0', rec(status=304, nbytes=0)),
    ('$remote_addr [$time_local] "$request" $status', f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 200',
     rec(nbytes=0)),
    # $request_time, $upstream_response_time (a list, or -)
    (NGINX_BASE + " $request_time", LINE_BASE + " 0.052", rec(rtime=0.052)),
    (NGINX_BASE + " $upstream_response_time", LINE_BASE + " 0.001, 0.002 : 0.003", rec(utime=0.006)),
    (NGINX_BASE + " $upstream_response_time", LINE_BASE + " -", rec()),
    (NGINX_BASE + " $request_time $upstream_response_time", LINE_BASE + " 0.010 0.004",
     rec(rtime=0.01, utime=0.004)),
    # $host, $http_host, $server_name: the virtual host, in that order of preference
    (NGINX_BASE + " $host", LINE_BASE + " shop.example", rec(vhost="shop.example")),
    (NGINX_BASE + " $http_host", LINE_BASE + " shop.example:8080", rec(vhost="shop.example")),
    (NGINX_BASE + " $server_name", LINE_BASE + " _", rec(vhost="_")),
    (NGINX_BASE + " $server_name $http_host $host", LINE_BASE + " a b c", rec(vhost="c")),
    (NGINX_BASE + " $server_name $http_host", LINE_BASE + " a b", rec(vhost="b")),
    ("$host " + NGINX_BASE, " " + LINE_BASE, rec(vhost="-")),      # empty for a rejected request
    # skipped: the headers, and any other variable (possibly empty)
    (NGINX_BASE + ' "$http_referer" "$http_user_agent" "$http_x_forwarded_for"',
     LINE_BASE + ' "-" "Mozilla/5.0 (X11)" "1.2.3.4, 5.6.7.8"', rec()),
    (NGINX_BASE + " $http_x_forwarded_for $connection $ssl_protocol", LINE_BASE + " 1.2.3.4 17 ", rec()),
    ("$request_id|" + NGINX_BASE, "abc|" + LINE_BASE, rec()),
])
def test_nginx_variables(spec, line, expected):
    fmt = nginx_format(spec)
    assert fmt.parse(line) == expected
    assert compile_text(spec).parse(line) == expected


def test_nginx_format_attributes():
    fmt = nginx_format(NGINX_TIMED)
    assert (fmt.name, fmt.spec, fmt.latency, fmt.upstream, fmt.vhost, fmt.latency_scale) == \
        ("nginx", NGINX_TIMED, True, True, False, 1.0)
    assert fmt.describe() == {"format": "nginx", "format_spec": NGINX_TIMED}
    assert nginx_format(NGINX_BASE + " $host").vhost
    assert repr(fmt) == f"<LogFormat nginx {NGINX_TIMED!r}>"


def test_nginx_escapes_are_counted_raw():
    # nginx writes '"' and bytes >= 0x80 as \xHH in plain formats: a hit like any other.
    line = f'10.0.0.1 [{DATE}] "GET /caf\\xC3\\xA9/\\x22x HTTP/1.1" 200 512'
    assert nginx_format(NGINX_BASE).parse(line) == rec(section="/caf\\xC3\\xA9")


# -- Apache directives -------------------------------------------------------------------------------

APACHE_BASE = '%h %t "%r" %>s %b'


@pytest.mark.parametrize("spec, line, expected", [
    (APACHE_BASE, LINE_BASE, rec()),
    (r'%h %t \"%r\" %>s %b', LINE_BASE, rec()),                      # pasted with the config's escapes
    ('%a %t "%r" %>s %b', LINE_BASE, rec()),
    ('%a %h %t "%r" %>s %b', f'10.0.0.9 10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 200 512', rec()),  # %h wins
    ('%{c}a %t "%r" %>s %b', LINE_BASE, rec()),
    # %l %u skipped (the user may hold spaces), %H %p and headers skipped
    ('%h %l %u %t "%r" %>s %b', f'10.0.0.1 - John Smith [{DATE}] "GET /api/x HTTP/1.1" 200 512', rec()),
    ('%h %t "%r" %>s %b %H %p "%{Referer}i" %!200,304{User-Agent}i',
     LINE_BASE + ' HTTP/1.1 443 "-" -', rec()),
    ('%h %t "%r" %>s %b %X %I %k', LINE_BASE + " + 410 0", rec()),
    # %m %U %q %H build the request when there is no %r
    ('%h %t "%m %U%q %H" %>s %b', f'10.0.0.1 [{DATE}] "POST /report/x?a=1 HTTP/1.1" 200 512',
     rec(method="POST", section="/report")),
    ('%h %t "%m %U%q %H" %>s %b', f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 200 512', rec()),  # empty %q
    # %s %>s %<s: the final status preferred
    ('%h %t "%r" %s %b', LINE_BASE, rec()),
    ('%h %t "%r" %<s %>s %b', f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 302 200 512', rec()),
    ('%h %t "%r" %>s %s %b', f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 200 302 512', rec()),
    # %b ('-' is 0), %B, %O; the body preferred
    (APACHE_BASE, f'10.0.0.1 [{DATE}] "GET /api/x HTTP/1.1" 304 -', rec(status=304, nbytes=0)),
    ('%h %t "%r" %>s %B', LINE_BASE, rec()),
    ('%h %t "%r" %>s %O', LINE_BASE, rec()),
    ('%h %t "%r" %>s %O %b', LINE_BASE + " 300", rec(nbytes=300)),
    ('%h %t "%r" %>s %O %I %B', LINE_BASE + " 99 300", rec(nbytes=300)),
    # %D µs, %T s, %{UNIT}T; %D preferred over %T
    (APACHE_BASE + " %D", LINE_BASE + " 52000", rec(rtime=pytest.approx(0.052))),
    (APACHE_BASE + " %T", LINE_BASE + " 2", rec(rtime=2.0)),
    (APACHE_BASE + " %T %D", LINE_BASE + " 0 52000", rec(rtime=pytest.approx(0.052))),
    (APACHE_BASE + " %{ms}T", LINE_BASE + " 52", rec(rtime=pytest.approx(0.052))),
    (APACHE_BASE + " %{us}T", LINE_BASE + " 52000", rec(rtime=pytest.approx(0.052))),
    (APACHE_BASE + " %{s}T", LINE_BASE + " 3", rec(rtime=3.0)),
    # %v %V %{Host}i: the virtual host (%v, then %V, then the Host header)
    ("%v " + APACHE_BASE, "shop.example " + LINE_BASE, rec(vhost="shop.example")),
    ("%V " + APACHE_BASE, "shop.example " + LINE_BASE, rec(vhost="shop.example")),
    ("%v:%p " + APACHE_BASE, "shop.example:443 " + LINE_BASE, rec(vhost="shop.example")),
    ('%{Host}i ' + APACHE_BASE, "shop.example:8080 " + LINE_BASE, rec(vhost="shop.example")),
    ('%{host}i %V ' + APACHE_BASE, "a b " + LINE_BASE, rec(vhost="b")),
    ('%V %v ' + APACHE_BASE, "a b " + LINE_BASE, rec(vhost="b")),
    # %{sec}t, %{msec}t, %{usec}t, begin:/end:, the CLF and ISO strftime formats
    ('%h %{sec}t "%r" %>s %b', f'10.0.0.1 {T0} "GET /api/x HTTP/1.1" 200 512', rec()),
    ('%h %{msec}t "%r" %>s %b', f'10.0.0.1 {T0}999 "GET /api/x HTTP/1.1" 200 512', rec()),
    ('%h %{end:usec}t "%r" %>s %b', f'10.0.0.1 {T0}000001 "GET /api/x HTTP/1.1" 200 512', rec()),
    ('%h [%{%d/%b/%Y:%H:%M:%S %z}t] "%r" %>s %b', LINE_BASE, rec()),
    ('%h %{begin:%Y-%m-%dT%H:%M:%S%z}t "%r" %>s %b',
     '10.0.0.1 2000-10-10T13:55:36-0700 "GET /api/x HTTP/1.1" 200 512', rec()),
    # %% is a literal percent sign
    (APACHE_BASE + " 100%%", LINE_BASE + " 100%", rec()),
])
def test_apache_directives(spec, line, expected):
    fmt = apache_format(spec)
    assert fmt.parse(line) == expected
    assert compile_text(spec).parse(line) == expected


def test_apache_format_attributes():
    spec = r'%v:%p %h %t \"%r\" %>s %b %D'
    fmt = apache_format(spec)
    assert (fmt.name, fmt.spec, fmt.latency, fmt.upstream, fmt.vhost, fmt.latency_scale) == \
        ("apache", spec, True, False, True, 1e-6)
    assert fmt.describe() == {"format": "apache", "format_spec": spec}
    assert apache_format(APACHE_BASE + " %T").latency_scale == 1.0
    assert apache_format(APACHE_BASE + " %{ms}T").latency_scale == 1e-3


def test_layout_is_literals_and_fields():
    fmt = apache_format('%h %t "%m %U%q" %>s %b')
    assert [item if isinstance(item, str) else item.name for item in fmt.layout] == \
        ["%h", " [", "%t", '] "', "%m", " ", "%U%q", '" ', "%>s", " ", "%b"]
    assert all(isinstance(item, (str, Field)) for item in fmt.layout)


# -- every malformed kind ------------------------------------------------------------------------------

@pytest.mark.parametrize("line, reason", [
    (LINE_BASE.replace("[", ""), R_FIELDS),
    (LINE_BASE + " 0.1", R_FIELDS),
    (LINE_BASE.replace(" 200 512", " 200 512 0.1"), R_FIELDS),
    ("", R_FIELDS),
    (LINE_BASE.replace(DATE, "10/Foo/2000:13:55:36 -0700"), R_TIMESTAMP),
    (LINE_BASE.replace(DATE, "2000-10-10T13:55:36Z"), R_TIMESTAMP),
    (LINE_BASE.replace(" 200 ", " 600 "), R_STATUS),
    (LINE_BASE.replace(" 200 ", " - "), R_STATUS),
    (LINE_BASE.replace("512", "12k"), R_BYTES),
    (LINE_BASE.replace("512", "-1"), R_BYTES),
    (LINE_BASE.replace("GET /api/x HTTP/1.1", "GET api"), R_REQUEST),
    (LINE_BASE.replace("GET /api/x HTTP/1.1", "-"), R_REQUEST),
    (LINE_BASE + "\x00", R_BINARY),
])
def test_malformed_kinds(line, reason):
    assert nginx_format(NGINX_BASE).parse(line) == reason
    assert apache_format(APACHE_BASE).parse(line) == reason


@pytest.mark.parametrize("times, reason", [
    ("abc -", R_LATENCY), ("0.1 x", R_LATENCY), ("1e3 -", R_LATENCY), ("-1 -", R_LATENCY),
    ("0.1 0.1, y", R_LATENCY), ("90000 -", R_LATENCY), ("- -", None),
])
def test_malformed_latency(times, reason):
    fmt = nginx_format(NGINX_BASE + " $request_time $upstream_response_time")
    got = fmt.parse(f"{LINE_BASE} {times}")
    assert got == (rec() if reason is None else reason)


@pytest.mark.parametrize("request_line", ["-", "GET /a b HTTP/1.1", "\\x16\\x03\\x01\\x00\\xA5", ""])
def test_request_the_server_rejected_is_a_hit(request_line):
    line = f'10.0.0.1 [{DATE}] "{request_line}" 400 157'
    assert nginx_format(NGINX_BASE).parse(line) == rec(method=INVALID, section=INVALID, status=400, nbytes=157)
    assert nginx_format(NGINX_BASE).parse(line.replace(" 400 ", " 500 ")) == R_REQUEST


# -- compile errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, message", [
    ('$remote_addr [$time_local] $status $body_bytes_sent', "no request field: give $request, or "
     "$request_method with $request_uri or $uri"),
    ('$remote_addr [$time_local] "$request_method" $status', "no request field"),
    ('$remote_addr [$time_local] "$uri" $status', "no request field"),
    ('%h %t %>s %b', "no request field: give %r, or %m with %U"),
    ('%h %t "%m" %>s %b', "no request field"),
    ('$remote_addr "$request" $status', "no time field: give $time_local, $time_iso8601 or $msec"),
    ('%v:%p %a "%r" %>s %b %D "%{User-Agent}i"', "no time field: give %t, %{sec}t, %{msec}t or %{usec}t"),
    ('[$time_local] "$request" $body_bytes_sent', "no status field: give $status"),
    ('%t "%r" %b', "no status field: give %>s or %s"),
    ('[$time_local] "$request $status', "unbalanced quote"),
    ('%t "%r" %>s "%{Referer}i', "unbalanced quote"),
    ('[$time_local "$request" $status', "unbalanced bracket: a '[' is never closed"),
    ('$time_local] "$request" $status', "unbalanced bracket: a ']' closes no '['"),
    ('[$time_local] "$request" $status$body_bytes_sent', "$status and $body_bytes_sent are adjacent"),
    ('%t "%r" %>s%b', "%>s and %b are adjacent"),
    ('%t "%r"%>s', None),                                    # a quote separates them: fine
    ('%{%H:%M}t "%r" %>s', "%{%H:%M}t: cannot read this time; use %t, %{sec}t, %{msec}t or %{usec}t"),
    ('%{msec_frac}t "%r" %>s', "cannot read this time"),
    ('%t "%r" %>s %{min}T', "%{min}T: the unit of %{…}T is s, ms or us"),
    ('%t "%r" %>s %', "'%' at position 13 starts no Apache directive"),
    ('%t "%r" %>s %{Referer', "starts no Apache directive"),
    ('[$time_local] "$request" $status $', "'$' at position 34 starts no variable name"),
    ('[$time_local] "$request" $status %>s', "mixes nginx $variables and Apache %directives"),
    ('combined', "no nginx $variable nor Apache %directive in it"),
    ('', "no nginx $variable nor Apache %directive in it"),
])
def test_compile_errors(spec, message):
    if message is None:
        assert isinstance(compile_text(spec), TextFormat)
        return
    with pytest.raises(ValueError) as err:
        compile_text(spec)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# -- real lines, as the servers on this machine wrote them --------------------------------------------

def test_real_nginx_combined_lines():
    fmt = preset("combined")
    ok = Record(REAL_TS, "127.0.0.1", "GET", "/slow", 200, 10)
    bad = Record(REAL_TS, "127.0.0.1", INVALID, INVALID, 400, 157)
    assert fmt.parse('127.0.0.1 - - [02/Dec/2026:05:15:21 +0000] "GET /slow HTTP/1.1" 200 10 "-" "logmon-test/1"') == ok
    assert fmt.parse('127.0.0.1 - - [02/Dec/2026:05:15:21 +0000] "GET /a b HTTP/1.1" 400 157 "-" "-"') == bad
    tls = ('127.0.0.1 - - [02/Dec/2026:05:15:21 +0000] "\\x16\\x03\\x01\\x00\\xA5\\x01\\x00\\x00\\xA1\\x03\\x03'
           '\\x00...\\x09" 400 157 "-" "-"')
    assert fmt.parse(tls) == bad
    cut = '127.0.0.1 - - [02/Dec/2026:05:15:22 +0000] "GET /a b" 400 448 "-" "-"'    # Apache cuts it
    assert fmt.parse(cut) == bad._replace(ts=REAL_TS + 1, nbytes=448)  # `b` is no protocol: rejected


def test_real_nginx_custom_lines():
    second = '127.0.0.1 127.0.0.1 [02/Dec/2026:05:15:21 +0000] "GET /slow/50 HTTP/1.1" 200 9 0.052 0.052'
    assert nginx_format(NGINX_HOST_SECOND).parse(second) == \
        Record(REAL_TS, "127.0.0.1", "GET", "/slow", 200, 9, 0.052, 0.052, "127.0.0.1")
    first = ' 127.0.0.1 [02/Dec/2026:05:15:21 +0000] "GET /a b HTTP/1.1" 400 157 0.000 -'
    assert nginx_format(NGINX_HOST_FIRST).parse(first) == \
        Record(REAL_TS, "127.0.0.1", INVALID, INVALID, 400, 157, 0.0, None, "-")


def test_real_apache_line():
    # The harness's Apache format has no time field: refused. With %t, the same line reads.
    with pytest.raises(ValueError, match="no time field"):
        compile_text('%v:%p %a \\"%r\\" %>s %b %D \\"%{User-Agent}i\\"')
    fmt = compile_text('%v:%p %a %t \\"%r\\" %>s %b %D \\"%{User-Agent}i\\"')
    line = 'localhost:60923 127.0.0.1 [02/Dec/2026:05:15:21 +0000] "GET /missing HTTP/1.1" 404 236 60 "logmon-test/1"'
    assert fmt.parse(line) == Record(REAL_TS, "127.0.0.1", "GET", "/missing", 404, 236, pytest.approx(60e-6),
                                     None, "localhost")


# -- times ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stamp, utc", [
    ("2000-10-10T13:55:36-07:00", (2000, 10, 10, 20, 55, 36)),
    ("2000-10-10T13:55:36+00:00", (2000, 10, 10, 13, 55, 36)),
    ("2000-10-10T13:55:36Z", (2000, 10, 10, 13, 55, 36)),
    ("2000-10-10T13:55:36.123Z", (2000, 10, 10, 13, 55, 36)),
    ("2000-10-10T13:55:36+0530", (2000, 10, 10, 8, 25, 36)),
    ("2024-02-29T23:30:00-01:00", (2024, 3, 1, 0, 30, 0)),
])
def test_iso_time(stamp, utc):
    assert iso_time(stamp) == calendar.timegm(utc)


@pytest.mark.parametrize("stamp", ["", "2000-10-10", "2000-10-10 13:55:36Z", "2000-13-10T13:55:36Z",
                                   "2000-10-00T13:55:36Z", "2000-10-10T24:00:00Z", "2000-10-10T13:55:36",
                                   "0000-10-10T13:55:36Z", "2000-10-10T13:55:36+7", "١٠٠٠-10-10T13:55:36Z"])
def test_iso_time_rejects(stamp):
    assert iso_time(stamp) is None


def test_epoch_time():
    assert epoch_time("1549573860.123") == epoch_time("1549573860") == 1549573860
    assert epoch_time("1549573860123", 1000) == 1549573860
    assert epoch_time("1549573860123456", 1_000_000) == 1549573860
    for bad in ("", "-", "1.5e9", "-1", " 1", "1549573860.123"):
        assert epoch_time(bad, 1 if bad != "1549573860.123" else 1000) is None
    assert epoch_time("99999999999999") is None      # past year 9999


# -- combined plus extras ---------------------------------------------------------------------------------

TIMED_LINES = [
    '127.0.0.1 - - [02/Dec/2026:05:15:21 +0000] "GET /slow/50 HTTP/1.1" 200 9 "-" "logmon-test/1" 0.052 0.052',
    '127.0.0.1 - - [02/Dec/2026:05:15:21 +0000] "GET /ok HTTP/1.1" 200 3 "-" "logmon-test/1" 0.000 -',
    '127.0.0.1 - - [02/Dec/2026:05:15:21 +0000] "GET /a b HTTP/1.1" 400 157 "-" "-" 0.000 -',
    '127.0.0.1 - - [02/Dec/2026:05:15:21 +0000] "GET /slow HTTP/1.1" 502 157 "-" "-" 0.010 0.001, 0.002 : 0.003',
]


def test_detect_request_and_upstream_time():
    fmt = detect_extras(TIMED_LINES)
    assert fmt is not None
    assert fmt.describe() == {"format": "combined", "format_spec": None,
                              "extra": "request_time upstream_response_time"}
    assert (fmt.latency, fmt.upstream, fmt.vhost, fmt.latency_scale) == (True, True, False, 1.0)
    assert fmt.parse(TIMED_LINES[0]) == Record(REAL_TS, "127.0.0.1", "GET", "/slow", 200, 9, 0.052, 0.052)
    assert fmt.parse(TIMED_LINES[1]).utime is None
    assert fmt.parse(TIMED_LINES[3]).utime == pytest.approx(0.006)
    assert fmt.parse(TIMED_LINES[0].rsplit(" ", 2)[0]) == R_FIELDS     # plain combined is not this


@pytest.mark.parametrize("tails, extra", [
    (["0.052", "0.000", "1.500"], "request_time"),
    (['"1.2.3.4, 5.6.7.8" 0.052', '"-" 0.001'], '"-" request_time'),
    (['"-"', '"1.2.3.4"'], '"-"'),
    (["abc 0.1 -", "def 0.2 0.1"], "- request_time upstream_response_time"),
    (["0.1 0.2 0.3", "0.1 - -"], "- - -"),                      # three times: which is which is unknown
    (["- 0.1", "- 0.2"], "- -"),                                # no request time written as '-'
    (["-", "-"], "-"),
    (["12 0.1", "13 0.2"], "- request_time"),                   # integers are not seconds
    (["x y z a b c d e"], "- - - - - - - -"),
])
def test_detect_extras_shapes(tails, extra):
    lines = [f"{COMBINED} {tail}" for tail in tails]
    fmt = detect_extras(lines)
    assert fmt is not None and fmt.describe()["extra"] == extra
    assert all(isinstance(fmt.parse(line), Record) for line in lines)


@pytest.mark.parametrize("lines", [
    [],
    [COMBINED, COMBINED],                                         # plain combined: nothing to detect
    [f"{COMBINED} 0.1", f"{COMBINED} 0.1 0.2"],                   # not one layout
    [f'{COMBINED} "a"', f"{COMBINED} a"],
    [f"{COMBINED} a b c d e f g h i"],                            # more than MAX_EXTRA
    [f"{COMBINED} 0.1", "junk", "more junk"],                     # not most of the lines
    ["junk", CLF, ""],
    [f"{COMBINED} ", f"{COMBINED}  0.1"],                         # empty extras
])
def test_detect_extras_declines(lines):
    assert detect_extras(lines) is None


def test_detect_extras_ignores_combined_and_otherwise_broken_lines():
    lines = [*TIMED_LINES, COMBINED, COMBINED.replace("200", "600"), "   "]
    fmt = detect_extras(lines)
    assert fmt is not None and fmt.describe()["extra"] == "request_time upstream_response_time"


def test_combined_plus():
    fmt = combined_plus(["-", '"-"', "request_time"])
    assert fmt.parse(f'{COMBINED} x "a b" 0.5') == Record(T0, "127.0.0.1", "GET", "/apache_pb.gif", 200, 2326, 0.5)
    assert fmt.parse(f"{COMBINED} x a 0.5") == R_FIELDS
    assert fmt.latency and not fmt.upstream
    assert combined_plus(["-"] * MAX_EXTRA).describe()["extra"] == " ".join(["-"] * MAX_EXTRA)
    for bad in ([], ["-"] * (MAX_EXTRA + 1), ["bytes"]):
        with pytest.raises(ValueError, match="extra fields are 1 to"):
            combined_plus(bad)


# -- the fast path: columns, and the Record the batch derives from them ---------------------------------

BASE_TS = 1_549_573_860
FAST_FORMATS = {
    "common": preset("common"),
    "combined": preset("combined"),
    "vcombined": preset("vcombined"),
    "nginx_timed": nginx_format(NGINX_TIMED),
    "nginx_host_first": nginx_format(NGINX_HOST_FIRST),
    "nginx_msec": nginx_format('$msec $remote_addr "$request_method $request_uri $server_protocol" $status '
                               '$bytes_sent $request_time "$http_user_agent"'),
    "nginx_iso": nginx_format('$remote_addr - $remote_user [$time_iso8601] "$request" $status $body_bytes_sent '
                              '"$http_referer" "$http_host"'),
    "nginx_bare_date": nginx_format('$remote_addr $time_local "$request" $status $body_bytes_sent $uri$is_args$args'),
    "apache_D_v": compile_text(r'%v:%p %a %t \"%r\" %>s %b %D \"%{User-Agent}i\"'),
    "apache_parts": compile_text('%h %l %u %t "%m %U%q %H" %>s %B %{ms}T %{Host}i'),
    "apache_epoch": compile_text('%{msec}t %h "%r" %s %O %T %V|%p'),
    "combined_plus": combined_plus(['"-"', "request_time", "upstream_response_time"]),
}


def derived(fmt: TextFormat, cols: Columns, i: int) -> Record | None:
    """The Record the batch makes of line i of the columns, or None where the batch declines."""
    ts = fmt.read_time(cols.stamps[i])
    kind = cols.kinds[i]
    meaning = meaning_of(kind[:-KIND_SUFFIX], kind[-3:])
    size = bytes_of(cols.sizes[i])
    rtime = None if cols.rtimes is None else latency_of(cols.rtimes[i], fmt.latency_scale)
    utime = None if cols.utimes is None else latency_of(cols.utimes[i])
    if ts is None or isinstance(meaning, str) or size is None or isinstance(rtime, str) or isinstance(utime, str):
        return None
    (method, section), status = meaning
    vhost = None if cols.vhosts is None else vhost_of(cols.vhosts[i])
    return Record(ts, cols.hosts[i], method, section, status, size, rtime, utime, vhost)


def clf_date(ts: int, tz: str) -> str:
    sign = 1 if tz[0] == "+" else -1
    t = time.gmtime(ts + sign * (int(tz[1:3]) * 3600 + int(tz[3:]) * 60))
    return f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {tz}"


def iso_date(ts: int, tz: str) -> str:
    sign = 1 if tz[0] == "+" else -1
    t = time.gmtime(ts + sign * (int(tz[1:3]) * 3600 + int(tz[3:]) * 60))
    zone = "Z" if tz == "Z0000" else f"{tz[:3]}:{tz[3:]}"
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{zone}"


zones = st.sampled_from(["+0000", "-0700", "+0530", "+1400", "Z0000"])
nasty = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=6)
targets = st.builds("{}{}{}".format, st.sampled_from(["", "", "http://h.example", "https://h:8443"]),
                    st.sampled_from(["/", "/api", "/api/user/7", "/report/x.pdf", "/a%20b", "/ünï/x"]),
                    st.sampled_from(["", "", "?id=3", "?x=/a/b", "#frag"]))


def requests(clean: bool) -> st.SearchStrategy[str]:
    good = st.builds("{} {}{}".format, st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]), targets,
                     st.sampled_from([" HTTP/1.1", " HTTP/1.0", ""]))
    if clean:
        return good
    return st.one_of(good, good, st.sampled_from(["-", "", "GET /a b HTTP/1.1", "\\x16\\x03\\x01\\x00",
                                                  "get /a", "GET api", 'GET /\\"q\\" HTTP/1.1']), nasty)


def times(kind: str, ts: int, clean: bool) -> st.SearchStrategy[str]:
    if kind in ("clf", "iso"):
        good = zones.map(lambda tz: clf_date(ts, tz.replace("Z", "+")) if kind == "clf" else iso_date(ts, tz))
    else:
        per = {"sec": 1, "msec": 1000, "usec": 1_000_000}[kind]
        good = st.sampled_from([str(ts * per), f"{ts * per}.250" if per == 1 else str(ts * per + per - 1)])
    if clean:
        return good
    return st.one_of(good, good, good, st.sampled_from(["", "-", "10/Foo/2000:13:55:36 +0000", "2000-13-01T00:00:00Z",
                                                        "1e9", "١٢٣"]), nasty)


def value(field: Field, quoted: bool, ts: int, clean: bool) -> st.SearchStrategy[str]:
    """A value of this field as a server writes it (clean), or sometimes broken."""
    role = field.role
    if role == "time":
        return times(str(field.arg), ts, clean)
    if role == "request":
        return requests(clean)
    if role == "status":
        good = st.integers(100, 599).map(str)
        bad = st.sampled_from(["600", "099", "-", "", "2OO", "1000"])
    elif role == "bytes":
        good = st.sampled_from(["0", "-", "157", "2326", str(2**40), "9" * 12])
        bad = st.sampled_from(["abc", "-1", "1.5", "", "9" * 19, "9" * 13, str(2**40 + 1), "0" * 17 + "1"])
    elif role == "rtime":
        good = st.sampled_from(["0.052", "0.000", "60", "1", "-", "12.5"])
        bad = st.sampled_from(["abc", "1e3", "", "-1", "90000", "1234567890"])
    elif role == "utime":
        good = st.sampled_from(["0.052", "-", "0.001, 0.002 : 0.003", "0.003 : -"])
        bad = st.sampled_from(["x", "0.1, x", "", "0.1 ,0.2", "0.1,0.2"])   # the last: slow path only
    elif role == "vhost":
        good = st.sampled_from(["-", "shop.example", "shop.example:8080", "[::1]:443", "localhost",
                                *([""] if field.empty else [])])
        bad = nasty
    elif role == "host":
        good = st.sampled_from(["127.0.0.1", "10.0.0.2", "::1", "h.example", "-", "é"])
        bad = nasty
    elif role == "method":
        good = st.sampled_from(["GET", "POST", "HEAD"])
        bad = st.sampled_from(["get", "", "G3T", "-"])
    elif role == "path":
        good = st.sampled_from(["/", "/api/user/1", "/a?x=/b", "/report", "http://h/a/b"])
        bad = st.sampled_from(["", "relative", "*", "/a b"])
    elif quoted:
        good = st.sampled_from(["-", "", "http://example.com/start.html", "Mozilla/5.0 (X11; Linux) [en]",
                                "1.2.3.4, 5.6.7.8", "\\x22q\\x22"])
        bad = st.one_of(nasty, st.just('say \\"hi\\"'))
    else:
        good = st.sampled_from(["-", "frank", "HTTP/1.1", "443", "a:b"])
        bad = st.one_of(nasty, st.just("John Smith"))      # a user with a space: slow path only
    return good if clean else st.one_of(good, good, good, bad)


@st.composite
def format_line(draw, fmt: TextFormat, ts: int, clean: bool) -> str:
    """A line of `fmt` with a value drawn for each field of its layout."""
    items = fmt.layout
    out = []
    for k, item in enumerate(items):
        if isinstance(item, str):
            out.append(item)
            continue
        before = items[k - 1] if k and isinstance(items[k - 1], str) else ""
        after = items[k + 1] if k + 1 < len(items) and isinstance(items[k + 1], str) else ""
        out.append(draw(value(item, before.endswith('"') and after.startswith('"'), ts, clean)))
    line = "".join(out)
    return line if clean or draw(st.integers(0, 4)) else draw(mutate(line))


@st.composite
def runs(draw, fmt: TextFormat, clean: bool) -> list[bytes]:
    """1 to 25 lines as a log holds them, each with its line ending. Each run has its own share
    of broken lines, so that some runs are clean enough for the fast path and the rest probe
    where it must decline."""
    noise = 0 if clean else draw(st.sampled_from([0, 0, 5, 30, 100]))
    n, ts, lines = draw(st.integers(1, 25)), BASE_TS, []
    for _ in range(n):
        ts += draw(st.sampled_from([0, 0, 1, 3]))
        line = draw(format_line(fmt, ts, draw(st.integers(0, 99)) >= noise))
        lines.append((line + draw(st.sampled_from(["\n", "\n", "\r\n"]))).encode("utf-8", "surrogatepass"))
    return lines


def check_columns(fmt: TextFormat, lines: list[bytes]) -> bool:
    """True if `columns` took the run and the batch would count it: then each line's Record is
    the one `parse` gives. (Bad UTF-8 never reaches `columns`.)"""
    try:
        text = b"".join(lines).decode("utf-8")
    except UnicodeDecodeError:
        return False
    cols = fmt.columns(text)
    if cols is None:
        return False
    assert all(len(col) == len(lines) for col in cols if col is not None)
    assert (cols.rtimes is None) != fmt.latency and (cols.utimes is None) != fmt.upstream
    assert (cols.vhosts is None) != fmt.vhost
    records = [derived(fmt, cols, i) for i in range(len(lines))]
    if None in records:
        return False
    for raw, record in zip(lines, records):
        assert fmt.parse(decode_line(raw[:-1])) == record, raw
    return True


@pytest.mark.parametrize("name", FAST_FORMATS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=st.data())
def test_columns_count_like_parse(name, data):
    fmt = FAST_FORMATS[name]
    check_columns(fmt, data.draw(runs(fmt, clean=False)))


@pytest.mark.parametrize("name", FAST_FORMATS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_clean_runs_take_the_fast_path(name, data):
    fmt = FAST_FORMATS[name]
    assert check_columns(fmt, data.draw(runs(fmt, clean=True)))


def test_columns_of_known_lines():
    text = f"{COMBINED}\n{COMBINED}\r\n"
    assert preset("combined").columns(text) == Columns(
        ["10/Oct/2000:13:55:36 -0700"] * 2, ["127.0.0.1"] * 2, ['GET /apache_pb.gif HTTP/1.0" 200'] * 2,
        ["2326"] * 2, None, None, None)
    line = '127.0.0.1 127.0.0.1 [02/Dec/2026:05:15:21 +0000] "GET /slow/50 HTTP/1.1" 200 9 0.052 0.001, 0.002\n'
    assert nginx_format(NGINX_HOST_SECOND).columns(line) == Columns(
        ["02/Dec/2026:05:15:21 +0000"], ["127.0.0.1"], ['GET /slow/50 HTTP/1.1" 200'], ["9"], ["0.052"],
        ["0.001, 0.002"], ["127.0.0.1"])
    parts = FAST_FORMATS["nginx_msec"].columns(f'{T0}.5 10.0.0.1 "GET /a/b HTTP/1.1" 404 - - "x"\n')
    assert parts is not None and parts.kinds == ['GET /a/b" 404'] and parts.stamps == [f"{T0}.5"]


@pytest.mark.parametrize("text", [
    "",
    f"{COMBINED}\n\n{COMBINED}\n",                                # a blank line
    f"{COMBINED}\nnot a line\n",
    f"{COMBINED}\x00\n",
    CLF + r' "http://x/\"q\"" "-"' + "\n",                        # an escaped quote
    f"{CLF} \"-\" \"half an agent\n{CLF} \"rest\" \"-\"\n",       # a field running past its line
    f"{COMBINED}\r\r\n",
    f"{COMBINED} 0.1\n",
    CLF.replace("GET /apache_pb.gif", "GET /" + "a" * 16384) + ' "-" "-"\n',  # past the request bound
])
def test_columns_declines(text):
    assert preset("combined").columns(text) is None


def test_no_fast_path_for_a_bare_request_line():
    fmt = nginx_format("$remote_addr [$time_local] $request $status $body_bytes_sent")
    line = f"10.0.0.1 [{DATE}] GET /api/x HTTP/1.1 200 512"
    assert fmt.parse(line) == rec()
    assert fmt.columns(line + "\n") is None


def test_fast_lines_fit_in_max_line():
    # Many quoted fields share what MAX_LINE leaves: the longest line the fast path takes is one
    # the reference parser is given (longer ones are `too_long` before parsing).
    fmt = nginx_format(NGINX_BASE + ' "$a"' * 12)
    fits = LINE_BASE + f' "{"x" * 3000}"' * 12
    assert fmt.columns(fits + "\n") is not None
    too_long = LINE_BASE + f' "{"x" * 8192}"' * 12
    assert len(too_long) > MAX_LINE and fmt.columns(too_long + "\n") is None
    assert fmt.parse(too_long) == rec()
    many = nginx_format(NGINX_BASE + ' "$a"' * 300)                 # no room left for a fast path
    assert many.columns(LINE_BASE + ' "-"' * 300 + "\n") is None
    assert many.parse(LINE_BASE + ' "-"' * 300) == rec()
