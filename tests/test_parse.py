"""Reference parsers, malformed-line accounting, LineBuffer and format auto-detection."""
from __future__ import annotations

import calendar
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logmond.core.linebuffer import LineBuffer
from logmond.core.monitor import MALFORMED_SAMPLES, CoreConfig, Monitor
from logmond.core.catalog import PRESET_NAMES, compile_format, detect, parse_line
from logmond.core.parse import (CSV_HEADER, MAX_LINE, R_BINARY, R_BYTES, R_ENCODING, R_FIELDS,
                           R_REQUEST, R_STATUS, R_TIMESTAMP, R_TOO_LONG, SAMPLE_CHARS, Record,
                           clf_time, decode_line, parse_request, section_of)

# The formats the hand-made samples of these tests are written in.
FORMATS = ("csv", "clf", "combined")

# 10/Oct/2000:13:55:36 -0700 is 20:55:36 UTC.
T0 = calendar.timegm((2000, 10, 10, 20, 55, 36))
CLF = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
COMBINED = CLF + ' "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
CSV = f'"10.0.0.2","-","apache",{T0},"GET /api/user HTTP/1.0",200,1234'
SAMPLE = {"csv": CSV, "clf": CLF, "combined": COMBINED}


def csv_line(date="1549573860", request="GET /api/user HTTP/1.0", status="200", nbytes="1234",
             host="10.0.0.2") -> str:
    return f'"{host}","-","apache",{date},"{request}",{status},{nbytes}'


def clf_line(date="10/Oct/2000:13:55:36 -0700", request="GET /apache_pb.gif HTTP/1.0", status="200",
             nbytes="2326", host="127.0.0.1", combined=False) -> str:
    line = f'{host} - frank [{date}] "{request}" {status} {nbytes}'
    return line + ' "-" "curl/8.0"' if combined else line


def make_line(fmt: str, **kw: str) -> str:
    if fmt == "csv":
        if "date" not in kw:
            kw["date"] = str(T0)
        return csv_line(**kw)
    return clf_line(combined=fmt == "combined", **kw)


def run(data: bytes, fmt: str = "auto", pieces: int | None = None) -> dict:
    """Feed `data` through a LineBuffer into a Monitor, like `logmond --once`; return totals()."""
    monitor = Monitor(CoreConfig(format=fmt))
    buf = LineBuffer()
    step = pieces or max(len(data), 1)
    for i in range(0, len(data), step):
        monitor.feed(buf.feed(data[i:i + step]))
    monitor.feed(buf.flush())
    monitor.finish()
    totals = monitor.totals()
    assert totals["lines"] == totals["parsed"] + totals["malformed"]
    assert totals["malformed"] == sum(totals["malformed_by_reason"].values())
    assert len(totals["malformed_samples"]) <= MALFORMED_SAMPLES
    for sample in totals["malformed_samples"]:
        assert set(sample) == {"reason", "line"}
        assert len(sample["line"]) <= SAMPLE_CHARS
    return totals


# -- section_of / parse_request ---------------------------------------------------------------

@pytest.mark.parametrize("path, section", [
    ("/api/user", "/api"), ("/report", "/report"), ("/", "/"), ("/api/", "/api"),
    ("/a/b/c/d", "/a"), ("/pages/create.php", "/pages"),
])
def test_section_of(path, section):
    assert section_of(path) == section


