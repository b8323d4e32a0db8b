"""The teams' stored targets and the reps' display names (storage.teams), on in-memory SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage.db import make_engine, upgrade
from storage.models import CallRecord, Rep, Team
from storage.teams import RepInfo, StoredTargets, rep_directory, set_team_targets, team_targets

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


def test_team_targets_are_stored_read_and_cleared(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(Team(name="quiet"))  # a team without targets is not listed
        set_team_targets(session, "north", calls=120, talk_seconds=7200)
        set_team_targets(session, "south", effective_calls=30)
    with Session(engine) as session:
        assert team_targets(session) == {
            "north": StoredTargets(calls=120, talk_seconds=7200.0),
            "south": StoredTargets(effective_calls=30),
        }
    with Session(engine) as session, session.begin():
        set_team_targets(session, "north")  # every kind cleared
        with pytest.raises(ValueError, match="not negative"):
            set_team_targets(session, "south", calls=-1)
    with Session(engine) as session:
        assert list(team_targets(session)) == ["south"]


def call(uuid: str, rep: str, team: str, started: datetime) -> CallRecord:
    return CallRecord(
        uuid=uuid, seat="s", device_id="d", line="L1", rep=rep, team=team, direction="out",
        started_at=started, ended_at=started + timedelta(minutes=1), disposition="missed",
    )  # fmt: skip


def test_rep_directory_names_reps_and_finds_their_team(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        south = Team(name="south")
        session.add(south)
        session.flush()
        session.add_all(
            [
                Rep(name="alice", display_name="Alice Wang 王爱丽"),
                Rep(name="bob", display_name="   "),  # blank: the rep name is shown
                Rep(name="carol", display_name="Carol", team_id=south.id),
                call("a", "alice", "north", T0),
                call("c", "carol", "south-2", T0 - timedelta(days=3)),  # outside the window
            ]
        )
    with Session(engine) as session:
        found = rep_directory(session, ["alice", "bob", "carol", "dave", "alice"], T0, T0 + timedelta(days=1))
        assert session.scalars(select(Rep.name)).all()  # read only, nothing created
    assert found == {
        "alice": RepInfo("Alice Wang 王爱丽", "north"),  # the team of their calls in the window
        "bob": RepInfo("bob", ""),
        "carol": RepInfo("Carol", "south"),  # no calls in the window: the reps table's team
        "dave": RepInfo("dave", ""),  # unknown to the reps table
    }
    with Session(engine) as session:
        assert rep_directory(session, [], T0, T0 + timedelta(days=1)) == {}
