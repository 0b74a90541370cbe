"""Text log formats from a format string as the server's own config writes it: nginx `log_format`
(`$variables`) or Apache `LogFormat` (`%` directives), and the presets common/clf, combined and
vcombined, compiled by the same code so that there is one engine for all of them.

A format compiles once into two regexes over one layout of literals and fields. The reference
regex (`parse`) is as lenient as the servers are (a user name with spaces, escaped quotes, an
empty `$host`); the fast one (`columns`) has possessive, bounded fields of strict shapes, each
ending where the reference field ends, so that any line it matches splits into the same fields
as the reference regex splits it. `detect_extras` finds "combined plus extra fields", the common
nginx log with timings appended.
"""
from __future__ import annotations

import re
from functools import lru_cache, partial
from typing import Callable, NamedTuple, Sequence

from logmond.core.formats import Columns, LogFormat
from logmond.core.parse import MAX_LINE, R_BINARY, R_FIELDS, Record, clf_time, iso_time, latency_of, record_of

# What a field means: the group names of both regexes and the keys of the columns.
HOST, TIME, REQUEST, METHOD, PATH, QUERY = "host", "time", "request", "method", "path", "query"
STATUS, BYTES, RTIME, UTIME, VHOST = "status", "bytes", "rtime", "utime", "vhost"
# The fast group that holds request, quote, separator and status at once (formats.Columns.kinds).
KIND = "kind"
# Roles the Record takes a value from (QUERY only joins a path: `%U%q`, `$uri$is_args$args`).
_VALUE_ROLES = (HOST, TIME, REQUEST, METHOD, PATH, STATUS, BYTES, RTIME, UTIME, VHOST)

# How a field reads when it is neither quoted nor bracketed: one token, text that may hold spaces
# (a user name, a request line), a CLF date (two tokens), an upstream-time list (`0.1, 0.2 : 0.3`).
TOKEN, SPACED, DATE, LIST = "token", "spaced", "date", "list"
_QUOTED, _BRACKETED, _BARE = "quoted", "bracketed", "bare"

# Extra fields after combined that detect_extras and combined_plus take, at most.
MAX_EXTRA = 8
# Fast-path bounds in characters: a request line, another quoted field, a token or bracketed
# field, a time field; upstream times in one field (nginx writes one per upstream tried).
# Text is matched by one class each ([^"] quoted, [^\]] bracketed, \S or [^\s<end>] bare), the
# tight loops of re; values (status, bytes, times) by their strict shape.
_FAST_REQUEST = 16384
_FAST_QUOTED = 8192
_FAST_TOKEN = 1024
_FAST_TIME = 64
_FAST_UPSTREAMS = 16
# Below this bound for quoted fields (a format with very many of them) there is no fast path:
# real referers and user agents would not fit, and every run would be declined anyway.
_FAST_QUOTED_MIN = 256
# First second not believed from a count of seconds: year 10000, past any CLF or ISO date.
_MAX_EPOCH = 253_402_300_800

_NUMBER = r"(?:[0-9]{1,9}+(?:\.[0-9]{1,9}+)?|-)"
_FAST_SECONDS = (_NUMBER, 19)
_FAST_UPSTREAM = (rf"{_NUMBER}(?:(?:, | : ){_NUMBER}){{0,{_FAST_UPSTREAMS - 1}}}+", 22 * _FAST_UPSTREAMS)
_FAST_STATUS = ("[0-9]{3}", 3)
_FAST_BYTES = ("(?:[0-9]{1,13}+|-)", 13)
_FAST_DATE = ("[0-9]{2}/[A-Za-z]{3}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}", 26)
_QUOTED_TEXT = r'(?:[^"\\]|\\.)*'