@pytest.mark.parametrize("request_line, expected", [
    ("GET /api/user HTTP/1.1", ("GET", "/api")),
    ("POST /report HTTP/1.0", ("POST", "/report")),
    ("GET / HTTP/1.1", ("GET", "/")),
    ("GET /api/user", ("GET", "/api")),                      # HTTP/0.9 style, no protocol
    ("GET /api/user?id=3 HTTP/1.1", ("GET", "/api")),
    ("GET /report?x=/a/b HTTP/1.1", ("GET", "/report")),     # slash in the query is not path
    ("GET /report#frag/x HTTP/1.1", ("GET", "/report")),
    ("GET /?q=1 HTTP/1.1", ("GET", "/")),
    ("GET /a#f?x HTTP/1.1", ("GET", "/a")),
    ("GET http://example.com/a/b HTTP/1.1", ("GET", "/a")),
    ("GET https://example.com:8443/report?q=1 HTTP/1.1", ("GET", "/report")),
    ("GET http://example.com HTTP/1.1", ("GET", "/")),
    ("GET http://example.com/ HTTP/1.1", ("GET", "/")),
    ("GET http://example.com/api/user#top HTTP/1.1", ("GET", "/api")),
    # Absolute-form whose authority is followed directly by a query or fragment: the path is
    # empty, so the section is "/"; a slash inside the query/fragment is not part of the path.
    ("GET http://example.com?next=/admin/x HTTP/1.1", ("GET", "/")),
    ("GET https://example.com#/app/route HTTP/1.1", ("GET", "/")),
])
def test_parse_request(request_line, expected):
    assert parse_request(request_line) == expected


@pytest.mark.parametrize("request_line", [
    "GET HTTP/1.0",              # no path
    "GET",
    "",
    "-",
    "GET api/user HTTP/1.1",     # not origin-form
    "GET * HTTP/1.1",
    "get /a HTTP/1.1",           # methods are upper-case tokens
    "GET  /a HTTP/1.1",          # double space
    "GET /a HTTP/1.1 extra",
    "GET\t/a HTTP/1.1",
])
def test_parse_request_rejects(request_line):
    assert parse_request(request_line) is None


# -- clf_time -----------------------------------------------------------------------------------

@pytest.mark.parametrize("stamp, utc", [
    ("10/Oct/2000:13:55:36 -0700", (2000, 10, 10, 20, 55, 36)),   # -0700 -> +7 h in UTC
    ("10/Oct/2000:13:55:36 +0000", (2000, 10, 10, 13, 55, 36)),
    ("10/Oct/2000:13:55:36 +0200", (2000, 10, 10, 11, 55, 36)),
    ("10/Oct/2000:13:55:36 +0530", (2000, 10, 10, 8, 25, 36)),
    ("10/Oct/2000:20:30:00 -0930", (2000, 10, 11, 6, 0, 0)),      # crosses midnight
    ("01/Jan/2001:00:30:00 +0100", (2000, 12, 31, 23, 30, 0)),    # crosses the year back
    ("29/Feb/2024:12:00:00 +0000", (2024, 2, 29, 12, 0, 0)),
    ("01/Mar/1900:00:00:00 +0000", (1900, 3, 1, 0, 0, 0)),
    ("31/Dec/2099:23:59:59 -1200", (2100, 1, 1, 11, 59, 59)),
])
def test_clf_time(stamp, utc):
    assert clf_time(stamp) == calendar.timegm(utc)


@pytest.mark.parametrize("stamp", [
    "", "abc", "10/Oct/2000:13:55:36", "10/Oct/2000:13:55:36 0700", "10/Foo/2000:13:55:36 +0000",
    "10/oct/2000:13:55:36 +0000", "00/Oct/2000:13:55:36 +0000", "32/Oct/2000:13:55:36 +0000",
    "10/Oct/2000:24:00:00 +0000", "10/Oct/2000:13:60:00 +0000", "10/Oct/00:13:55:36 +0000",
    "10/Oct/2000 13:55:36 +0000", "١٠/Oct/2000:13:55:36 +0000", " 10/Oct/2000:13:55:36 +0000",
    "10/Oct/2000:13:55:36 +0000 ",
])
def test_clf_time_rejects(stamp):
    assert clf_time(stamp) is None


# -- parse_line: every format ------------------------------------------------------------------

def test_parse_clf():
    assert parse_line(CLF, "clf") == Record(T0, "127.0.0.1", "GET", "/apache_pb.gif", 200, 2326)


