"""The one checkpoint in the state dir: file positions and the monitor's state, written together.

Written atomically (temp file, fsync, rename, fsync of the directory) so that after a crash the
file on disk is either the previous checkpoint or the new one, never a mix: offsets and counts
always agree, which is what makes restarts count every line exactly once.
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


def save(state_dir: str, state: dict[str, Any]) -> None:
    path = os.path.join(state_dir, NAME)
    tmp = f"{path}.tmp"
    data = msgpack.packb({"version": FORMAT_VERSION, **state}, use_bin_type=True)
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


def set_aside(state_dir: str, why: str) -> None:
    """Keep a checkpoint that loaded but made no sense out of the way, with a warning."""
    _set_aside(os.path.join(state_dir, NAME), why)


def _set_aside(path: str, why: str) -> None:
    """Move the bad checkpoint aside; returns None so that load() can `return _set_aside(...)`."""
    aside = f"{path}.bad-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        os.replace(path, aside)
        log.warning("checkpoint %s ignored, %s; kept as %s; starting fresh", path, why, aside)
    except OSError as exc:
        log.warning("checkpoint %s ignored, %s (could not move it aside: %s); starting fresh", path, why, exc.strerror)