class Field(NamedTuple):
    """One field of a layout: `name` as the format string writes it, `role` ("" for a field that
    is only skipped), `rank` to choose among fields of one role (lowest, then leftmost), `arg`
    (a time field's kind, a request time's seconds per unit), `shape` when bare, and whether the
    server may write it empty (nginx: `$host` of a request it rejected)."""

    name: str
    role: str = ""
    rank: int = 0
    arg: str | float | None = None
    shape: str = TOKEN
    empty: bool = False


# nginx variables understood; any other (`$http_referer`, `$http_user_agent`,
# `$http_x_forwarded_for`, ...) is one field, possibly empty, and skipped.
_NGINX = {
    "remote_addr": Field("$remote_addr", HOST),
    "remote_user": Field("$remote_user", shape=SPACED),
    "time_local": Field("$time_local", TIME, 0, "clf", DATE),
    "time_iso8601": Field("$time_iso8601", TIME, 1, "iso"),
    "msec": Field("$msec", TIME, 2, "sec"),
    "request": Field("$request", REQUEST, shape=SPACED),
    "request_method": Field("$request_method", METHOD, empty=True),
    "request_uri": Field("$request_uri", PATH, empty=True),
    "uri": Field("$uri", PATH, 1, empty=True),
    "is_args": Field("$is_args", QUERY, empty=True),
    "args": Field("$args", QUERY, empty=True),
    "query_string": Field("$query_string", QUERY, empty=True),
    "status": Field("$status", STATUS),
    "body_bytes_sent": Field("$body_bytes_sent", BYTES),
    "bytes_sent": Field("$bytes_sent", BYTES, 1),
    "request_time": Field("$request_time", RTIME, arg=1.0),
    "upstream_response_time": Field("$upstream_response_time", UTIME, shape=LIST),
    "host": Field("$host", VHOST, 0, empty=True),
    "http_host": Field("$http_host", VHOST, 1, empty=True),
    "server_name": Field("$server_name", VHOST, 2, empty=True),
}
# Apache directives understood by their letter; `%t`, `%{…}t`, `%{…}T` and `%{Host}i` are read
# apart (see _apache_items). Any other is one field, skipped.
_APACHE = {
    "h": Field("%h", HOST), "a": Field("%a", HOST, 1), "u": Field("%u", shape=SPACED),
    "r": Field("%r", REQUEST, shape=SPACED), "m": Field("%m", METHOD), "U": Field("%U", PATH),
    "q": Field("%q", QUERY, empty=True), "s": Field("%s", STATUS, 1),
    "b": Field("%b", BYTES), "B": Field("%B", BYTES), "O": Field("%O", BYTES, 1),
    "D": Field("%D", RTIME, arg=1e-6), "T": Field("%T", RTIME, 2, arg=1.0),
    "v": Field("%v", VHOST), "V": Field("%V", VHOST, 1),
}
# `%{UNIT}T`: seconds per unit, and the rank (finer first: %D and %{us}T before %T).
_APACHE_UNITS = {"us": (1e-6, 0), "ms": (1e-3, 1), "s": (1.0, 2)}
# `%{FORMAT}t` that can be read (after an optional `begin:` / `end:`): the time kind.
_APACHE_TIMES = {"sec": "sec", "msec": "msec", "usec": "usec",
                 "%d/%b/%Y:%H:%M:%S %z": "clf", "%Y-%m-%dT%H:%M:%S%z": "iso"}
_NGINX_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))", re.ASCII)
_APACHE_DIRECTIVE = re.compile(
    r"%(?:%|(?P<mods>(?:[<>]|!?[0-9]{3}(?:,[0-9]{3})*)*)(?:\{(?P<arg>[^}]*)\})?(?P<letter>\^t[io]|[A-Za-z]))")
_LOOKS_NGINX = re.compile(r"\$\{?[A-Za-z_]")
_LOOKS_APACHE = re.compile(r"%[<>!{0-9A-Za-z^]")

