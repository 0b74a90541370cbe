"""Deterministic, realistic HTTP access logs: the input of the demo, the tests and the benchmark.

A hand-written sample exercises none of what makes real logs hard to summarise quickly: many
distinct paths and hosts with skewed popularity, ids and query strings, a status mix, lines a
little out of order, bursts of traffic. This module produces all of that from a seed alone, so a
benchmark or a failing test can be reproduced exactly, using nothing but the standard library.

    python -m logmond.tools.loggen --format combined --lines 100000 --output access.log
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from bisect import bisect
from functools import lru_cache
from itertools import accumulate, islice
from math import log
from os import PathLike
from random import Random
from typing import Callable, Iterator, NamedTuple, Sequence, TextIO

from logmond.core.parse import CSV_HEADER
from shared.cli import Parser, UsageError, quiet_broken_pipe

EXIT_USAGE = 2
# Hits formatted and written per write call by write_log.
_WRITE_BATCH = 8192
_PROTOCOL = "HTTP/1.0"
# Seconds between two writes in --live mode.
_LIVE_STEP = 0.1


class Hit(NamedTuple):
    """One request, with everything the combined format shows (Record keeps only the section)."""
    ts: int
    host: str
    method: str
    path: str
    status: int
    nbytes: int
    referer: str
    agent: str


# -- the site --------------------------------------------------------------------------------
# Request mixes by kind of page: (method weights, status weights, body size of a 200 in bytes).
# Static assets are only fetched and often revalidated (304); the API writes and fails more.
_KINDS: dict[str, tuple[dict[str, int], dict[int, int], int]] = {
    "static": ({"GET": 1}, {200: 80, 304: 18, 404: 2}, 0),
    "page": ({"GET": 1}, {200: 90, 301: 4, 304: 3, 404: 2, 500: 1}, 14_000),
    "api": ({"GET": 60, "POST": 25, "PUT": 10, "DELETE": 5}, {200: 90, 404: 5, 500: 3, 503: 2}, 900),
    "form": ({"GET": 35, "POST": 65}, {200: 60, 301: 37, 500: 2, 503: 1}, 3_500),
    "admin": ({"GET": 80, "POST": 15, "DELETE": 5}, {200: 70, 301: 20, 404: 10}, 6_000),
}
# Body sizes of non-200 answers (a 304 has no body).
_ERROR_BYTES = {301: 233, 304: 0, 404: 209, 500: 531, 503: 299}

# Endpoints, most popular first (the popularity is Zipf-like by this rank): (path, kind).
# "{id}" becomes a number and "{q}" a search word, so one endpoint yields many distinct paths.
_ENDPOINTS = (
    ("/", "page"),
    ("/static/js/app.js", "static"),
    ("/static/css/site.css", "static"),
    ("/api/user/{id}", "api"),
    ("/images/logo.png", "static"),
    ("/search?q={q}", "page"),
    ("/api/products/{id}", "api"),
    ("/images/products/{id}.jpg", "static"),
    ("/static/js/vendor.js", "static"),
    ("/api/cart", "api"),
    ("/login", "form"),
    ("/blog", "page"),
    ("/cart", "page"),
    ("/report", "page"),
    ("/blog/{id}", "page"),
    ("/api/user", "api"),
    ("/images/hero.jpg", "static"),
    ("/cart/add", "form"),
    ("/search?q={q}&page=2", "page"),
    ("/report/daily", "page"),
    ("/static/fonts/inter.woff2", "static"),
    ("/api/orders/{id}", "api"),
    ("/cart/checkout", "form"),
    ("/report/{id}.pdf", "static"),
    ("/admin", "admin"),
    ("/api/health", "api"),
    ("/admin/users/{id}", "admin"),
    ("/login/reset", "form"),
)
# Ids are drawn from [1, _MAX_ID]; search words by Zipf-like popularity too.
_MAX_ID = 5000
_WORDS = ("shoes", "jacket", "socks", "boots", "hat", "scarf", "gloves", "dress", "shirt", "jeans",
          "sandals", "belt", "bag", "watch", "sunglasses", "coat")
_HOSTS = 300
_REFERERS = {"-": 50, "https://www.google.com/": 25, "https://shop.example.com/": 15,
             "https://www.bing.com/": 5, "https://duckduckgo.com/": 3, "https://news.ycombinator.com/": 2}
_AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36": 45,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148": 25,
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0": 15,
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": 8,
    "curl/8.4.0": 4,
    "python-requests/2.31.0": 3,
}


def _zipf(n: int, s: float) -> list[float]:
    """Cumulative Zipf weights of ranks 1..n, for bisect."""
    return list(accumulate(1 / rank ** s for rank in range(1, n + 1)))


def _table(weights: dict) -> list:
    """Each key repeated by its (small integer) weight: a uniform index into it is a weighted draw."""
    return [key for key, weight in weights.items() for _ in range(weight)]


def _static_size(path: str) -> int:
    """A fixed size per static path (the same file is always the same size), 0.5 KiB to 300 KiB."""
    return 500 + zlib.crc32(path.encode()) % 300_000


def _hosts(rng: Random) -> list[str]:
    """_HOSTS distinct IPv4 clients: office LAN, a few proxies and a long tail of the internet."""
    hosts: dict[str, None] = {}
    while len(hosts) < _HOSTS:
        r = rng.random()
        if r < 0.2:
            ip = f"10.0.{rng.randrange(4)}.{rng.randrange(1, 255)}"
        elif r < 0.3:
            ip = f"192.168.1.{rng.randrange(1, 255)}"
        else:
            ip = f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        hosts[ip] = None
    return list(hosts)


# -- generation -------------------------------------------------------------------------------
def generate(count: int, *, seed: int = 1, start: int = 1549573860, rate: float = 500.0, jitter: int = 2,
             surge: tuple[int, int, float] | None = None) -> Iterator[Hit]:
    """`count` hits, the same for the same arguments.

    Arrivals are a Poisson process of `rate` hits per second (times `multiplier` during the
    `surge` span `(at_offset_seconds, duration_seconds, multiplier)` after `start`). A line may
    carry a timestamp up to `jitter` seconds behind the running time, never ahead, as servers
    that log on completion do: a monitor with lateness >= jitter sees no late line.
    """
    if count < 0 or not rate > 0 or jitter < 0:
        raise ValueError("count and jitter must be >= 0 and rate > 0")
    if surge is not None and (surge[1] < 0 or not surge[2] > 0):
        raise ValueError("surge duration must be >= 0 and its multiplier > 0")
    return _generate(count, seed, start, rate, jitter, surge)


def _generate(count: int, seed: int, start: int, rate: float, jitter: int,
              surge: tuple[int, int, float] | None) -> Iterator[Hit]:
    rng = Random(seed)
    rand = rng.random
    hosts = _hosts(rng)
    host_cum = _zipf(len(hosts), 1.0)
    # Each client keeps one user agent.
    agents = _table(_AGENTS)
    host_agent = [agents[int(rand() * len(agents))] for _ in hosts]
    referers = _table(_REFERERS)
    word_cum = _zipf(len(_WORDS), 1.0)
    kinds = {name: (_table(methods), _table(statuses), size) for name, (methods, statuses, size) in _KINDS.items()}
    ep_cum = _zipf(len(_ENDPOINTS), 1.0)
    endpoints = []
    for template, kind in _ENDPOINTS:
        head, has_id, id_tail = template.partition("{id}")
        q_head, has_q, q_tail = head.partition("{q}")
        endpoints.append((q_head if has_q else head, q_tail if has_q else None, id_tail if has_id else None,
                          kind == "static", _static_size(template), *kinds[kind]))

    inv_rate = inv_surge = 1 / rate
    surge_from = surge_to = float("inf")
    if surge is not None:
        surge_from, surge_to = start + surge[0], start + surge[0] + surge[1]
        inv_surge = 1 / (rate * surge[2])
    new = tuple.__new__  # Hit(...) without the Python-level __new__: a third of the time per hit
    words, error_bytes = _WORDS, _ERROR_BYTES
    t = float(start)
    for _ in range(count):
        # Exponential inter-arrival time: 1 - random() is in (0, 1].
        t -= log(1.0 - rand()) * (inv_surge if surge_from <= t < surge_to else inv_rate)
        second = int(t)
        # One line in ten is 1..jitter seconds behind, but never before `start`.
        r = rand()
        ts = second - 1 - int(r * 10 * jitter) if r < 0.1 and jitter else second
        if ts < start:
            ts = start
        path, q_tail, id_tail, static, size, methods, statuses, body = endpoints[bisect(ep_cum, rand() * ep_cum[-1])]
        if q_tail is not None:
            path += words[bisect(word_cum, rand() * word_cum[-1])] + q_tail
        if id_tail is not None:
            ident = int(rand() * _MAX_ID) + 1
            path += str(ident) + id_tail
            if static:
                size = 500 + (ident * 2654435761 + size) % 300_000
        status = statuses[int(rand() * len(statuses))]
        if status != 200:
            size = error_bytes[status]
        elif not static:
            size = int(body * (0.5 + rand()))
        host = bisect(host_cum, rand() * host_cum[-1])
        yield new(Hit, (ts, hosts[host], methods[int(rand() * len(methods))], path, status, size,
                        referers[int(rand() * len(referers))], host_agent[host]))


# -- formatting -------------------------------------------------------------------------------
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=64)
def _clf_date(ts: int) -> str:
    tm = time.gmtime(ts)
    return (f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000")


def _csv(h: Hit) -> str:
    return f'"{h.host}","-","apache",{h.ts},"{h.method} {h.path} {_PROTOCOL}",{h.status},{h.nbytes}'


def _clf(h: Hit) -> str:
    return (f'{h.host} - - [{_clf_date(h.ts)}] "{h.method} {h.path} {_PROTOCOL}" {h.status} '
            f'{h.nbytes or "-"}')


def _combined(h: Hit) -> str:
    return f'{_clf(h)} "{h.referer}" "{h.agent}"'


def _request_time(h: Hit) -> float:
    """A request time for the hit, deterministic: mostly milliseconds, a slow tail to seconds."""
    u = (zlib.crc32(f"{h.ts} {h.path} {h.host}".encode()) & 0xFFFF) / 0x10000
    return round(0.002 + 2.0 * u ** 6, 3)


def _timed(h: Hit) -> str:
    """nginx's combined plus `$request_time $upstream_response_time` (static files: no upstream)."""
    rt = _request_time(h)
    upstream = "-" if h.path.startswith("/static") else f"{max(rt - 0.001, 0):.3f}"
    return f"{_combined(h)} {rt:.3f} {upstream}"


