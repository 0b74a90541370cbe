"""Log formats: what a line of each format means, compiled once from the `format` setting.

A `LogFormat` reads one line (`parse`, the reference semantics) and, where it can, a whole run
of lines at C speed (`columns`, the fast path). For every line that `columns` accepts, the batch
layer (batch.py) must derive exactly the Record that `parse` gives: tests hold each format to it.
"""
from __future__ import annotations

from typing import NamedTuple

from logmond.core.parse import R_ENCODING, Record

# Characters after the request line in a kind: the quote, the separator and the status.
KIND_SUFFIX = 5


class Columns(NamedTuple):
    """A run of lines, column by column, as the text the log holds.

    The batch layer turns each distinct value into its meaning once (times by `read_time`,
    request and status by parse.meaning_of (kind[:-KIND_SUFFIX], kind[-3:]), latencies by parse.latency_of with the format's
    scale), so that repeated values cost one dictionary look-up.
    """

    stamps: list[str]          # the time field, as `read_time` reads it
    hosts: list[str]           # the client address
    # Request and status as one text: the request line ("GET /a?b=1 HTTP/1.1", or "METHOD URI"),
    # a quote, one separator character, the three-digit status: 'GET / HTTP/1.1",200'. One key
    # per distinct pair lets the batch resolve each once (KIND_SUFFIX characters end it).
    kinds: list[str]
    sizes: list[str]           # response bytes: digits, or "-"
    rtimes: list[str] | None   # request time in units of `latency_scale`, or "-"; None: not in the format
    utimes: list[str] | None   # upstream time likewise (a list of upstreams allowed)
    vhosts: list[str] | None   # virtual host, or None when the format has none


class LogFormat:
    """One format. Subclasses set the attributes and implement `parse`, and `columns` when they
    have a fast path."""

    # Preset name, or "nginx" / "apache" for a format string given by the operator.
    name: str = ""
    # The format string itself, for "nginx" / "apache"; None for a preset.
    spec: str | None = None
    # What the format carries beyond the basics.
    latency: bool = False
    upstream: bool = False
    vhost: bool = False
    # Seconds per unit of the request-time field (Apache %D: 1e-6; Traefik Duration: 1e-9).
    latency_scale: float = 1.0
    # The header line to skip, if the format has one (the exercise CSV).
    header: str | None = None
    # `columns` hands over only sizes of digits or `-` (its pattern says so); False: the batch
    # checks them.
    sizes_checked: bool = True

    def parse(self, line: str) -> Record | str:
        """A decoded line (no line ending, no NUL) -> Record, or the malformed reason."""
        raise NotImplementedError

    def parse_bytes(self, raw: bytes) -> Record | str:
        """A line that is not UTF-8: malformed `encoding`, except for formats whose servers write
        raw bytes into an otherwise good line (nginx's escape=json)."""
        return R_ENCODING

    def read_time(self, stamp: str) -> int | None:
        """Unix second of a time field as `columns` hands it over, or None if it does not read."""
        raise NotImplementedError

    def columns(self, text: str) -> Columns | None:
        """Every line of `text` (complete lines, each ending in a newline) as columns, or None
        (having decided nothing) if any line is not of the strict shape the fast path knows."""
        return None

    def describe(self) -> dict[str, object]:
        """What `status` and `totals` say about the format: `format` and `format_spec`."""
        return {"format": self.name, "format_spec": self.spec}

    def __repr__(self) -> str:
        return f"<LogFormat {self.name}{'' if self.spec is None else ' ' + repr(self.spec)}>"