# Error texts naming what a format string lacks, by syntax.
_MISSING = {
    "nginx": {REQUEST: "no request field: give $request, or $request_method with $request_uri or $uri",
              TIME: "no time field: give $time_local, $time_iso8601 or $msec",
              STATUS: "no status field: give $status"},
    "apache": {REQUEST: "no request field: give %r, or %m with %U",
               TIME: "no time field: give %t, %{sec}t, %{msec}t or %{usec}t",
               STATUS: "no status field: give %>s or %s"},
}


# -- times ------------------------------------------------------------------------------------

_EPOCH = re.compile(r"([0-9]{1,18})(\.[0-9]{1,9})?", re.ASCII)


def epoch_time(stamp: str, per_second: int = 1) -> int | None:
    """Unix second of a count since the epoch: seconds, with a fraction or not (nginx `$msec`:
    `1549573860.123`), or whole milli- / microseconds (`per_second`, Apache `%{msec}t`)."""
    m = _EPOCH.fullmatch(stamp)
    if m is None or (m.group(2) and per_second != 1):
        return None
    second = int(m.group(1)) // per_second
    return second if second < _MAX_EPOCH else None


_READERS: dict[str, Callable[[str], int | None]] = {
    "clf": clf_time, "iso": iso_time, "sec": epoch_time,
    "msec": partial(epoch_time, per_second=1000), "usec": partial(epoch_time, per_second=1_000_000),
}


# -- the formats ------------------------------------------------------------------------------

class TextFormat(LogFormat):
    """A format string compiled: `layout` is its literals and Fields in line order (tools and
    tests write lines from it); `extra` names the fields after combined (combined_plus)."""

    def __init__(self, layout: Sequence[str | Field], *, name: str, spec: str | None, syntax: str,
                 extra: str | None = None) -> None:
        self.name, self.spec, self.extra = name, spec, extra
        literals, fields = _split(layout)
        items: list[str | Field] = [literals[0]]
        for field, literal in zip(fields, literals[1:]):
            items += [field, literal]
        self.layout = tuple(item for item in items if item != "")
        contexts = _contexts(literals)
        chosen = _choose(fields)
        if REQUEST not in chosen and not (METHOD in chosen and PATH in chosen):
            raise ValueError(_MISSING[syntax][REQUEST])
        for role in (TIME, STATUS):
            if role not in chosen:
                raise ValueError(_MISSING[syntax][role])
        if REQUEST in chosen:
            chosen.pop(METHOD, None)
            chosen.pop(PATH, None)
        roles = [""] * len(fields)
        for role, k in chosen.items():
            roles[k] = role
        self._reader = _READERS[str(fields[chosen[TIME]].arg)]
        self.latency, self.upstream, self.vhost = RTIME in chosen, UTIME in chosen, VHOST in chosen
        if self.latency:
            self.latency_scale = float(fields[chosen[RTIME]].arg or 1.0)
        pattern = [re.escape(literals[0])]
        for k, field in enumerate(fields):
            pattern += [_group(roles[k], _reference(field, contexts[k], literals[k + 1])), re.escape(literals[k + 1])]
        self._reference = re.compile("".join(pattern), re.ASCII)
        self._fast, self._fast_roles = _fast(literals, fields, contexts, roles)

    def parse(self, line: str) -> Record | str:
        if "\x00" in line:
            return R_BINARY
        m = self._reference.fullmatch(line)
        if m is None:
            return R_FIELDS
        f = m.groupdict()
        request = f[REQUEST] if REQUEST in f else f"{f[METHOD]} {f[PATH]}"
        rtime, utime = f.get(RTIME), f.get(UTIME)
        return record_of(self._reader(f[TIME]), f.get(HOST, "-"), request, f[STATUS], f.get(BYTES, "-"),
                         rtime=None if rtime is None else latency_of(rtime, self.latency_scale),
                         utime=None if utime is None else latency_of(utime), vhost=f.get(VHOST))

    def read_time(self, stamp: str) -> int | None:
        return self._reader(stamp)

    def columns(self, text: str) -> Columns | None:
        # As batch.fast_chunk: split() gives the groups in one flat list, so each column is one
        # C-level slice. Nothing may precede the first match nor follow a match but its newline,
        # and no field may hold a newline ([^"] can), or some line did not match on its own.
        fast = self._fast
        if fast is None or "\x00" in text or ("\\" in text and '\\"' in text):
            return None
        parts = fast.split(text)
        step = len(self._fast_roles) + 1
        lines = len(parts) // step
        if lines == 0 or parts[0] or parts[step::step].count("\n") != lines or text.count("\n") != lines:
            return None
        col = {role: parts[i::step] for i, role in enumerate(self._fast_roles, 1)}
        if KIND in col:
            kinds = col[KIND]
        elif REQUEST in col:
            kinds = list(map('{}" {}'.format, col[REQUEST], col[STATUS]))
        else:
            kinds = list(map('{} {}" {}'.format, col[METHOD], col[PATH], col[STATUS]))
        return Columns(col[TIME], col.get(HOST) or ["-"] * lines, kinds, col.get(BYTES) or ["-"] * lines,
                       col.get(RTIME), col.get(UTIME), col.get(VHOST))

    def describe(self) -> dict[str, object]:
        described = super().describe()
        if self.extra is not None:
            described["extra"] = self.extra
        return described


