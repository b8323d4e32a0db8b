"""The console's search on a real PostgreSQL: every filter, role scoping, pages, totals, masking, audit.

The same calls are also written to SQLite, and a set of random searches must
give the same calls, in the same order, with the same totals on both.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from console_factories import (
    ADMIN,
    CALLS,
    LEAD_NORTH,
    LEAD_SOUTH,
    MANAGER,
    PASSWORD,
    REP_ALICE,
    T0,
    log_in,
    seed,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import Principal, create_user
from agent.centre.search import SearchQuery, export_rows, search, to_csv
from storage.db import make_engine, upgrade
from storage.models import AuditEntry, CallRecord

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    upgrade(pg_engine)
    return pg_engine


@pytest.fixture
def recordings(engine: Engine, tmp_path: Path) -> dict[str, int]:
    return seed(engine, tmp_path)


def found(engine: Engine, who: Principal = MANAGER, **params: str) -> set[str]:
    query = SearchQuery.from_params(params | {"per_page": "200"}, UTC)
    with Session(engine) as session:
        return {row.uuid for row in search(session, query, who, masked=False).rows}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"number": "5678"}, {"c-a1", "c-b1", "c-c1"}),
        ({"number": "*5678"}, {"c-a1", "c-b1", "c-c1"}),
        ({"number": "1234"}, {"c-a1", "c-b1", "c-c1", "c-d1"}),
        ({"number": "138*"}, {"c-a1", "c-d1"}),
        ({"number": "138????5678"}, {"c-a1"}),
        ({"number": "+86 138 1234 5678"}, {"c-a1"}),
        ({"notes": "100%"}, {"c-b1"}),
        ({"notes": "quote"}, {"c-a1"}),
        ({"notes": "报价"}, {"c-a1"}),
        ({"notes": "_"}, set()),
        ({"talk_min": "100"}, {"c-a1", "c-c1"}),
        ({"talk_max": "50"}, {"c-a2", "c-b1", "c-c2", "c-d1"}),
        ({"recording": "yes"}, {"c-a1", "c-b1", "c-c1"}),
        ({"recording": "no"}, {"c-a2", "c-c2", "c-d1"}),
        ({"direction": "out"}, {"c-a2", "c-c1"}),
        ({"disposition": "missed"}, {"c-a2", "c-c2"}),
        ({"from": "2026-03-02", "to": "2026-03-03"}, {"c-a1", "c-a2", "c-b1"}),
        ({"from": "2026-03-02T18:00+08:00"}, {"c-a2", "c-b1", "c-c1", "c-c2"}),
        ({"rep": "alice"}, {"c-a1", "c-a2"}),
        ({"team": "south"}, {"c-c1", "c-c2", "c-d1"}),
        ({"seat": "s3", "line": "L2"}, {"c-c1", "c-c2"}),
        ({"team": "north", "direction": "in", "recording": "yes", "number": "5678"}, {"c-a1", "c-b1"}),
    ],
)
def test_filters_on_postgres(
    engine: Engine, recordings: dict[str, int], params: dict[str, str], expected: set[str]
) -> None:
    assert found(engine, **params) == expected


def test_role_scoping_on_postgres(engine: Engine, recordings: dict[str, int]) -> None:
    assert found(engine, MANAGER) == set(CALLS)
    assert found(engine, LEAD_NORTH) == {"c-a1", "c-a2", "c-b1"}
    assert found(engine, LEAD_SOUTH) == {"c-c1", "c-c2", "c-d1"}
    assert found(engine, REP_ALICE) == {"c-a1", "c-a2"}
    assert found(engine, ADMIN) == set()
    assert found(engine, LEAD_NORTH, team="south") == set()
    assert found(engine, REP_ALICE, rep="bob", number="5678") == set()


def test_totals_pages_and_masked_export_on_postgres(engine: Engine, recordings: dict[str, int]) -> None:
    with Session(engine) as session:
        query = SearchQuery.from_params({"per_page": "25"}, UTC)
        result = search(session, query, LEAD_NORTH, masked=True)
        assert result.total_calls == 3
        assert result.total_talk_seconds == pytest.approx(150.0)
        assert [row.uuid for row in result.rows] == ["c-b1", "c-a2", "c-a1"]
        assert [row.number for row in result.rows] == ["022-**** 5678", "139 **** 1111", "138****5678"]
        text = to_csv(export_rows(session, query, LEAD_NORTH, masked=True), UTC)
        assert "138****5678" in text
        assert "13812345678" not in text


def random_call(rng: random.Random, n: int) -> CallRecord:
    rep = rng.choice(["alice", "bob", "carol", "dave", "erin"])
    team = "north" if rep in ("alice", "bob") else "south"
    digits = "".join(rng.choice("0123456789") for _ in range(8))
    prefix = rng.choice(["138", "139", "150", "186"])
    disposition = rng.choice(["answered", "missed", "abandoned"])
    started = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
    talk = round(rng.uniform(1, 900), 1) if disposition == "answered" else None
    return CallRecord(
        uuid=f"r-{n}", seat=f"s{rng.randrange(4)}", device_id="d", line=rng.choice(["L1", "L2"]), rep=rep,
        team=team, direction=rng.choice(["in", "out"]), number_e164=f"+86{prefix}{digits}",
        number_raw=f"{prefix}{digits}", started_at=started, talk_seconds=talk, disposition=disposition,
        notes=rng.choice([None, "报价 quote", "call back", "50% discount", "VIP"]),
    )  # fmt: skip


def test_random_searches_give_the_same_result_on_sqlite_and_postgres(engine: Engine) -> None:
    lite = make_engine("sqlite://")
    upgrade(lite)
    rng = random.Random(11)
    calls = [random_call(rng, n) for n in range(400)]
    for target in (engine, lite):
        with Session(target) as session, session.begin():
            session.add_all([CallRecord(**_columns(call)) for call in calls])
    searches = [
        {"number": "12"}, {"number": "*7"}, {"number": "138*"}, {"number": "1?6*"},
        {"notes": "QUOTE"}, {"notes": "%"}, {"talk_min": "300", "direction": "in"},
        {"from": "2026-03-03", "to": "2026-03-04", "disposition": "answered"},
        {"team": "north", "sort": "talk_seconds"}, {"rep": "carol", "sort": "number", "order": "asc"},
        {"page": "3", "per_page": "25"},
    ]  # fmt: skip
    try:
        for params in searches:
            for who in (MANAGER, LEAD_NORTH, REP_ALICE):
                query = SearchQuery.from_params(params, UTC)
                results = []
                for target in (engine, lite):
                    with Session(target) as session:
                        result = search(session, query, who, masked=who.role == "rep")
                    results.append(
                        (
                            [row.uuid for row in result.rows],
                            result.total_calls,
                            round(result.total_talk_seconds, 3),
                        )
                    )
                assert results[0] == results[1], (params, who.login)
        with Session(engine) as session:
            assert search(session, SearchQuery(), MANAGER, masked=False).total_calls == 400
    finally:
        lite.dispose()


def _columns(call: CallRecord) -> dict[str, Any]:
    return {
        c.key: getattr(call, c.key) for c in CallRecord.__table__.columns if getattr(call, c.key) is not None
    }


# -- the app over PostgreSQL -------------------------------------------------------------


@pytest.fixture
def client(engine: Engine, recordings: dict[str, int], tmp_path: Path) -> Iterator[TestClient]:
    with Session(engine) as session, session.begin():
        create_user(session, "alice", PASSWORD, role="rep", rep="alice", team="north")
        create_user(session, "boss", PASSWORD, role="manager")
    settings = ConsoleSettings(secret=b"p" * 32, recordings_dir=tmp_path)
    return TestClient(make_console_app(engine, settings), base_url="http://127.0.0.1")


def test_playback_scoping_and_audit_on_postgres(
    client: TestClient, engine: Engine, recordings: dict[str, int]
) -> None:
    log_in(client, "alice")
    theirs, own = recordings["c-c1"], recordings["c-a1"]
    assert client.get(f"/recordings/{theirs}/audio").status_code == 403
    played = client.get(f"/recordings/{own}/audio", headers={"Range": "bytes=0-1023"})
    assert played.status_code == 206
    assert played.headers["content-range"].startswith("bytes 0-1023/")
    log_in(client, "boss")
    page = client.get("/audit", params={"user": "alice"})
    assert page.status_code == 200
    with Session(engine) as session:
        rows = [
            (e.user_login, e.action, e.target, e.remote_addr)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.action in ("play", "play_denied")
        ]
        at = session.scalar(select(AuditEntry.at).where(AuditEntry.action == "play"))
    assert rows == [
        ("alice", "play_denied", f"recording:{theirs}", "testclient"),
        ("alice", "play", f"recording:{own}", "testclient"),
    ]
    assert at is not None
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60


def test_users_and_console_commands_over_postgres(pg_database_url: str, tmp_path: Path) -> None:
    """``users add`` then ``console`` as a real process: it serves, logs in, and stops on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from click.testing import CliRunner

    from agent.commands.users import users

    added = CliRunner().invoke(
        users,
        ["add", "boss", "--role", "manager", "--password-stdin", "--url", pg_database_url],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    process = subprocess.Popen(
        [
            sys.executable, "-c", "from agent.commands.console import console; console()",
            "--url", pg_database_url, "--listen", "127.0.0.1:0", "--recordings-dir", str(tmp_path),
            "--secret-file", str(tmp_path / "secret"), "--tz", "Asia/Shanghai",
        ],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        address = None
        while address is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            match = re.search(r"console: (http://\S+)/", line)
            address = match.group(1) if match else None
            assert line or process.poll() is None, "console exited early"
        assert address is not None
        with httpx.Client(base_url=address) as client:
            assert client.get("/healthz").text == "ok"
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
            assert token is not None
            response = client.post(
                "/login", data={"login": "boss", "password": PASSWORD, "csrf": token.group(1)}
            )
            assert response.status_code == 303
            assert client.get("/calls").status_code == 200
        assert (tmp_path / "secret").stat().st_mode & 0o077 == 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
