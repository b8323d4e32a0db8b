"""Progress of long CLI work: plain lines where there is no terminal, a bar on one."""

from __future__ import annotations

import io
import os
import select

import pytest

from agent.commands.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_every_tenth_and_one_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("importing leads.csv", 100_000, stream=out, clock=clock) as bar:
        for _ in range(100):
            bar.update(1000)
        clock.now += 41.25
    lines = out.getvalue().splitlines()
    assert lines[0] == "importing leads.csv: 10,000/100,000 rows (10%)"
    assert lines[8] == "importing leads.csv: 90,000/100,000 rows (90%)"
    assert lines[9:] == ["importing leads.csv: 100,000/100,000 rows (100%) in 41.2 s"]


def test_a_slow_stretch_still_says_how_far_it_is() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("catching up", 1000, unit="rows", stream=out, clock=clock, interval=5.0) as bar:
        bar.update(3)
        clock.now += 5.0
        bar.update(3)  # 5 s since the last line: one more, though no tenth was passed
        clock.now += 1.0
        bar.update(3)
    assert out.getvalue().splitlines() == [
        "catching up: 6/1,000 rows (0%)",
        "catching up: 9/1,000 rows (0%) in 6.0 s",
    ]


def test_work_of_unknown_size_and_work_stopped_by_an_error() -> None:
    out, clock = io.StringIO(), Clock()

    def work() -> None:
        with Progress("deleting recordings", 0, unit="recordings", stream=out, clock=clock) as bar:
            bar.update(7)
            raise RuntimeError("store down")

    with pytest.raises(RuntimeError, match="store down"):
        work()
    assert out.getvalue().splitlines() == ["deleting recordings: 7 recordings (stopped)"]


def test_a_terminal_gets_a_bar_not_lines() -> None:
    main, seat = os.openpty()  # a real pseudo-terminal, as an IT person's shell has
    terminal = os.fdopen(seat, "w", encoding="utf-8")
    try:
        with Progress("exporting customers.xlsx", 50, unit="customers", stream=terminal) as bar:
            for _ in range(5):
                bar.update(10)
        terminal.flush()
        shown = b""
        while select.select([main], [], [], 0.2)[0]:
            shown += os.read(main, 65536)
    finally:
        terminal.close()
        os.close(main)
    text = shown.decode()
    assert "exporting customers.xlsx" in text
    assert "50/50" in text  # click's bar, with the position
    assert "\r" in text or "\x1b" in text  # redrawn in place
    assert "(100%) in" not in text  # not the plain line


def test_work_that_learns_its_size_late_and_work_with_nothing_to_do() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("deleting recordings", 0, unit="recordings", stream=out, clock=clock) as bar:
        bar.at(500, 1000)
        bar.at(1000, 1000)
    assert out.getvalue().splitlines() == [
        "deleting recordings: 500/1,000 recordings (50%)",
        "deleting recordings: 1,000/1,000 recordings (100%) in 0.0 s",
    ]
    quiet = io.StringIO()
    with Progress("deleting recordings", 0, unit="recordings", stream=quiet, clock=clock):
        pass
    assert quiet.getvalue() == ""
