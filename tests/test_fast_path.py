"""The batch fast path counts exactly like the line-by-line slow path, or declines (None)."""
from __future__ import annotations

import time
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logmond.core import batch, monitor
from logmond.core.batch import JUMP_CONFIRM, MAX_JUMP, Chunk, Counts, fast_chunk, slow_chunk
from logmond.core.monitor import CoreConfig, Monitor
from logmond.core.catalog import compile_format
from logmond.core.parse import CSV_HEADER, MAX_BYTES_PER_LINE, MAX_LINE, R_BYTES, R_CLOCK

# The formats the hand-made samples of these tests are written in.
FORMATS = ("csv", "clf", "combined")

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
BLOCK_FIELDS = ("hits", "bytes", "sections", "sec4xx", "sec5xx", "status", "methods", "hosts")
BASE_MIN, BASE_MAX = 86400 * 366, 4_000_000_000

# -- grammar ---------------------------------------------------------------------------------

hosts = st.one_of(
    st.sampled_from(["127.0.0.1", "10.0.0.2", "::1", "example.com", "-", "h"]),
    st.builds("{}.{}.{}.{}".format, *[st.integers(0, 255)] * 4),
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=8),
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "get", "G3T", "-", ""])
segments = st.sampled_from(["", "api", "user", "report", "a", "b.html", "ünï", "x y", "%2F", "..", "a,b", "é"])
paths = st.builds(lambda segs: "/" + "/".join(segs), st.lists(segments, max_size=4))
suffixes = st.sampled_from(["", "", "?id=3", "?x=/a/b", "#frag", "#f/x?y", "?", "#", "?q=1#top"])
prefixes = st.sampled_from(["", "", "", "http://example.com", "https://h:8443", "http://", "HTTP://h",
                            "ftp://h", "relative", "*"])
protocols = st.sampled_from([" HTTP/1.1", " HTTP/1.0", "", " HTTP/2.0 extra", "  HTTP/1.1"])


@st.composite
def requests(draw):
    target = draw(prefixes) + draw(paths) + draw(suffixes)
    if draw(st.integers(0, 9)) == 0:
        target = draw(st.sampled_from(["", "http://example.com?next=/admin/x", "https://h#/app/x"]))
    return f"{draw(methods)} {target}{draw(protocols)}"


valid_status = st.integers(100, 599).map(str)
bad_status = st.sampled_from(["600", "099", "abc", "99", "1000", "٢٠٠", "", "-", "2O0", " 200"])
statuses = st.one_of(valid_status, valid_status, valid_status, bad_status)
valid_bytes = st.one_of(st.integers(0, 10**12).map(str), st.just("-"), st.just("0"),
                        st.just(str(MAX_BYTES_PER_LINE)))
bad_bytes = st.sampled_from(["abc", "-1", "1.5", "١٢", "", "--", "12k", "9" * 19, "9" * 13, "9" * 18,
                             str(MAX_BYTES_PER_LINE + 1)])
# Zero-padded past the fast pattern's 13 digits: valid for the reference parser, the fast path declines.
sizes = st.one_of(valid_bytes, valid_bytes, valid_bytes, bad_bytes, st.just("0" * 17 + "1"))
tz_offsets = st.sampled_from(["+0000", "-0700", "+0530", "+1400", "-1200", "+0100"])
nasty_chars = st.sampled_from(['"', ",", '\\"', "\\", "\r", "\x00", "١", "é", " ", "[", "]", "\t",
                               "\ufeff", "\u2028", "\x85", "'", "-", "0", '""'])
free_text = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=12)


def clf_date(ts: int, tz: str) -> str:
    """CLF date of unix second `ts` in the given UTC offset."""
    sign = 1 if tz[0] == "+" else -1
    t = time.gmtime(ts + sign * (int(tz[1:3]) * 3600 + int(tz[3:]) * 60))
    return f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {tz}"


