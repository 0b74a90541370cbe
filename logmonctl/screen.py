"""The one module that talks to curses: set the terminal up, draw layout lines, read keys, follow resizes,
and always give the terminal back.
"""
from __future__ import annotations

import curses
import locale
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from logmonctl.layout import Line

# Colour pairs (foreground, background; -1 is the terminal's default) and extra attributes per style.
COLORS = {
    "normal": (-1, -1, 0),
    "title": (curses.COLOR_BLACK, curses.COLOR_CYAN, 0),
    "head": (-1, -1, curses.A_BOLD),
    "alert": (curses.COLOR_WHITE, curses.COLOR_RED, curses.A_BOLD),
    "ok": (curses.COLOR_GREEN, -1, 0),
    "warn": (curses.COLOR_YELLOW, -1, curses.A_BOLD),
    "dim": (-1, -1, curses.A_DIM),
    "bar": (curses.COLOR_CYAN, -1, 0),
    "threshold": (curses.COLOR_RED, -1, curses.A_BOLD),
}
# Without colours, attributes alone tell the styles apart.
MONO = {"normal": 0, "title": curses.A_REVERSE, "head": curses.A_BOLD, "alert": curses.A_REVERSE | curses.A_BOLD,
        "ok": 0, "warn": curses.A_BOLD, "dim": curses.A_DIM, "bar": 0, "threshold": curses.A_BOLD}
# Milliseconds curses waits after Esc for the rest of an escape sequence: Esc clears the filter,
# and its default second would feel like a hang; a terminal sends a sequence's bytes together.
ESC_DELAY_MS = 25
# The layout's glyphs for terminals whose locale cannot encode them.
ASCII = str.maketrans("▁▂▃▄▅▆▇█─│┤└▼▏…·–", "...:::##-|++v|.*-")


class Screen:
    """A curses screen drawn from Lines (see layout.py)."""

    def __init__(self, window: curses.window) -> None:
        self.window = window
        self.attrs = self._attributes()
        self.ascii = "utf" not in window.encoding.lower()  # the locale curses writes in

    @staticmethod
    def _attributes() -> dict[str, int]:
        if not curses.has_colors():
            return dict(MONO)
        curses.start_color()
        try:
            curses.use_default_colors()
        except curses.error:
            return dict(MONO)  # the pairs above need the terminal's own background (-1)
        attrs = {}
        for number, (style, (fg, bg, extra)) in enumerate(COLORS.items(), start=1):
            curses.init_pair(number, fg, bg)
            attrs[style] = curses.color_pair(number) | extra
        return attrs

    def size(self) -> tuple[int, int]:
        """(width, height) as curses knows it."""
        height, width = self.window.getmaxyx()
        return width, height

    def resize(self) -> None:
        """Take the terminal's new size (after SIGWINCH): curses then queues KEY_RESIZE.

        curses refuses a zero size, which a terminal may report: such a screen is drawn as 1x1.
        """
        cols, rows = os.get_terminal_size(sys.__stdout__.fileno())
        curses.resizeterm(max(rows, 1), max(cols, 1))

    def draw(self, lines: list[Line]) -> None:
        """Replace the screen with `lines`, never writing the bottom-right cell."""
        width, height = self.size()
        self.window.erase()
        for y, line in enumerate(lines[:height]):
            x = 0
            for text, style in line:
                room = width - x - (1 if y == height - 1 else 0)
                if room <= 0:
                    break
                self.window.addnstr(y, x, text.translate(ASCII) if self.ascii else text, room, self.attrs[style])
                x += min(len(text), room)
        self.window.refresh()

    def keys(self) -> Iterator[int]:
        """The keys typed since the last call (never blocks)."""
        while (key := self.window.getch()) != -1:
            yield key


@contextmanager
def opened() -> Iterator[Screen]:
    """A full-screen session; on leaving, by any exception too, the terminal is as it was."""
    locale.setlocale(locale.LC_ALL, "")
    window = curses.initscr()
    try:
        curses.noecho()
        curses.cbreak()
        window.keypad(True)
        window.nodelay(True)
        curses.set_escdelay(ESC_DELAY_MS)
        try:
            curses.curs_set(0)
        except curses.error:
            pass  # a terminal that cannot hide the cursor
        yield Screen(window)
    finally:
        window.keypad(False)
        curses.nocbreak()
        curses.echo()
        curses.endwin()
