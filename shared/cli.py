"""What every command line of logmon shares: one argument parser, one broken-pipe rule.

Stdlib only. Each program decides its own exit code for bad usage (logmond 2, logmonctl 64).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import NoReturn


class UsageError(Exception):
    """A bad flag or value: the program prints `prog: message` on one line and exits non-zero."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting 2 itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


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
