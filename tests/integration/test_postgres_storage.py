"""Storage on a real PostgreSQL server: migrations, ON CONFLICT upserts, concurrency, errors."""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import factories
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, make_url, select, text
from sqlalchemy.orm import Session

from agent.centre.search import SearchQuery, filter_clauses, number_clause
from agent.errors import StorageError
from agent.events import Call, CallEvent, CallEventKind, Disposition, EndReason
from storage.db import alembic_config, current_revision, head_revision, make_engine, upgrade
from storage.models import SEARCH_INDEXES, Base, CallRecord, CustomerPhone, CustomerRecord, include_in_schema
from storage.observer import StorageObserver
from storage.plugin import SqlStore
from storage.repository import get_call, save_note, upsert_call

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 6, 3, 9, 30, 0, tzinfo=UTC)
TABLES = {
    "teams",
    "reps",
    "users",
    "customers",
    "customer_phones",
    "calls",
    "recordings",
    "audit_log",
    # team mode: the seat's outbox and what it has copied upstream
    "outbox",
    "recording_uploads",
    "sync_state",
    # the centre: the seats it accepts, its lead lists, the transfer log, the reps' dispositions
    "seats",
    "lead_lists",
    "leads",
    "transfers",
    "dispositions",
    "do_not_call",
}


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    upgrade(pg_engine)
    return pg_engine


#: A call of this suite (the shared factory, with its defaults).
make_call = functools.partial(factories.make_call, started_at=T0, number_e164=None)


def ended(call: Call) -> Call:
    return replace(
        call,
        answered_at=T0 + timedelta(seconds=9),
        ended_at=T0 + timedelta(seconds=69),
        ring_seconds=9.0,
        talk_seconds=60.0,
        disposition=Disposition.ANSWERED,
        end_reason=EndReason.HANGUP,
    )


def write(engine: Engine, *calls: Call) -> None:
    for call in calls:
        with Session(engine) as session, session.begin():
            upsert_call(session, call)


def count_calls(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(CallRecord)) or 0


def test_upgrade_matches_models(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_object": include_in_schema,
            },
        )
        assert compare_metadata(context, Base.metadata) == []
    upgrade(engine)  # again: nothing to do
    assert current_revision(engine) == head_revision()


def search_indexes(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls' AND indexname = ANY(:n)"
            ),
            {"n": list(SEARCH_INDEXES)},
        )
        return {name: definition for name, definition in rows}


def fill_calls(engine: Engine, count: int) -> None:
    """``count`` calls with distinct mobile numbers and a note on every third, then ANALYZE."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO calls (uuid, seat, device_id, line, rep, team, direction, number_e164,"
                " number_raw, started_at, notes, created_at, updated_at)"
                " SELECT 'bulk-' || n, 'seat-1', 'sim', 'L1', 'rep' || (n % 20), 'north', 'in',"
                " '+86138' || lpad(((n * 7919) % 100000000)::text, 8, '0'),"
                " '138' || lpad(((n * 7919) % 100000000)::text, 8, '0'),"
                " :t0 + n * interval '1 minute',"
                " CASE WHEN n % 3 = 0 THEN 'quote sent ' || n END, :t0, :t0"
                " FROM generate_series(1, :count) AS n"
            ),
            {"t0": T0, "count": count},
        )
        connection.exec_driver_sql("ANALYZE calls")


def plan(engine: Engine, statement: Any) -> str:
    """The EXPLAIN text of ``statement`` with sequential scans priced out, so the choice is the index's."""
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        if isinstance(statement, str):
            rows = connection.execute(text(f"EXPLAIN {statement}"))
        else:
            compiled = statement.compile(connection)
            rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
        return "\n".join(row[0] for row in rows)


