"""Storage on SQLite: migrations, the upsert rules, time zones, customer lookup, errors."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import factories
import pluggy
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from agent import hookspecs
from agent.errors import StorageError
from agent.events import (
    Absence,
    Call,
    CallEvent,
    CallEventKind,
    Customer,
    Direction,
    Disposition,
    EndReason,
    LineState,
    LineStatus,
)
from agent.seat.observers import Observer
from storage import repository
from storage.db import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    safe_url,
    storage_error,
    upgrade,
)
from storage.models import SEARCH_INDEXES, Base, CallRecord, CustomerPhone, CustomerRecord, include_in_schema
from storage.observer import StorageObserver
from storage.plugin import SqlStore
from storage.repository import find_customer, get_call, recent_calls, save_note, seat_calls_since, upsert_call

T0 = datetime(2024, 6, 3, 9, 30, 0, tzinfo=UTC)
MIGRATIONS = Path(__file__).resolve().parents[2] / "storage" / "migrations" / "versions"
TABLES = {
    "teams",
    "lead_lists",
    "dispositions",
    "do_not_call",
    "leads",
    "transfers",
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
    # the centre: the seats it accepts
    "seats",
}


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def file_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'cti.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


Upsert = Callable[[Session, Call], None]


def _portable_upsert(session: Session, call: Call) -> None:
    repository._upsert_select_then_write(session, repository._snapshot_values(call))


@pytest.fixture(params=["on_conflict", "select_then_write"])
def upsert(request: pytest.FixtureRequest) -> Upsert:
    """Both ways of upserting must obey the same rules."""
    return upsert_call if request.param == "on_conflict" else _portable_upsert


#: A call of this suite (the shared factory, with its defaults).
make_call = functools.partial(factories.make_call, started_at=T0, number_e164=None, rings=1)


def answered(call: Call) -> Call:
    return replace(call, answered_at=T0 + timedelta(seconds=9), ring_seconds=9.0, rings=2)


def ended(call: Call) -> Call:
    return replace(
        answered(call),
        ended_at=T0 + timedelta(seconds=69),
        talk_seconds=60.0,
        disposition=Disposition.ANSWERED,
        end_reason=EndReason.HANGUP,
    )


def write(engine: Engine, upsert: Upsert, *calls: Call) -> None:
    for call in calls:
        with Session(engine) as session, session.begin():
            upsert(session, call)


def count_calls(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(CallRecord)) or 0


def load(engine: Engine, uuid: str = "c-1") -> CallRecord:
    with Session(engine) as session:
        record = get_call(session, uuid)
        assert record is not None
        return record


# --- migrations -------------------------------------------------------------------------------


def test_upgrade_creates_every_table_and_records_head(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision() == sorted(MIGRATIONS.glob("0*.py"))[-1].stem


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    write(engine, upsert_call, make_call())
    upgrade(engine)
    assert count_calls(engine) == 1


def test_fresh_database_has_no_revision() -> None:
    eng = make_engine("sqlite://")
    try:
        assert current_revision(eng) is None
    finally:
        eng.dispose()


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_object": include_in_schema,
            },
        )
        return list(compare_metadata(context, Base.metadata))


def test_migrated_schema_matches_models(engine: Engine) -> None:
    assert _schema_diff(engine) == []


def test_schema_comparison_notices_a_missing_index(engine: Engine) -> None:
    # Proves the comparison above is able to fail.
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_calls_rep_started_at")
    diff = _schema_diff(engine)
    assert [d[0] for d in diff] == ["add_index"]  # type: ignore[index]


def test_schema_comparison_skips_exactly_the_search_indexes(engine: Engine) -> None:
    with engine.begin() as connection:
        for name in SEARCH_INDEXES:
            connection.exec_driver_sql(f"CREATE INDEX {name} ON calls (notes)")
    assert _schema_diff(engine) == []
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE INDEX ix_calls_notes_other ON calls (notes)")
    diff = _schema_diff(engine)
    assert [(d[0], d[1].name) for d in diff] == [("remove_index", "ix_calls_notes_other")]  # type: ignore[index]


def test_search_index_migration_names_the_models_indexes_and_skips_sqlite(engine: Engine) -> None:
    migration = ScriptDirectory.from_config(alembic_config()).get_revision("0004_search_indexes")
    assert migration is not None
    assert migration.down_revision == "0003_outbox"
    assert tuple(migration.module._INDEXES) == SEARCH_INDEXES
    # SQLite has no trigram index: the revision is recorded and creates nothing.
    assert current_revision(engine) == head_revision()
    names = {index["name"] for index in inspect(engine).get_indexes("calls")}
    assert names.isdisjoint(SEARCH_INDEXES)
    assert "ix_calls_number_e164" in names


def test_file_database_pragmas(file_engine: Engine, tmp_path: Path) -> None:
    assert (tmp_path / "nested" / "dir" / "cti.db").is_file()
    with file_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_in_memory_database_is_shared_across_threads(engine: Engine) -> None:
    thread = threading.Thread(target=write, args=(engine, upsert_call, make_call()))
    thread.start()
    thread.join()
    assert count_calls(engine) == 1


# --- upserts ----------------------------------------------------------------------------------


def test_same_snapshot_twice_is_one_row(engine: Engine, upsert: Upsert) -> None:
    write(engine, upsert, make_call(), make_call())
    assert count_calls(engine) == 1
    assert load(engine).number_raw == "13812345678"


def test_call_lifecycle_ends_with_the_final_snapshot(engine: Engine, upsert: Upsert) -> None:
    started = make_call(absence=None)
    identified = replace(started, number_e164="+8613812345678", cid_name="ZHANG")
    write(engine, upsert, started, identified, answered(identified), ended(identified))
    record = load(engine)
    assert count_calls(engine) == 1
    assert (record.direction, record.disposition, record.end_reason) == ("in", "answered", "hangup")
    assert record.number_e164 == "+8613812345678"
    assert record.cid_name == "ZHANG"
    assert record.answered_at == T0 + timedelta(seconds=9)
    assert record.ended_at == T0 + timedelta(seconds=69)
    assert (record.ring_seconds, record.talk_seconds, record.rings) == (9.0, 60.0, 2)


def test_enums_are_stored_as_their_values(engine: Engine, upsert: Upsert) -> None:
    call = make_call(direction=Direction.OUT, absence=Absence.PRIVATE, waiting=True)
    write(engine, upsert, call)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT direction, absence, waiting FROM calls")).one()
    assert tuple(row) == ("out", "P", 1)


def test_stale_replays_never_regress_an_ended_call(engine: Engine, upsert: Upsert) -> None:
    call = make_call()
    write(engine, upsert, call, answered(call), ended(call), call, answered(call))
    record = load(engine)
    assert record.ended_at == T0 + timedelta(seconds=69)
    assert record.disposition == "answered"
    assert record.talk_seconds == 60.0


def test_stale_started_does_not_undo_an_answer(engine: Engine, upsert: Upsert) -> None:
    call = make_call()
    write(engine, upsert, answered(call), call)
    assert load(engine).answered_at == T0 + timedelta(seconds=9)


def test_ended_snapshot_replaces_an_ended_row(engine: Engine, upsert: Upsert) -> None:
    call = make_call()
    corrected = replace(ended(call), customer_name="x", talk_seconds=61.5)
    write(engine, upsert, ended(call), corrected)
    assert load(engine).talk_seconds == 61.5


def test_end_arriving_first_is_kept(engine: Engine, upsert: Upsert) -> None:
    # Out of order: the end was written before the earlier snapshots were retried.
    call = make_call()
    write(engine, upsert, ended(call), call, answered(call))
    assert load(engine).ended_at == T0 + timedelta(seconds=69)


def test_notes_survive_later_snapshots(engine: Engine, upsert: Upsert) -> None:
    call = make_call()
    write(engine, upsert, call)
    follow_up = datetime(2024, 6, 5, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    with Session(engine) as session, session.begin():
        assert save_note(session, "c-1", "wants a quote", follow_up) is True
    write(engine, upsert, answered(call), ended(call), ended(call))
    record = load(engine)
    assert record.notes == "wants a quote"
    assert record.follow_up_at == follow_up
    assert record.ended_at is not None


def test_save_note_on_unknown_call(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        assert save_note(session, "nope", "x", None) is False


def test_unknown_customer_id_is_stored_as_null(engine: Engine, upsert: Upsert) -> None:
    with Session(engine) as session, session.begin():
        customer = CustomerRecord(name="Zhang Wei")
        session.add(customer)
        session.flush()
        known = customer.id
    write(engine, upsert, make_call("c-1", customer_id=known), make_call("c-2", customer_id=known + 999))
    assert load(engine, "c-1").customer_id == known
    assert load(engine, "c-2").customer_id is None


def test_concurrent_upserts_of_one_call_make_one_row(file_engine: Engine) -> None:
    call = make_call()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(snapshot: Call) -> None:
        try:
            barrier.wait()
            write(file_engine, upsert_call, snapshot)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (call, ended(call))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count_calls(file_engine) == 1
    assert load(file_engine).ended_at is not None


# --- times ------------------------------------------------------------------------------------


def test_times_come_back_tz_aware_utc(engine: Engine) -> None:
    beijing = timezone(timedelta(hours=8))
    local_start = datetime(2024, 6, 3, 17, 30, 0, 123000, tzinfo=beijing)
    write(engine, upsert_call, make_call(started_at=local_start))
    record = load(engine)
    assert record.started_at == local_start
    assert record.started_at.tzinfo is UTC
    assert record.started_at.hour == 9
    assert record.created_at.tzinfo is UTC
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT started_at FROM calls")).scalar()
    assert stored == "2024-06-03 09:30:00.123000"  # SQLite keeps naive UTC


def test_server_default_timestamps_read_back_as_utc(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO audit_log (action) VALUES ('play')"))
    with engine.connect() as connection:
        at = connection.execute(select(Base.metadata.tables["audit_log"].c.at)).scalar_one()
    assert at.tzinfo is UTC
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), Session(engine) as session:
        upsert_call(session, make_call(started_at=datetime(2024, 6, 3, 9, 30)))


# --- queries ----------------------------------------------------------------------------------


def test_recent_calls_newest_first_with_filters(engine: Engine) -> None:
    write(
        engine,
        upsert_call,
        make_call("a", started_at=T0),
        make_call("b", started_at=T0 + timedelta(minutes=5), rep="bob"),
        make_call("c", started_at=T0 + timedelta(minutes=10), seat="seat-2"),
        make_call("d", started_at=T0 + timedelta(minutes=1)),
    )
    with Session(engine) as session:
        assert [c.uuid for c in recent_calls(session)] == ["c", "b", "d", "a"]
        assert [c.uuid for c in recent_calls(session, limit=2)] == ["c", "b"]
        assert [c.uuid for c in recent_calls(session, seat="seat-1")] == ["b", "d", "a"]
        assert [c.uuid for c in recent_calls(session, rep="alice", seat="seat-1")] == ["d", "a"]
        assert get_call(session, "zzz") is None


def test_a_seats_calls_since_a_time_oldest_first(engine: Engine) -> None:
    write(
        engine,
        upsert_call,
        make_call("yesterday", started_at=T0 - timedelta(hours=12)),
        make_call("b", started_at=T0 + timedelta(minutes=5)),
        make_call("other-seat", started_at=T0 + timedelta(minutes=6), seat="seat-2"),
        make_call("a", started_at=T0),
        make_call("c", started_at=T0 + timedelta(minutes=10)),
    )
    with Session(engine) as session:
        assert [c.uuid for c in seat_calls_since(session, seat="seat-1", since=T0)] == ["a", "b", "c"]
        # Over the limit: the newest are kept (the page shows the latest calls).
        assert [c.uuid for c in seat_calls_since(session, seat="seat-1", since=T0, limit=2)] == ["b", "c"]


@pytest.fixture
def customers(engine: Engine) -> dict[str, int]:
    with Session(engine) as session, session.begin():
        zhang = CustomerRecord(name="Zhang Wei", company="Acme", owner_rep="alice")
        zhang.phones = [
            CustomerPhone(number_e164="+8613812345678", number_raw="138 1234 5678", label="mobile"),
            CustomerPhone(number_e164="+862212345678", number_raw="022-1234-5678", label="office"),
        ]
        chan = CustomerRecord(name="Chan Tai Man")
        chan.phones = [CustomerPhone(number_e164="+85291234567", number_raw="91234567")]
        session.add_all([zhang, chan])
        session.flush()
        return {"zhang": zhang.id, "chan": chan.id}


@pytest.mark.parametrize(
    ("number_e164", "number_raw", "who"),
    [
        ("+8613812345678", "13812345678", "zhang"),
        (None, "13812345678", "zhang"),
        (None, "+86 138 1234 5678", "zhang"),
        (None, "008613812345678", "zhang"),
        (None, "１３８１２３４５６７８", "zhang"),
        (None, "022 1234 5678", "zhang"),
        (None, "02212345678", "zhang"),
        ("+862212345678", "", "zhang"),
        (None, "91234567", "chan"),  # not a valid CN number: matched on the stored raw form
        (None, "13900000000", None),
        (None, "", None),
        ("+8613900000000", "13900000000", None),
    ],
)
def test_find_customer(
    engine: Engine, customers: dict[str, int], number_e164: str | None, number_raw: str, who: str | None
) -> None:
    with Session(engine) as session:
        found = find_customer(session, number_e164, number_raw)
    if who is None:
        assert found is None
    else:
        assert found is not None
        assert found.id == customers[who]
        assert found.source == "sql"


def test_customer_phone_numbers_have_one_owner(engine: Engine, customers: dict[str, int]) -> None:
    with pytest.raises(Exception, match="UNIQUE"), Session(engine) as session, session.begin():
        session.add(CustomerPhone(customer_id=customers["chan"], number_e164="+8613812345678"))


def test_deleting_a_customer_removes_phones_and_unlinks_calls(
    engine: Engine, customers: dict[str, int]
) -> None:
    write(engine, upsert_call, make_call(customer_id=customers["zhang"]))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM customers WHERE id = :id"), {"id": customers["zhang"]})
    assert load(engine).customer_id is None
    with Session(engine) as session:
        assert find_customer(session, None, "13812345678") is None


def test_sql_store_answers_the_lookup_hook(engine: Engine, customers: dict[str, int]) -> None:
    pm = pluggy.PluginManager("cti_agent")
    pm.add_hookspecs(hookspecs)
    pm.register(SqlStore(engine), name="sql")
    found = pm.hook.lookup_customer(number_e164=None, number_raw="13812345678")
    assert found == Customer(
        id=customers["zhang"], name="Zhang Wei", company="Acme", owner_rep="alice", source="sql"
    )
    assert pm.hook.lookup_customer(number_e164=None, number_raw="13900000000") is None


# --- observer ---------------------------------------------------------------------------------


def _event(kind: CallEventKind, call: Call) -> CallEvent:
    return CallEvent(kind, call, call.ended_at or call.answered_at or call.started_at)


async def test_storage_observer_writes_call_events(engine: Engine) -> None:
    observer = StorageObserver(engine)
    assert isinstance(observer, Observer)
    assert (observer.name, observer.must_deliver) == ("storage", True)
    call = make_call()
    status = LineStatus("seat-1", "line-1", "modem0", "alice", "north", LineState.RINGING, T0, "c-1")
    await observer.notify(status)
    assert count_calls(engine) == 0
    for kind, snapshot in [
        (CallEventKind.STARTED, call),
        (CallEventKind.ANSWERED, answered(call)),
        (CallEventKind.ENDED, ended(call)),
        (CallEventKind.ENDED, ended(call)),  # a retry after a lost acknowledgement
    ]:
        await observer.notify(_event(kind, snapshot))
    assert count_calls(engine) == 1
    assert load(engine).disposition == "answered"


async def test_storage_observer_raises_storage_error_and_a_retry_succeeds() -> None:
    eng = make_engine("sqlite://")  # not migrated yet: the write fails
    try:
        observer = StorageObserver(eng)
        event = _event(CallEventKind.ENDED, ended(make_call()))
        with pytest.raises(StorageError, match="writing call c-1 failed on sqlite://: no such table"):
            await observer.notify(event)
        upgrade(eng)
        await observer.notify(event)
        await observer.notify(event)
        assert count_calls(eng) == 1
    finally:
        eng.dispose()


# --- errors -----------------------------------------------------------------------------------


def test_unwritable_sqlite_directory_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(StorageError, match="cannot create the directory") as info:
        make_engine(f"sqlite:///{blocker / 'sub' / 'cti.db'}")
    assert str(blocker) in str(info.value)


def test_unopenable_sqlite_file_is_a_storage_error(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path}")  # a directory, not a database file
    try:
        with pytest.raises(StorageError, match="upgrading the schema to head failed on sqlite:///.*unable"):
            upgrade(eng)
        with pytest.raises(StorageError, match="reading the schema revision failed"):
            current_revision(eng)
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "nosuchdb://cti:s3cret@db.example/cti",
        "postgresql+nosuchdriver://cti:s3cret@db.example/cti",
        "not a url at all",
    ],
)
def test_bad_urls_are_storage_errors_without_the_password(url: str) -> None:
    with pytest.raises(StorageError) as info:
        make_engine(url)
    assert "s3cret" not in str(info.value)


def test_storage_error_hides_the_password_even_in_the_driver_message() -> None:
    url = "postgresql+psycopg://cti:s3cret@db.example:5432/cti"
    cause = sqlite3.OperationalError("authentication failed for password s3cret\nmore detail")
    error = storage_error(url, "writing call x", cause)
    assert str(error) == (
        "writing call x failed on postgresql+psycopg://cti:***@db.example:5432/cti: "
        "authentication failed for password ***"
    )
    assert safe_url(url) == "postgresql+psycopg://cti:***@db.example:5432/cti"