@st.composite
def stamp(draw, fmt: str, ts: int) -> str:
    """The date field for second `ts`, sometimes broken."""
    if draw(st.integers(0, 19)) == 0:
        if fmt == "csv":
            return draw(st.sampled_from(["abc", "١٢٣", "1.5", "-3", "", '"123"', "1" * 13, f"{ts} "]))
        return draw(st.sampled_from(["10/Foo/2000:13:55:36 +0000", "32/Oct/2000:13:55:36 +0000",
                                     "10/Oct/2000:13:55:36", "", "10/Oct/2000:24:00:00 +0000",
                                     "10/Oct/2000:13:55:36 -0700] [x", "١٠/Oct/2000:13:55:36 +0000"]))
    return str(ts) if fmt == "csv" else clf_date(ts, draw(tz_offsets))


def quoted(draw, value: str) -> str:
    return f'"{value}"' if draw(st.booleans()) else value


@st.composite
def line_for(draw, fmt: str, ts: int) -> str:
    host, request = draw(hosts), draw(requests())
    status, nbytes, date = draw(statuses), draw(sizes), draw(stamp(fmt, ts))
    if fmt == "csv":
        fields = [f'"{host}"' if draw(st.integers(0, 5)) else host,
                  quoted(draw, draw(st.sampled_from(["-", "", "frank", "a b", "x,y"]))),
                  quoted(draw, draw(st.sampled_from(["-", "apache", ""]))),
                  date if draw(st.integers(0, 5)) else f'"{date}"',
                  f'"{request}"' if draw(st.integers(0, 9)) else request,
                  status if draw(st.integers(0, 5)) else f'"{status}"',
                  nbytes if draw(st.integers(0, 5)) else f'"{nbytes}"']
        return ",".join(fields)
    auth = draw(st.sampled_from(["frank", "-", "John Smith", "a]b"]))
    line = f'{host} - {auth} [{date}] "{request}" {status} {nbytes}'
    if fmt == "combined" or draw(st.integers(0, 9)) == 0:
        referer = draw(st.one_of(st.just("-"), st.just("http://example.com/start.html"), free_text))
        agent = draw(st.one_of(st.just("Mozilla/4.08 [en] (Win98; I ;Nav)"), st.just('say \\"hi\\"'), free_text))
        line += f' "{referer}" "{agent}"'
    return line


@st.composite
def mutate(draw, line: str) -> str:
    kind = draw(st.integers(0, 11))
    if kind == 0:   # insert nasty characters somewhere
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(nasty_chars) + line[at:]
    elif kind == 1:  # delete a span
        a = draw(st.integers(0, len(line)))
        line = line[:a] + line[a + draw(st.integers(1, 6)):]
    elif kind == 2:  # drop or duplicate a field
        sep = "," if "," in line and draw(st.booleans()) else " "
        parts = line.split(sep)
        i = draw(st.integers(0, len(parts) - 1))
        parts = parts[:i] + parts[i + 1:] if draw(st.booleans()) else parts[:i + 1] + parts[i:]
        line = sep.join(parts)
    elif kind == 3:
        line += draw(st.sampled_from([" ", "\t", "  ", " \r", "\r\r", "\x00", ","]))
    elif kind == 4:
        line = draw(st.sampled_from(["", " ", "\t", "\r", " \r", CSV_HEADER, CSV_HEADER + " ", "\x00"]))
    elif kind == 5:  # an overlong field: past the fast path's bounds, or past MAX_LINE
        n = draw(st.sampled_from([1025, 8193, 16385, 20000, MAX_LINE + 1]))
        at = draw(st.integers(0, len(line)))
        line = line[:at] + "a" * n + line[at:]
    elif kind == 6:
        line = " " + line
    elif kind == 7:  # replace a random character with unicode / non-ASCII digit
        if line:
            at = draw(st.integers(0, len(line) - 1))
            line = line[:at] + draw(st.sampled_from(["١", "٠", "é", "\u00a0", "𝟘", "\u3000"])) + line[at + 1:]
    return line   # otherwise unchanged


