"""The exercise's CSV format: `"remotehost","rfc931","authuser","date","request","status","bytes"`,
with or without that header line; `date` is a unix timestamp."""
from __future__ import annotations

import re

from logmond.core.formats import Columns, LogFormat
from logmond.core.parse import CSV_HEADER, MAX_BYTES_PER_LINE, MAX_LINE, Record, parse_csv

# Groups: host, time, request-and-status (`GET / HTTP/1.1",200`: request [:-5], status [-3:], one
# group so that both are counted as one key), bytes. Field lengths are bounded so that any line
# the pattern matches is shorter than MAX_LINE; quantifiers are possessive (`{m,n}+`) because the
# fields cannot overlap, which saves re its backtracking bookkeeping. Quoted fields are `[^"]`, a
# single excluded character, which re scans in a tight loop several times faster than a class: a
# field running past its line makes the line count disagree, and NUL (the reference parser's
# `binary`) is refused for the whole run beforehand.
_Q = r'"[^"]{0,1024}+"'
_FAST = re.compile(
    rf'^"([^"]{{0,1024}}+)",(?:{_Q}|[^",\r\n\x00]{{0,1024}}+),(?:{_Q}|[^",\r\n\x00]{{0,1024}}+),'
    rf'([0-9]{{1,12}}+),"([^"]{{0,16384}}+",[0-9]{{3}}),([0-9]{{1,13}}+|-)\r?$', re.M | re.ASCII)
# Any line the fast pattern matches is short enough for the reference parser to accept too, and
# its bytes field (13 digits at most) is checked against MAX_BYTES_PER_LINE by value.
assert MAX_LINE > 3 * 1024 + 16384 + 64
assert len(str(MAX_BYTES_PER_LINE)) == 13


class CsvFormat(LogFormat):
    name = "csv"
    header = CSV_HEADER

    def parse(self, line: str) -> Record | str:
        return parse_csv(line)

    def read_time(self, stamp: str) -> int | None:
        return int(stamp)

    def columns(self, text: str) -> Columns | None:
        # split() rather than findall(): the groups come back in one flat list, so each column is
        # one C-level slice. Before the first match there must be nothing, and after each match
        # nothing but its newline, or a line did not match.
        if "\x00" in text:
            return None
        parts = _FAST.split(text)
        lines = len(parts) // 5
        # A quoted field may not span lines: every line is one match.
        if lines == 0 or parts[0] or parts[5::5].count("\n") != lines or text.count("\n") != lines:
            return None
        return Columns(parts[2::5], parts[1::5], parts[3::5], parts[4::5], None, None, None)