def _split(layout: Sequence[str | Field]) -> tuple[list[str], list[Field]]:
    """(literals, fields) with one literal, maybe empty, around and between each two fields; a
    path directly followed by its query (`%U%q`, `$uri$is_args$args`) is one field."""
    literals, fields = [""], []
    for item in layout:
        if isinstance(item, str):
            literals[-1] += item
        elif fields and not literals[-1] and fields[-1].role == PATH and item.role == QUERY:
            fields[-1] = fields[-1]._replace(name=fields[-1].name + item.name)
        elif fields and not literals[-1]:
            raise ValueError(f"{fields[-1].name} and {item.name} are adjacent: nothing between them "
                             "tells where one ends")
        else:
            fields.append(item)
            literals.append("")
    return literals, fields


def _contexts(literals: list[str]) -> list[str]:
    """Per field: quoted (a quote right before and after, inside quotes), bracketed (likewise in
    brackets, outside quotes) or bare. ValueError on an unbalanced quote or bracket."""
    quoted, depth, contexts = False, 0, []
    for k, literal in enumerate(literals):
        for char in literal:
            if char == '"':
                quoted = not quoted
            elif not quoted and char in "[]":
                depth += 1 if char == "[" else -1
                if depth < 0:
                    raise ValueError("unbalanced bracket: a ']' closes no '['")
        if k + 1 < len(literals):
            after = literals[k + 1]
            if quoted and literal.endswith('"') and after.startswith('"'):
                contexts.append(_QUOTED)
            elif not quoted and depth and literal.endswith("[") and after.startswith("]"):
                contexts.append(_BRACKETED)
            else:
                contexts.append(_BARE)
    if quoted:
        raise ValueError("unbalanced quote: a '\"' is never closed")
    if depth:
        raise ValueError("unbalanced bracket: a '[' is never closed")
    return contexts


def _choose(fields: list[Field]) -> dict[str, int]:
    """Role -> index of the field that gives it: the lowest rank, then the leftmost."""
    chosen: dict[str, int] = {}
    for k, field in enumerate(fields):
        if field.role in _VALUE_ROLES and (field.role not in chosen or field.rank < fields[chosen[field.role]].rank):
            chosen[field.role] = k
    return chosen


def _group(role: str, pattern: str) -> str:
    return f"(?P<{role}>{pattern})" if role else f"(?:{pattern})"


def _ends(after: str) -> str:
    """The character class of a bare field's text: no whitespace, nor the literal that ends it."""
    end = after[:1]
    return r"\S" if not end or end.isspace() else rf"[^\s{re.escape(end)}]"