@st.composite
def examples(draw, fmt: str, clean: bool = False):
    """(lines, clock, lateness, interval): lines as bytes, each with its line ending.

    Each example has its own noise level (share of nasty lines) and may have disorder, so that
    some examples are clean enough for the fast path and the others probe where it must decline.
    """
    lateness = draw(st.sampled_from([0, 5]))
    base = draw(st.integers(BASE_MIN, BASE_MAX))
    clock = draw(st.one_of(st.none(), st.integers(base - 10, base + 3)))
    if clean and clock is not None:
        clock = min(clock, base)
    noise = 0 if clean else draw(st.sampled_from([0, 0, 3, 10, 30, 100]))   # % of nasty lines
    disorder = not clean and draw(st.booleans())
    n = draw(st.integers(1 if clean else 0, 40))
    lines, t = [], base
    for _ in range(n):
        t += draw(st.sampled_from([0, 0, 0, 1, 1, 2, 7]))
        ts = t + (draw(st.sampled_from([0, 0, 0, 0, -1, -3, -5, -6, -9])) if disorder else 0)
        if noise and draw(st.integers(0, 99)) < noise:
            line = draw(st.one_of(line_for(fmt, ts), clean_line(fmt, ts).flatmap(mutate),
                                  line_for(fmt, ts).flatmap(mutate)))
        else:
            line = draw(clean_line(fmt, ts))
        eol = draw(st.sampled_from(["\n", "\n", "\r\n"]))
        lines.append((line + eol).encode("utf-8", "surrogatepass"))
    if noise and draw(st.integers(0, 15)) == 0:    # a line that is not UTF-8
        lines.insert(draw(st.integers(0, len(lines))),
                     draw(st.sampled_from([b"\xff\xfe\n", b"a\xc3(\n", b"\xed\xa0\x80\n"])))
    interval = draw(st.sampled_from([1, 10, 60]))
    return lines, clock, lateness, interval


clean_paths = st.builds(lambda segs: "/" + "/".join(segs),
                        st.lists(st.sampled_from(["", "api", "user", "report", "a", "b.html", "ünï", "%2F"]), max_size=4))
safe_host = st.text(st.sampled_from("abcxyz0123456789.-:é"), min_size=1, max_size=10)


@st.composite
def clean_line(draw, fmt: str, ts: int) -> str:
    """A line the fast path accepts (late or not is up to the times the caller gives)."""
    host = draw(safe_host)
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]))
    target = draw(st.sampled_from(["", "http://example.com", "https://h:8443"])) + draw(clean_paths) + draw(suffixes)
    request = f"{method} {target}{draw(st.sampled_from([' HTTP/1.1', ' HTTP/1.0', '']))}"
    status, nbytes = draw(valid_status), draw(valid_bytes)
    if fmt == "csv":
        rfc = draw(st.sampled_from(['"-"', "-", '""', "", '"frank"', '"a,b"']))
        return f'"{host}",{rfc},"apache",{ts},"{request}",{status},{nbytes}'
    line = f'{host} - frank [{clf_date(ts, draw(tz_offsets))}] "{request}" {status} {nbytes}'
    return line + ' "-" "Mozilla/5.0 (X11)"' if fmt == "combined" else line


# -- comparison -------------------------------------------------------------------------------

def snapshot(counts: Counts) -> tuple:
    return dict(counts.seconds), {k: b.to_state() for k, b in counts.blocks.items()}


def assert_same_counts(a: Counts, b: Counts) -> None:
    assert a.seconds == b.seconds
    assert a.blocks.keys() == b.blocks.keys()
    for key in a.blocks:
        for name in BLOCK_FIELDS:
            assert getattr(a.blocks[key], name) == getattr(b.blocks[key], name), (key, name)
        assert a.blocks[key].sketch == b.blocks[key].sketch


