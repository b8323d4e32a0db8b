"""Park, don't block: permanent or transient errors, the parked-calls file, parking in the runtime and outbox.

A refusal is made real on SQLite with a trigger that aborts a write (SQLite
reports it as an integrity error, as PostgreSQL reports a NUL byte as a data
error); the outbox's centre is the real seat API app in process over such a
database (tests/centre_fixture.py); the PostgreSQL run is
tests/integration/test_parking_pg.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from centre_fixture import Centre
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session

from agent.errors import StorageError
from agent.events import Call, CallEvent, CallEventKind, Direction
from agent.seat.metrics import Metrics
from agent.seat.pipe import ObserverPipe
from agent.seat.sync import SyncLoop
from storage.db import make_engine, storage_errors, upgrade
from storage.faults import PARK_AFTER, Rejected, SyncError, is_permanent
from storage.models import CallRecord, OutboxEntry
from storage.observer import PARKED_NAME, ParkedCalls, StorageObserver
from storage.outbox import retry_parked
from storage.repository import upsert_call

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
REFUSE = "refuse me"


def make_call(n: int, name: str | None = None) -> Call:
    return Call(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        seat="seat-1",
        device_id="sim",
        line="L1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=T0 + timedelta(minutes=n),
        number_raw=f"1380000{n:04d}",
        number_e164=f"+861380000{n:04d}",
        cid_name=name,
    )


def started(call: Call) -> CallEvent:
    return CallEvent(CallEventKind.STARTED, call, call.started_at)


def refuse_names(engine: Engine) -> None:
    """Make the database refuse (as an integrity error) any call named ``REFUSE``."""
    with engine.begin() as connection:
        for when in ("INSERT", "UPDATE"):
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse_{when.lower()} BEFORE {when} ON calls "
                f"WHEN NEW.cid_name = '{REFUSE}' BEGIN SELECT RAISE(ABORT, 'name refused'); END"
            )


def stop_refusing(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER refuse_insert")
        connection.exec_driver_sql("DROP TRIGGER refuse_update")


def stored(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(CallRecord.uuid).order_by(CallRecord.uuid)))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'data' / 'cti-agent.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


# -- the classification -------------------------------------------------------------------------


def _wrapped(exc: BaseException, engine: Engine) -> StorageError:
    """``exc`` as the storage layer raises it: a StorageError caused by it."""
    try:
        with storage_errors(engine, "writing call x"):
            raise exc
    except StorageError as wrapped:
        return wrapped
    raise AssertionError("not raised")


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (IntegrityError("INSERT", {}, sqlite3.IntegrityError("CHECK constraint failed")), True),
        (DataError("INSERT", {}, ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes")), True),
        (StatementError("bind", "INSERT", {}, ValueError("naive datetime")), True),
        (ValueError("not a direction"), True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
        (OperationalError("INSERT", {}, ConnectionRefusedError("connection refused")), False),
        (OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")), False),
        (InterfaceError("INSERT", {}, Exception("connection already closed")), False),
        (OSError(28, "No space left on device"), False),
        (RuntimeError("something unforeseen"), False),
        (SyncError("down", "centre"), False),
        (Rejected("no store"), True),
    ],
)
def test_permanent_and_transient_errors(error: BaseException, permanent: bool, engine: Engine) -> None:
    assert is_permanent(error) is permanent
    if isinstance(error, StatementError | OSError):
        assert is_permanent(_wrapped(error, engine)) is permanent


def test_a_driver_error_is_classified_by_its_pep_249_name() -> None:
    class DataError(Exception):  # what psycopg.DataError is called
        pass

    class OperationalError(Exception):
        pass

    assert is_permanent(DataError("NUL")) is True
    assert is_permanent(OperationalError("server closed the connection")) is False


# -- the parked-calls file ----------------------------------------------------------------------


def test_parked_calls_keep_the_latest_snapshot_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / PARKED_NAME
    parked = ParkedCalls(path)
    assert parked.count() == 0
    first = make_call(1, REFUSE)
    parked.add(started(first), "name refused", T0)
    ended = CallEvent(CallEventKind.ENDED, dataclasses.replace(first, ended_at=T0 + timedelta(minutes=2)), T0)
    parked.add(ended, "name refused again", T0 + timedelta(minutes=2))
    parked.add(started(make_call(2, REFUSE)), "name refused", T0 + timedelta(minutes=3))
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed
    again = ParkedCalls(path)  # a new process
    entries = again.load()
    assert again.count() == 2
    assert [e.event.kind for e in entries] == [CallEventKind.ENDED, CallEventKind.STARTED]
    assert entries[0].parked_at == T0  # parked since the first refusal
    assert entries[0].reason == "name refused again"
    assert again.remove({first.uuid}) == 1
    assert again.count() == 1
    assert again.remove({make_call(2).uuid}) == 1
    assert not path.exists()


def test_an_unreadable_parked_line_is_kept_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / PARKED_NAME
    path.write_text("{broken\n", encoding="utf-8")
    parked = ParkedCalls(path)
    parked.add(started(make_call(1, "x\x00y")), "NUL", T0)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "{broken" in lines
    assert parked.count() == 2
    assert parked.load()[0].event.call.cid_name == "x\x00y"  # the name exactly as it came
    assert json.loads(next(line for line in lines if line != "{broken"))["reason"] == "NUL"


# -- the storage observer and the runtime's retry loop ------------------------------------------


async def test_the_observer_tells_a_refusal_from_a_fault(engine: Engine) -> None:
    refuse_names(engine)
    observer = StorageObserver(engine)
    with pytest.raises(Rejected, match="name refused"):
        await observer.notify(started(make_call(1, REFUSE)))
    down = make_engine("sqlite://")  # not migrated: "no such table" is transient
    try:
        with pytest.raises(StorageError) as info:
            await StorageObserver(down).notify(started(make_call(1)))
        assert not isinstance(info.value, Rejected)
    finally:
        down.dispose()


class CountingMetrics:
    def __init__(self) -> None:
        self.errors = 0

    def observer_error(self, name: str) -> None:
        self.errors += 1

    def queue_depth(self, name: str, depth: int) -> None:
        pass


async def _deliver_all(pipe: ObserverPipe, messages: list[CallEvent]) -> None:
    task = asyncio.create_task(pipe.run())
    try:
        for message in messages:
            pipe.queue.put_nowait(message)
        await asyncio.wait_for(pipe.queue.join(), 20)
    finally:
        task.cancel()


async def test_a_refused_call_is_parked_after_bounded_tries_and_later_calls_are_written(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.seat.pipe.BACKOFF_START", 0.01)
    refuse_names(engine)
    parked = ParkedCalls(tmp_path / "data" / PARKED_NAME)
    observer = StorageObserver(engine, parked=parked)
    metrics = CountingMetrics()
    pipe = ObserverPipe(observer, metrics, parking=observer, clock=lambda: T0)  # type: ignore[arg-type]
    bad = make_call(0, REFUSE)
    ended_bad = CallEvent(
        CallEventKind.ENDED, dataclasses.replace(bad, ended_at=T0 + timedelta(seconds=30)), T0
    )
    await _deliver_all(pipe, [started(bad)] + [started(make_call(n)) for n in range(1, 6)] + [ended_bad])
    assert stored(engine) == [make_call(n).uuid for n in range(1, 6)]
    # PARK_AFTER tries for the first snapshot; a later one of a parked call is parked at its first refusal.
    assert metrics.errors == PARK_AFTER + 1
    entries = ParkedCalls(parked.path).load()
    assert [(e.event.call.uuid, e.event.kind) for e in entries] == [(bad.uuid, CallEventKind.ENDED)]
    assert "name refused" in entries[0].reason
    assert observer.parked_count() == 1

    # After the fix, a later snapshot that goes in clears the parked one.
    stop_refusing(engine)
    await observer.notify(ended_bad)
    assert bad.uuid in stored(engine)
    assert observer.parked_count() == 0


async def test_transient_faults_are_never_parked(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.seat.pipe.BACKOFF_START", 0.01)
    observer = StorageObserver(engine, parked=ParkedCalls(tmp_path / PARKED_NAME))
    failures = {"left": PARK_AFTER + 2}
    real = observer.notify

    async def flaky(message: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise StorageError("database is locked (simulated)")
        await real(message)

    monkeypatch.setattr(observer, "notify", flaky)
    pipe = ObserverPipe(observer, CountingMetrics(), parking=observer)  # type: ignore[arg-type]
    await _deliver_all(pipe, [started(make_call(1))])
    assert stored(engine) == [make_call(1).uuid]
    assert observer.parked_count() == 0


# -- the outbox ---------------------------------------------------------------------------------


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    eng = make_engine(f"sqlite:///{tmp_path / 'central' / 'central.db'}")
    yield Centre(eng, tmp_path / "central" / "recordings")
    eng.dispose()


@pytest.fixture
def central(centre: Centre) -> Engine:
    """The centre's database, which the tests read as "central"."""
    return centre.engine


