"""Cut a byte stream into whole lines with bounded memory.

A line still unfinished past MAX_LINE is cut to MAX_LINE + 1 bytes (so the parser counts it
as too long) and the rest of it is skipped as it arrives, never held. Long lines that arrive
whole inside one read are left to the parser, which checks every line's length.
"""
from __future__ import annotations

from logmond.core.parse import MAX_LINE


class LineBuffer:
    def __init__(self, skipping: bool = False) -> None:
        self._partial = b""
        self._skipping = skipping

    @property
    def skipping(self) -> bool:
        """In the middle of an over-long line whose rest is being dropped (a checkpoint keeps it,
        so that a restart does not count that rest as a line of its own)."""
        return self._skipping

    @property
    def pending(self) -> int:
        """Bytes held for a line not yet ended by a newline."""
        return len(self._partial)

    def feed(self, data: bytes) -> bytes:
        """Return the complete lines (each ending in '\\n') that `data` finishes."""
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return b""
            self._skipping = False
            data = data[nl + 1:]
        if self._partial:
            data = self._partial + data
            self._partial = b""
        cut = data.rfind(b"\n") + 1
        done, rest = data[:cut], data[cut:]
        if len(rest) > MAX_LINE:
            done += rest[:MAX_LINE + 1] + b"\n"
            self._skipping = True
        else:
            self._partial = rest
        return done

    def flush(self) -> bytes:
        """End of input: the unterminated last line, if any, as a line."""
        rest, self._partial = self._partial, b""
        return rest + b"\n" if rest else b""

