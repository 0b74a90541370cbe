"""The TOML configuration file: the same settings as the flags (flags win over the file).

Its keys are the settings' names (`logmond.core.settings.TOML_KEYS`); types and limits come from
the same declarations as the flags.
"""
from __future__ import annotations

import os
import tomllib
from typing import Any

from logmond.core import settings
from logmond.core.errors import InvalidSetting, OperatorError

DEFAULT_PATH = "/etc/logmond/logmond.toml"


def load(path: str | None) -> tuple[str | None, dict[str, Any]]:
    """(the file read or None, its settings by name) from `path`, or DEFAULT_PATH if it exists.

    Raises OperatorError naming the file and the key for anything wrong in it.
    """
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return None, {}
        path = DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as exc:
        raise OperatorError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OperatorError(f"config {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    try:
        for key, value in table.items():
            if key not in settings.TOML_KEYS:
                raise OperatorError(f"config {path}: unknown key '{key}' (known: {', '.join(settings.TOML_KEYS)})")
            values[key] = settings.from_toml(key, value)
        settings.validate({**{s.name: s.default for s in settings.SETTINGS}, **values})
    except InvalidSetting as exc:
        raise OperatorError(f"{settings.BY_NAME[exc.name].where(path)} {exc.text}") from None
    return path, values