def _json(h: Hit) -> str:
    """nginx's escape=json log in the shape its documentation gives."""
    rt = _request_time(h)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(h.ts))
    return json.dumps({"time_iso8601": stamp, "remote_addr": h.host, "request": f"{h.method} {h.path} {_PROTOCOL}",
                       "status": str(h.status), "body_bytes_sent": str(h.nbytes), "request_time": f"{rt:.3f}",
                       "upstream_response_time": "" if h.path.startswith("/static") else f"{max(rt - 0.001, 0):.3f}",
                       "host": "shop.example", "http_referer": h.referer, "http_user_agent": h.agent},
                      separators=(",", ":"))


_FORMATTERS: dict[str, Callable[[Hit], str]] = {"csv": _csv, "clf": _clf, "combined": _combined,
                                                  "timed": _timed, "json": _json}
# The formats the generator writes.
FORMATS = tuple(_FORMATTERS)


def format_line(hit: Hit, fmt: str) -> str:
    """One log line (no newline) in `fmt`: csv, clf, combined, timed (combined + nginx timings) or
    json (nginx escape=json), as logmond reads them."""
    try:
        return _FORMATTERS[fmt](hit)
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}") from None


def write_log(path_or_file: str | PathLike[str] | TextIO, count: int, fmt: str, *, header: bool = True,
              **generate_kwargs) -> None:
    """Write `count` generated lines to a path (replaced) or an open text file, in batches so
    that millions of lines take seconds. `header` puts the CSV header first (csv only)."""
    if fmt not in _FORMATTERS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if isinstance(path_or_file, (str, PathLike)):
        with open(path_or_file, "w", encoding="utf-8", newline="\n") as out:
            _write(out, count, fmt, header, generate_kwargs)
    else:
        _write(path_or_file, count, fmt, header, generate_kwargs)