def prefilled(interval: int, fmt: str) -> Counts:
    """Counts that already hold some earlier lines, so that adding into existing blocks is covered."""
    counts = Counts(interval)
    seed = "".join(clean_example_line(fmt, BASE_MIN + 5 + i // 2, i) + "\n" for i in range(6))
    slow_chunk(seed.encode(), compile_format(fmt), counts, None, 5)
    return counts


def clean_example_line(fmt: str, ts: int, i: int = 0) -> str:
    request = f"GET /s{i % 3}/x?q={i} HTTP/1.1"
    if fmt == "csv":
        return f'"10.0.0.{i % 4}","-","apache",{ts},"{request}",{200 + 100 * (i % 4)},{i * 10}'
    line = f'10.0.0.{i % 4} - frank [{clf_date(ts, "-0700")}] "{request}" {200 + 100 * (i % 4)} {i * 10 or "-"}'
    return line + ' "-" "curl/8"' if fmt == "combined" else line


def check(fmt: str, chunks: list[bytes], clock: int | None, lateness: int, interval: int,
          prefill: bool = False, cache: int | None = None) -> list[Chunk | None]:
    """Count `chunks` one after the other into two Counts: A as Monitor does (fast path, slow path
    if it declines), B by the slow path only. Return the fast path's result for each chunk."""
    make = (lambda: prefilled(interval, fmt)) if prefill else (lambda: Counts(interval))
    counts_a, counts_b = make(), make()
    clock_a = clock_b = clock
    results = []
    with patch.object(batch, "MAX_CACHED_KINDS", cache or batch.MAX_CACHED_KINDS):
        for data in chunks:
            before = snapshot(counts_a)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:    # Monitor sends undecodable runs straight down the slow path
                text = None
            fast = None if text is None else fast_chunk(text, compile_format(fmt), counts_a, clock_a, lateness)
            slow = slow_chunk(data, compile_format(fmt), counts_b, clock_b, lateness)
            assert slow.lines == slow.parsed + len(slow.malformed)
            if slow.malformed or slow.late:
                assert fast is None, (slow.malformed, slow.late)
            results.append(fast)
            if fast is None:
                assert snapshot(counts_a) == before
                fast = slow_chunk(data, compile_format(fmt), counts_a, clock_a, lateness)
            assert isinstance(fast, Chunk)
            assert (fast.lines, fast.parsed, fast.late, fast.malformed, fast.clock) == \
                (slow.lines, slow.parsed, slow.late, slow.malformed, slow.clock)
            assert_same_counts(counts_a, counts_b)
            clock_a, clock_b = fast.clock, slow.clock
    return results


def split(draw, lines: list[bytes]) -> list[bytes]:
    """The lines cut into 1 to 3 consecutive chunks."""
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=2)))
    bounds = [0, *cuts, len(lines)]
    return [b"".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])]


# -- properties -------------------------------------------------------------------------------

PROPERTY = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


@pytest.mark.parametrize("fmt", FORMATS)
@PROPERTY
@given(data=st.data())
def test_fast_path_counts_like_slow_path(fmt, data):
    lines, clock, lateness, interval = data.draw(examples(fmt))
    chunks = split(data.draw, lines)
    cache = data.draw(st.sampled_from([None, None, 1, 3]))   # small: the kinds cache starts over
    check(fmt, chunks, clock, lateness, interval, data.draw(st.booleans()), cache)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_clean_input_takes_fast_path(fmt, data):
    lines, clock, lateness, interval = data.draw(examples(fmt, clean=True))
    chunks = [c for c in split(data.draw, lines) if c]
    cache = data.draw(st.sampled_from([None, 1, 3]))
    assert None not in check(fmt, chunks, clock, lateness, interval, data.draw(st.booleans()), cache)


