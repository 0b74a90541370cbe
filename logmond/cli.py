"""Command line of logmond: flags -> configuration -> the one-shot or the daemon shell."""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from typing import NoReturn, Sequence

from logmond import __version__
from logmond.monitor import CoreConfig
from logmond.parse import FORMATS

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad flag, value or path: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _fraction(text: str) -> Fraction:
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="logmond", description="Follow an HTTP access log; report traffic and high-traffic alerts.")
    p.add_argument("--version", action="version", version=f"logmond {__version__}")
    p.add_argument("--file", metavar="PATH", help="access log to read ('-' for stdin with --once)")
    p.add_argument("--once", action="store_true", help="read the whole log, print summaries and alerts, exit")
    p.add_argument("--json", action="store_true", help="with --once: JSON Lines on stdout")
    core = p.add_argument_group("monitoring")
    core.add_argument("--format", choices=("auto", *FORMATS), default=None, help="log format (default auto)")
    core.add_argument("--threshold", type=_fraction, default=None, help="alert above this many hits/s (default 10)")
    core.add_argument("--alert-window", type=int, default=None, metavar="SECONDS", help="alert averaging window (default 120)")
    core.add_argument("--hysteresis", type=_fraction, default=None, help="recover at threshold*(1-H) (default 0)")
    core.add_argument("--lateness", type=int, default=None, metavar="SECONDS",
                      help="how far out of order lines may arrive (default 5)")
    core.add_argument("--summary-interval", type=int, default=None, metavar="SECONDS", help="summary block (default 10)")
    core.add_argument("--timeframe", type=int, default=None, metavar="SECONDS", help="rolling rollup span (default 600)")
    return p


CORE_FLAGS = {"format": "format", "threshold": "threshold", "alert_window": "window", "hysteresis": "hysteresis",
              "lateness": "lateness", "summary_interval": "summary_interval", "timeframe": "timeframe"}


def core_config(args: argparse.Namespace, base: dict | None = None) -> CoreConfig:
    """Flags over `base` (a config file's values) over the defaults; UsageError if impossible."""
    values = dict(base or {})
    for flag, field in CORE_FLAGS.items():
        if getattr(args, flag) is not None:
            values[field] = getattr(args, flag)
    config = CoreConfig(**values)
    try:
        config.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return config


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.once:
            from logmond.once import run_once
            if not args.file:
                raise UsageError("--once needs --file PATH (or --file - for stdin)")
            return run_once(args.file, core_config(args), as_json=args.json)
        raise UsageError("the daemon mode is not available yet: use --once")
    except UsageError as exc:
        print(f"logmond: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
