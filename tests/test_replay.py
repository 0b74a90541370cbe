"""The replayer as a source: whole lines only, paced by their own time."""
from __future__ import annotations

import time
from pathlib import Path

from conftest import T0
from logmond.core.catalog import compile_format
from logmond.core.formats import LogFormat
from logmond.replay import Replayer


def clf(ts: int, agent: str) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ts))
    return f'10.0.0.1 - - [{stamp}] "GET /api/x HTTP/1.1" 200 5 "-" "{agent}"\n'


def test_lines_end_at_newline_only_even_with_a_bare_cr_inside(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(clf(T0 + i, "agent\rwith a CR") for i in range(20)), newline="")
    replay = Replayer(str(log), 1.0, wall0=0.0, decide_format=lambda sample: compile_format("combined"))
    chunks = []
    # The smallest slices: every read hands over as little as it may, so a cut mid-line shows.
    while not replay.done:
        chunk = replay.due(wall=10**9, limit=1)
        assert chunk, "a due line was held back"
        chunks.append(chunk)
    assert all(c.endswith(b"\n") and c.count(b"\n") == 1 for c in chunks)
    assert b"".join(chunks) == log.read_bytes()
    assert len(chunks) == 20


def test_the_format_is_the_monitors_decision(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(clf(T0, "a") + clf(T0 + 10, "b"))
    asked: list[bytes] = []

    def decide(sample: bytes) -> LogFormat:
        asked.append(sample)
        return compile_format("combined")
    replay = Replayer(str(log), 1.0, wall0=100.0, decide_format=decide)
    assert replay.due(wall=100.0) == clf(T0, "a").encode()   # the first line's second has come
    assert replay.due(wall=109.0) == b""                     # the second is 10 log seconds later
    assert replay.due(wall=110.0) == clf(T0 + 10, "b").encode()
    assert len(asked) == 1 and asked[0].startswith(b"10.0.0.1")
