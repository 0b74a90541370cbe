"""JSON access logs, one object per line: nginx `escape=json` keys (`json`), Caddy (`caddy`), Traefik
(`traefik`).

Each format reads its fields once, in `_fields`, from a table of decoded lines: one line for
`parse`, a whole run for `columns`. Both paths therefore take the same values through the same
code; the fast path differs only in how it decodes the run:

- flat lines with no backslash in the run (nginx's usual output): one regex, learned from the first
  line's keys and value types, splits the run at C speed. With no escapes, a JSON string is the
  text between its quotes, and numbers are converted as json converts them.
- otherwise one json decode of the whole run, the lines joined by a literal that no line contains,
  so that a line which is not one JSON value on its own cannot hide inside its neighbours.

Lines are decoded with strict=False (a raw tab inside a string is accepted), as the regex reads
them. `parse_bytes` reads a line that is not UTF-8: nginx writes the raw bytes of a request it
rejected into the JSON string, and that line is still about a hit.
"""
from __future__ import annotations

import json
import re
from itertools import repeat
from operator import add, contains, is_, itemgetter
from typing import Callable, ClassVar, NamedTuple

from logmond.core.formats import Columns, LogFormat
from logmond.core.parse import (MAX_LINE, R_BINARY, R_FIELDS, Record, clf_time, iso_time, latency_of, record_of,
                                status_of)

# Seconds since the epoch a time may be: what the csv format's 12 digits can hold.
MAX_EPOCH = 10**12
# Longest line the fast path takes, in characters: at most 4 bytes each in UTF-8, so that the
# reference path, which measures bytes, would not call any of them too_long.
MAX_FAST_CHARS = MAX_LINE // 4
# Shortest string bound worth a regex: a first line with so many keys that each string value must
# be shorter than this to keep the line under MAX_FAST_CHARS goes through the json decoder instead.
_MIN_STRING = 256
# Line shapes (keys and value types in order) whose fast pattern is kept; the cache starts over
# when full, so a log whose keys keep changing cannot make it grow without bound.
MAX_PLANS = 32
# Nanoseconds per second (Traefik's Duration).
_NS = 10**9

_DECODE = json.JSONDecoder(strict=False).decode
# Characters no Record string may hold (a NUL, lone surrogates from \\u escapes): replaced.
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
# The JSON escapes that produce them; a run holding one goes line by line.
_UNSAFE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
# Literals that join a run's lines for one decode, with the value each decodes to.
_JOINERS = (("null", None), ("true", True), ("false", False))

_EPOCH = re.compile(r"[0-9]{1,12}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", re.ASCII)
# The fraction of a second in an RFC 3339 time: dropping it changes no iso_time result, and leaves
# one stamp per second instead of one per line (literal dot first: re then scans for it).
_FRACTION = re.compile(r"\.(?<=:[0-9]{2}\.)[0-9]{1,9}(?=Z$|[+-][0-9]{2}:[0-9]{2}$)", re.ASCII)

# Value patterns for the fast split by JSON type: exactly the texts json decodes to that type
# (bounded lengths; no leading zeros; a float has a fraction or an exponent).
_NUMBER = r"-?(?:0|[1-9][0-9]{0,17})"
_SCALARS = {int: _NUMBER,
            float: _NUMBER + r"(?:\.[0-9]{1,17}(?:[eE][+-]?[0-9]{1,3})?|[eE][+-]?[0-9]{1,3})",
            bool: "true|false", type(None): "null"}
# Longest text a scalar pattern matches.
_SCALAR_CHARS = 42


def epoch_second(stamp: str) -> int | None:
    """The second of a stamp as the JSON formats hand it over: its digits, or None ('-')."""
    return int(stamp) if _EPOCH.fullmatch(stamp) else None


class _Unfit(Exception):
    """The lines do not fit the format: for one line, malformed `fields`; for a run, the slow path."""


class _Fields(NamedTuple):
    """What a format reads from its lines, column by column, as text (see Columns)."""
    stamps: list[str]            # digits of the Unix second, or "-" where the time does not read
    hosts: list[str]
    requests: list[str]
    statuses: list[str]
    sizes: list[str]
    rtimes: list[str] | None     # seconds
    utimes: list[str] | None
    vhosts: list[str] | None


class _Rows:
    """Decoded lines read key by key. A run fits only if a key the first line has is in every
    line (itemgetter raises KeyError otherwise) and one it lacks is in none."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def has(self, key: str) -> bool:
        if key in self.rows[0]:
            return True
        if len(self.rows) > 1 and any(map(contains, self.rows, repeat(key))):
            raise _Unfit(key)
        return False

    def get(self, key: str, types: set[type]) -> tuple[list, set[type]]:
        """Every line's value of `key`, and their types, which must be among `types`."""
        values = list(map(itemgetter(key), self.rows))
        found = set(map(type, values))
        if not found <= types:
            raise _Unfit(key)
        return values, found


