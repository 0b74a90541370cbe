"""One declaration per setting: the flags, the config keys, the reload and the README all follow it."""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from logmond import cli
from logmond.core import settings
from logmond.core.errors import OperatorError
from logmond.core.monitor import Monitor
from logmond.core.settings import CoreConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_tables() -> list[str]:
    """Every Markdown table of the README whose first column is `flag`."""
    text = README.read_text()
    return [m.group(0).rstrip("\n") for m in re.finditer(r"^\| flag \|.*\n(?:\|.*\n)+", text, re.M)]


def test_readme_flag_tables_are_exactly_the_declared_settings():
    expected = [settings.markdown_table("once"), settings.markdown_table("daemon")]
    assert readme_tables() == expected, "regenerate with settings.markdown_table('once' / 'daemon')"
    listed = set(re.findall(r"^\| `(--[a-z-]+)", "\n".join(readme_tables()), re.M))
    assert listed == {s.flag for s in settings.FLAGGED}


def test_argparse_flags_are_derived_from_the_declarations():
    parser = cli.build_parser()
    flags = {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")}
    assert flags - {"--help", "--version"} == {s.flag for s in settings.FLAGGED}


def test_core_config_fields_are_the_core_settings():
    fields = set(CoreConfig.__dataclass_fields__)
    assert fields == {s.attr for s in settings.SETTINGS if s.scope == settings.CORE}
    assert CoreConfig().threshold == Fraction(10) and CoreConfig().window == 120


def test_reloadable_settings_are_declared_not_listed_twice():
    assert settings.RELOADABLE == ("threshold", "rule", "hysteresis", "notify")


def test_resolve_flags_over_file_over_defaults_and_errors_name_their_origin():
    args = cli.build_parser().parse_args(["--threshold", "1/3"])
    values = cli.resolve(args, {"threshold": Fraction(5), "lateness": 7}, "/etc/x.toml")
    assert values["threshold"] == Fraction(1, 3) and values["lateness"] == 7 and values["timeframe"] == 600
    with pytest.raises(OperatorError, match=r"^--alert-window must be from 1 to 86400 seconds$"):
        cli.resolve(cli.build_parser().parse_args(["--alert-window", "0"]), {}, None)
    with pytest.raises(OperatorError, match=r"^config /etc/x.toml: 'timeframe' must be from the summary interval"):
        cli.resolve(cli.build_parser().parse_args([]), {"timeframe": 5}, "/etc/x.toml")
    # The interval from a flag, the timeframe from the file: the file's key is named.
    with pytest.raises(OperatorError, match=r"config /etc/x.toml: 'timeframe'"):
        cli.resolve(cli.build_parser().parse_args(["--summary-interval", "60"]), {"timeframe": 30}, "/etc/x.toml")


def test_toml_values_are_typed_as_the_flags_give_them():
    assert settings.from_toml("threshold", 0.1) == Fraction(1, 10)
    assert settings.from_toml("threshold", 3) == Fraction(3)
    for name, value in (("threshold", True), ("alert_window", 1.5), ("from_start", 1), ("threshold", float("nan"))):
        with pytest.raises(OperatorError, match=name):
            settings.from_toml(name, value)


def test_reconfigure_applies_only_what_sighup_applies():
    monitor = Monitor(CoreConfig(format="csv"))
    later, rules = monitor.reconfigure(CoreConfig(format="clf", threshold=Fraction(3), hysteresis=Fraction(1, 10),
                                           window=60))
    assert later == ["format", "alert_window"] and rules == ([], [], [])
    assert (monitor.config.threshold, monitor.config.hysteresis) == (Fraction(3), Fraction(1, 10))
    assert (monitor.config.format, monitor.config.window) == ("csv", 120)
    assert monitor.alert.threshold == Fraction(3)