def test_parse_clf_dash_bytes():
    assert parse_line(clf_line(nbytes="-"), "clf") == Record(T0, "127.0.0.1", "GET", "/apache_pb.gif", 200, 0)


def test_parse_combined():
    assert parse_line(COMBINED, "combined") == Record(T0, "127.0.0.1", "GET", "/apache_pb.gif", 200, 2326)


def test_parse_combined_escaped_quotes():
    line = CLF + r' "http://x/\"q\"" "agent \"with\" quotes"'
    assert parse_line(line, "combined") == Record(T0, "127.0.0.1", "GET", "/apache_pb.gif", 200, 2326)


def test_parse_clf_authuser_with_space():
    line = '1.2.3.4 - John Smith [10/Oct/2000:13:55:36 -0700] "GET /a/b HTTP/1.0" 404 -'
    assert parse_line(line, "clf") == Record(T0, "1.2.3.4", "GET", "/a", 404, 0)


def test_parse_csv():
    assert parse_line(CSV, "csv") == Record(T0, "10.0.0.2", "GET", "/api", 200, 1234)


def test_parse_csv_all_quoted_and_unquoted():
    quoted = f'"10.0.0.2","-","apache","{T0}","POST /report HTTP/1.0","503","12"'
    assert parse_line(quoted, "csv") == Record(T0, "10.0.0.2", "POST", "/report", 503, 12)
    bare = f'10.0.0.2,-,apache,{T0},GET /x/y HTTP/1.0,404,-'
    assert parse_line(bare, "csv") == Record(T0, "10.0.0.2", "GET", "/x", 404, 0)


def test_parse_csv_request_with_comma_and_doubled_quote():
    line = csv_line(request='GET /a/b?x=1,2&y=""z"" HTTP/1.0')
    assert parse_line(line, "csv") == Record(1549573860, "10.0.0.2", "GET", "/a", 200, 1234)


@pytest.mark.parametrize("status", ["100", "199", "200", "302", "404", "499", "500", "599"])
def test_status_range_accepted(status):
    assert parse_line(csv_line(status=status), "csv").status == int(status)
    assert parse_line(clf_line(status=status), "clf").status == int(status)


def test_header_is_not_a_record():
    # The header itself parses as malformed; callers (slow path, detection) skip it.
    assert parse_line(CSV_HEADER, "csv") == R_TIMESTAMP


# -- parse_line: every malformed kind, exact reason ------------------------------------------

