"""The telesales KPIs (storage.kpis): tables of figures and quotas, rounding, totals and ranking."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from agent.config import DailyTarget
from storage.kpis import RANK_KEYS, Kpis, Progress, kpis, percent, percent_text, ranking, team_total
from storage.report import ReportRow

QUOTA = DailyTarget(calls=80, talk_seconds=7200, effective_calls=30)


def row(key: str = "alice", **figures: Any) -> ReportRow:
    return ReportRow(key, **figures)


@pytest.mark.parametrize(
    ("figures", "quota", "days", "expected"),
    [
        # No call at all: zeros, no rates (not 0 %), nothing met against a target, nothing without one.
        (
            {},
            QUOTA,
            1,
            {"calls": (0, 80, Fraction(0), False), "talk": (0, 7200, Fraction(0), False),
             "effective": (0, 30, Fraction(0), False), "connect_rate": None, "avg_talk": None},
        ),
        (
            {},
            None,
            1,
            {"calls": (0, None, None, None), "talk": (0, None, None, None),
             "effective": (0, None, None, None), "connect_rate": None, "avg_talk": None},
        ),
        # Calls in only: a talk time and an average, but no connect rate (no call out).
        (
            {"calls": 4, "answered": 3, "missed": 1, "talk_seconds": 300.0, "effective": 2, "inbound": 4},
            None,
            1,
            {"calls": (4, None, None, None), "talk": (300.0, None, None, None),
             "effective": (2, None, None, None), "connect_rate": None, "avg_talk": 100.0},
        ),
        # Calls out: the connect rate is connects / calls out (not / all calls, not / answered).
        (
            {"calls": 10, "answered": 5, "talk_seconds": 3600.0, "effective": 3, "inbound": 2,
             "outbound": 8, "outbound_connected": 3},
            QUOTA,
            1,
            {"calls": (10, 80, Fraction(1, 8), False), "talk": (3600.0, 7200, Fraction(1, 2), False),
             "effective": (3, 30, Fraction(1, 10), False), "connect_rate": Fraction(3, 8), "avg_talk": 720.0},
        ),
        # Over the targets: ratios past 1, met.
        (
            {"calls": 100, "answered": 60, "talk_seconds": 9000.0, "effective": 30, "outbound": 100,
             "outbound_connected": 60},
            QUOTA,
            1,
            {"calls": (100, 80, Fraction(5, 4), True), "talk": (9000.0, 7200, Fraction(5, 4), True),
             "effective": (30, 30, Fraction(1), True), "connect_rate": Fraction(3, 5), "avg_talk": 150.0},
        ),
        # Several days worked: the daily quota times the days.
        (
            {"calls": 120, "answered": 60, "talk_seconds": 7200.0, "effective": 20, "outbound": 120,
             "outbound_connected": 60},
            QUOTA,
            3,
            {"calls": (120, 240, Fraction(1, 2), False), "talk": (7200.0, 21600, Fraction(1, 3), False),
             "effective": (20, 90, Fraction(2, 9), False), "connect_rate": Fraction(1, 2), "avg_talk": 120.0},
        ),
        # A quota with only some kinds set: the others have no target.
        (
            {"calls": 5, "answered": 5, "talk_seconds": 50.0},
            DailyTarget(calls=5),
            1,
            {"calls": (5, 5, Fraction(1), True), "talk": (50.0, None, None, None),
             "effective": (0, None, None, None), "connect_rate": None, "avg_talk": 10.0},
        ),
        # A target of zero is met by anything, also by nothing.
        (
            {},
            DailyTarget(calls=0, effective_calls=0),
            1,
            {"calls": (0, 0, Fraction(1), True), "talk": (0, None, None, None),
             "effective": (0, 0, Fraction(1), True), "connect_rate": None, "avg_talk": None},
        ),
    ],
)  # fmt: skip
def test_kpis_of_figures_against_a_quota(
    figures: dict[str, Any], quota: DailyTarget | None, days: int, expected: dict[str, Any]
) -> None:
    result = kpis(row(**figures), quota, days=days)
    for name in ("calls", "talk", "effective"):
        progress: Progress = getattr(result, name)
        assert (progress.value, progress.target, progress.ratio, progress.met) == expected[name], name
    assert result.connect_rate == expected["connect_rate"]
    assert result.avg_talk_seconds == expected["avg_talk"]
    assert result.inbound == figures.get("inbound", 0)
    assert result.outbound == figures.get("outbound", 0)
    assert result.connects == figures.get("outbound_connected", 0)
    assert result.has_targets == any(expected[n][1] is not None for n in ("calls", "talk", "effective"))
    assert result.days == days


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (Fraction(1, 3), 1, "33.3%"),
        (Fraction(2, 3), 1, "66.7%"),
        (Fraction(1, 8), 1, "12.5%"),
        (Fraction(1, 8), 0, "13%"),  # half up, where format(0.125, ".0%") gives 12%
        (Fraction(3, 8), 0, "38%"),
        (Fraction(1, 16), 1, "6.3%"),  # half up, where round(6.25, 1) gives 6.2
        (Fraction(5, 200), 0, "3%"),  # 2.5 %
        (Fraction(1, 1000), 1, "0.1%"),
        (Fraction(1, 2001), 1, "0.0%"),
        (Fraction(0), 1, "0.0%"),
        (Fraction(1), 1, "100.0%"),
        (Fraction(1), 0, "100%"),
        (Fraction(5, 4), 0, "125%"),
        (0.125, 0, "13%"),  # a float is taken at its exact value, 0.125 exactly
        (0.1 + 0.2, 1, "30.0%"),
        (None, 1, ""),  # no rate: empty, never "0%"
    ],
)
def test_rates_round_half_up_from_the_exact_fraction(
    value: Fraction | float | None, digits: int, text: str
) -> None:
    assert percent_text(value, digits) == text


def test_percent_is_a_decimal_and_progress_a_whole_percent() -> None:
    assert percent(Fraction(2, 3)) == Decimal("66.7")
    assert percent(None) is None
    assert Progress(1, 8).percent == 13
    assert Progress(3, 8).percent == 38
    assert Progress(100, 80).percent == 125
    assert Progress(100, 80).share == 1.0  # a bar is never longer than full
    assert Progress(20, 80).share == 0.25
    assert Progress(20).percent is None
    assert Progress(20).share == 0.0


def test_a_negative_number_of_days_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        kpis(row(), QUOTA, days=-1)


def test_team_total_adds_figures_and_the_targets_that_exist() -> None:
    members = [
        kpis(row("a", calls=10, answered=5, talk_seconds=600.0, outbound=8, outbound_connected=4), QUOTA),
        kpis(row("b", calls=30, answered=20, talk_seconds=1800.0, outbound=20, outbound_connected=10), QUOTA),
        kpis(row("c", calls=5, inbound=5), None),  # no targets: adds figures, not targets
    ]
    total = team_total("team", members)
    assert (total.calls.value, total.calls.target) == (45, 160)
    assert (total.talk.value, total.talk.target) == (2400.0, 14400)
    assert total.connect_rate == Fraction(14, 28)
    assert total.inbound == 5
    assert total.avg_talk_seconds == 2400.0 / 25
    nobody = team_total("team", [])
    assert (nobody.calls.value, nobody.calls.target, nobody.connect_rate, nobody.avg_talk_seconds) == (
        0,
        None,
        None,
        None,
    )
    untargeted = team_total("team", [kpis(row("c", calls=5))])
    assert not untargeted.has_targets


ROWS = [
    row("bob", calls=3, answered=3, talk_seconds=100.0, effective=1, outbound=3, outbound_connected=3),
    row("amy", calls=5, answered=2, talk_seconds=100.0, effective=2, outbound=5, outbound_connected=2),
    row("cid", calls=1, answered=1, talk_seconds=300.0, effective=1, outbound=0),
    row("abe", calls=5, answered=4, talk_seconds=100.0, effective=0, outbound=4, outbound_connected=4),
]


@pytest.mark.parametrize(
    ("by", "order"),
    [
        ("talk_seconds", ["cid", "abe", "amy", "bob"]),
        ("calls", ["abe", "amy", "bob", "cid"]),
        ("effective", ["amy", "cid", "bob", "abe"]),
        ("connects", ["abe", "bob", "amy", "cid"]),
        # connect rate: bob 3/3 and abe 4/4 tie at 100 % (talk, then calls, then name); cid has none.
        ("connect_rate", ["abe", "bob", "amy", "cid"]),
    ],
)
def test_ranking_by_each_key_breaks_ties_by_talk_calls_and_name(by: str, order: list[str]) -> None:
    assert [r.key for r in ranking(ROWS, by, of=kpis)] == order


def test_ranking_knows_its_keys() -> None:
    assert set(RANK_KEYS) == {"talk_seconds", "calls", "effective", "connects", "connect_rate"}
    with pytest.raises(ValueError, match="cannot rank by"):
        ranking(ROWS, "mood", of=kpis)
    lines: list[tuple[str, Kpis]] = [(r.key, kpis(r)) for r in ROWS]
    assert [name for name, _ in ranking(lines, of=lambda line: line[1])] == ["cid", "abe", "amy", "bob"]
