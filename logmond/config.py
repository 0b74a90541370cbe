"""The TOML configuration file: the same settings as the flags (flags win over the file).

Keys are the long flag names with underscores: `file`, `socket`, `state_dir`, `from_start`,
`format`, `threshold`, `alert_window`, `hysteresis`, `lateness`, `summary_interval`, `timeframe`.
"""
from __future__ import annotations

import math
import os
import tomllib
from fractions import Fraction
from typing import Any

from logmond.core.monitor import CoreConfig, InvalidSetting

DEFAULT_PATH = "/etc/logmond/logmond.toml"

# Config key -> (CoreConfig field or None for daemon settings, accepted types, description).
_NUMBER = (int, float)
KEYS: dict[str, tuple[str | None, tuple[type, ...], str]] = {
    "file": (None, (str,), "a path string"),
    "socket": (None, (str,), "a path string"),
    "state_dir": (None, (str,), "a path string"),
    "from_start": (None, (bool,), "true or false"),
    "format": ("format", (str,), "a string"),
    "threshold": ("threshold", _NUMBER, "a number"),
    "alert_window": ("window", (int,), "a whole number of seconds"),
    "hysteresis": ("hysteresis", _NUMBER, "a number"),
    "lateness": ("lateness", (int,), "a whole number of seconds"),
    "summary_interval": ("summary_interval", (int,), "a whole number of seconds"),
    "timeframe": ("timeframe", (int,), "a whole number of seconds"),
}
KEY_OF_FIELD = {field: key for key, (field, _, _) in KEYS.items() if field}


class ConfigError(Exception):
    """One line naming the file and the key."""


def load(path: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(daemon settings, CoreConfig fields) from `path`, or from DEFAULT_PATH if it exists."""
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return {}, {}
        path = DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    daemon: dict[str, Any] = {}
    core: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KEYS:
            raise ConfigError(f"config {path}: unknown key '{key}' (known: {', '.join(KEYS)})")
        field, types, what = KEYS[key]
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            raise ConfigError(f"config {path}: '{key}' must be {what}, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config {path}: '{key}' must be a finite number, not {value!r}")
        if field is None:
            daemon[key] = value
        else:
            core[field] = Fraction(repr(value)) if isinstance(value, float) else value
    try:
        CoreConfig(**core).check()
    except InvalidSetting as exc:
        raise ConfigError(f"config {path}: '{KEY_OF_FIELD[exc.field]}' {exc.text}") from None
    if isinstance(core.get("threshold"), int):
        core["threshold"] = Fraction(core["threshold"])
    if isinstance(core.get("hysteresis"), int):
        core["hysteresis"] = Fraction(core["hysteresis"])
    return daemon, core
