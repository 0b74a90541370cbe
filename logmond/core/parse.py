"""What a field of a log line means, for every format: the reference semantics.

Times, request lines, statuses, bytes, latencies and virtual hosts are read here, and
`record_of` is the one place fields become a `Record` or a malformed reason; nothing in the
input may raise. The formats (csvformat, textformat, jsonformat) and the batch fast path all
read fields through these functions, so they agree on every line.
"""
from __future__ import annotations

import csv
import re
from functools import lru_cache
from typing import NamedTuple

# Longest line we parse; longer ones are malformed ("too_long") and never held whole by the tailer.
MAX_LINE = 64 * 1024
# Longest malformed-line sample kept for inspection, in characters.
SAMPLE_CHARS = 200
# Largest bytes field a line may carry: 1 TiB. No HTTP response is a petabyte, so a bigger value
# is a corrupt field (malformed `bytes`), and the bound keeps every total far inside 64 bits.
MAX_BYTES_PER_LINE = 2**40

CSV_HEADER = '"remotehost","rfc931","authuser","date","request","status","bytes"'

# Malformed reasons, stable strings: they are JSON keys in `malformed_by_reason`.
R_FIELDS = "fields"
R_TIMESTAMP = "timestamp"
R_STATUS = "status"
R_BYTES = "bytes"
R_REQUEST = "request"
R_ENCODING = "encoding"
R_TOO_LONG = "too_long"
R_BINARY = "binary"
# A time far from the lines around it that no later lines confirm (batch.py, the clock guard).
R_CLOCK = "clock"
# A line that no known format fits, while `auto` found none for the lines around it.
R_FORMAT = "format"


# Malformed request-time or upstream-time field (not a number of seconds, nor `-`).
R_LATENCY = "latency"

# Section and method of a request line the server itself could not parse (nginx logs `"-" 400`,
# a TLS handshake on a plain port, `"GET /a b HTTP/1.1" 400`): a real hit, with its status.
INVALID = "(invalid)"
# Longest request time or upstream time believed, seconds (a day): a larger one is corrupt.
MAX_LATENCY = 86_400.0


class Record(NamedTuple):
    ts: int
    host: str
    method: str
    section: str
    status: int
    nbytes: int
    # Request time and upstream time in seconds, and the virtual host, when the format has them.
    rtime: float | None = None
    utime: float | None = None
    vhost: str | None = None


# A request method is an HTTP token; we accept the usual upper-case letters only.
_METHOD = re.compile(r"[A-Z]{1,20}", re.ASCII)
# The protocol of a three-token request line; Apache logs a refused `GET /a b` without one.
_PROTOCOL = re.compile(r"HTTP/[0-9](?:\.[0-9])?", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,12}", re.ASCII)
_STATUS = re.compile(r"[1-5][0-9][0-9]", re.ASCII)
_BYTES = re.compile(r"[0-9]{1,18}|-", re.ASCII)
_LATENCY = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", re.ASCII)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_CLF_DATE = re.compile(
    r"([0-9]{2})/([A-Z][a-z]{2})/([0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})",
    re.ASCII,
)


def section_of(path: str) -> str:
    """The path up to its second '/': /api/user -> /api, /report -> /report, / -> /."""
    second = path.find("/", 1)
    return path if second < 0 else path[:second]


def parse_request(request: str) -> tuple[str, str] | None:
    """(method, section) of a request line such as 'GET /api/user?id=3 HTTP/1.1', or None.

    Absolute-form targets use their path; query and fragment are dropped first.
    """
    parts = request.split(" ")
    if len(parts) not in (2, 3) or not _METHOD.fullmatch(parts[0]) or (len(parts) == 3 and not _PROTOCOL.fullmatch(parts[2])):
        return None
    target = parts[1]
    if target.startswith(("http://", "https://")):
        authority = target.index("//") + 2
        end = min((i for i in (target.find(c, authority) for c in "/?#") if i >= 0), default=len(target))
        target = "/" + target[end:] if target[end:end + 1] != "/" else target[end:]
    elif not target.startswith("/"):
        return None
    for mark in "?#":
        cut = target.find(mark)
        if cut >= 0:
            target = target[:cut]
    return parts[0], section_of(target)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (no datetime objects per line)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@lru_cache(maxsize=4096)