# -- deterministic ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("clock", [None, BASE_MIN + 100])
@pytest.mark.parametrize("lateness", [0, 5])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_fast_path_taken_on_clean_input(fmt, clock, lateness, eol):
    # 40 lines, times non-decreasing from 100 s on (so none is late against clock = base + 100),
    # plus small disorder within the lateness when it is allowed.
    times = [BASE_MIN + 100 + i // 3 for i in range(40)]
    if lateness:
        times[10], times[11] = times[11] + 3, times[10]
    text = "".join(clean_example_line(fmt, t, i) + eol for i, t in enumerate(times))
    for prefill in (False, True):
        [chunk] = check(fmt, [text.encode()], clock, lateness, 10, prefill)
        assert chunk is not None
        assert (chunk.lines, chunk.parsed, chunk.late, chunk.malformed) == (40, 40, 0, [])
        assert chunk.clock == max(times)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fast_path_declines_late_line(fmt):
    times = [BASE_MIN + 100] * 5 + [BASE_MIN + 90] + [BASE_MIN + 100] * 5
    text = "".join(clean_example_line(fmt, t, i) + "\n" for i, t in enumerate(times))
    assert check(fmt, [text.encode()], None, 5, 10) == [None]
    counts = Counts(10)
    assert slow_chunk(text.encode(), compile_format(fmt), counts, None, 5).late == 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", ["", "   ", "junk", CSV_HEADER, "\x00"])
def test_fast_path_declines_unusual_line(fmt, bad):
    lines = [clean_example_line(fmt, BASE_MIN + i, i) for i in range(5)]
    lines.insert(2, bad)
    text = "\n".join(lines) + "\n"
    counts = Counts(10)
    assert fast_chunk(text, compile_format(fmt), counts, None, 5) is None
    assert counts.seconds == {} and counts.blocks == {}
    check(fmt, [text.encode()], None, 5, 10)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fast_path_empty_text(fmt):
    assert fast_chunk("", compile_format(fmt), Counts(10), None, 5) is None


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cache", [None, 1, 2, 5])
def test_kinds_cache_across_chunks(fmt, cache):
    # The same and new requests over several chunks, with the cache starting over (small sizes).
    chunks = []
    for c in range(6):
        lines = [clean_example_line(fmt, BASE_MIN + 10 * c + i, i + c) for i in range(12)]
        chunks.append(("\n".join(lines) + "\n").encode())
    results = check(fmt, chunks, None, 5, 10, False, cache)
    assert None not in results


# -- the clock guard and the bytes bound -------------------------------------------------------------

BOUND = 5 + MAX_JUMP


def lines_at(fmt: str, times: list[int]) -> bytes:
    return "".join(clean_example_line(fmt, t, i) + "\n" for i, t in enumerate(times)).encode()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("clock", [None, BASE_MIN + 100])
@pytest.mark.parametrize("far", [BOUND + 1, 10**8, -BOUND - 1])
def test_fast_path_declines_a_jump(fmt, clock, far):
    times = [BASE_MIN + 100 + i // 3 for i in range(40)]
    times[20] += far
    assert check(fmt, [lines_at(fmt, times)], clock, 5, 10) == [None]
    chunk = slow_chunk(lines_at(fmt, times), compile_format(fmt), Counts(10), clock, 5)
    # Refuted by the line after it: ahead, malformed `clock`; behind, late.
    assert (chunk.lines, chunk.parsed, chunk.groups) == (40, 39 + (far < 0), [])
    assert chunk.malformed == ([(R_CLOCK, clean_example_line(fmt, times[20], 20))] if far > 0 else [])
    assert chunk.late == (far < 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fast_path_takes_a_long_run_without_a_jump(fmt):
    # 40 lines a bound apart each: the run spans 40 bounds, but no line jumps from the one before.
    times = [BASE_MIN + 100 + BOUND * i for i in range(40)]
    [chunk] = check(fmt, [lines_at(fmt, times)], None, 5, 10)
    assert chunk is not None and chunk.clock == times[-1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fast_path_respects_the_horizon(fmt):
    times = [BASE_MIN + 100 + i // 3 for i in range(40)]
    text = lines_at(fmt, times).decode()
    assert fast_chunk(text, compile_format(fmt), Counts(10), None, 5, horizon=times[-1] - 1) is None
    assert fast_chunk(text, compile_format(fmt), Counts(10), None, 5, horizon=times[-1]) is not None
    chunk = slow_chunk(text.encode(), compile_format(fmt), Counts(10), None, 5, horizon=times[-1] - 1)
    assert (chunk.parsed, [r for r, _ in chunk.malformed]) == (39, [R_CLOCK])   # the 40th is alone in its second


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size, taken", [(MAX_BYTES_PER_LINE, True), (MAX_BYTES_PER_LINE + 1, False),
                                         (10**13 - 1, False), (10**17, False)])
def test_fast_path_bytes_bound_as_the_reference_parser(fmt, size, taken):
    lines = [clean_example_line(fmt, BASE_MIN + 100, i) for i in range(5)]
    lines[2] = lines[2].rsplit(" " if fmt != "csv" else ",", 1)[0] + (" " if fmt != "csv" else ",") + str(size)
    if fmt == "combined":
        lines[2] = clean_example_line("clf", BASE_MIN + 100, 2).rsplit(" ", 1)[0] + f' {size} "-" "curl/8"'
    data = ("\n".join(lines) + "\n").encode()
    [fast] = check(fmt, [data], None, 5, 10)
    assert (fast is not None) == taken
    slow = slow_chunk(data, compile_format(fmt), counts := Counts(10), None, 5)
    assert slow.malformed == ([] if taken else [(R_BYTES, lines[2])])
    assert sum(b.bytes for b in counts.blocks.values()) == sum(i * 10 for i in (0, 1, 3, 4)) + (size if taken else 0)


@st.composite
def jumpy(draw, fmt: str):
    """(chunks, lateness): clean lines whose time walks, jumps (either way, past the bound) and
    sometimes holds a corrupt time, cut into chunks as they might arrive."""
    lateness = draw(st.sampled_from([0, 5]))
    t = draw(st.integers(BASE_MIN + 10**7, BASE_MAX - 10**7))
    lines = []
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.integers(0, 19))
        if kind == 0:      # the log's time jumps, and stays there
            t += draw(st.sampled_from([1, -1])) * draw(st.integers(lateness + MAX_JUMP + 1, 10**7))
        ts = t + draw(st.sampled_from([0, 0, 1, -1, -lateness, -lateness - 1]))
        if kind == 1:      # one corrupt time
            ts = draw(st.sampled_from([BASE_MIN, BASE_MAX, t + 10**6, t - 10**6]))
        t = max(t, ts) if kind != 1 else t
        lines.append((draw(clean_line(fmt, ts)) + "\n").encode())
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=6)))
    bounds = [0, *cuts, len(lines)]
    return [b"".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])], lateness


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_changes_nothing_around_jumps(fmt, data):
    chunks, lateness = data.draw(jumpy(fmt))
    config = CoreConfig(format=fmt, lateness=lateness, window=10, threshold=1)
    fast, slow = Monitor(config), Monitor(config)
    events_fast, events_slow = [], []
    for chunk in chunks:
        events_fast += fast.feed(chunk)
        with patch.object(monitor, "fast_chunk", lambda *args, **kw: None):
            events_slow += slow.feed(chunk)
        assert fast.to_state() == slow.to_state()
    events_fast += fast.finish()
    events_slow += slow.finish()
    assert events_fast == events_slow
    assert fast.to_state() == slow.to_state()
    totals = fast.totals()
    assert totals["lines"] == sum(c.count(b"\n") for c in chunks) == totals["parsed"] + totals["malformed"]
