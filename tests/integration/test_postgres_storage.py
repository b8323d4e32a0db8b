"""Storage on a real PostgreSQL server: migrations, ON CONFLICT upserts, concurrency, errors."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from agent.errors import StorageError
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition, EndReason
from storage.db import current_revision, head_revision, make_engine, upgrade
from storage.models import Base, CallRecord, CustomerPhone, CustomerRecord
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
}


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    upgrade(pg_engine)
    return pg_engine


def make_call(uuid: str = "c-1", **changes: object) -> Call:
    call = Call(
        uuid=uuid,
        seat="seat-1",
        device_id="modem0",
        line="line-1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=T0,
        number_raw="13812345678",
    )
    return replace(call, **changes)  # type: ignore[arg-type]


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
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
    upgrade(engine)  # again: nothing to do
    assert current_revision(engine) == head_revision()


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
