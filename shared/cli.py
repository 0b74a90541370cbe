"""What every command line of logmon shares: one argument parser, one broken-pipe rule.

Stdlib only. Each program decides its own exit code for bad usage (logmond 2, logmonctl 64).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import NoReturn

from shared.paths import socket_path


class UsageError(Exception):
    """A bad flag or value: the program prints `prog: message` on one line and exits non-zero."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting 2 itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def socket_help(env: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """--socket's help text: the socket a command would use here and now, not a pointer to the
    rules, so that `--help` answers "which socket?" by itself."""
    env = os.environ if env is None else env
    origin = "from $LOGMOND_SOCKET" if env.get("LOGMOND_SOCKET") else "$LOGMOND_SOCKET overrides it"
    return f"logmond's socket (default: {socket_path(None, env, uid)}, {origin})".replace("%", "%%")


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """A reader that went away (`| head -1`) ends the command silently, with no traceback.

    stdout is flushed inside, so a closed pipe surfaces here and not at interpreter exit; it is
    then pointed at /dev/null so that Python's own final flush has nothing to complain about.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