FORMAT_MALFORMED = [
    # wrong field count
    ("csv", csv_line() + ",extra", R_FIELDS),
    ("csv", '"10.0.0.2","-","apache",1549573860,"GET / HTTP/1.0",200', R_FIELDS),
    ("csv", "", R_FIELDS),
    ("csv", '"unterminated,"-","-",1,"GET / HTTP/1.0",200,1', R_FIELDS),
    ("clf", '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200', R_FIELDS),
    ("clf", CLF + " extra", R_FIELDS),
    ("clf", COMBINED, R_FIELDS),              # combined line in clf mode
    ("combined", CLF, R_FIELDS),              # clf line in combined mode
    ("combined", COMBINED + ' "extra"', R_FIELDS),
    ("clf", CSV, R_FIELDS),
    ("csv", CLF, R_FIELDS),
    ("clf", CLF.replace('"GET', "GET"), R_FIELDS),
    # non-numeric / invalid date
    ("csv", csv_line(date="abc"), R_TIMESTAMP),
    ("csv", csv_line(date="١٥٤٩٥٧٣٨٦٠"), R_TIMESTAMP),   # non-ASCII digits
    ("csv", csv_line(date="1549573860.5"), R_TIMESTAMP),
    ("csv", csv_line(date="-1549573860"), R_TIMESTAMP),
    ("csv", csv_line(date=""), R_TIMESTAMP),
    ("csv", csv_line(date="1234567890123"), R_TIMESTAMP),  # more than 12 digits
    ("clf", clf_line(date="10/Foo/2000:13:55:36 -0700"), R_TIMESTAMP),
    ("clf", clf_line(date="not a date"), R_TIMESTAMP),
    ("combined", clf_line(date="10/Oct/2000:13:55:36", combined=True), R_TIMESTAMP),
    # non-numeric / out of range status
    ("csv", csv_line(status="abc"), R_STATUS),
    ("csv", csv_line(status="600"), R_STATUS),
    ("csv", csv_line(status="099"), R_STATUS),
    ("csv", csv_line(status="99"), R_STATUS),
    ("csv", csv_line(status="1000"), R_STATUS),
    ("csv", csv_line(status="٢٠٠"), R_STATUS),
    ("csv", csv_line(status=""), R_STATUS),
    ("clf", clf_line(status="600"), R_STATUS),
    ("clf", clf_line(status="-"), R_STATUS),
    ("combined", clf_line(status="2OO", combined=True), R_STATUS),
    # non-numeric bytes
    ("csv", csv_line(nbytes="abc"), R_BYTES),
    ("csv", csv_line(nbytes="-1"), R_BYTES),
    ("csv", csv_line(nbytes="1.5"), R_BYTES),
    ("csv", csv_line(nbytes="١٢"), R_BYTES),
    ("csv", csv_line(nbytes=""), R_BYTES),
    ("clf", clf_line(nbytes="12k"), R_BYTES),
    ("combined", clf_line(nbytes="--", combined=True), R_BYTES),
    # request without a path
    ("csv", csv_line(request="GET HTTP/1.0"), R_REQUEST),
    ("csv", csv_line(request="-"), R_REQUEST),
    ("csv", csv_line(request=""), R_REQUEST),
    ("clf", clf_line(request="GET"), R_REQUEST),
    ("clf", clf_line(request="-"), R_REQUEST),
    ("combined", clf_line(request="GET index.html HTTP/1.1", combined=True), R_REQUEST),
    # NUL bytes
    ("csv", csv_line(host="10.0.0.2\x00"), R_BINARY),
    ("clf", CLF + "\x00", R_BINARY),
    ("combined", "\x00" * 10, R_BINARY),
]


@pytest.mark.parametrize("fmt, line, reason", FORMAT_MALFORMED)
def test_parse_line_malformed_reason(fmt, line, reason):
    assert parse_line(line, fmt) == reason


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("line", [
    "\r", "\x00\xff\r\n", "\ufeff", "\u2028", '"', '""', "\\", '"' * 1000, "[" * 50, "a\rb",
    " " * 10, "é" * 100, "\x85", "1 2 3 [4] \"5\" 6 7 \"8\" \"9\"", ",,,,,,", '"",,,,,,' * 3,
])
def test_parse_line_never_raises_on_junk(fmt, line):
    assert isinstance(parse_line(line, fmt), (Record, str))


@settings(max_examples=300, deadline=None)
@given(line=st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=120),
       fmt=st.sampled_from(FORMATS))
def test_parse_line_never_raises(line, fmt):
    result = parse_line(line, fmt)
    assert isinstance(result, Record) or result in (R_FIELDS, R_TIMESTAMP, R_STATUS, R_BYTES, R_REQUEST, R_BINARY)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=8), fmt=st.sampled_from([*FORMATS, "auto"]))
def test_monitor_never_raises_on_arbitrary_bytes(chunks, fmt):
    monitor = Monitor(CoreConfig(format=fmt))
    buf = LineBuffer()
    for chunk in chunks:
        monitor.feed(buf.feed(chunk))
    monitor.feed(buf.flush())
    monitor.finish()
    totals = monitor.totals()
    assert totals["lines"] == totals["parsed"] + totals["malformed"]
    assert totals["format"] in (None, *PRESET_NAMES)


