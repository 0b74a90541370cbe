"""Every setting of logmond, declared once.

Each `Setting` says its name (also the TOML key and, with dashes, the flag), its type, default,
limits, help text and whether SIGHUP applies it. The argparse flags (cli.py), the TOML
validation (config.py), the reload (Monitor.reconfigure) and the README's flag tables are all
derived from SETTINGS, and `validate` is the only place a value is judged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass
from fractions import Fraction
from typing import Any, Callable

from logmond.core.errors import InvalidSetting
from logmond.core import catalog
from logmond.core.rulespec import RuleSpec, parse_rules
from logmond.core.targets import parse_alertmanager, parse_hooks
from shared.schema import HIGH_TRAFFIC, LATENCY

# Longest alert window, summary interval and timeframe: a day. Per-second state and the charts
# grow with the window, so it needs a ceiling; longer views belong to a metrics store.
MAX_SPAN = 86_400
# Longest accepted disorder: seconds are held open this long.
MAX_LATENESS = 3_600
# Most blocks the rollup keeps (timeframe / interval).
MAX_BLOCKS = 8_640
# Longest safety-check period and drain grace, seconds: past a minute a lost event goes unseen
# for too long, and a rotated file is held open for nothing.
MAX_WAIT = 60
# Most sections with series of their own on the metrics endpoint: each is a dozen series per
# method and code, and a scrape of tens of thousands of series is a slow scrape.
MAX_METRICS_SECTIONS = 1_000
# Most days of history kept: ten years of minute rows (about 5 million) is as far as anyone looks.
MAX_HISTORY_DAYS = 3_650

# Where a setting belongs: the pure core's CoreConfig, the daemon shell, or how the command runs.
CORE, DAEMON, RUN = "core", "daemon", "run"


def _fraction(text: str) -> Fraction:
    """A flag's number, exact: decimals and fractions (`0.1`, `1/3`) are not rounded."""
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a number: {text!r}") from None


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be > 0, not {text}")
    return value