def _reference(field: Field, context: str, after: str) -> str:
    """The reference pattern of one field, as lenient as the server writing it."""
    if context == _QUOTED:
        return _QUOTED_TEXT
    if context == _BRACKETED:
        return r"[^\]]+" if field.role == TIME else r"[^\]]*"
    if field.shape == SPACED:
        return ".+?"
    token = _ends(after) + ("*" if field.empty else "+")
    if field.shape == DATE:
        return f"{token} {token}"
    if field.shape == LIST:
        return rf"{token}(?:(?<=,) {token}| : {token})*"
    return token


def _fast_field(field: Field, context: str, after: str, quoted: int) -> tuple[str, int] | None:
    """The fast pattern of one field and the most characters it matches; None if there is none.
    Values are of their strict shape wherever they stand; text is of the shape of its place.
    `quoted` is the bound for a quoted field that is not the request line."""
    role = field.role
    if role in (STATUS, BYTES, RTIME, UTIME):
        return {STATUS: _FAST_STATUS, BYTES: _FAST_BYTES, RTIME: _FAST_SECONDS, UTIME: _FAST_UPSTREAM}[role]
    bound = _FAST_TIME if role == TIME else _FAST_TOKEN
    # As the reference: text in quotes or brackets may be empty, a bare token only if the server
    # writes it so; a time never is.
    least = 0 if field.empty or (role != TIME and context != _BARE) else 1
    if context == _QUOTED:
        bound = _FAST_REQUEST if role == REQUEST else bound if role == TIME else quoted
        return f'[^"]{{{least},{bound}}}+', bound
    if context == _BRACKETED:
        return rf"[^\]]{{{least},{bound}}}+", bound
    if field.shape == DATE:
        return _FAST_DATE
    if role == REQUEST:
        return None
    return f"{_ends(after)}{{{least},{bound}}}+", bound