def test_decode_line():
    assert decode_line(b"abc\r") == "abc"
    assert decode_line(b"abc") == "abc"
    assert decode_line("héllo".encode()) == "héllo"
    assert decode_line(b"\xff\xfe") is None
    assert decode_line(b"\xed\xa0\x80") is None    # encoded surrogate


# -- end to end: counting through Monitor ---------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", ["auto", "explicit"])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_counts_clean_input(fmt, mode, eol):
    data = eol.join(SAMPLE[fmt].encode() for _ in range(5)) + eol
    totals = run(data, fmt if mode == "explicit" else "auto")
    assert totals["format"] == (fmt if mode == "explicit" else AUTO_NAME.get(fmt, fmt))
    assert (totals["lines"], totals["parsed"], totals["malformed"], totals["late"]) == (5, 5, 0, 0)
    assert totals["malformed_by_reason"] == {}
    assert totals["malformed_samples"] == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_unterminated_last_line_counted(fmt):
    data = (SAMPLE[fmt] + "\n") * 2 + SAMPLE[fmt]
    totals = run(data.encode(), fmt)
    assert (totals["lines"], totals["parsed"]) == (3, 3)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("reason", [R_FIELDS, R_TIMESTAMP, R_STATUS, R_BYTES, R_REQUEST, R_BINARY])
def test_counts_each_malformed_reason(fmt, reason):
    # Every (format, reason) pair has cases; a blank line is skipped, not malformed.
    bad = [line for f, line, r in FORMAT_MALFORMED if f == fmt and r == reason and line.strip()]
    assert bad
    good = SAMPLE[fmt]
    body = [good]
    for line in bad:
        body += [line, good]
    totals = run(("\n".join(body) + "\n").encode(), fmt)
    assert totals["parsed"] == len(bad) + 1
    assert totals["malformed"] == len(bad)
    assert totals["malformed_by_reason"] == {reason: len(bad)}
    assert totals["malformed_samples"] == [{"reason": reason, "line": line} for line in bad]


@pytest.mark.parametrize("fmt", FORMATS)
def test_invalid_utf8(fmt):
    bad = b"127.0.0.1 - \xff\xfe [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1"
    data = SAMPLE[fmt].encode() + b"\n" + bad + b"\n" + SAMPLE[fmt].encode() + b"\n"
    totals = run(data, fmt)
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (3, 2, 1)
    assert totals["malformed_by_reason"] == {R_ENCODING: 1}
    assert totals["malformed_samples"] == [{"reason": R_ENCODING, "line": bad.decode("utf-8", "replace")}]


@pytest.mark.parametrize("fmt", FORMATS)
def test_nul_bytes(fmt):
    data = SAMPLE[fmt].encode() + b"\n\x00\x00\x00\n" + SAMPLE[fmt].encode() + b"\x00\n"
    totals = run(data, fmt)
    assert (totals["lines"], totals["parsed"]) == (3, 1)
    assert totals["malformed_by_reason"] == {R_BINARY: 2}


@pytest.mark.parametrize("fmt", [*FORMATS, "auto"])
@pytest.mark.parametrize("pieces", [None, 4096, 1000])
def test_too_long_line(fmt, pieces):
    good = SAMPLE["clf" if fmt == "auto" else fmt].encode()
    long = b"x" * (70 * 1024)
    data = good + b"\n" + long + b"\n" + good + b"\n"
    totals = run(data, fmt, pieces)
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (3, 2, 1)
    assert totals["malformed_by_reason"] == {R_TOO_LONG: 1}
    assert totals["malformed_samples"] == [{"reason": R_TOO_LONG, "line": "x" * SAMPLE_CHARS}]


def test_line_of_exactly_max_line_is_not_too_long():
    line = clf_line(request="GET /a" + "b" * (MAX_LINE - len(clf_line(request="GET /a"))))
    assert len(line) == MAX_LINE
    totals = run(line.encode() + b"\n", "clf")
    assert (totals["lines"], totals["parsed"]) == (1, 1)
    totals = run(line.encode() + b"b\n", "clf")
    assert totals["malformed_by_reason"] == {R_TOO_LONG: 1}


