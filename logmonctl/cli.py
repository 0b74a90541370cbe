"""Command line of logmonctl: a thin shell over shared.client and logmonctl.render.

Exit codes are for scripts and monitoring (like supervisorctl and Nagios plugins): 0 fine,
1 much of the log malformed, 2 alert firing, 3 no usable daemon or no format fits the log,
64 bad usage, 130 interrupted. Never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Sequence

from logmond import __version__
from logmonctl import render, when
from shared.cli import Parser, UsageError, quiet_broken_pipe, socket_help
from shared.client import Client, ClientError
from shared.paths import socket_path
from shared.protocol import EVENT_ALERT, ApiError
from shared.schema import HISTORY_BY

EXIT_OK = 0
EXIT_UNAVAILABLE = 3  # also Nagios UNKNOWN
EXIT_USAGE = 64       # EX_USAGE
EXIT_INTERRUPTED = 130

# Seconds to connect and to get each reply.
CALL_TIMEOUT = 5.0
# Seconds --follow waits for any push; snapshots come every second, so silence this long means a hung daemon.
FOLLOW_SILENCE = 10.0

Handler = Callable[[argparse.Namespace, str], int]


def json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _call(path: str, op: str, **args: Any) -> dict[str, Any]:
    with Client(path, CALL_TIMEOUT) as client:
        return client.call(op, **args)


def _reason(exc: ClientError | ApiError, path: str) -> str:
    """Client errors already name the socket and the next step; a refusal by the daemon does not."""
    return str(exc) if isinstance(exc, ClientError) else f"logmond on {path} refused: {exc}"


def cmd_status(args: argparse.Namespace, path: str) -> int:
    with Client(path, CALL_TIMEOUT) as client:
        st = client.call("status")
        last = None if args.json else client.call("stats")["interval"]
    print(json_line(st) if args.json else render.status_text(st, last))
    return render.state(st)


def cmd_check(args: argparse.Namespace, path: str) -> int:
    try:
        st = _call(path, "status")
    except (ClientError, ApiError) as exc:
        print(render.check_unknown(_reason(exc, path)))  # Nagios reads stdout; main() still says it on stderr
        raise
    print(render.check_line(st))
    return render.state(st)


def cmd_stats(args: argparse.Namespace, path: str) -> int:
    stats = _call(path, "stats")
    print(json_line(stats) if args.json else render.stats_text(stats))
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace, path: str) -> int:
    if not args.follow:
        show = json_line if args.json else render.alert_line
        with Client(path, CALL_TIMEOUT) as client:
            for event in client.alerts(args.since):
                print(show(event))
        return EXIT_OK
    try:
        return _follow(path, args.since, args.json)
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how one leaves --follow


def fresh_alerts(push: dict[str, Any], last: int) -> list[dict[str, Any]]:
    """Alerts newer than id `last` in a push: an alert push itself, or the recent ones a snapshot carries."""
    if push["event"] == EVENT_ALERT:
        found = [{"id": push["id"], **{k: v for k, v in push.items() if k != "event"}}]  # as history has it
    else:
        found = push["data"]["alerts"]
    return [e for e in found if e["id"] > last]


def _follow(path: str, since: int | None, as_json: bool) -> int:
    """History, then alerts as they happen. Snapshots repeat the recent alerts, which covers one
    firing between the history call and the subscription without a call while subscribed."""
    show = json_line if as_json else render.alert_line
    last = since or 0
    with Client(path, CALL_TIMEOUT) as client:
        for event in client.alerts(since):
            print(show(event), flush=True)
            last = event["id"]
        for push in client.subscribe(FOLLOW_SILENCE):
            for event in fresh_alerts(push, last):
                print(show(event), flush=True)
                last = event["id"]
    raise AssertionError("the push stream only ends by an exception")


def cmd_history(args: argparse.Namespace, path: str) -> int:
    """Steps of history from the daemon's database, a page per request until the span is done."""
    now = time.time()
    try:
        since = when.parse(args.since, now)
        until = int(now) if args.until is None else when.parse(args.until, now)
        if since >= until:
            raise ValueError(f"--since ({args.since}) must be before --until ({args.until or 'now'})")
        step = when.step(args.step, since, until)
    except ValueError as exc:
        print(f"logmonctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with Client(path, CALL_TIMEOUT) as client:
        if args.json:
            for entry in client.history(since, until, step, args.by):
                print(json_line(entry))
        else:
            print("\n".join(render.history_text(list(client.history(since, until, step, args.by)), step, args.by)))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, path: str) -> int:
    from logmonctl.watch import run  # curses and friends only for the viewer

    return run(path)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="logmonctl", description="Query and watch a running logmond.",
                epilog="exit status (status, check): 0 ok, 1 over 10 % of recent lines malformed, 2 alert firing, "
                       "3 daemon unreachable or no format fits the log; 64 bad usage")
    p.add_argument("--version", action="version", version=f"logmonctl {__version__}")
    p.add_argument("--socket", metavar="PATH", help=socket_help())
    # Also accepted after the command; SUPPRESS keeps an absent one from hiding the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS, help=socket_help())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, summary: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], aliases=list(aliases), help=summary, description=summary)
        cmd.set_defaults(handler=handler)
        return cmd

    status = command("status", cmd_status, "short summary; exit 0/1/2/3 as check")
    status.add_argument("--json", action="store_true", help="the daemon's status reply as one JSON line")
    command("check", cmd_check, "Nagios/Icinga plugin: one line with perfdata, exit 0/1/2/3")
    alerts = command("alerts", cmd_alerts, "alert history, oldest first")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.add_argument("--follow", "-f", action="store_true", help="keep printing alerts as they happen (Ctrl-C ends)")
    alerts.add_argument("--since", type=int, metavar="ID", help="only alerts after this id")
    stats = command("stats", cmd_stats, "last summary and the timeframe rollup as tables")
    stats.add_argument("--json", action="store_true", help="the daemon's stats reply as one JSON line")
    hist = command("history", cmd_history, "traffic and alerts step by step, from the daemon's history")
    hist.add_argument("--since", default="6h", metavar="WHEN",
                      help="a duration back from now (90m, 6h, 7d) or an ISO 8601 time (default 6h)")
    hist.add_argument("--until", metavar="WHEN", help="as --since (default now)")
    hist.add_argument("--step", choices=tuple(when.STEPS), metavar="STEP",
                      help=f"one of {', '.join(when.STEPS)} (default: the smallest giving at most {when.MAX_ROWS} rows)")
    hist.add_argument("--by", choices=HISTORY_BY, help="the top 10 of each step by " + ", ".join(HISTORY_BY))
    hist.add_argument("--json", action="store_true", help="one JSON object per step")
    command("watch", cmd_watch, "live full-screen viewer", aliases=["top"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"logmonctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    path = socket_path(args.socket)
    try:
        with quiet_broken_pipe():
            return int(args.handler(args, path))
    except (ClientError, ApiError) as exc:
        print(f"logmonctl: {_reason(exc, path)}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK  # the reader of stdout went away (`| head`): nothing more to say