def clf_time(stamp: str) -> int | None:
    """Unix time of a CLF date such as '10/Oct/2000:13:55:36 -0700', or None."""
    m = _CLF_DATE.fullmatch(stamp)
    if not m:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    month = _MONTHS.get(mon)
    if month is None or not (1 <= int(day) <= 31 and int(hh) < 24 and int(mm) < 60 and int(ss) < 61):
        return None
    offset = (int(oh) * 60 + int(om)) * 60 * (1 if sign == "+" else -1)
    return _days_from_civil(int(year), month, int(day)) * 86400 + int(hh) * 3600 + int(mm) * 60 + int(ss) - offset


_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
                       r"(?:Z|([+-])([0-9]{2}):?([0-9]{2}))", re.ASCII)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@lru_cache(maxsize=4096)
def iso_time(stamp: str) -> int | None:
    """Unix time of an ISO 8601 / RFC 3339 time: nginx's `2000-10-10T13:55:36-07:00`, Traefik's
    `...36.123456789Z`, or `-0700` (a fraction of a second is dropped); None for anything else,
    an impossible date included."""
    m = _ISO_DATE.fullmatch(stamp)
    if not m:
        return None
    year, month, day, hh, mm, ss = map(int, m.groups()[:6])
    sign, oh, om = m.groups()[6:]
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month - 1] + leap
            and hh < 24 and mm < 60 and ss < 61) or (sign and not (int(oh) < 24 and int(om) < 60)):
        return None
    offset = 0 if sign is None else (int(oh) * 60 + int(om)) * 60 * (1 if sign == "+" else -1)
    return _days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss - offset


def status_of(text: str) -> int | None:
    return int(text) if _STATUS.fullmatch(text) else None


def bytes_of(text: str) -> int | None:
    """The bytes field's value ('-' is 0), or None if it is not a number up to MAX_BYTES_PER_LINE."""
    if not _BYTES.fullmatch(text):
        return None
    size = 0 if text == "-" else int(text)
    return size if size <= MAX_BYTES_PER_LINE else None


def meaning_of(request: str, status: str) -> tuple[tuple[str, str], int] | str:
    """((method, section), status code) of a request line and status, or the malformed reason.

    A request the server rejected (a 4xx status with a request line that does not parse) is a
    real hit: method and section are INVALID.
    """
    code = status_of(status)
    if code is None:
        return R_STATUS
    req = parse_request(request)
    if req is None:
        if code // 100 != 4:
            return R_REQUEST
        req = (INVALID, INVALID)
    return req, code


def latency_of(text: str, scale: float = 1.0) -> float | None | str:
    """Seconds in a request-time field written in units of `scale` seconds: None for `-` or an
    empty field, R_LATENCY for anything else that is not a number. An upstream list (nginx's
    `0.001, 0.002 : 0.003`, one entry per upstream tried) is the time spent in all of them."""
    text = text.strip()
    if text in ("-", ""):
        return None
    total = 0.0
    for part in text.replace(":", ",").split(","):
        part = part.strip()
        if part == "-":
            continue
        if not _LATENCY.fullmatch(part):
            return R_LATENCY
        total += float(part)
    seconds = total * scale
    return seconds if seconds <= MAX_LATENCY else R_LATENCY


def record_of(ts: int | None, host: str, request: str, status: str, nbytes: str, *,
              rtime: float | None | str = None, utime: float | None | str = None,
              vhost: str | None = None) -> Record | str:
    """The one place a line's fields become a Record (or the malformed reason), for every format."""
    if ts is None:
        return R_TIMESTAMP
    meaning = meaning_of(request, status)
    if isinstance(meaning, str):
        return meaning
    size = bytes_of(nbytes)
    if size is None:
        return R_BYTES
    if isinstance(rtime, str) or isinstance(utime, str):
        return R_LATENCY
    (method, section), code = meaning
    return Record(ts, host, method, section, code, size, rtime, utime, vhost_of(vhost))


def vhost_of(text: str | None) -> str | None:
    """A virtual host as counted: `-` for an empty one (nginx logs an empty $host for a request
    it rejected), the port dropped (`shop.example:443` and `shop.example` are one site)."""
    if text is None:
        return None
    if text in ("", "-"):
        return "-"
    host, _, port = text.rpartition(":")
    return host if host and port.isdigit() and "]" not in port else text


def parse_csv(line: str) -> Record | str:
    try:
        fields = next(csv.reader((line,)))
    except (csv.Error, StopIteration):
        return R_FIELDS
    if len(fields) != 7:
        return R_FIELDS
    ts = int(fields[3]) if _DIGITS.fullmatch(fields[3]) else None
    return record_of(ts, fields[0], fields[4], fields[5], fields[6])


def decode_line(raw: bytes) -> str | None:
    """bytes of one line (no newline) -> text without CR, or None if it is not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[:-1] if text.endswith("\r") else text
