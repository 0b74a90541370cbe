"""Command line of logmonctl."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Sequence

from logmond import __version__

EXIT_USAGE = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"logmonctl: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="logmonctl", description="Query and watch a running logmond.")
    p.add_argument("--version", action="version", version=f"logmonctl {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    build_parser().print_help()
    return 0
