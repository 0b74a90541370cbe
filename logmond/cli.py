"""Command line of logmond: flags over the config file over the defaults -> the one-shot or the daemon."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from logmond import __version__
from logmond import config as config_file
from logmond.core import settings
from logmond.core.errors import InvalidSetting, OperatorError
from shared import paths
from shared.cli import Parser, UsageError, quiet_broken_pipe

EXIT_USAGE = 2


def _flag_type(setting: settings.Setting) -> Callable[[str], Any]:
    """The declaration's parser, with its reason shown by argparse as `argument --x: reason`."""
    parse = setting.parse
    assert parse is not None

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="logmond", description="Follow an HTTP access log; report traffic and high-traffic alerts.")
    p.add_argument("--version", action="version", version=f"logmond {__version__}")
    groups = {settings.RUN: p, settings.CORE: p.add_argument_group("monitoring"),
              settings.DAEMON: p.add_argument_group("daemon")}
    for s in settings.FLAGGED:
        # Absent flags stay None, so that the config file's value shows through. The help is the
        # README's text without its Markdown; argparse reads % as a format.
        text = s.help.replace("`", "").replace("%", "%%")
        if s.switch:
            groups[s.scope].add_argument(s.flag, action="store_true", default=None, help=text)
        elif s.repeat:
            groups[s.scope].add_argument(s.flag, action="extend", nargs="+", type=_flag_type(s), default=None,
                                         metavar=s.metavar, help=text)
        else:
            shown = "" if s.default is None else f" (default {s.default})"
            groups[s.scope].add_argument(s.flag, type=_flag_type(s), default=None, metavar=s.metavar,
                                         choices=s.choices, help=text + shown)
    return p


def resolve(args: argparse.Namespace, file_values: dict[str, Any], source: str | None) -> dict[str, Any]:
    """Every setting's value: flag, else config file, else default; judged once, in one place."""
    values = {s.name: s.default for s in settings.SETTINGS}
    values.update(file_values)
    flagged = {s.name for s in settings.FLAGGED if getattr(args, s.name) is not None}
    values.update({name: getattr(args, name) for name in flagged})
    try:
        settings.validate(values)
    except InvalidSetting as exc:
        where = settings.BY_NAME[exc.name].where(None if exc.name in flagged else source)
        raise OperatorError(f"{where} {exc.text}") from None
    return values


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with quiet_broken_pipe():
            return _run(build_parser().parse_args(argv))
        return 0  # the reader of stdout went away: nothing more to say
    except (OperatorError, UsageError) as exc:
        print(f"logmond: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.once:
        from logmond.once import run_once
        # Only a config named with --config: the service's own file is not for one-off reads,
        # but a file of rules is how to try them on an old log.
        source, file_values = config_file.load(args.config) if args.config else (None, {})
        values = resolve(args, file_values, source)
        if not values["file"]:
            raise OperatorError("--once needs --file PATH (or --file - for stdin)")
        history_to = paths.state_dir(values["state_dir"]) if values["save_history"] else None
        return run_once(values["file"], settings.core_config(values), as_json=bool(values["json"]),
                        history_to=history_to)
    source, file_values = config_file.load(args.config)
    values = resolve(args, file_values, source)
    files = [values["file"]] if isinstance(values["file"], str) else values["file"] or []
    if len(files) > 1:
        raise OperatorError("the daemon follows one file: give --file once (several work with --once)")
    path = files[0] if files else None
    if not path or path == "-":
        raise OperatorError("the daemon needs --file PATH (or `file` in the config); stdin works with --once")
    from logmond.daemon import Settings, serve
    daemon = Settings(
        file=os.path.abspath(path),
        socket=paths.socket_path(values["socket"]),
        state_dir=paths.state_dir(values["state_dir"]),
        from_start=bool(values["from_start"]),
        replay_speed=values["speed"] if values["replay"] else None,
        safety_check=values["safety_check"],
        drain_grace=values["drain_grace"],
        history_days=values["history_days"],
        notify=values["notify"],
        alertmanager=values["alertmanager"],
        metrics_listen=values["metrics_listen"],
    )

    def reload() -> dict[str, Any]:
        """The config file read again, under the same flags (OperatorError if it is broken)."""
        again, file_again = config_file.load(args.config)
        return resolve(args, file_again, again)

    return serve(daemon, settings.core_config(values), reload=reload)