def write(engine: Engine, *calls: Call) -> None:
    for call in calls:
        with Session(engine) as session, session.begin():
            upsert_call(session, call)


def test_a_call_the_centre_refuses_is_parked_and_does_not_block_the_outbox(
    engine: Engine, centre: Centre, central: Engine, tmp_path: Path
) -> None:
    sync = centre.sync(engine, tmp_path / "data", batch_size=50)
    sync.ensure_schema()
    refuse_names(central)
    write(engine, make_call(0, REFUSE), *(make_call(n) for n in range(1, 6)))
    first = sync.run_batch()
    assert first.calls == 5  # the centre refused one call alone; the other five went in
    assert first.parked == 0
    assert stored(central) == [make_call(n).uuid for n in range(1, 6)]
    assert sync.status().pending == 1
    results = [sync.run_batch() for _ in range(PARK_AFTER - 1)]
    assert [r.parked for r in results] == [0] * (PARK_AFTER - 2) + [1]
    state = sync.status()
    assert (state.pending, state.parked) == (0, 1)
    assert results[-1].parked_total == 1
    write(engine, make_call(6))
    assert sync.run_batch().calls == 1  # later calls flow on
    with Session(engine) as session:
        entry = session.scalars(select(OutboxEntry).where(OutboxEntry.parked.is_(True))).one()
        assert entry.rejections == PARK_AFTER
        assert entry.parked_at is not None
        assert "name refused" in (entry.last_error or "")

    # After the fix: queued again, and sent.
    stop_refusing(central)
    with Session(engine) as session, session.begin():
        assert retry_parked(session) == 1
    assert sync.status().pending == 1
    assert sync.run_batch().calls == 1
    assert sync.status().parked == 0
    assert make_call(0).uuid in stored(central)


