"""The checkpoint of logmond 0.1 (one msgpack file in the state dir), read once to import it.

0.1 wrote it atomically (temp file, fsync, rename); the state database (store.py) now holds the
same state, and imports this file the first time it opens a state dir that has one.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgpack


NAME = "checkpoint.msgpack"
FORMAT_VERSION = 1
# A checkpoint larger than this is not ours (windows are bounded): refuse to load it.
MAX_BYTES = 256 * 1024 * 1024

log = logging.getLogger("logmond.checkpoint")


def load(state_dir: str) -> dict[str, Any] | None:
    """The saved state, or None (no checkpoint, or a bad one now kept aside with a warning)."""
    path = os.path.join(state_dir, NAME)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _set_aside(path, f"cannot read it: {exc.strerror}")
    if len(data) > MAX_BYTES:
        return _set_aside(path, f"it is larger than {MAX_BYTES} bytes")
    try:
        state = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        return _set_aside(path, f"it is corrupt ({exc.__class__.__name__})")
    if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
        return _set_aside(path, "it is not a logmond checkpoint of this version")
    return state


def _set_aside(path: str, why: str) -> None:
    """Move the bad checkpoint aside; returns None so that load() can `return _set_aside(...)`."""
    aside = f"{path}.bad-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        os.replace(path, aside)
        log.warning("checkpoint %s ignored, %s; kept as %s; starting fresh", path, why, aside)
    except OSError as exc:
        log.warning("checkpoint %s ignored, %s (could not move it aside: %s); starting fresh", path, why, exc.strerror)
