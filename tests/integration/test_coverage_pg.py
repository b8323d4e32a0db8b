"""Coverage (打透) on the centre's PostgreSQL: the same list, the same figures as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from coverage_factories import EXPECTED, NOW, seed_coverage
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from storage.coverage import ListCoverage, coverage, coverage_by_list, coverage_report
from storage.db import make_engine, upgrade


@pytest.fixture
def engine(pg_database_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_database_url)
    upgrade(eng)
    seed_coverage(eng)
    yield eng
    eng.dispose()


def test_per_rep_figures_match_sqlite(engine: Engine) -> None:
    with Session(engine) as session:
        rows = coverage(session, "spring", untouched_days=3, now=NOW)
    assert {row.rep: row.to_dict() for row in rows} == EXPECTED


def test_a_team_and_its_warnings(engine: Engine) -> None:
    with Session(engine) as session:
        report = coverage_report(session, "spring", untouched_days=3, now=NOW, team="north")
    assert [row.rep for row in report.rows] == ["amy", "bob"]
    assert [(w.from_rep, w.action) for w in report.warnings] == [("amy", "recall")]


def test_per_list_and_team(engine: Engine) -> None:
    with Session(engine) as session:
        assert coverage_by_list(session, untouched_days=3, now=NOW) == [
            ListCoverage("spring", "north", 4, 2, 1, 3, 1, 1),
            ListCoverage("spring", "south", 1, 0, 0, 0, 1, 1),
        ]
