"""Progress a person can watch, for every long loop of the project (one helper, used everywhere).

On a terminal (stderr is a TTY) a tqdm bar on stderr, redrawn in place. Anywhere else (CI
logs, `ray job logs`, a pipe, a file) a redrawn bar would leave carriage returns and hundreds
of half lines, so the same calls give plain lines instead, through logging (the CLI sends
them to stdout): at most one every LINE_EVERY_S seconds while the loop runs, and one when it
ends. A loop that prints its own line per step (the PPO iterations) asks for no plain lines.

    with Progress("target epochs", total=30, unit="epoch") as bar:
        for epoch in range(30):
            ...
            bar.update(loss=f"{loss:.4f}")

    for row in track(rows, "compare rows"):   # the same, around an iterable
        ...
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator

log = logging.getLogger(__name__)
LINE_EVERY_S = 10.0  # a plain line at most this often: a 70-minute run logs ~400 lines, not 40,000


def on_terminal() -> bool:
    """Whether bars can be drawn: stderr (where tqdm draws) is an interactive terminal."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


class Progress:
    """A bar on a terminal, throttled plain lines elsewhere.

    `total`: steps expected (None: unknown, then no percentage or estimate); `initial`: steps
    already done (a resumed loop); `lines`: whether to log plain lines off a terminal."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", initial: int = 0,
                 lines: bool = True):
        self.desc, self.total, self.unit, self.lines = desc, total, unit, lines
        self.n, self.info = initial, ""
        self._started = self._last_line = time.monotonic()
        self._initial = initial
        self._bar = None
        if on_terminal():
            from tqdm import tqdm

            # leave=None: a top-level bar stays on screen, a nested one (a run inside a
            # comparison row) is cleared when it closes.
            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", initial=initial, leave=None,
                             file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1, **info) -> None:
        """Advance by `n` steps; `info` (name=value) is shown beside the count."""
        self.n += n
        if info:
            self.info = ", ".join(f"{k} {v}" for k, v in info.items())
        if self._bar is not None:
            if info:
                self._bar.set_postfix_str(self.info, refresh=False)
            self._bar.update(n)
        elif self.lines and time.monotonic() - self._last_line >= LINE_EVERY_S:
            self._line()

    def printer(self, say: Callable[[str], None]) -> Callable[[str], None]:
        """`say` (print, or a caller's progress callback) made safe to call while the bar is
        drawn: the bar is cleared, the line written, the bar redrawn below it."""
        if self._bar is None:
            return say

        def write(line: str) -> None:
            from tqdm import tqdm

            with tqdm.external_write_mode(file=sys.stdout):
                say(line)

        return write

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.lines:
            self._line(final=True)
        self.lines = False  # closing twice logs once

    def _line(self, final: bool = False) -> None:
        self._last_line = now = time.monotonic()
        elapsed = now - self._started
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {count} {self.unit}"]
        if self.total and not final and self.n > self._initial:
            rate = (self.n - self._initial) / max(elapsed, 1e-9)
            parts.append(f"{100 * self.n / self.total:.0f}%, {_clock(elapsed)} elapsed, "
                         f"~{_clock((self.total - self.n) / rate)} left")
        else:
            parts.append(f"{'done in ' if final else ''}{_clock(elapsed)}")
        log.info(" | ".join(parts + ([self.info] if self.info else [])))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable, desc: str, total: int | None = None, unit: str = "it", **kwargs) -> Iterator:
    """Iterate `items` with a Progress (total: len(items) when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(desc, total=total, unit=unit, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