@pytest.mark.parametrize("fmt", [*FORMATS, "auto"])
def test_empty_input(fmt):
    totals = run(b"", fmt)
    assert (totals["lines"], totals["parsed"], totals["malformed"], totals["late"]) == (0, 0, 0, 0)
    assert totals["malformed_samples"] == []


@pytest.mark.parametrize("fmt", [*FORMATS, "auto"])
def test_blank_lines_only(fmt):
    totals = run(b"\n\n  \n\r\n\t\n \r\n\n", fmt)
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (0, 0, 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_blank_lines_skipped_silently(fmt):
    data = f"\n{SAMPLE[fmt]}\n\n   \r\n{SAMPLE[fmt]}\n\n".encode()
    totals = run(data, fmt)
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (2, 2, 0)


@pytest.mark.parametrize("fmt", ["csv", "auto"])
@pytest.mark.parametrize("eol", ["\n", "\r\n", ""])
def test_csv_header_only(fmt, eol):
    totals = run((CSV_HEADER + eol).encode(), fmt)
    assert totals["format"] == "csv"
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["csv", "auto"])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_csv_with_header(fmt, eol):
    data = eol.join([CSV_HEADER, CSV, CSV, CSV]) + eol
    totals = run(data.encode(), fmt)
    assert totals["format"] == "csv"
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (3, 3, 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_samples_truncated_and_last_20_kept(fmt):
    bad = [f"{i:04d} junk " + "y" * 500 for i in range(30)]
    body = []
    for line in bad:
        body += [SAMPLE[fmt], line]
    totals = run(("\n".join(body) + "\n").encode(), fmt)
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (60, 30, 30)
    assert totals["malformed_by_reason"] == {R_FIELDS: 30}
    samples = totals["malformed_samples"]
    assert len(samples) == MALFORMED_SAMPLES == 20
    assert [s["line"] for s in samples] == [line[:SAMPLE_CHARS] for line in bad[-20:]]
    assert all(len(s["line"]) == SAMPLE_CHARS for s in samples)


def test_samples_truncated_in_characters():
    line = "é" * 300 + " [x]"
    totals = run((line + "\n").encode(), "clf")
    assert totals["malformed_samples"] == [{"reason": R_FIELDS, "line": "é" * SAMPLE_CHARS}]


def test_mixed_reasons_counted_separately():
    lines = [CLF, "junk", clf_line(status="700"), clf_line(nbytes="x"), clf_line(request="GET"),
             clf_line(date="yesterday"), CLF]
    data = ("\n".join(lines) + "\n").encode() + b"\xc3\x28\n" + b"\x00\n" + b"z" * (MAX_LINE + 1) + b"\n"
    totals = run(data, "clf")
    assert totals["parsed"] == 2
    assert totals["malformed_by_reason"] == {R_FIELDS: 1, R_STATUS: 1, R_BYTES: 1, R_REQUEST: 1,
                                             R_TIMESTAMP: 1, R_ENCODING: 1, R_BINARY: 1, R_TOO_LONG: 1}
    assert [s["reason"] for s in totals["malformed_samples"]] == [
        R_FIELDS, R_STATUS, R_BYTES, R_REQUEST, R_TIMESTAMP, R_ENCODING, R_BINARY, R_TOO_LONG]


@pytest.mark.parametrize("fmt", [*FORMATS, "auto"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_binary_junk(fmt, seed):
    rng = random.Random(seed)
    junk = rng.randbytes(200_000)
    totals = run(junk, fmt, pieces=rng.choice([None, 1, 777, 65536]) if seed else None)
    assert totals["parsed"] == 0
    assert totals["lines"] == totals["malformed"] > 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_junk_between_good_lines(fmt):
    rng = random.Random(42)
    good = SAMPLE[fmt].encode()
    parts = []
    for _ in range(50):
        parts.append(good + b"\n")
        parts.append(rng.randbytes(rng.randrange(1, 300)).replace(b"\n", b"") + b"\n")
    totals = run(b"".join(parts), fmt)
    assert totals["parsed"] >= 50
    assert totals["lines"] == 100 - sum(1 for p in parts[1::2] if not p.decode("latin-1").strip())


@pytest.mark.parametrize("fmt", FORMATS)
def test_all_byte_values(fmt):
    data = bytes(range(256)) + b"\n" + bytes(range(255, -1, -1)) + b"\n"
    totals = run(data, fmt)
    assert totals["parsed"] == 0


# -- LineBuffer ----------------------------------------------------------------------------------

def test_linebuffer_keeps_partial_until_newline():
    buf = LineBuffer()
    assert buf.feed(b"abc") == b""
    assert buf.pending == 3
    assert buf.feed(b"def") == b""
    assert buf.feed(b"g\nhi") == b"abcdefg\n"
    assert buf.pending == 2
    assert buf.feed(b"\n\nj\nk") == b"hi\n\nj\n"
    assert buf.pending == 1
    assert buf.flush() == b"k\n"
    assert buf.pending == 0
    assert buf.flush() == b""


def test_linebuffer_flush_empty():
    buf = LineBuffer()
    assert buf.flush() == b""
    assert buf.feed(b"a\n") == b"a\n"
    assert buf.flush() == b""


def test_linebuffer_crlf_split_across_reads():
    buf = LineBuffer()
    assert buf.feed(b"abc\r") == b""
    assert buf.feed(b"\ndef\r\n") == b"abc\r\ndef\r\n"


def test_linebuffer_whole_long_line_left_to_parser():
    buf = LineBuffer()
    long = b"x" * (MAX_LINE * 2) + b"\n"
    assert buf.feed(long) == long
    assert buf.pending == 0


def test_linebuffer_overlong_unterminated_line_is_cut_and_skipped():
    buf = LineBuffer()
    out = []
    piece = b"y" * 1000
    for _ in range(1024):                      # 1000 KiB-ish without a newline, in small pieces
        out.append(buf.feed(piece))
        assert buf.pending <= MAX_LINE
    done = b"".join(out)
    assert done == b"y" * (MAX_LINE + 1) + b"\n"
    assert buf.pending == 0
    assert buf.feed(b"y" * 50 + b"\nnext\npart") == b"next\n"
    assert buf.pending == 4
    assert buf.flush() == b"part\n"


def test_linebuffer_1mib_without_newline_stays_bounded():
    buf = LineBuffer()
    total = b""
    for _ in range(1024 * 1024 // 256):
        total += buf.feed(b"\xab" * 256)
        assert buf.pending <= MAX_LINE
    assert len(total) == MAX_LINE + 2
    assert buf.pending == 0
    assert buf.flush() == b""
    # The rest of the skipped line is dropped, the following line is whole.
    assert buf.feed(b"tail\nok\n") == b"ok\n"


def test_linebuffer_overlong_with_completed_lines_before():
    buf = LineBuffer()
    data = b"first\n" + b"z" * (MAX_LINE + 10)
    assert buf.feed(data) == b"first\n" + b"z" * (MAX_LINE + 1) + b"\n"
    assert buf.pending == 0
    assert buf.feed(b"zzz") == b""
    assert buf.pending == 0


def test_linebuffer_exactly_max_line_pending_is_kept():
    buf = LineBuffer()
    assert buf.feed(b"a" * MAX_LINE) == b""
    assert buf.pending == MAX_LINE
    assert buf.feed(b"\n") == b"a" * MAX_LINE + b"\n"


@pytest.mark.parametrize("seed", range(5))
def test_linebuffer_random_splits_preserve_lines(seed):
    rng = random.Random(seed)
    lines = [rng.randbytes(rng.randrange(0, 200)).replace(b"\n", b"") for _ in range(200)]
    data = b"\n".join(lines)
    buf = LineBuffer()
    out = b""
    i = 0
    while i < len(data):
        n = rng.randrange(1, 500)
        out += buf.feed(data[i:i + n])
        i += n
    out += buf.flush()
    expected = data + b"\n" if lines[-1] else data
    assert out == expected


# -- format auto-detection ---------------------------------------------------------------------

# What auto calls a format it detects: clf lines are `common`, the preset's own name.
AUTO_NAME = {"clf": "common"}


def detect_format(lines: list[str]) -> str | None:
    """The name of the format auto settles on for these lines (clf lines are `common`, its name)."""
    fmt = detect(lines)
    return None if fmt is None else fmt.name


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_format(fmt):
    assert detect_format([SAMPLE[fmt]] * 3) == {"clf": "common"}.get(fmt, fmt)


def test_detect_format_header_and_majority():
    assert detect_format([CSV_HEADER]) == "csv"
    assert detect_format([CSV_HEADER, CSV]) == "csv"
    assert detect_format([]) is None
    assert detect_format(["junk", "more junk"]) is None
    assert detect_format([CLF, COMBINED, COMBINED, "junk"]) == "combined"
    assert detect_format([CLF, CLF, COMBINED]) == "common"


@pytest.mark.parametrize("fmt", FORMATS)
def test_auto_decides_from_first_lines(fmt):
    monitor = Monitor(CoreConfig(format="auto"))
    assert monitor.totals()["format"] is None and monitor.totals()["format_error"] is None
    monitor.feed(f"{SAMPLE[fmt]}\n{SAMPLE[fmt]}\n".encode())
    assert monitor.totals()["format"] == AUTO_NAME.get(fmt, fmt)      # decided before end of input
    monitor.feed(f"{SAMPLE[fmt]}\n".encode())
    monitor.finish()
    totals = monitor.totals()
    assert totals["format"] == AUTO_NAME.get(fmt, fmt)
    assert (totals["lines"], totals["parsed"]) == (3, 3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_auto_skips_leading_junk(fmt):
    data = f"\n\ngarbage line\n{SAMPLE[fmt]}\n{SAMPLE[fmt]}\n".encode() + b"\xff\n"
    totals = run(data, "auto")
    assert totals["format"] == AUTO_NAME.get(fmt, fmt)
    assert totals["parsed"] == 2
    assert totals["malformed_by_reason"] == {R_FIELDS: 1, R_ENCODING: 1}


def test_auto_waits_for_a_parseable_line():
    monitor = Monitor(CoreConfig(format="auto"))
    monitor.feed(b"\n\njunk\n")
    assert monitor.totals()["format"] is None and "none of the formats tried fits" in monitor.totals()["format_error"]
    monitor.feed(f"{COMBINED}\n".encode())
    assert monitor.totals()["format"] == "combined"
    monitor.finish()
    totals = monitor.totals()
    assert (totals["lines"], totals["parsed"], totals["malformed"]) == (2, 1, 1)


def test_auto_csv_with_header_reports_csv():
    totals = run(f"{CSV_HEADER}\n{CSV}\n".encode(), "auto")
    assert totals["format"] == "csv"
    assert (totals["lines"], totals["parsed"]) == (1, 1)


def test_auto_undecidable_input_is_counted_and_said_not_guessed():
    totals = run(b"junk\nmore junk\n", "auto")
    assert totals["format"] is None and "none of the formats tried fits" in totals["format_error"]
    assert (totals["lines"], totals["malformed"]) == (2, 2)
    assert totals["malformed_by_reason"] == {"format": 2}


def test_blank_lines_alone_are_no_sign_of_an_unknown_format():
    monitor = Monitor(CoreConfig(format="auto"))
    monitor.feed(b"\n\n\r\n")
    assert monitor.totals()["format_error"] is None
    monitor.feed(b"junk\n")
    assert "none of the formats tried fits" in monitor.totals()["format_error"]