def _listen(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, like 127.0.0.1:9101, not {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class Setting:
    name: str
    help: str
    default: Any = None
    # Flag text -> value (ValueError says why); None for on/off flags.
    parse: Callable[[str], Any] | None = str
    # TOML types the config file may give; () when the setting is a flag only.
    toml: tuple[type, ...] = ()
    # What the TOML value must be, for the error message.
    toml_what: str = ""
    # (value, all values) -> why it is impossible, or None.
    check: Callable[[Any, dict[str, Any]], str | None] | None = None
    # SIGHUP applies it to a running daemon at once.
    reload: bool = False
    scope: str = CORE
    # CoreConfig field, when it differs from the name.
    field: str = ""
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    # The README's default column, when the default is not simply the value.
    shown_default: str = ""
    # The flag may be given several times, each with one or more values (a list).
    repeat: bool = False
    # For settings only the config file gives (tables, such as [[rule]]): TOML value -> setting
    # value, ValueError with a message that names the table and key itself. These have no flag.
    convert: Callable[[Any], Any] | None = None

    @property
    def has_flag(self) -> bool:
        return self.convert is None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def attr(self) -> str:
        """The CoreConfig field (core settings) or the resolved-values key (others)."""
        return self.field or self.name

    @property
    def switch(self) -> bool:
        """An on/off flag (store_true)."""
        return self.parse is None

    def where(self, source: str | None) -> str:
        """How an error names this setting: the flag, or the key in the file `source` (tables name
        themselves in their message)."""
        if source is None:
            return self.flag
        return f"config {source}:" if self.convert is not None else f"config {source}: '{self.name}'"


def _between(lo: int, hi: int, unit: str = " seconds") -> Callable[[Any, dict[str, Any]], str | None]:
    return lambda v, _: None if lo <= v <= hi else f"must be from {lo} to {hi}{unit}"


def _timeframe(v: int, values: dict[str, Any]) -> str | None:
    interval = values.get("summary_interval", 10)
    if not interval <= v <= MAX_SPAN:
        return f"must be from the summary interval to {MAX_SPAN} seconds"
    if v > MAX_BLOCKS * interval:
        return f"must span at most {MAX_BLOCKS} summary intervals"
    return None


def _rules_fit(rules: tuple[RuleSpec, ...], values: dict[str, Any]) -> str | None:
    """A rule the log cannot feed: latency with a format that has no request time, or a vhost
    filter with one that has no virtual host (with `auto` this is only known once it decides)."""
    if values.get("format", "auto") == catalog.AUTO or catalog.problem(values["format"]):
        return None
    fmt = catalog.compile_format(values["format"])
    for rule in rules:
        if rule.metric == LATENCY and not fmt.latency:
            return f"rule '{rule.name}': metric latency needs a request time, and format {fmt.name} has none"
        if rule.vhost is not None and not fmt.vhost:
            return f"rule '{rule.name}': 'vhost' needs a format with the virtual host, and {fmt.name} has none"
    return None


def _hooks_fit(hooks: tuple[Any, ...], values: dict[str, Any]) -> str | None:
    """A hook's `rules` must name rules that exist."""
    known = {HIGH_TRAFFIC, *(rule.name for rule in values.get("rule", ()))}
    for number, hook in enumerate(hooks, 1):
        for name in sorted(hook.rules or ()):
            if name not in known:
                return f"[[notify]] #{number}: 'rules' names '{name}', which is no rule (known: {', '.join(sorted(known))})"
    return None


_NUMBER = (int, float)

SETTINGS: tuple[Setting, ...] = (
    Setting("file", "the log; `-` reads stdin. With --once, several (`--file a.2.gz --file a.1 --file a`, or "
            "`--file a b`) are read in that order as one stream, gzip ones by their magic bytes; the daemon "
            "follows one, and waits for it if it is missing in an existing directory", scope=RUN, metavar="PATH",
            toml=(str,), toml_what="a path string", shown_default="(required)", repeat=True),
    Setting("once", "read to the end, print, exit", parse=None, scope=RUN, default=False),
    Setting("save_history", "with --once: add the minute rows of what it read to the history in --state-dir "
            "(only minutes the history does not have)", parse=None, scope=RUN, default=False),
    Setting("json", "with --once: JSON Lines on stdout instead of human text", parse=None, scope=RUN,
            default=False),
    Setting("format", "`auto`, a preset (`csv`, `common` or `clf`, `combined`, `vcombined`, `json`, `caddy`, "
            "`traefik`) or the server's own format string (nginx `log_format` with `$variables`, Apache `LogFormat` "
            "with `%` directives); `auto` decides from the lines and says which (stderr in human mode, "
            "`totals.format` in JSON)", default="auto", toml=(str,), toml_what="a string", metavar="FORMAT",
            check=lambda v, _: catalog.problem(v)),
    Setting("threshold", "alert when the average hits/s over the window exceeds X (decimals and fractions are "
            "exact: `0.1`, `1/3`)", default=Fraction(10), parse=_fraction, toml=_NUMBER, toml_what="a number",
            metavar="X", check=lambda v, _: None if v >= 0 else "must be >= 0", reload=True),
    Setting("rule", "alert rules beyond high traffic: `[[rule]]` tables (see Alert rules)", default=(),
            toml=(list,), toml_what="[[rule]] tables", convert=parse_rules, check=_rules_fit, reload=True,
            field="rules", shown_default="none"),
    Setting("alert_window", "the alert's averaging window, seconds", default=120, parse=_whole, toml=(int,),
            toml_what="a whole number of seconds", metavar="S", check=_between(1, MAX_SPAN), field="window"),
    Setting("hysteresis", "recover at `X * (1 - H)`; `0.05` gives a 5 % band; `0 <= H < 1`", default=Fraction(0),
            parse=_fraction, toml=_NUMBER, toml_what="a number", metavar="H",
            check=lambda v, _: None if 0 <= v < 1 else "must be in [0, 1)", reload=True),
    Setting("lateness", "how many seconds out of order lines may arrive", default=5, parse=_whole, toml=(int,),
            toml_what="a whole number of seconds", metavar="L", check=_between(0, MAX_LATENESS)),
    Setting("summary_interval", "one summary per aligned block of I seconds of log time", default=10,
            parse=_whole, toml=(int,), toml_what="a whole number of seconds", metavar="I",
            check=_between(1, MAX_SPAN)),
    Setting("timeframe", "span of the rolling rollup the daemon serves", default=600, parse=_whole, toml=(int,),
            toml_what="a whole number of seconds", metavar="S", check=_timeframe),
    Setting("metrics_sections", "sections with series of their own on the metrics endpoint (the first to lead by "
            "hits; the others are `(other)`)", default=50, parse=_whole, toml=(int,), toml_what="a whole number",
            metavar="N", check=_between(1, MAX_METRICS_SECTIONS, "")),
    Setting("socket", "the Unix socket to serve", scope=DAEMON, metavar="PATH", toml=(str,),
            toml_what="a path string", shown_default="see below"),
    Setting("state_dir", "where the state database lives", scope=DAEMON, metavar="DIR", toml=(str,),
            toml_what="a path string", shown_default="see below"),
    Setting("history_days", "days of per-minute history (and alert events) the state database keeps", default=31,
            parse=_whole, toml=(int,), toml_what="a whole number of days", metavar="D", check=_between(1, MAX_HISTORY_DAYS, " days"),
            scope=DAEMON),
    Setting("config", "TOML file with the same settings, and the `[[rule]]`, `[[notify]]` and `[alertmanager]` "
            "tables; flags win. `--once` reads one only when it is given", scope=RUN, metavar="FILE",
            shown_default="`/etc/logmond/logmond.toml` if it exists"),
    Setting("from_start", "with no checkpoint, read the file from its start instead of its end", parse=None,
            scope=DAEMON, default=False, toml=(bool,), toml_what="true or false"),
    Setting("safety_check", "seconds between the checks that catch what inotify cannot tell (lost events, "
            "network filesystems)", default=2.0, parse=_positive, toml=_NUMBER, toml_what="a number of seconds",
            metavar="S", check=lambda v, _: None if 0 < v <= MAX_WAIT else f"must be > 0 and at most {MAX_WAIT}",
            scope=DAEMON),
    Setting("drain_grace", "seconds a rotated-away file is still read after it last grew, for a writer that "
            "reopens late", default=2.0, parse=_positive, toml=_NUMBER, toml_what="a number of seconds",
            metavar="S", check=lambda v, _: None if 0 < v <= MAX_WAIT else f"must be > 0 and at most {MAX_WAIT}",
            scope=DAEMON),
    Setting("notify", "exec hooks run on alert events: `[[notify]]` tables (see Notifications)", default=(),
            toml=(list,), toml_what="[[notify]] tables", convert=parse_hooks, check=_hooks_fit, reload=True,
            scope=DAEMON, shown_default="none"),
    Setting("alertmanager", "post alerts to this Alertmanager: an `[alertmanager]` table with `url` (see "
            "Notifications)", toml=(dict,), toml_what="an [alertmanager] table", convert=parse_alertmanager,
            scope=DAEMON, shown_default="none"),
    Setting("metrics_listen", "serve Prometheus metrics at http://HOST:PORT/metrics (`127.0.0.1:9101`, "
            "`0.0.0.0:9101`, `[::]:9101`)", scope=DAEMON, parse=_listen, toml=(str,), toml_what="a HOST:PORT string",
            metavar="HOST:PORT", shown_default="off"),
    Setting("replay", "pace an existing file by its own timestamps (with --speed)", parse=None, scope=DAEMON,
            default=False),
    Setting("speed", "with --replay: log seconds per second", default=1.0, parse=_positive, scope=DAEMON,
            metavar="X"),
)
BY_NAME = {s.name: s for s in SETTINGS}
# The settings with a flag (the others are config file tables).
FLAGGED = tuple(s for s in SETTINGS if s.has_flag)
# Keys a config file may hold.
TOML_KEYS = tuple(s.name for s in SETTINGS if s.toml)
# The settings SIGHUP applies to a running daemon.
RELOADABLE = tuple(s.name for s in SETTINGS if s.reload)
# The README's two flag tables: `logmond --once` (input and monitoring) and the daemon's own.
README_TABLES = {
    "once": tuple(s for s in FLAGGED if s.scope == CORE or s.name in ("file", "once", "json")),
    "daemon": tuple(s for s in FLAGGED if s.scope != CORE and s.name not in ("file", "once", "json")),
}


def _check(self: Any) -> None:
    """Raise InvalidSetting naming the first impossible value."""
    validate({s.name: getattr(self, s.attr) for s in SETTINGS if s.scope == CORE})


# The pure core's settings: exactly the CORE declarations, as a frozen dataclass.
CoreConfig = make_dataclass(
    "CoreConfig", [(s.attr, type(s.default), field(default=s.default)) for s in SETTINGS if s.scope == CORE],
    frozen=True, namespace={"check": _check, "__module__": __name__})


def validate(values: dict[str, Any]) -> None:
    """The one place values are judged: InvalidSetting(name, why) for the first impossible one."""
    for name, value in values.items():
        setting = BY_NAME[name]
        if setting.check is not None:
            why = setting.check(value, values)
            if why is not None:
                raise InvalidSetting(name, why)


def from_toml(name: str, value: Any) -> Any:
    """A config file's value for setting `name`, typed as the flag would give it, or InvalidSetting."""
    setting = BY_NAME[name]
    if isinstance(value, bool) != (bool in setting.toml) or not isinstance(value, setting.toml):
        key = f"'{name}' " if setting.convert is not None else ""
        raise InvalidSetting(name, f"{key}must be {setting.toml_what}, not {value!r}")
    if setting.convert is not None:
        try:
            return setting.convert(value)
        except ValueError as exc:
            raise InvalidSetting(name, str(exc)) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidSetting(name, f"must be a finite number, not {value!r}")
    if setting.parse is _fraction:
        return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    if setting.parse is _positive:
        return float(value)
    if setting.parse is _listen:
        try:
            return _listen(value)
        except ValueError as exc:
            raise InvalidSetting(name, str(exc)) from None
    return value


def core_config(values: dict[str, Any]) -> Any:
    """The CoreConfig for resolved values (names as keys; absent ones take their defaults)."""
    return CoreConfig(**{s.attr: values[s.name] for s in SETTINGS if s.scope == CORE and s.name in values})


def core_values(config: Any) -> dict[str, Any]:
    """A CoreConfig back as setting names -> values."""
    return {s.name: getattr(config, s.attr) for s in SETTINGS if s.scope == CORE}


def markdown_table(group: str) -> str:
    """One of the README's flag tables, exactly as the README must show it."""
    rows = ["| flag | config key | default | meaning |", "| --- | --- | --- | --- |"]
    for s in README_TABLES[group]:
        flag = f"`{s.flag}`" if s.switch else f"`{s.flag} {_value_name(s)}`"
        key = f"`{s.name}`" if s.toml else "-"
        hup = " (SIGHUP applies it at once)" if s.reload else ""
        rows.append(f"| {flag} | {key} | {_shown_default(s)} | {s.help}{hup} |")
    return "\n".join(rows)


def _value_name(s: Setting) -> str:
    return "\\|".join(s.choices) if s.choices else (s.metavar or s.name.upper())


def _shown_default(s: Setting) -> str:
    if s.shown_default:
        return s.shown_default
    if s.switch:
        return "off"
    return f"`{s.default}`"