def _write(out: TextIO, count: int, fmt: str, header: bool, generate_kwargs: dict) -> None:
    if header and fmt == "csv":
        out.write(CSV_HEADER + "\n")
    hits = generate(count, **generate_kwargs)
    line = _FORMATTERS[fmt]
    while batch := list(islice(hits, _WRITE_BATCH)):
        out.write("\n".join(map(line, batch)) + "\n")


def write_live(path: str | PathLike[str], fmt: str, *, rate: float, period: int, surge: tuple[int, int, float],
               seed: int = 1, until: Callable[[], bool] = lambda: False) -> None:
    """Append to `path` as a live server would: each hit when the wall clock reaches its time.

    Traffic repeats every `period` seconds, each period with its own seed and the same `surge`
    (offset into the period, duration, multiplier), so a demo shows an alert again and again.
    Lines go out once a tenth of a second, with O_APPEND like a web server's log writes.
    """
    line = _FORMATTERS[fmt]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        cycle = 0
        while not until():
            start = int(time.time())
            hits = generate(int(rate * period * surge[2]) + 1, seed=seed + cycle, start=start, rate=rate,
                            jitter=1, surge=surge)
            pending = next(hits, None)
            while pending is not None and pending.ts < start + period and not until():
                now = time.time()
                batch = []
                while pending is not None and pending.ts <= now and pending.ts < start + period:
                    batch.append(line(pending) + "\n")
                    pending = next(hits, None)
                if batch:
                    os.write(fd, "".join(batch).encode())
                time.sleep(_LIVE_STEP)
            cycle += 1
    finally:
        os.close(fd)