class _Plan(NamedTuple):
    """The fast split of one line shape."""
    pattern: re.Pattern[str]
    width: int                            # groups per line
    groups: dict[str, tuple[int, type]]   # captured key -> (group number, JSON type)


class _Split:
    """A run split by a plan's pattern: each captured key's values, decoded as json would."""

    def __init__(self, plan: _Plan, parts: list[str], lines: int) -> None:
        self.plan, self.parts, self.lines = plan, parts, lines

    def __len__(self) -> int:
        return self.lines

    def has(self, key: str) -> bool:
        return key in self.plan.groups

    def get(self, key: str, types: set[type]) -> tuple[list, set[type]]:
        group, kind = self.plan.groups[key]
        if kind not in types:
            raise _Unfit(key)
        values = self.parts[group::self.plan.width + 1]
        return (values if kind is str else list(map(kind, values))), {kind}


def _plan_of(shape: tuple[tuple[str, type], ...], wanted: frozenset[str]) -> _Plan | None:
    """The pattern of lines with exactly these keys and value types, capturing the `wanted` keys;
    None if a value is not a string, number or literal (the json decoder reads those lines)."""
    strings = sum(kind is str for _, kind in shape)
    if not strings or any(kind is not str and kind not in _SCALARS for _, kind in shape):
        return None
    skeleton = 2 + sum(len(key) + 4 for key, _ in shape) + _SCALAR_CHARS * (len(shape) - strings)
    bound = (MAX_FAST_CHARS - skeleton) // strings
    if bound < _MIN_STRING:
        return None
    fields, groups = [], {}
    for key, kind in shape:
        body = f'[^"]{{0,{bound}}}+' if kind is str else f"(?:{_SCALARS[kind]})"
        if key in wanted:
            groups[key] = (len(groups) + 1, kind)
            body = f"({body})"
        fields.append(f'"{re.escape(key)}":' + (f'"{body}"' if kind is str else body))
    return _Plan(re.compile(r"^\{" + ",".join(fields) + r"\}$", re.M), len(groups), groups)


def _clean(text: str) -> str:
    return _UNSAFE.sub("\ufffd", text)


def _texts(values: list, types: set[type]) -> list[str]:
    """A status or size given as a string or an integer, as text."""
    return values if types == {str} else list(map(str, values))


def _decimals(values: list, types: set[type]) -> list[str]:
    """Seconds given as a string or a number, as latency_of reads them: a string as written, a
    float in fixed point (its repr may be 2.5e-05, which latency_of refuses), an integer exactly."""
    if types == {str}:
        return values
    if types == {float}:
        return list(map(format, values, repeat(".9f")))
    return [v if type(v) is str else format(v, ".9f") if type(v) is float else str(v) for v in values]


def _seconds(values: list) -> list[str]:
    """Seconds since the epoch given as numbers, truncated to digits; '-' out of range or NaN."""
    try:
        if 0 <= min(values) and max(values) < MAX_EPOCH:
            return list(map(str, map(int, values)))
    except (ValueError, OverflowError):  # a NaN that min and max skipped
        pass
    return [str(int(v)) if 0 <= v < MAX_EPOCH else "-" for v in values]


def _epoch(values: list, types: set[type]) -> list[str]:
    """Seconds since the epoch given as numbers or decimal strings ('1764652521.123')."""
    if types == {str} and None not in map(_DECIMAL.fullmatch, values):
        return _seconds(list(map(float, values)))
    if str in types:
        values = [v if type(v) is not str else float(v) if _DECIMAL.fullmatch(v) else -1.0 for v in values]
    return _seconds(values)


def _times(values: list[str], reader: Callable[[str], int | None]) -> list[str]:
    """Time strings read by `reader`, each distinct one once, as the digits of their second."""
    seconds = {}
    for value in set(values):
        t = reader(value)
        seconds[value] = str(t) if t is not None and 0 <= t < MAX_EPOCH else "-"
    return list(map(seconds.__getitem__, values))


def _first(table: _Rows | _Split, keys: tuple[str, ...]) -> str | None:
    """The first of `keys` the lines have."""
    return next((key for key in keys if table.has(key)), None)


def _addr_host(addr: str) -> str:
    """The host of an address with a port: '203.0.113.7:5123', '[2001:db8::1]:5123'."""
    if addr.startswith("["):
        end = addr.find("]")
        return addr[1:end] if end > 0 else addr
    host, sep, _ = addr.rpartition(":")
    return host if sep and ":" not in host else addr