def _fast(literals: list[str], fields: list[Field], contexts: list[str],
          roles: list[str]) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    """The fast regex and the role of each of its groups; (None, ()) when the format has none.

    Quoted fields other than the request line share what MAX_LINE leaves (at most _FAST_QUOTED
    each), so that any line the pattern matches is one that the reference parser is given. A
    quoted request line followed by a quote, one character and the status is one group, the kind."""
    others = [k for k, field in enumerate(fields) if contexts[k] == _QUOTED and field.role not in
              (REQUEST, TIME, STATUS, BYTES, RTIME, UTIME)]
    sized = [_fast_field(f, c, a, 0) for f, c, a in zip(fields, contexts, literals[1:])]
    if None in sized:
        return None, ()
    room = MAX_LINE - len("\r") - sum(map(len, literals)) - sum(s[1] for s in sized if s)
    quoted = min(_FAST_QUOTED, room // len(others)) if others else 0
    if room < 0 or (others and quoted < _FAST_QUOTED_MIN):
        return None, ()
    texts = [s[0] for s in (_fast_field(f, c, a, quoted) for f, c, a in zip(fields, contexts, literals[1:])) if s]
    pattern, groups, k = ["^", re.escape(literals[0])], [], 0
    while k < len(fields):
        text, after = texts[k], literals[k + 1]
        if (roles[k] == REQUEST and contexts[k] == _QUOTED and len(after) == 2 and after[0] == '"'
                and k + 1 < len(fields) and roles[k + 1] == STATUS):
            pattern.append(f"({text}{re.escape(after)}{_FAST_STATUS[0]})")
            groups.append(KIND)
            k += 1
        else:
            pattern.append(f"({text})" if roles[k] else text)
            groups += [roles[k]] if roles[k] else []
        pattern.append(re.escape(literals[k + 1]))
        k += 1
    pattern.append(r"\r?$")
    return re.compile("".join(pattern), re.M | re.ASCII), tuple(groups)


# -- the syntaxes -----------------------------------------------------------------------------

def _nginx_items(spec: str) -> list[str | Field]:
    items: list[str | Field] = []
    pos = 0
    while (at := spec.find("$", pos)) >= 0:
        m = _NGINX_VAR.match(spec, at)
        if m is None:
            raise ValueError(f"'$' at position {at + 1} starts no variable name")
        name = m.group(1) or m.group(2)
        items += [spec[pos:at], _NGINX.get(name, Field("", empty=True))._replace(name=m.group(0))]
        pos = m.end()
    items.append(spec[pos:])
    return items


def _apache_items(spec: str) -> list[str | Field]:
    """Apache's config escapes quotes as `\\"`: the operator may paste the string either way."""
    spec = spec.replace('\\"', '"')
    items: list[str | Field] = []
    pos = 0
    while (at := spec.find("%", pos)) >= 0:
        m = _APACHE_DIRECTIVE.match(spec, at)
        if m is None:
            raise ValueError(f"'%' at position {at + 1} starts no Apache directive")
        items.append(spec[pos:at])
        pos = m.end()
        text, letter, arg = m.group(0), m.group("letter"), m.group("arg")
        if letter is None:
            items.append("%")
        elif letter == "t":
            items += _apache_time(text, arg)
        elif letter == "T" and arg is not None:
            if arg not in _APACHE_UNITS:
                raise ValueError(f"{text}: the unit of %{{…}}T is s, ms or us")
            scale, rank = _APACHE_UNITS[arg]
            items.append(Field(text, RTIME, rank, scale))
        elif letter == "s" and ">" in (m.group("mods") or ""):
            items.append(Field(text, STATUS, 0))
        elif letter == "i" and (arg or "").lower() == "host":
            items.append(Field(text, VHOST, 2))
        else:
            items.append(_APACHE.get(letter, Field(""))._replace(name=text))
    items.append(spec[pos:])
    return items


def _apache_time(text: str, arg: str | None) -> list[str | Field]:
    """`%t` is the CLF date in brackets; `%{FORMAT}t` is read for the formats in _APACHE_TIMES."""
    if arg is None:
        return ["[", Field(text, TIME, 0, "clf", DATE), "]"]
    kind = _APACHE_TIMES.get(arg.removeprefix("begin:").removeprefix("end:"))
    if kind is None:
        raise ValueError(f"{text}: cannot read this time; use %t, %{{sec}}t, %{{msec}}t or %{{usec}}t")
    return [Field(text, TIME, 0, kind, DATE if kind == "clf" else TOKEN)]


def nginx_format(spec: str) -> TextFormat:
    """An nginx `log_format` body (the quotes nginx concatenates removed); ValueError if it cannot work."""
    return TextFormat(_nginx_items(spec), name="nginx", spec=spec, syntax="nginx")


def apache_format(spec: str) -> TextFormat:
    """An Apache `LogFormat` string; ValueError if it cannot work."""
    return TextFormat(_apache_items(spec), name="apache", spec=spec, syntax="apache")


def compile_text(spec: str) -> TextFormat:
    """A format string in nginx or Apache syntax, told apart by its `$variables` or `%directives`.
    ValueError with one line naming the problem if it cannot work."""
    nginx, apache = _LOOKS_NGINX.search(spec), _LOOKS_APACHE.search(spec)
    if nginx and apache:
        raise ValueError("mixes nginx $variables and Apache %directives: use one syntax")
    if nginx:
        return nginx_format(spec)
    if apache:
        return apache_format(spec)
    raise ValueError("no nginx $variable nor Apache %directive in it: not a format string")


# -- presets and combined plus extras ---------------------------------------------------------

# The presets, as Apache defines them (clf is an alias of common, under its own name).
PRESETS = {
    "common": '%h %l %u %t "%r" %>s %b',
    "clf": '%h %l %u %t "%r" %>s %b',
    "combined": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"',
    "vcombined": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
}
# Fields combined_plus appends: unnamed bare, unnamed quoted, and the two nginx timings.
_EXTRAS: dict[str, list[str | Field]] = {
    "-": [Field("-")],
    '"-"': ['"', Field('"-"'), '"'],
    "request_time": [Field("$request_time", RTIME, arg=1.0)],
    "upstream_response_time": [Field("$upstream_response_time", UTIME, shape=LIST)],
}


@lru_cache(maxsize=None)
def preset(name: str) -> TextFormat:
    """The preset of that name (a key of PRESETS); ValueError for another name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return TextFormat(_apache_items(PRESETS[name]), name=name, spec=None, syntax="apache")


def combined_plus(extras: Sequence[str]) -> TextFormat:
    """Combined followed by 1 to MAX_EXTRA space-separated fields, each a key of _EXTRAS:
    `-` (skipped), `"-"` (quoted, skipped), `request_time`, `upstream_response_time` (seconds).
    It describes itself as combined with `extra`: those names joined by spaces."""
    if not 1 <= len(extras) <= MAX_EXTRA or any(name not in _EXTRAS for name in extras):
        raise ValueError(f"extra fields are 1 to {MAX_EXTRA} of {', '.join(_EXTRAS)}, not {list(extras)}")
    layout = _apache_items(PRESETS["combined"])
    for name in extras:
        layout += [" ", *_EXTRAS[name]]
    return TextFormat(layout, name="combined", spec=None, syntax="apache", extra=" ".join(extras))


# detect_extras: seconds (or `-`), a list of them (nginx, one per upstream tried), a quoted field,
# and one extra field after a space: quoted, an upstream list, or a token.
_SECONDS = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}|-", re.ASCII)
_UPSTREAMS = re.compile(rf"(?:{_SECONDS.pattern})(?:(?:, | : )(?:{_SECONDS.pattern}))*", re.ASCII)
_QUOTED_FIELD = re.compile(f'"{_QUOTED_TEXT}"', re.ASCII)
_EXTRA_FIELD = re.compile(rf' ({_QUOTED_FIELD.pattern}(?= |$)|(?:{_UPSTREAMS.pattern})(?= |$)|\S+)', re.ASCII)


@lru_cache(maxsize=1)
def _combined_tail() -> re.Pattern[str]:
    """Combined, then the rest of the line in group `extra`."""
    return re.compile(preset("combined")._reference.pattern + r"(?P<extra> .+)", re.ASCII)


def detect_extras(sample_lines: Sequence[str]) -> TextFormat | None:
    """Combined plus extra fields, if that is what the lines that are not plain combined (fields)
    consistently are: all of one layout of extras (quoted or not, how many), and more than half
    of them. The last one or two bare extras are request time and upstream time when they are
    seconds (`0.052`) or `-` in every line, the first of them a number in some line."""
    plain, tail = preset("combined"), _combined_tail()
    candidates, layouts = 0, {}
    for line in sample_lines:
        if not line.strip() or plain.parse(line) != R_FIELDS:
            continue
        candidates += 1
        m = tail.fullmatch(line)
        if m is None:
            continue
        extra = m.group("extra")
        found = _EXTRA_FIELD.findall(extra)
        if not 1 <= len(found) <= MAX_EXTRA or "".join(" " + f for f in found) != extra:
            continue
        shape = tuple('"-"' if _QUOTED_FIELD.fullmatch(f) else "-" for f in found)
        layouts.setdefault(shape, []).append((line, found))
    if len(layouts) != 1:
        return None
    [(shape, rows)] = layouts.items()
    if 2 * len(rows) <= candidates:
        return None
    names = list(shape)
    columns = list(zip(*(found for _, found in rows)))
    timed = 0
    while (timed < len(names) and names[-1 - timed] == "-"
           and all(map(_UPSTREAMS.fullmatch, columns[-1 - timed]))):
        timed += 1
    if timed in (1, 2) and all(map(_SECONDS.fullmatch, columns[-timed])) and set(columns[-timed]) != {"-"}:
        names[-timed:] = ["request_time", "upstream_response_time"][:timed]
    fmt = combined_plus(names)
    return fmt if all(fmt.parse(line) != R_FIELDS for line, _ in rows) else None
