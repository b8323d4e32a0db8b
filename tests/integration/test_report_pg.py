"""``cti-agent report`` on PostgreSQL gives exactly what it gives on SQLite for the same calls."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.commands.report import report
from agent.events import Call, Direction, Disposition
from storage.db import make_engine, upgrade
from storage.report import GROUPINGS, call_report, days_worked
from storage.repository import upsert_call
from storage.teams import rep_directory, set_team_targets

pytestmark = pytest.mark.postgres

ZONES = [ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("UTC")]
START = datetime(2026, 10, 30, tzinfo=UTC)  # spans New York's clocks going back on 1 November


def random_calls(count: int, seed: int = 5) -> list[Call]:
    rng = random.Random(seed)
    calls = []
    for n in range(count):
        started = START + timedelta(seconds=rng.randrange(0, 4 * 86400))
        disposition = rng.choice(list(Disposition))
        answered = disposition is Disposition.ANSWERED
        talk = round(rng.lognormvariate(4.0, 1.0), 3) if answered else None
        ended = rng.random() > 0.05
        calls.append(
            Call(
                uuid=f"call-{n}",
                seat=f"seat-{n % 3}",
                device_id="sim",
                line="L1",
                rep=rng.choice(["alice", "bob", "carol", "dave"]),
                team=rng.choice(["north", "south"]),
                direction=rng.choice(list(Direction)),
                started_at=started,
                answered_at=started + timedelta(seconds=5) if answered else None,
                ended_at=started + timedelta(seconds=5 + (talk or 0)) if ended else None,
                ring_seconds=5.0,
                talk_seconds=talk if ended else None,
                disposition=disposition if ended else None,
            )
        )
    return calls


def fill(engine: Engine, calls: list[Call]) -> None:
    upgrade(engine)
    with Session(engine) as session, session.begin():
        for c in calls:
            upsert_call(session, c)


def test_postgres_and_sqlite_reports_agree(pg_engine: Engine, pg_database_url: str) -> None:
    calls = random_calls(400)
    fill(pg_engine, calls)
    sqlite = make_engine("sqlite://")
    fill(sqlite, calls)
    ended = [c for c in calls if c.ended_at is not None]
    window = (START + timedelta(hours=7), START + timedelta(days=3, hours=5))
    in_window = [c for c in ended if window[0] <= c.started_at < window[1]]
    try:
        for zone in ZONES:
            for by in GROUPINGS:
                results = []
                for engine in (pg_engine, sqlite):
                    with Session(engine) as session:
                        results.append(
                            call_report(
                                session,
                                by=by,
                                start=window[0],
                                end=window[1],
                                zone=zone,
                                effective_seconds=60,
                            )
                        )
                on_pg, on_sqlite = results
                assert [r.key for r in on_pg.rows] == [r.key for r in on_sqlite.rows], (zone, by)
                for a, b in zip(on_pg.rows, on_sqlite.rows, strict=True):
                    assert (a.calls, a.answered, a.missed, a.effective) == (
                        b.calls,
                        b.answered,
                        b.missed,
                        b.effective,
                    )
                    assert a.talk_seconds == pytest.approx(b.talk_seconds, abs=1e-6)
                assert on_pg.total.calls == len(in_window), (zone, by)
                assert on_pg.total.effective == sum(
                    1
                    for c in in_window
                    if c.disposition is Disposition.ANSWERED and (c.talk_seconds or 0) >= 60
                )
    finally:
        sqlite.dispose()

    # The command on the PostgreSQL URL.
    result = CliRunner().invoke(
        report,
        ["--by", "team", "--from", "2026-10-30", "--to", "2026-11-03", "--tz", "UTC"]
        + ["--format", "json", "--url", pg_database_url],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [row["key"] for row in document["rows"]] == ["north", "south"]
    assert document["total"]["calls"] == len(ended)


def test_the_target_columns_agree_on_postgres_and_sqlite(pg_engine: Engine, pg_database_url: str) -> None:
    calls = random_calls(300, seed=9)
    fill(pg_engine, calls)
    sqlite = make_engine("sqlite://")
    fill(sqlite, calls)
    window = {"start": START, "end": START + timedelta(days=4)}
    try:
        worked = []
        directory = []
        for engine in (pg_engine, sqlite):
            with Session(engine) as session, session.begin():
                set_team_targets(session, "south", calls=3, talk_seconds=600)
                worked.append(days_worked(session, zone=ZoneInfo("Asia/Kolkata"), **window))
                directory.append(
                    rep_directory(session, ["alice", "bob", "nobody"], window["start"], window["end"])
                )
        assert worked[0] == worked[1]
        assert set(worked[0]) == {"alice", "bob", "carol", "dave"}
        assert directory[0] == directory[1]
    finally:
        sqlite.dispose()
    args = ["--by", "rep", "--from", "2026-10-30", "--to", "2026-11-03", "--tz", "Asia/Kolkata"]
    result = CliRunner().invoke(report, [*args, "--format", "json", "--url", pg_database_url])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    # Every rep took calls for south (the latest team name), whose stored targets apply.
    assert [row["key"] for row in rows if row["target_calls"] is not None] == [
        "alice",
        "bob",
        "carol",
        "dave",
    ]
    assert all(
        row["target_calls"] == 3 * row["days_worked"] for row in rows if row["target_calls"] is not None
    )