class JsonLogFormat(LogFormat):
    """A JSON access log: subclasses name the keys they read (`KEYS`) and read them (`_fields`)."""

    KEYS: ClassVar[frozenset[str]] = frozenset()
    # A JSON value may hold any text where the bytes go: the batch checks the sizes.
    sizes_checked = False

    def __init__(self) -> None:
        self._plans: dict[tuple[tuple[str, type], ...], _Plan | None] = {}

    def _fields(self, table: _Rows | _Split) -> _Fields:
        raise NotImplementedError

    def read_time(self, stamp: str) -> int | None:
        return epoch_second(stamp)

    def parse(self, line: str) -> Record | str:
        if "\x00" in line:
            return R_BINARY
        try:
            obj = _DECODE(line)
        except (ValueError, RecursionError):
            return R_FIELDS
        if type(obj) is not dict:
            return R_FIELDS
        try:
            f = self._fields(_Rows([obj]))
        except (KeyError, _Unfit):
            return R_FIELDS
        return record_of(self.read_time(f.stamps[0]), _clean(f.hosts[0]), _clean(f.requests[0]),
                         f.statuses[0], f.sizes[0],
                         rtime=None if f.rtimes is None else latency_of(f.rtimes[0], self.latency_scale),
                         utime=None if f.utimes is None else latency_of(f.utimes[0]),
                         vhost=None if f.vhosts is None else _clean(f.vhosts[0]))

    def parse_bytes(self, raw: bytes) -> Record | str:
        """A line that is not UTF-8 (no line ending). Undecodable bytes become U+FFFD: in a JSON
        log they can only be inside strings, so the structure still reads, and unlike
        surrogateescape no string of the Record is left that cannot be encoded again."""
        text = raw.decode("utf-8", "replace")
        return self.parse(text[:-1] if text.endswith("\r") else text)

    def columns(self, text: str) -> Columns | None:
        # Single characters first: `in` finds them with memchr, a two-character needle is slow.
        if "\x00" in text or "\\" in text and _UNSAFE_ESCAPE.search(text):
            return None
        try:
            f = None if "\\" in text else self._split(text)
            if f is None:
                f = self._decoded(text)
        except (KeyError, _Unfit, ValueError, RecursionError):
            return None
        # kind[-3:] is the status only if it has three characters: 'GET / HTTP/1.1",1200' would
        # read as 200. Statuses are few: each distinct one is checked, and quoted once.
        quoted = {status: '",' + status for status in set(f.statuses)}
        if None in map(status_of, quoted):
            return None
        kinds = list(map(add, f.requests, map(quoted.__getitem__, f.statuses)))
        return Columns(f.stamps, f.hosts, kinds, f.sizes, f.rtimes, f.utimes, f.vhosts)

    def _split(self, text: str) -> _Fields | None:
        """The run by the regex of its first line's shape, or None if a line has another."""
        try:
            first = _DECODE(text[:text.index("\n")])
        except (ValueError, RecursionError):
            return None
        if type(first) is not dict:
            return None
        shape = tuple(zip(first, map(type, first.values())))
        if shape in self._plans:
            plan = self._plans[shape]
        else:
            plan = _plan_of(shape, self.KEYS)
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[shape] = plan
        if plan is None:
            return None
        parts = plan.pattern.split(text)
        step = plan.width + 1
        lines = len(parts) // step
        # Each line one match, nothing between matches but its newline, and no match holding a
        # newline (a string value may run past its line's end): as many matches as lines.
        if parts[0] or lines != text.count("\n") or parts[step::step].count("\n") != lines:
            return None
        return self._fields(_Split(plan, parts, lines))

    def _decoded(self, text: str) -> _Fields:
        """The run by the json decoder: the lines joined by a literal that none of them contains,
        so that every literal in the joined text is a joiner. Each joiner decoding to a top-level
        element, alternating with the lines' objects, proves that each line is one JSON value on its
        own, equal to what it decodes to alone; with all three literals in the run, one decode a line."""
        lines = text.split("\n")
        lines.pop()
        if max(map(len, lines)) > MAX_FAST_CHARS:
            raise _Unfit("long line")
        for word, value in _JOINERS:
            if word not in text:
                items = _DECODE("[" + f",{word},".join(lines) + f",{word}]")
                if len(items) != 2 * len(lines) or not all(map(is_, items[1::2], repeat(value))):
                    raise _Unfit("lines")
                rows = items[::2]
                break
        else:
            rows = list(map(_DECODE, lines))
        if set(map(type, rows)) != {dict}:
            raise _Unfit("not an object")
        return self._fields(_Rows(rows))


