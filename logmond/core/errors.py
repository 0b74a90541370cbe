"""The one error type for "the operator must fix this": a bad flag, file, key or directory.

`logmond --once`, the daemon and the config loader raise it; the command line prints its
message as one line on stderr and exits 2, never a traceback.
"""
from __future__ import annotations


class OperatorError(Exception):
    """Something only the operator can fix; str() is the whole message, one line."""


class InvalidSetting(OperatorError):
    """A setting whose value cannot work; `name` is the setting, `text` says why.

    Whoever knows where the value came from (a flag, a key in a file) names it: see
    `settings.Setting.where`.
    """

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name} {text}")
        self.name = name
        self.text = text
