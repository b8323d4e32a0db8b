"""Coverage (打透) on SQLite: per rep, per team, per list and team, and the 过数据 warnings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from coverage_factories import EXPECTED, NOW, seed_coverage
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.commands.leads import leads
from storage.coverage import Coverage, ListCoverage, coverage, coverage_by_list, coverage_report, total_of
from storage.db import make_engine, upgrade
from storage.leads import LeadError


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    seed_coverage(eng)
    yield eng
    eng.dispose()


def test_each_rep_has_their_figures_and_the_reps_who_passed_leads_on_undialed(engine: Engine) -> None:
    with Session(engine) as session:
        rows = coverage(session, "spring", untouched_days=3, now=NOW)
    assert {row.rep: row.to_dict() for row in rows} == EXPECTED
    assert [row.rep for row in rows] == ["amy", "bob", "cai"]


def test_a_team_lead_sees_their_teams_reps_and_warnings_only(engine: Engine) -> None:
    with Session(engine) as session:
        report = coverage_report(session, "spring", untouched_days=3, now=NOW, team="north")
    assert [row.rep for row in report.rows] == ["amy", "bob"]
    assert [(w.from_rep, w.action, w.customer_name, w.to_rep) for w in report.warnings] == [
        ("amy", "recall", "客户5", None)
    ]
    assert report.total.assigned == 4
    assert report.total.passed_undialed == 1


def test_the_report_totals_and_lists_the_warnings_newest_first(engine: Engine) -> None:
    with Session(engine) as session:
        report = coverage_report(session, "spring", untouched_days=3, now=NOW)
    assert [(w.from_rep, w.action, w.to_rep) for w in report.warnings] == [
        ("amy", "recall", None),
        ("cai", "move", "amy"),
    ]
    assert report.warnings[0].to_dict()["at"] == "2026-03-08T12:00:00+00:00"
    assert report.total.to_dict() == {
        "rep": "", "assigned": 5, "dialed": 2, "reached": 1, "attempts": 3, "untouched": 2,
        "team": None, "attempts_per_lead": 0.6, "closed": 1, "passed_undialed": 2,
        "dispositions": {"deal": 1, "no_answer": 2},
    }  # fmt: skip
    assert report.codes == ["deal", "no_answer"]


def test_untouched_counts_leads_held_longer_than_the_days_without_a_dial(engine: Engine) -> None:
    with Session(engine) as session:
        fresh = {row.rep: row.untouched for row in coverage(session, "spring", untouched_days=0.5, now=NOW)}
        old = {row.rep: row.untouched for row in coverage(session, "spring", untouched_days=30, now=NOW)}
    assert fresh == {"amy": 1, "bob": 1, "cai": 1}
    assert old == {"amy": 0, "bob": 0, "cai": 0}


def test_per_list_and_team_for_the_metrics(engine: Engine) -> None:
    with Session(engine) as session:
        found = coverage_by_list(session, untouched_days=3, now=NOW)
    assert found == [
        ListCoverage("spring", "north", 4, 2, 1, 3, 1, 1),
        ListCoverage("spring", "south", 1, 0, 0, 0, 1, 1),
    ]


def test_an_unknown_list_is_an_error(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(LeadError, match="no lead list 'autumn'"):
        coverage(session, "autumn")


def test_a_total_of_nothing_is_zero() -> None:
    total = total_of([])
    assert (total.assigned, total.attempts_per_lead, total.dialed_share) == (0, None, None)
    assert Coverage("x", 4, 1, 0, 6, 0).attempts_per_lead == 1.5


def test_the_command_prints_the_new_fields_after_the_old_ones(tmp_path: Path) -> None:
    data = tmp_path / "centre"
    data.mkdir()
    eng = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    upgrade(eng)
    seed_coverage(eng)
    eng.dispose()
    result = CliRunner().invoke(leads, ["coverage", "--list", "spring", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    first = json.loads(result.output.splitlines()[0])
    assert list(first)[:6] == ["rep", "assigned", "dialed", "reached", "attempts", "untouched"]
    assert first["dispositions"] == {"deal": 1, "no_answer": 2}
    table = CliRunner().invoke(leads, ["coverage", "--list", "spring", "--data-dir", str(data)])
    assert table.output.splitlines()[0].split() == [
        "REP", "ASSIGNED", "DIALED", "REACHED", "ATTEMPTS", "UNTOUCHED", "PER_LEAD", "PASSED_UNDIALED",
    ]  # fmt: skip
