"""Where alert events go besides the socket: exec hooks (`[[notify]]`) and an Alertmanager
(`[alertmanager]`), as the config file declares them.

Pure validation: the shell (logmond/hooks.py, logmond/alertmanager.py) runs and posts. Each
problem is one line naming the table and the key, for the operator to fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.schema import ALERT, RECOVER

# `[[notify]]` tables a config may hold: each event runs every matching hook, so many hooks are a
# fork storm, not a configuration.
MAX_HOOKS = 16
# Longest a hook may run before it is killed, seconds (a pager call that takes longer is stuck).
MAX_HOOK_TIMEOUT = 300.0
DEFAULT_HOOK_TIMEOUT = 10.0
# Arguments of a hook's command, at most (execve takes far more; a config with more is a mistake).
MAX_HOOK_ARGS = 64
# Seconds an Alertmanager request may take before it counts as failed.
DEFAULT_ALERTMANAGER_TIMEOUT = 10.0
MAX_ALERTMANAGER_TIMEOUT = 60.0

HOOK_KEYS = ("command", "on", "rules", "timeout")
ALERTMANAGER_KEYS = ("url", "timeout")
EVENT_TYPES = (ALERT, RECOVER)


@dataclass(frozen=True)
class HookSpec:
    """One `[[notify]]` table: run `command` (no shell) for events of these types and rules."""

    command: tuple[str, ...]
    on: frozenset[str] = frozenset(EVENT_TYPES)
    # Rule names this hook is for; None: every rule.
    rules: frozenset[str] | None = None
    timeout: float = DEFAULT_HOOK_TIMEOUT

    def wants(self, event: dict[str, Any]) -> bool:
        """Whether this hook runs for `event` (an alert or recovery event)."""
        return event["type"] in self.on and (self.rules is None or event["rule"] in self.rules)


@dataclass(frozen=True)
class AlertmanagerSpec:
    """The `[alertmanager]` table: the base URL (`http://host:9093`) and a request timeout."""

    url: str
    timeout: float = DEFAULT_ALERTMANAGER_TIMEOUT

    @property
    def alerts_url(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"


def parse_hooks(value: Any) -> tuple[HookSpec, ...]:
    """The `notify` key (a list of tables) -> hook specs; ValueError naming the table and key."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("'notify' must be [[notify]] tables")
    if len(value) > MAX_HOOKS:
        raise ValueError(f"at most {MAX_HOOKS} [[notify]] tables, not {len(value)}")
    return tuple(_hook(i, table) for i, table in enumerate(value, 1))


def _hook(number: int, table: dict[str, Any]) -> HookSpec:
    where = f"[[notify]] #{number}"
    unknown = sorted(set(table) - set(HOOK_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(HOOK_KEYS)})")
    command = table.get("command")
    if (not isinstance(command, list) or not command or len(command) > MAX_HOOK_ARGS
            or not all(isinstance(a, str) and a and "\0" not in a for a in command)):
        raise ValueError(f"{where}: 'command' must be a list of 1 to {MAX_HOOK_ARGS} non-empty strings, "
                         f"the program first (no shell): command = [\"/usr/local/bin/page\", \"--team\", \"web\"]")
    on = table.get("on", list(EVENT_TYPES))
    if not isinstance(on, list) or not on or not set(on) <= set(EVENT_TYPES) or len(set(on)) != len(on):
        raise ValueError(f"{where}: 'on' must be a list of \"alert\" and/or \"recover\"")
    rules = table.get("rules")
    if rules is not None and (not isinstance(rules, list) or not rules or not all(isinstance(r, str) for r in rules)):
        raise ValueError(f"{where}: 'rules' must be a non-empty list of rule names")
    timeout = table.get("timeout", DEFAULT_HOOK_TIMEOUT)
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout)
            or not 0 < timeout <= MAX_HOOK_TIMEOUT):
        raise ValueError(f"{where}: 'timeout' must be a number of seconds > 0 and at most {MAX_HOOK_TIMEOUT:g}")
    return HookSpec(tuple(command), frozenset(on), None if rules is None else frozenset(rules), float(timeout))


def parse_alertmanager(value: Any) -> AlertmanagerSpec:
    """The `alertmanager` key (a table) -> its spec; ValueError naming the key."""
    if not isinstance(value, dict):
        raise ValueError("'alertmanager' must be an [alertmanager] table")
    unknown = sorted(set(value) - set(ALERTMANAGER_KEYS))
    if unknown:
        raise ValueError(f"[alertmanager]: unknown key '{unknown[0]}' (known: {', '.join(ALERTMANAGER_KEYS)})")
    url = value.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("[alertmanager]: 'url' must be Alertmanager's base URL, e.g. \"http://127.0.0.1:9093\"")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"[alertmanager]: 'url' has a bad port: {url!r}") from None
    timeout = value.get("timeout", DEFAULT_ALERTMANAGER_TIMEOUT)
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout)
            or not 0 < timeout <= MAX_ALERTMANAGER_TIMEOUT):
        raise ValueError(f"[alertmanager]: 'timeout' must be a number of seconds > 0 and at most "
                         f"{MAX_ALERTMANAGER_TIMEOUT:g}")
    return AlertmanagerSpec(url, float(timeout))
