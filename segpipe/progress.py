"""Progress a user can follow: a bar on a terminal, one log line per interval anywhere else.

On a terminal (stderr is a TTY) :class:`Progress` draws a tqdm bar with the rate, the ETA and
what the caller reports (a loss, a score). Elsewhere (Prefect logs, a file, CI) it logs one
line every ``interval`` seconds and one at the end, through the ``segpipe`` loggers the flows
forward to Prefect, so a long step never goes quiet for minutes.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

from tqdm.auto import tqdm

log = logging.getLogger("segpipe.progress")

#: Seconds between two log lines when there is no terminal.
INTERVAL = 30.0
#: The bar's width and the terminal's height where the terminal does not say its size (a
#: pseudo-terminal whose size was never set).
COLUMNS, ROWS = 100, 24


class Progress:
    """Progress of ``total`` units of work.

    Args:
        total: Units to do (the bar's length); ``done`` of them may be done already.
        desc: What is being done (``train``, ``predict A9_p9d``).
        unit: What a unit is (``it``, ``row``).
        done: Units already done (a resumed run).
        enabled: Show anything at all.
        interval: Seconds between log lines without a terminal.
        terminal: Draw a bar (default: when stderr is a terminal).
        time_left: Seconds left of a time budget that stops the work before ``total`` (training's
            ``--minutes``); the ETA is then the sooner of the two, said to be the budget's.
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "it",
        done: int = 0,
        enabled: bool = True,
        interval: float = INTERVAL,
        terminal: bool | None = None,
        time_left: Callable[[], float] | None = None,
    ):
        self.total, self.desc, self.unit, self.done = total, desc, unit, done
        self.time_left = time_left
        self.enabled, self.interval = enabled, interval
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.postfix: dict[str, str] = {}
        self._start = time.monotonic()
        self._start_done = done
        self._last_line = self._start
        self._bar = None
        if enabled and self.terminal:
            self._bar = _Bar(total=total, initial=done, desc=desc, unit=unit, budget_stop=self._budget_stop, **bar_size())

    def update(self, n: int = 1, **postfix: float | str) -> None:
        """``n`` more units done; ``postfix`` values are shown beside the bar (or in the line)."""
        self.done += n
        self.postfix.update({k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in postfix.items()})
        if not self.enabled:
            return
        if self._bar is not None:
            stop = self._budget_stop()
            self._bar.set_postfix({**self.postfix, **({"ETA": "time budget"} if stop is not None else {})}, refresh=False)
            self._bar.update(n)
        elif time.monotonic() - self._last_line >= self.interval:
            self._line()

    def close(self) -> None:
        """Finish the bar, or log the last line."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self._line()

    def line(self) -> str:
        """``desc: done/total unit (percent), rate, ETA, postfix``."""
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%)"]
        if rate > 0:
            parts.append(f"{rate:.3g} {self.unit}/s")
            stop = self._budget_stop()
            if stop is not None:
                parts.append(f"ETA {_duration(stop)} (time budget)")
            elif self.done < self.total:
                parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def _budget_stop(self) -> float | None:
        """Seconds until the time budget stops the work, where it comes before the work's end."""
        if self.time_left is None or self.done >= self.total:
            return None
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        left = max(0.0, self.time_left())
        return left if rate <= 0 or left < (self.total - self.done) / rate else None

    def _line(self) -> None:
        self._last_line = time.monotonic()
        log.info("%s", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Bar(tqdm):
    """tqdm's bar whose ETA is the time budget's end where the budget stops the work first (tqdm's
    own counts every planned unit)."""

    FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"  # tqdm's own layout

    def __init__(self, *args, budget_stop: Callable[[], float | None], **kwargs):
        self._stop = budget_stop  # before tqdm's first draw
        super().__init__(*args, bar_format=self.FORMAT, **kwargs)

    @property
    def format_dict(self) -> dict:
        values = super().format_dict
        stop = self._stop()
        return values if stop is None else {**values, "remaining": self.format_interval(stop)}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def bar_size() -> dict:
    """tqdm's size arguments: the terminal's, followed as it changes, where stderr is a terminal
    that says its size; else a fixed one (a pseudo-terminal whose size was never set reports
    0 x 0, which tqdm draws nothing in)."""
    return {"dynamic_ncols": True} if _columns() else {"ncols": COLUMNS, "nrows": ROWS}


def _columns() -> int:
    """The width stderr's terminal reports; 0 where it reports none."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no stderr, or one without a file (a worker's capture)
        return 0