def test_an_outage_never_parks_and_the_error_carries_the_backlog(
    engine: Engine, centre: Centre, central: Engine, tmp_path: Path
) -> None:
    sync = centre.sync(engine, tmp_path / "data")
    write(engine, *(make_call(n) for n in range(3)))
    down = {"on": True}

    def fail(*_args: object) -> None:
        if down["on"]:
            raise OperationalError("central", {}, ConnectionRefusedError("connection refused"))

    event.listen(central, "before_cursor_execute", fail)
    for _ in range(PARK_AFTER + 2):
        with pytest.raises(SyncError) as failed:
            sync.run_batch()
        assert (failed.value.pending, failed.value.parked) == (3, 0)
    assert sync.status().parked == 0
    down["on"] = False
    assert sync.run_batch().calls == 3


class FakeBatcher:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes

    def enable(self) -> int:
        return 0

    def run_batch(self) -> Any:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        pass


async def test_the_backlog_gauge_follows_failed_rounds_too() -> None:
    from storage.outbox import BatchResult

    registry = CollectorRegistry()
    metrics = Metrics(registry, seat="s1")
    loop = SyncLoop(
        FakeBatcher(
            [
                SyncError("down", "centre", pending=27, parked=1),
                SyncError("down", "centre", pending=28, parked=1),
                BatchResult(28, 28, 0, 0, 0, False, parked_total=1),
            ]
        ),
        metrics=metrics,
        rand=lambda: 0.0,
    )
    await loop.step()
    assert registry.get_sample_value("cti_sync_backlog") == 27
    assert registry.get_sample_value("cti_sync_parked") == 1
    await loop.step()
    assert registry.get_sample_value("cti_sync_backlog") == 28
    assert (loop.backlog, loop.parked) == (28, 1)
    await loop.step()
    assert registry.get_sample_value("cti_sync_backlog") == 0
    assert registry.get_sample_value("cti_storage_parked") == 0


# -- the command --------------------------------------------------------------------------------


def test_sync_status_shows_parked_calls_and_retry_parked_writes_them(engine: Engine, tmp_path: Path) -> None:
    from agent.commands.sync import sync as sync_command

    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    parked = ParkedCalls(tmp_path / "data" / PARKED_NAME)
    parked.add(started(make_call(1, "a\x00b")), "writing call x failed: NUL (0x00) bytes", T0)
    runner = CliRunner()
    shown = runner.invoke(sync_command, ["--config", str(config), "--status"])
    assert shown.exit_code == 0, shown.output
    assert "parked calls:       1 the local database refused" in shown.output
    assert f"parked call {make_call(1).uuid} since 2024-05-06 09:00:00 UTC" in shown.output
    assert "NUL (0x00) bytes" in shown.output

    refuse_names(engine)
    parked.add(started(make_call(2, REFUSE)), "name refused", T0)
    retried = runner.invoke(sync_command, ["--config", str(config), "--retry-parked"])
    assert retried.exit_code == 0, retried.output
    assert "parked calls: 1 written, 1 still refused" in retried.output
    assert stored(engine) == [make_call(1).uuid]  # SQLite takes the NUL; the refused one stays parked
    assert [e.event.call.uuid for e in ParkedCalls(parked.path).load()] == [make_call(2).uuid]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT cid_name FROM calls")).scalar() == "a\x00b"


def test_healthz_and_the_page_state_show_what_is_parked() -> None:
    from starlette.testclient import TestClient

    from agent.seat.web.app import make_seat_app
    from agent.seat.web.bus import SeatBus
    from agent.seat.web.context import SeatContext

    counts = {"storage_parked": 1, "sync_backlog": 27, "sync_parked": 2}
    client = TestClient(
        make_seat_app(SeatContext(bus=SeatBus(), seat="s1", health=lambda: counts)),
        base_url="http://127.0.0.1",
    )
    assert client.get("/healthz").json() == {"status": "ok", "seat": "s1", "clients": 0, **counts}
    state = client.get("/api/state").json()
    assert (state["storage_parked"], state["sync_backlog"], state["sync_parked"]) == (1, 27, 2)
