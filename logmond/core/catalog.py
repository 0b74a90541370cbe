"""Every format logmond knows, and choosing one: the `format` setting compiled, or `auto`.

`auto` never lies: it settles only on a format that parses lines of the sample, and when no
preset fits it keeps looking at later lines (monitor.py) rather than guess.
"""
from __future__ import annotations

from functools import lru_cache

from logmond.core.csvformat import CsvFormat
from logmond.core.formats import LogFormat
from logmond.core.jsonformat import JSON_FORMATS
from logmond.core.parse import CSV_HEADER, R_BINARY, Record
from logmond.core.textformat import PRESETS, combined_plus, compile_text, detect_extras, preset

AUTO = "auto"
# The presets by name, in the order auto tries them (the first of equally good ones wins).
# vcombined before combined: a vhost_combined line also reads as combined, with `- -` for its
# user, so the more specific one must win the tie.
PRESET_NAMES = ("csv", "vcombined", "combined", "common", "json", "caddy", "traefik", "clf")


@lru_cache(maxsize=64)
def compile_format(setting: str) -> LogFormat:
    """The format a `format` setting names: a preset or an nginx / Apache format string.
    ValueError with one line naming the problem if it cannot work."""
    if setting == "csv":
        return CsvFormat()
    if setting in PRESETS:
        return preset(setting)
    if setting in JSON_FORMATS:
        return JSON_FORMATS[setting]()
    if "$" in setting or "%" in setting:
        return compile_text(setting)
    raise ValueError(f"is not a preset ({', '.join(PRESET_NAMES)}) nor an nginx or Apache format string")


def problem(setting: str) -> str | None:
    """Why a `format` setting cannot work, or None (for the settings' validation)."""
    if setting == AUTO:
        return None
    try:
        compile_format(setting)
    except ValueError as exc:
        return str(exc)
    return None


def detect(lines: list[str]) -> LogFormat | None:
    """The preset that parses most of these sample lines (decoded, not blank), or combined with
    extra fields if that is what they consistently are; None if nothing parses any of them."""
    best, best_ok = None, 0
    for name in PRESET_NAMES[:-1]:
        fmt = compile_format(name)
        ok = sum(1 for line in lines if line != fmt.header and isinstance(fmt.parse(line), Record))
        if ok > best_ok:
            best, best_ok = fmt, ok
    if best is None and any(line == CSV_HEADER for line in lines):
        return compile_format("csv")
    if best_ok == len(lines) and best is not None:
        return best
    extras = detect_extras(lines)
    if extras is not None:
        ok = sum(1 for line in lines if isinstance(extras.parse(line), Record))
        if ok > best_ok:
            return extras
    return best


def tried() -> str:
    """The formats auto tries, for the message that none fits."""
    return ", ".join(PRESET_NAMES[:-1]) + ", combined with extra fields"


def restore(described: dict[str, object]) -> LogFormat:
    """The format a `describe()` stands for (a checkpoint keeps it, so that an auto-detected
    format, combined with extras included, is the same after a restart); ValueError if none."""
    extra, spec = described.get("extra"), described.get("format_spec")
    if isinstance(extra, str):
        return combined_plus(extra.split())
    if isinstance(spec, str):
        return compile_format(spec)
    return compile_format(str(described.get("format")))


def parse_line(line: str, setting: str) -> Record | str:
    """One decoded line in the format a setting names, as the slow path reads it."""
    if "\x00" in line:
        return R_BINARY
    return compile_format(setting).parse(line)
