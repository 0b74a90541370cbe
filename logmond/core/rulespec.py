"""The `[[rule]]` tables of the config file: what each alert rule watches, declared and judged.

Pure validation, no evaluation (that is rules.py). Every problem is one line naming the rule and
the key. Bounds are exact fractions, as the high-traffic threshold's are, so a value exactly at a
bound behaves as written whatever its binary floating-point form.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from shared.schema import CRITICAL, HIGH_TRAFFIC, LATENCY, METRICS, RATE, SEVERITIES, STATUS_SHARE, WARNING

# Rules a config may declare: each is counted on every line and evaluated every second.
MAX_RULES = 64
# Longest rule window, seconds: a rule keeps one bucket per second of it (a latency rule a small
# sketch per second), so an hour bounds its memory; longer views belong to Prometheus.
MAX_RULE_WINDOW = 3_600
# Longest `for`, seconds: a day.
MAX_FOR = 86_400
# Longest rule name: it is a label value in Alertmanager and a perfdata label in Nagios.
MAX_NAME = 64
# Longest section or vhost filter, characters (a section is the path up to its second slash).
MAX_FILTER = 256
DEFAULT_WINDOW = 60
DEFAULT_QUANTILE = 0.99

NAME = re.compile(r"[a-z0-9_]{1,%d}" % MAX_NAME)
# A status class (`5xx`) or one code (`502`).
STATUS = re.compile(r"[1-5](xx|[0-9][0-9])")
KEYS = ("name", "metric", "status", "quantile", "section", "vhost", "window", "above", "below",
        "recover_below", "recover_above", "for", "min_hits", "severity")


@dataclass(frozen=True)
class RuleSpec:
    """One rule: fire when `metric` over the last `window` seconds passes `bound` (above it, or
    below it when `falling`) for `hold` seconds; recover once it is back at `recover`."""

    name: str
    metric: str
    window: int
    bound: Fraction
    recover: Fraction
    falling: bool = False
    status: str | None = None
    quantile: float | None = None
    section: str | None = None
    vhost: str | None = None
    hold: int = 0
    min_hits: int = 1
    severity: str = WARNING

    def matches_status(self, code: int) -> bool:
        """Whether a status counts toward a status_share rule's share."""
        assert self.status is not None
        text = str(code)
        return text == self.status or (self.status.endswith("xx") and text[0] == self.status[0])

    def describe(self) -> dict[str, Any]:
        """What events and `status` say about the rule, beyond its name and metric."""
        out: dict[str, Any] = {"severity": self.severity, "window": self.window, "threshold": float(self.bound),
                               "direction": "below" if self.falling else "above"}
        for key in ("section", "vhost", "status", "quantile"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def parse_rules(value: Any) -> tuple[RuleSpec, ...]:
    """The `rule` key (a list of tables) -> specs; ValueError naming the rule and the key."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("'rule' must be [[rule]] tables")
    if len(value) > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} [[rule]] tables, not {len(value)}")
    specs: list[RuleSpec] = []
    for number, table in enumerate(value, 1):
        spec = _rule(number, table)
        if any(s.name == spec.name for s in specs):
            raise ValueError(f"rule '{spec.name}': 'name' is used by another rule")
        specs.append(spec)
    return tuple(specs)


def _rule(number: int, table: dict[str, Any]) -> RuleSpec:
    name = table.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"rule #{number}: 'name' must be 1 to {MAX_NAME} characters of a-z, 0-9 and _")
    if name == HIGH_TRAFFIC:
        raise ValueError(f"rule '{name}': 'name' is the built-in rule's (set it with --threshold and --alert-window)")
    where = f"rule '{name}':"
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ValueError(f"{where} unknown key '{unknown[0]}' (known: {', '.join(KEYS)})")
    metric = table.get("metric")
    if metric not in METRICS:
        raise ValueError(f"{where} 'metric' must be one of {', '.join(METRICS)}, not {metric!r}")
    status = table.get("status")
    if metric == STATUS_SHARE:
        if not isinstance(status, str) or not STATUS.fullmatch(status):
            raise ValueError(f"{where} 'status' must be a class like \"5xx\" or a code like \"502\"")
    elif status is not None:
        raise ValueError(f"{where} 'status' is for metric status_share only")
    quantile = table.get("quantile")
    if metric == LATENCY:
        quantile = DEFAULT_QUANTILE if quantile is None else quantile
        if not _number(quantile) or not 0 < quantile <= 1:
            raise ValueError(f"{where} 'quantile' must be a number in (0, 1], e.g. 0.99")
        quantile = float(quantile)
    elif quantile is not None:
        raise ValueError(f"{where} 'quantile' is for metric latency only")
    for key in ("section", "vhost"):
        text = table.get(key)
        if text is not None and (not isinstance(text, str) or not text or len(text) > MAX_FILTER):
            raise ValueError(f"{where} '{key}' must be a non-empty string of at most {MAX_FILTER} characters")
    section = table.get("section")
    if section is not None and (not section.startswith("/") or "/" in section[1:]):
        raise ValueError(f"{where} 'section' must be a section as logmon counts them: the path up to its "
                         f"second slash, like \"/api\"")
    window = _whole(table, "window", DEFAULT_WINDOW, 1, MAX_RULE_WINDOW, where)
    hold = _whole(table, "for", 0, 0, MAX_FOR, where)
    # A rate is defined with no hits at all (a site gone silent is rate 0); a share or a latency
    # is not, so those need at least one hit in the window.
    min_hits = _whole(table, "min_hits", 0 if metric == RATE else 1, 0 if metric == RATE else 1, 2**31, where)
    bound, recover, falling = _bounds(table, metric, where)
    severity = table.get("severity", WARNING)
    if severity not in SEVERITIES:
        raise ValueError(f"{where} 'severity' must be \"{CRITICAL}\" or \"{WARNING}\"")
    return RuleSpec(name=name, metric=metric, window=window, bound=bound, recover=recover, falling=falling,
                    status=status, quantile=quantile, section=section, vhost=table.get("vhost"), hold=hold,
                    min_hits=min_hits, severity=severity)


def _bounds(table: dict[str, Any], metric: str, where: str) -> tuple[Fraction, Fraction, bool]:
    """(bound, recovery bound, falling) from exactly one of above / below and its recovery key."""
    if ("above" in table) == ("below" in table):
        raise ValueError(f"{where} give exactly one of 'above' and 'below'")
    falling = "below" in table
    if falling and metric != RATE:
        raise ValueError(f"{where} 'below' is for metric rate only (a traffic drop); use 'above'")
    key, other = ("below", "recover_above") if falling else ("above", "recover_below")
    wrong = "recover_below" if falling else "recover_above"
    if wrong in table:
        raise ValueError(f"{where} '{wrong}' does not go with '{key}'; use '{other}'")
    bound = _fraction(table, key, metric, where)
    recover = _fraction(table, other, metric, where) if other in table else bound
    if (recover > bound) if not falling else (recover < bound):
        side = "at or below 'above'" if not falling else "at or above 'below'"
        raise ValueError(f"{where} '{other}' must be {side}")
    return bound, recover, falling


def _fraction(table: dict[str, Any], key: str, metric: str, where: str) -> Fraction:
    value = table[key]
    unit = {RATE: "hits/s", STATUS_SHARE: "a share from 0 to 1 (0.05 is 5 %)", LATENCY: "seconds"}[metric]
    if not _number(value) or value < 0 or (metric == STATUS_SHARE and value > 1):
        raise ValueError(f"{where} '{key}' must be a number >= 0 in {unit}")
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def _whole(table: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{where} '{key}' must be a whole number from {lo} to {hi}")
    return value


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