# -- command line -----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m logmond.tools.loggen", description="Write a deterministic, realistic access log.")
    p.add_argument("--format", choices=FORMATS, required=True, help="log format")
    p.add_argument("--lines", type=int, metavar="N", help="number of lines (csv: plus a header)")
    p.add_argument("--live", action="store_true",
                   help="append to --output in real time, with a surge each --period, until interrupted")
    p.add_argument("--period", type=int, default=300, metavar="S", help="--live: traffic cycle length (default 300)")
    p.add_argument("--surge", default="15,60,8", metavar="AT,SECONDS,X",
                   help="--live: rate multiplied by X for SECONDS, AT seconds into each period (default 15,60,8)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--rate", type=float, default=500.0, metavar="R", help="average hits per second (default 500)")
    p.add_argument("--start", type=int, default=1549573860, metavar="T", help="first Unix time (default 1549573860)")
    p.add_argument("--output", default="-", metavar="PATH", help="file to write, '-' for stdout (default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.live:
            return _live(parser, args)
        if args.lines is None or args.lines < 0 or not args.rate > 0:
            parser.error("--lines N (N >= 0) is needed, and --rate must be > 0")
        target = sys.stdout if args.output == "-" else args.output
        with quiet_broken_pipe():
            write_log(target, args.lines, args.format, seed=args.seed, rate=args.rate, start=args.start)
    except UsageError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{parser.prog}: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _live(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        at, seconds, times = args.surge.split(",")
        surge = (int(at), int(seconds), float(times))
    except ValueError:
        parser.error(f"--surge takes AT,SECONDS,X, not {args.surge!r}")
    if args.output == "-" or not args.rate > 0 or args.period < 1 or surge[1] < 0 or not surge[2] > 0:
        parser.error("--live needs --output PATH, --rate > 0, --period >= 1 and a surge multiplier > 0")
    try:
        write_live(args.output, args.format, rate=args.rate, period=args.period, surge=surge, seed=args.seed)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"{parser.prog}: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
