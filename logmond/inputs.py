"""The inputs of `logmond --once`: files (or stdin) read in the given order as one stream.

Gzip files are recognised by their magic bytes, not their name, so a rotated set such as
`access.log.2.gz access.log.1 access.log` reads oldest first whatever the names say.
"""
from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from logmond.core.errors import OperatorError

# The first two bytes of every gzip member (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"


def read_chunks(path: str, size: int) -> Iterator[bytes]:
    """The bytes of one input, `size` at a time, gunzipped if it is gzip; OperatorError if it
    cannot be read."""
    stream = _open(path)
    try:
        head = stream.read(len(GZIP_MAGIC))
        if head == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=_Prefixed(head, stream), mode="rb")
            head = b""
        if head:
            yield head
        while data := stream.read(size):
            yield data
    except (OSError, EOFError, zlib.error) as exc:
        raise OperatorError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        stream.close()


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror}") from None


class _Prefixed:
    """A stream whose first bytes were already read to look at them (stdin cannot seek back)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        head, self._head = self._head, b""
        if n is not None and 0 <= n <= len(head):
            self._head = head[n:]
            return head[:n]
        more = self._rest.read(-1 if n is None or n < 0 else n - len(head))
        return head + more

    def close(self) -> None:
        self._rest.close()
