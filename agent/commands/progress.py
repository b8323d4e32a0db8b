"""Progress of long CLI work: a bar on a terminal, plain lines in a log or a pipe.

Import, export, purge, a long report and a sync catch-up can run for minutes. On a terminal
the IT person sees click's bar; where standard error is a file, a pipe, cron's mail or
journald, a bar would be one line of carriage returns (or nothing), so :class:`Progress`
writes a plain line instead at every tenth of the work and at least every
``interval`` seconds, and one line when the work ends::

    importing leads.csv: 20,000/100,000 rows (20%)
    importing leads.csv: 100,000/100,000 rows (100%) in 41.2 s

Everything goes to standard error, so standard output stays the command's result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import click

__all__ = ["Progress"]


class Progress:
    """Counts work done toward ``total`` (in ``unit``) and shows it; a context manager.

    :param total: how much work there is (0 or less: unknown, the lines say only what was done).
    :param stream: where to show it (standard error by default); a terminal gets a bar.
    :param interval: the most seconds between two plain lines.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "rows",
        stream: TextIO | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.total = max(int(total), 0)
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._clock = clock
        self._terminal = self._is_terminal() if terminal is None else terminal
        self._bar: Any = None
        self._started = 0.0
        self._last_line = 0.0
        self._last_tenth = 0

    def _is_terminal(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (AttributeError, ValueError):  # a closed or odd stream
            return False

    def __enter__(self) -> Progress:
        self._started = self._last_line = self._clock()
        return self

    def at(self, done: int, total: int) -> None:
        """``done`` of ``total`` is done (for work that learns its size once it has started)."""
        if self._bar is None:
            self.total = max(int(total), 0)
        self.update(done - self.done)

    def update(self, amount: int) -> None:
        """``amount`` more is done."""
        if amount <= 0:
            return
        self.done += amount
        if self._terminal:
            if self._bar is None:  # drawn from the first step, when the size is known
                self._bar = click.progressbar(
                    length=max(self.total, 1), label=self.label, file=self._stream, show_pos=True
                )
                self._bar.__enter__()
            self._bar.update(amount)
            return
        now = self._clock()
        tenth = self.done * 10 // self.total if self.total else 0
        if tenth > self._last_tenth or now - self._last_line >= self._interval:
            self._last_tenth = max(tenth, self._last_tenth)
            self._last_line = now
            if not self.total or self.done < self.total:
                self._line()

    def _line(self, suffix: str = "") -> None:
        if self.total:
            share = min(self.done * 100 // self.total, 100)
            text = f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({share}%){suffix}"
        else:
            text = f"{self.label}: {self.done:,} {self.unit}{suffix}"
        click.echo(text, file=self._stream)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, trace)
        if self._terminal:
            return
        if kind is None and not self.done:
            return  # nothing was done: nothing to say
        elapsed = self._clock() - self._started
        self._line(f" in {elapsed:.1f} s" if kind is None else " (stopped)")
