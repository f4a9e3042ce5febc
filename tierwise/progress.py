"""A dependency-free progress bar on stderr for long CLI runs.

On a terminal it redraws one line in place; anywhere else (a log file, CI, a pipe) it
writes a plain line now and then, so logs hold readable lines instead of `\\r` frames.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

TERMINAL_REDRAW_S = 0.1
LOG_LINE_EVERY_S = 10.0


class Progress:
    """Redraws at most ten times a second on a terminal, else one line per ten seconds;
    prints a final line on close."""

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self._interactive = _is_terminal(self.stream)
        self._every = TERMINAL_REDRAW_S if self._interactive else LOG_LINE_EVERY_S
        self._started = time.monotonic()
        self._last_draw = self._started if not self._interactive else 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_draw >= self._every:
            self._last_draw = now
            self._draw(end="\r" if self._interactive else "\n")

    def close(self) -> None:
        self._draw(end="\n")

    def _draw(self, end: str) -> None:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            share = min(1.0, self.done / self.total)
            bar = "#" * int(share * 30)
            text = f"{self.label} [{bar:<30}] {self.done}/{self.total} {rate:,.0f}/s"
        else:
            text = f"{self.label} {self.done} {rate:,.0f}/s"
        self.stream.write(text + end)
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