def test_search_indexes_exist_and_serve_suffix_infix_and_notes_searches(engine: Engine) -> None:
    indexes = search_indexes(engine)
    assert set(indexes) == set(SEARCH_INDEXES)
    for name, column in zip(SEARCH_INDEXES, ("number_e164", "number_raw", "notes"), strict=True):
        assert f"USING gin ({column} gin_trgm_ops)" in indexes[name]
    fill_calls(engine, 20_000)

    suffix = plan(engine, "SELECT id FROM calls WHERE number_e164 LIKE '%5678'")
    assert "Bitmap Index Scan on ix_calls_number_e164_trgm" in suffix
    assert "Seq Scan" not in suffix
    # The console's own filters: a plain fragment matches either number column; notes are ILIKE.
    infix = plan(engine, select(CallRecord.id).where(number_clause("5678")))
    assert "ix_calls_number_e164_trgm" in infix
    assert "ix_calls_number_raw_trgm" in infix
    wildcard = plan(engine, select(CallRecord.id).where(number_clause("138*5678")))
    assert "ix_calls_number_e164_trgm" in wildcard
    query = SearchQuery(notes="sent 12")
    notes = plan(engine, select(CallRecord.id).where(*filter_clauses(query)))
    assert "Bitmap Index Scan on ix_calls_notes_trgm" in notes
    # Under three digits there is no trigram to look up: the console keeps such patterns off the index.
    short = plan(engine, select(CallRecord.id).where(number_clause("56")))
    assert "trgm" not in short
    with Session(engine) as session:
        hits = session.scalars(select(CallRecord.number_raw).where(number_clause("*5678"))).all()
    assert hits
    assert all(number is not None and number.endswith("5678") for number in hits)


def test_search_indexes_downgrade_and_upgrade_again(engine: Engine) -> None:
    fill_calls(engine, 100)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0003_outbox")
    assert search_indexes(engine) == {}
    assert current_revision(engine) == "0003_outbox"
    upgrade(engine)
    assert set(search_indexes(engine)) == set(SEARCH_INDEXES)
    assert count_calls(engine) == 100


def test_a_user_who_may_not_create_pg_trgm_is_told_the_fix(pg_url: str, pg_database_url: str) -> None:
    role = f"cti_plain_{uuid.uuid4().hex[:8]}"
    admin = make_engine(pg_url)
    owner = make_engine(pg_database_url)  # the superuser, on the test's database
    plain = make_engine(make_url(pg_database_url).set(username=role).render_as_string(hide_password=False))
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        with owner.begin() as connection:
            # Enough for tables, not for extensions (that takes CREATE on the database).
            connection.exec_driver_sql(f"GRANT CREATE ON SCHEMA public TO {role}")
        with pytest.raises(StorageError) as info:
            upgrade(plain)
        message = str(info.value)
        assert "pg_trgm" in message
        assert role in message
        assert "CREATE EXTENSION pg_trgm as a superuser, then run cti-agent db upgrade again" in message
        assert current_revision(plain) is None  # the whole upgrade rolled back, nothing half-made
        with owner.begin() as connection:
            connection.exec_driver_sql("CREATE EXTENSION pg_trgm")
        upgrade(plain)
        assert current_revision(plain) == head_revision()
        assert set(search_indexes(plain)) == set(SEARCH_INDEXES)
    finally:
        plain.dispose()
        with owner.begin() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
        owner.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def test_each_test_gets_an_empty_database(pg_engine: Engine) -> None:
    assert inspect(pg_engine).get_table_names() == []
    assert current_revision(pg_engine) is None


def test_times_are_timestamptz_and_come_back_utc(engine: Engine) -> None:
    local_start = datetime(2024, 6, 3, 17, 30, 0, 250000, tzinfo=timezone(timedelta(hours=8)))
    write(engine, make_call(started_at=local_start))
    with Session(engine) as session:
        record = get_call(session, "c-1")
        assert record is not None
        assert record.started_at == local_start
        assert record.started_at.tzinfo is UTC
        assert record.created_at.tzinfo is UTC
    with engine.connect() as connection:
        connection.exec_driver_sql("SET TIME ZONE 'UTC'")
        assert connection.execute(text("SELECT started_at::text FROM calls")).scalar() == (
            "2024-06-03 09:30:00.25+00"
        )


def test_upsert_on_conflict_is_idempotent_and_never_regresses(engine: Engine) -> None:
    call = make_call()
    write(engine, call, call, ended(call), call, ended(call))
    assert count_calls(engine) == 1
    with Session(engine) as session:
        record = get_call(session, "c-1")
        assert record is not None
        assert (record.disposition, record.end_reason, record.talk_seconds) == ("answered", "hangup", 60.0)
        assert record.ended_at == T0 + timedelta(seconds=69)