class NginxJsonFormat(JsonLogFormat):
    """nginx `log_format ... escape=json` with nginx's variable names as keys. Required: a time
    (the first of time_iso8601, time_local, msec), remote_addr, status, and request or
    request_method + request_uri. Optional: body_bytes_sent or bytes_sent (absent: 0),
    request_time, upstream_response_time, and a virtual host (host, http_host, server_name).
    Numbers may be written unquoted; an unset variable is an empty string."""

    name = "json"
    latency = upstream = vhost = True
    KEYS = frozenset(("time_iso8601", "time_local", "msec", "remote_addr", "request", "request_method",
                      "request_uri", "status", "body_bytes_sent", "bytes_sent", "request_time",
                      "upstream_response_time", "host", "http_host", "server_name"))

    def _fields(self, t: _Rows | _Split) -> _Fields:
        key = _first(t, ("time_iso8601", "time_local", "msec"))
        if key is None:
            raise _Unfit("time")
        if key == "msec":
            stamps = _epoch(*t.get(key, {str, int, float}))
        else:
            stamps = _times(t.get(key, {str})[0], iso_time if key == "time_iso8601" else clf_time)
        if t.has("request"):
            requests = t.get("request", {str})[0]
        else:
            requests = list(map("{} {}".format, t.get("request_method", {str})[0], t.get("request_uri", {str})[0]))
        size = _first(t, ("body_bytes_sent", "bytes_sent"))
        vhost = _first(t, ("host", "http_host", "server_name"))
        return _Fields(stamps, t.get("remote_addr", {str})[0], requests, _texts(*t.get("status", {str, int})),
                       ["-"] * len(t) if size is None else _texts(*t.get(size, {str, int})),
                       _decimals(*t.get("request_time", {str, int, float})) if t.has("request_time") else None,
                       _decimals(*t.get("upstream_response_time", {str, int, float}))
                       if t.has("upstream_response_time") else None,
                       None if vhost is None else t.get(vhost, {str})[0])


class CaddyFormat(JsonLogFormat):
    """Caddy's access log (`log { format json }`): lines whose msg is "handled request", with `ts`
    (seconds), `request.{remote_ip,method,uri,host}` (remote_addr's host before Caddy 2.5),
    `status`, `size`, `duration` (seconds). Other loggers' lines are malformed `fields`."""

    name = "caddy"
    latency = vhost = True
    KEYS = frozenset(("msg", "ts", "request", "status", "size", "duration"))

    def _fields(self, t: _Rows | _Split) -> _Fields:
        if set(t.get("msg", {str})[0]) != {"handled request"}:
            raise _Unfit("msg")
        r = _Rows(t.get("request", {dict})[0])
        hosts = r.get("remote_ip", {str})[0] if r.has("remote_ip") else \
            list(map(_addr_host, r.get("remote_addr", {str})[0]))
        return _Fields(_seconds(t.get("ts", {int, float})[0]), hosts,
                       list(map("{} {}".format, r.get("method", {str})[0], r.get("uri", {str})[0])),
                       _texts(*t.get("status", {str, int})), _texts(*t.get("size", {str, int})),
                       _decimals(*t.get("duration", {str, int, float})), None, r.get("host", {str})[0])


class TraefikFormat(JsonLogFormat):
    """Traefik's JSON access log: StartUTC, ClientHost, RequestMethod, RequestPath, RequestHost,
    DownstreamStatus, DownstreamContentSize, Duration (integer nanoseconds)."""

    name = "traefik"
    latency = vhost = True
    KEYS = frozenset(("StartUTC", "ClientHost", "RequestMethod", "RequestPath", "RequestHost",
                      "DownstreamStatus", "DownstreamContentSize", "Duration"))

    def _fields(self, t: _Rows | _Split) -> _Fields:
        starts = list(map(_FRACTION.sub, repeat(""), t.get("StartUTC", {str})[0]))
        # Nanoseconds as exact decimal seconds: a negative one reads '-1.999999995', refused.
        durations = list(map("{0[0]}.{0[1]:09d}".format, map(divmod, t.get("Duration", {int})[0], repeat(_NS))))
        return _Fields(_times(starts, iso_time), t.get("ClientHost", {str})[0],
                       list(map("{} {}".format, t.get("RequestMethod", {str})[0], t.get("RequestPath", {str})[0])),
                       _texts(*t.get("DownstreamStatus", {str, int})),
                       _texts(*t.get("DownstreamContentSize", {str, int})), durations, None,
                       t.get("RequestHost", {str})[0])


# The presets, by name.
JSON_FORMATS: dict[str, type[JsonLogFormat]] = {cls.name: cls for cls in (NginxJsonFormat, CaddyFormat, TraefikFormat)}
