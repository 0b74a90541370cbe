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

from logmond.core.errors import OperatorError

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


class Checkpoints:
    """The checkpoint of one state dir, as the daemon keeps it."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def prepare(self) -> None:
        """Create the state dir if needed; OperatorError if logmond cannot write there."""
        try:
            os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise OperatorError(f"cannot create state dir {self.state_dir}: {exc.strerror}; "
                                f"create it or pass --state-dir DIR") from None
        if not os.access(self.state_dir, os.W_OK | os.X_OK):
            raise OperatorError(f"state dir {self.state_dir} is not writable by uid {os.geteuid()}: "
                                f"fix its owner or pass --state-dir DIR")

    def load(self) -> dict[str, Any] | None:
        return load(self.state_dir)

    def save(self, state: dict[str, Any]) -> None:
        save(self.state_dir, state)

    def set_aside(self, why: str) -> None:
        set_aside(self.state_dir, why)


class NoCheckpoints:
    """For --replay: a replay always starts from the top, so nothing is kept."""

    def prepare(self) -> None:
        """Nothing to prepare."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        """Nothing is kept."""

    def set_aside(self, why: str) -> None:
        """Nothing was loaded."""
