"""Command line of logmond: flags -> configuration -> the one-shot or the daemon shell."""
from __future__ import annotations

import argparse
import os
import sys
from fractions import Fraction
from typing import NoReturn, Sequence

from logmond import __version__
from logmond import config as config_file
from shared import paths
from logmond.core.monitor import CoreConfig, InvalidSetting
from logmond.core.parse import FORMATS

EXIT_USAGE = 2
DEFAULT_CONFIG = config_file.DEFAULT_PATH


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
    daemon = p.add_argument_group("daemon")
    daemon.add_argument("--socket", metavar="PATH", help="Unix socket to serve (default: see README)")
    daemon.add_argument("--state-dir", metavar="DIR", help="where the checkpoint lives (default: see README)")
    daemon.add_argument("--config", metavar="FILE", help=f"TOML config file (default {DEFAULT_CONFIG} if present)")
    daemon.add_argument("--from-start", action="store_true", default=None,
                        help="with no checkpoint, read the file from its start instead of its end")
    daemon.add_argument("--replay", action="store_true", help="pace an existing file by its own timestamps")
    daemon.add_argument("--speed", type=float, default=1.0, help="with --replay: log seconds per second (default 1)")
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


# Flag (argparse dest, also the config-file key) -> CoreConfig field.
CORE_FLAGS = {"format": "format", "threshold": "threshold", "alert_window": "window", "hysteresis": "hysteresis",
              "lateness": "lateness", "summary_interval": "summary_interval", "timeframe": "timeframe"}
FLAG_OF_FIELD = {field: flag for flag, field in CORE_FLAGS.items()}


def core_config(args: argparse.Namespace, base: dict | None = None) -> CoreConfig:
    """Flags over `base` (a config file's values) over the defaults; UsageError if impossible."""
    values = dict(base or {})
    for flag, field in CORE_FLAGS.items():
        if getattr(args, flag) is not None:
            values[field] = getattr(args, flag)
    config = CoreConfig(**values)
    try:
        config.check()
    except InvalidSetting as exc:
        raise UsageError(f"--{FLAG_OF_FIELD[exc.field].replace('_', '-')} {exc.text}") from None
    return config


def _load_config(path: str | None) -> tuple[dict, dict]:
    try:
        return config_file.load(path)
    except config_file.ConfigError as exc:
        raise UsageError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.once:
            from logmond.once import run_once
            if not args.file:
                raise UsageError("--once needs --file PATH (or --file - for stdin)")
            return run_once(args.file, core_config(args), as_json=args.json)
        daemon_file, core_file = _load_config(args.config)
        core = core_config(args, core_file)
        path = args.file or daemon_file.get("file")
        if not path or path == "-":
            raise UsageError("the daemon needs --file PATH (or `file` in the config); stdin works with --once")
        if args.speed <= 0:
            raise UsageError("--speed must be > 0")
        from logmond.daemon import Settings, serve
        settings = Settings(
            file=os.path.abspath(path),
            socket=paths.socket_path(args.socket or daemon_file.get("socket")),
            state_dir=paths.state_dir(args.state_dir or daemon_file.get("state_dir")),
            from_start=bool(args.from_start if args.from_start is not None else daemon_file.get("from_start")),
            replay_speed=args.speed if args.replay else None,
        )
        def reload() -> CoreConfig:
            try:
                return core_config(args, _load_config(args.config)[1])
            except UsageError as exc:
                raise ValueError(str(exc)) from None

        return serve(settings, core, reload=reload)
    except UsageError as exc:
        print(f"logmond: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