def test_notes_survive_upserts(engine: Engine) -> None:
    call = make_call()
    write(engine, call)
    with Session(engine) as session, session.begin():
        assert save_note(session, "c-1", "call back", T0 + timedelta(days=1))
    write(engine, ended(call))
    with Session(engine) as session:
        record = get_call(session, "c-1")
        assert record is not None
        assert (record.notes, record.follow_up_at) == ("call back", T0 + timedelta(days=1))


def test_concurrent_upserts_of_one_uuid_make_one_row(engine: Engine) -> None:
    rounds = 10
    errors: list[BaseException] = []

    def worker(barrier: threading.Barrier, call: Call) -> None:
        try:
            barrier.wait(timeout=10)
            write(engine, call)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    for i in range(rounds):
        call = make_call(f"race-{i}")
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=worker, args=(barrier, s)) for s in (call, ended(call))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert count_calls(engine) == rounds
    with Session(engine) as session:
        unended = session.scalar(
            select(func.count()).select_from(CallRecord).where(CallRecord.ended_at.is_(None))
        )
    assert unended == 0  # whichever thread won, the end was kept


def test_customer_lookup_and_unknown_customer_ids(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        customer = CustomerRecord(name="Zhang Wei", owner_rep="alice")
        customer.phones = [CustomerPhone(number_e164="+862212345678", number_raw="022-1234-5678")]
        session.add(customer)
        session.flush()
        customer_id = customer.id
    found = SqlStore(engine).lookup_customer(None, "022 1234 5678")
    assert found is not None
    assert (found.id, found.source) == (customer_id, "sql")
    write(engine, make_call("a", customer_id=customer_id), make_call("b", customer_id=customer_id + 100))
    with Session(engine) as session:
        a, b = get_call(session, "a"), get_call(session, "b")
        assert a is not None
        assert b is not None
        assert (a.customer_id, b.customer_id) == (customer_id, None)


async def test_storage_observer_on_postgres(engine: Engine) -> None:
    observer = StorageObserver(engine)
    call = make_call()
    for kind, snapshot in [(CallEventKind.STARTED, call), (CallEventKind.ENDED, ended(call))]:
        await observer.notify(CallEvent(kind, snapshot, T0))
    await observer.notify(CallEvent(CallEventKind.STARTED, call, T0))  # a late retry
    assert count_calls(engine) == 1
    with Session(engine) as session:
        record = get_call(session, "c-1")
        assert record is not None
        assert record.ended_at is not None


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_a_storage_error_without_the_password() -> None:
    url = f"postgresql+psycopg://cti:s3cret@127.0.0.1:{_closed_port()}/cti?connect_timeout=3"
    engine = make_engine(url)
    try:
        with pytest.raises(StorageError) as info:
            upgrade(engine)
        message = str(info.value)
        assert "s3cret" not in message
        assert "postgresql+psycopg://cti:***@127.0.0.1" in message
        with pytest.raises(StorageError) as info:
            await StorageObserver(engine).notify(CallEvent(CallEventKind.STARTED, make_call(), T0))
        assert "writing call c-1 failed" in str(info.value)
        assert "s3cret" not in str(info.value)
    finally:
        engine.dispose()


_RACER = """
import sys, time
from pathlib import Path
from storage.db import make_engine, upgrade
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
engine = make_engine(sys.argv[1])
upgrade(engine)
engine.dispose()
"""


def test_centres_starting_at_once_migrate_one_database_without_a_race(
    pg_database_url: str, tmp_path: Path
) -> None:
    """Four processes that upgrade one fresh database at the same instant all succeed.

    As a floor's centres do after an upgrade: the advisory lock lets one migrate, and the rest
    find the schema current.
    """
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, pg_database_url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(1.5)  # every interpreter imported and waiting
    go.touch()
    results = [(racer.wait(timeout=120), racer.stderr.read() if racer.stderr else "") for racer in racers]
    assert [code for code, _ in results] == [0, 0, 0, 0], [err for _, err in results]
    engine = make_engine(pg_database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
