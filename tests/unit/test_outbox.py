"""The outbox of team mode on SQLite: triggers, replay, idempotence, outages, recordings and the purge guard.

The "central" database here is a second SQLite file (the PostgreSQL run is in
tests/integration/test_sync_pg.py); an outage is a listener that makes every
statement on it fail.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from agent.errors import ConfigError
from agent.events import Call, CallEvent, CallEventKind, Disposition, EndReason, RecordingFacts
from agent.seat.sync import SyncLoop
from storage.db import make_engine, upgrade
from storage.models import CallRecord, CustomerRecord, OutboxEntry, Recording, RecordingUpload
from storage.outbox import (
    BatchResult,
    CentralSync,
    SyncError,
    call_of,
    disable,
    enable,
    is_verified_upstream,
    purge_allowed,
    status,
)
from storage.recordings import RecordingStore
from storage.repository import get_call, save_note, upsert_call
from storage.transfer import central_path, copy_verified

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


#: A call of this suite (the shared factory, with its defaults).
make_call = functools.partial(factories.make_call, device_id="sim", line="L1", started_at=T0)


def ended(uuid: str = "c-1", **changes: Any) -> Call:
    return make_call(
        uuid,
        answered_at=T0 + timedelta(seconds=5),
        ended_at=T0 + timedelta(seconds=65),
        ring_seconds=5.0,
        talk_seconds=60.0,
        disposition=Disposition.ANSWERED,
        end_reason=EndReason.HANGUP,
        **changes,
    )


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'seat' / 'cti-agent.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'central' / 'central.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "central-recordings"


@pytest.fixture
def sync(local: Engine, central: Engine, tmp_path: Path, store_dir: Path) -> CentralSync:
    syncer = CentralSync(local, central, data_dir=tmp_path / "seat", recordings_dir=store_dir, batch_size=50)
    syncer.enable()
    return syncer


def write(engine: Engine, *calls: Call) -> None:
    for call in calls:
        with Session(engine) as session, session.begin():
            upsert_call(session, call)


def outbox(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(e.kind, e.ref) for e in session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))]


def central_calls(engine: Engine) -> list[CallRecord]:
    with Session(engine) as session:
        return list(session.scalars(select(CallRecord).order_by(CallRecord.uuid)))


def drain(sync: CentralSync) -> list[BatchResult]:
    results = []
    for _ in range(100):
        result = sync.run_batch()
        results.append(result)
        if result.entries == 0:
            return results
    raise AssertionError("the outbox did not drain")


class Outage:
    """Makes every statement on an engine fail while ``down`` is set."""

    def __init__(self, engine: Engine) -> None:
        self.down = False
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *_args: object) -> None:
        if self.down:
            raise OperationalError("central", {}, ConnectionRefusedError("connection refused"))


# -- the triggers -------------------------------------------------------------------------------


def test_nothing_is_queued_outside_team_mode(local: Engine) -> None:
    write(local, make_call())
    assert outbox(local) == []


def test_enable_queues_the_history_once_and_then_every_write(local: Engine) -> None:
    write(local, make_call("a"), make_call("b"))
    with Session(local) as session, session.begin():
        assert enable(session) == 2
    with Session(local) as session, session.begin():
        assert enable(session) == 0
    write(local, ended("a"))
    with Session(local) as session, session.begin():
        save_note(session, "b", "call back", T0 + timedelta(days=1))
    assert outbox(local) == [("call", "a"), ("call", "b"), ("call", "a"), ("call", "b")]


def test_a_snapshot_behind_the_row_queues_nothing(local: Engine) -> None:
    write(local, ended())
    with Session(local) as session, session.begin():
        enable(session)
        session.execute(OutboxEntry.__table__.delete())
    write(local, make_call())  # a stale replay: the upsert changes nothing
    assert outbox(local) == []


def test_a_failed_local_write_queues_nothing(local: Engine) -> None:
    with Session(local) as session, session.begin():
        enable(session)
    with Session(local) as session:
        session.begin()
        upsert_call(session, make_call())
        assert outbox(local) == []  # not visible before the commit
        session.rollback()
    assert outbox(local) == []


def test_disable_stops_queuing_and_forgets(local: Engine) -> None:
    with Session(local) as session, session.begin():
        enable(session)
    write(local, make_call())
    with Session(local) as session, session.begin():
        disable(session)
    write(local, ended())
    assert outbox(local) == []


# -- replaying calls ----------------------------------------------------------------------------


def test_calls_and_notes_arrive_upstream_once_with_their_final_state(
    local: Engine, central: Engine, sync: CentralSync
) -> None:
    write(local, make_call("a"), make_call("b"), ended("a"))
    with Session(local) as session, session.begin():
        save_note(session, "a", "wants a quote", T0 + timedelta(days=2))
    results = drain(sync)
    assert results[0].calls == 2
    assert results[0].entries == 4
    rows = central_calls(central)
    assert [r.uuid for r in rows] == ["a", "b"]
    assert rows[0].disposition == "answered"
    assert rows[0].talk_seconds == 60.0
    assert rows[0].notes == "wants a quote"
    assert rows[0].follow_up_at == T0 + timedelta(days=2)
    assert rows[1].ended_at is None
    assert outbox(local) == []
    assert sync.status().pending == 0
    assert sync.status().last_success_at is not None


def test_a_cleared_note_is_cleared_upstream(local: Engine, central: Engine, sync: CentralSync) -> None:
    write(local, ended())
    with Session(local) as session, session.begin():
        save_note(session, "c-1", "first", None)
    drain(sync)
    with Session(local) as session, session.begin():
        save_note(session, "c-1", None, None)
    drain(sync)
    assert central_calls(central)[0].notes is None


def test_the_local_customer_id_is_not_sent(local: Engine, central: Engine, sync: CentralSync) -> None:
    with Session(local) as session, session.begin():
        session.add(CustomerRecord(id=7, name="Local Co"))
    with Session(central) as session, session.begin():
        sync.ensure_schema()
    with Session(central) as session, session.begin():
        session.add(CustomerRecord(id=7, name="Someone else entirely"))
    write(local, ended(customer_id=7))
    with Session(local) as session:
        stored = get_call(session, "c-1")
        assert stored is not None
        assert stored.customer_id == 7
        assert call_of(stored).customer_id is None
    drain(sync)
    assert central_calls(central)[0].customer_id is None


def test_a_batch_sent_twice_changes_nothing(local: Engine, central: Engine, sync: CentralSync) -> None:
    write(local, ended("a"), ended("b"))
    drain(sync)
    before = [(r.uuid, r.ended_at, r.talk_seconds) for r in central_calls(central)]
    # The seat died after the central commit, before deleting its entries: they come back.
    with Session(local) as session, session.begin():
        session.add_all([OutboxEntry(kind="call", ref="a"), OutboxEntry(kind="call", ref="b")])
    drain(sync)
    assert [(r.uuid, r.ended_at, r.talk_seconds) for r in central_calls(central)] == before


def test_small_batches_keep_order_and_reach_the_final_state(
    local: Engine, central: Engine, tmp_path: Path
) -> None:
    sync = CentralSync(local, central, data_dir=tmp_path / "seat", recordings_dir=None, batch_size=3)
    sync.enable()
    for i in range(10):
        write(local, make_call(f"c{i:02d}"))
    for i in range(10):
        write(local, ended(f"c{i:02d}"))
    results = drain(sync)
    assert [r.full for r in results[:-1]] == [True] * (len(results) - 2) + [False]
    rows = central_calls(central)
    assert len(rows) == 10
    assert all(r.ended_at is not None for r in rows)


def test_an_outage_loses_nothing_and_duplicates_nothing(
    local: Engine, central: Engine, sync: CentralSync
) -> None:
    outage = Outage(central)
    write(local, make_call("a"))
    drain(sync)
    outage.down = True
    # The seat keeps working while the centre is down.
    write(local, ended("a"), make_call("b"), ended("b"), make_call("c"))
    for _ in range(3):
        with pytest.raises(SyncError) as failed:
            sync.run_batch()
        assert failed.value.kind == "database"
    state = sync.status()
    assert state.pending_calls == 3  # rows, not entries: "a", "b", "c"
    assert "connection refused" in (state.last_error or "")
    with Session(local) as session:
        assert session.scalar(select(func.max(OutboxEntry.attempts))) == 3
    outage.down = False
    drain(sync)
    rows = central_calls(central)
    assert [(r.uuid, r.ended_at is not None) for r in rows] == [("a", True), ("b", True), ("c", False)]
    assert sync.status().pending == 0
    assert sync.status().last_error is None


def test_a_seat_needs_a_local_sqlite_database(central: Engine, tmp_path: Path) -> None:
    pg = make_engine("postgresql+psycopg://seat@127.0.0.1:1/seat")
    try:
        with pytest.raises(ConfigError, match="SQLite"):
            CentralSync(pg, central, data_dir=tmp_path, recordings_dir=None)
    finally:
        pg.dispose()


# -- recordings ---------------------------------------------------------------------------------


def add_recording(local: Engine, data_dir: Path, call: Call, content: bytes = b"fLaC audio bytes") -> Path:
    store = RecordingStore(data_dir, local)
    paths = store.paths(call.uuid, call.started_at, "flac")
    paths.final.parent.mkdir(parents=True, exist_ok=True)
    paths.final.write_bytes(content)
    facts = RecordingFacts(
        call_uuid=call.uuid,
        path=store.relative(paths.final),
        codec="flac",
        sample_rate=8000,
        channels=1,
        seconds=60.0,
        bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        status="complete",
    )
    store.save(facts, call)
    return paths.final


def local_recording(local: Engine) -> Recording:
    with Session(local) as session:
        row = session.scalars(select(Recording)).one()
        session.expunge(row)
        return row


def test_a_recording_is_copied_verified_and_recorded_upstream(
    local: Engine, central: Engine, sync: CentralSync, tmp_path: Path, store_dir: Path
) -> None:
    source = add_recording(local, tmp_path / "seat", ended())
    results = drain(sync)
    assert results[0].recordings == 1
    row = local_recording(local)
    copy = central_path(store_dir, row.path_or_uri)
    assert copy.read_bytes() == source.read_bytes()
    with Session(central) as session:
        upstream = session.scalars(select(Recording)).one()
        assert upstream.path_or_uri == row.path_or_uri
        assert upstream.sha256 == row.sha256
        assert session.scalars(select(CallRecord)).one().uuid == "c-1"
    with Session(local) as session:
        assert is_verified_upstream(session, row)
        assert session.get(RecordingUpload, row.id) is not None


def test_a_corrupted_copy_is_detected_and_copied_again(
    local: Engine, central: Engine, tmp_path: Path, store_dir: Path
) -> None:
    copies: list[Path] = []

    def flaky(source: Path, dest: Path) -> None:
        shutil.copyfile(source, dest)
        copies.append(dest)
        if len(copies) == 1:
            with dest.open("r+b") as f:  # a bit flipped on the way to the store
                f.seek(3)
                f.write(b"\xff")

    sync = CentralSync(local, central, data_dir=tmp_path / "seat", recordings_dir=store_dir, copy=flaky)
    sync.enable()
    source = add_recording(local, tmp_path / "seat", ended())
    drain(sync)
    assert len(copies) == 2
    assert central_path(store_dir, local_recording(local).path_or_uri).read_bytes() == source.read_bytes()


def test_a_store_that_always_corrupts_is_an_error_and_nothing_is_marked(
    local: Engine, central: Engine, tmp_path: Path, store_dir: Path
) -> None:
    def broken(source: Path, dest: Path) -> None:
        dest.write_bytes(source.read_bytes()[::-1])

    sync = CentralSync(local, central, data_dir=tmp_path / "seat", recordings_dir=store_dir, copy=broken)
    sync.enable()
    add_recording(local, tmp_path / "seat", ended())
    with pytest.raises(SyncError) as failed:
        sync.run_batch()
    assert failed.value.kind == "recording_store"
    row = local_recording(local)
    with Session(local) as session:
        assert not is_verified_upstream(session, row)
    assert sync.status().pending_recordings == 1
    assert not central_path(store_dir, row.path_or_uri).exists()


def test_a_wrong_file_already_in_the_store_is_replaced(
    local: Engine, sync: CentralSync, tmp_path: Path, store_dir: Path
) -> None:
    source = add_recording(local, tmp_path / "seat", ended())
    dest = central_path(store_dir, local_recording(local).path_or_uri)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"half a file")
    drain(sync)
    assert dest.read_bytes() == source.read_bytes()


def test_a_missing_local_file_is_parked_and_the_rest_goes_on(
    local: Engine, central: Engine, sync: CentralSync, tmp_path: Path
) -> None:
    source = add_recording(local, tmp_path / "seat", ended())
    source.unlink()
    write(local, ended("later"))
    result = sync.run_batch()
    assert result.parked == 1
    assert result.calls == 2
    state = sync.status()
    assert state.parked == 1
    assert state.pending == 0
    assert {r.uuid for r in central_calls(central)} == {"c-1", "later"}


def test_a_local_file_that_does_not_match_its_checksum_is_parked(
    local: Engine, sync: CentralSync, tmp_path: Path, store_dir: Path
) -> None:
    source = add_recording(local, tmp_path / "seat", ended())
    source.write_bytes(b"something else")
    assert sync.run_batch().parked == 1
    assert not store_dir.exists() or not any(store_dir.rglob("*.flac"))


def test_without_a_store_recordings_are_parked(local: Engine, central: Engine, tmp_path: Path) -> None:
    sync = CentralSync(local, central, data_dir=tmp_path / "seat", recordings_dir=None)
    sync.enable()
    add_recording(local, tmp_path / "seat", ended())
    assert sync.run_batch().parked == 1
    assert len(central_calls(central)) == 1


def test_copy_verified_keeps_a_matching_copy(tmp_path: Path) -> None:
    source = tmp_path / "a.flac"
    source.write_bytes(b"audio")
    dest = tmp_path / "store" / "a.flac"
    digest = hashlib.sha256(b"audio").hexdigest()
    assert copy_verified(source, dest, digest) is True
    assert copy_verified(source, dest, digest) is False
    assert [p.name for p in dest.parent.iterdir()] == ["a.flac"]


@pytest.mark.parametrize("bad", ["/etc/passwd", "recordings/../../x.flac", ""])
def test_central_path_stays_in_the_store(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="relative"):
        central_path(tmp_path, bad)


# -- the purge guard ----------------------------------------------------------------------------


def test_purge_waits_for_verification_and_rechecks_the_central_copy(
    local: Engine, sync: CentralSync, tmp_path: Path, store_dir: Path
) -> None:
    add_recording(local, tmp_path / "seat", ended())
    row = local_recording(local)
    with Session(local) as session:
        assert not purge_allowed(session, row, sync.transport)  # not uploaded yet
    drain(sync)
    with Session(local) as session:
        assert purge_allowed(session, row, sync.transport)
        assert not purge_allowed(session, row, None)  # the store cannot be checked
    copy = central_path(store_dir, row.path_or_uri)
    copy.write_bytes(b"rotten")
    with Session(local) as session, session.begin():
        assert not purge_allowed(session, row, sync.transport)
    with Session(local) as session:
        assert not is_verified_upstream(session, row)
    assert status_of(local).pending_recordings == 1
    drain(sync)
    with Session(local) as session:
        assert purge_allowed(session, row, sync.transport)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == row.sha256


def status_of(engine: Engine) -> Any:
    with Session(engine) as session:
        return status(session)


# -- the loop -----------------------------------------------------------------------------------


class FakeBatcher:
    def __init__(self, outcomes: list[BatchResult | Exception]) -> None:
        self.outcomes = outcomes
        self.closed = False

    def enable(self) -> int:
        return 0

    def run_batch(self) -> BatchResult:
        outcome = self.outcomes.pop(0) if self.outcomes else BatchResult(0, 0, 0, 0, 0, False)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        self.closed = True


class FakeMetrics:
    def __init__(self) -> None:
        self.backlog: list[int] = []
        self.errors: list[str] = []
        self.successes: list[float] = []

    def sync_backlog(self, entries: int) -> None:
        self.backlog.append(entries)

    def sync_error(self, kind: str) -> None:
        self.errors.append(kind)

    def sync_succeeded(self, timestamp: float) -> None:
        self.successes.append(timestamp)


def test_backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() -> None:
    low = SyncLoop(FakeBatcher([]), backoff_start=1.0, backoff_max=10.0, rand=lambda: 0.0)
    high = SyncLoop(FakeBatcher([]), backoff_start=1.0, backoff_max=10.0, rand=lambda: 0.999999)
    assert [low.backoff(n) for n in (1, 2, 3, 4, 5, 9)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [round(high.backoff(n), 3) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]


async def test_the_loop_backs_off_while_down_and_resets_when_back() -> None:
    down = SyncError("connection refused", "database")
    batcher = FakeBatcher(
        [
            down,
            down,
            down,
            BatchResult(10, 10, 0, 0, 5, True),
            BatchResult(5, 4, 1, 1, 0, False),
        ]
    )
    metrics = FakeMetrics()
    waits: list[float] = []
    loop: SyncLoop

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    loop = SyncLoop(
        batcher,
        interval=60.0,
        backoff_start=1.0,
        backoff_max=30.0,
        metrics=metrics,
        rand=lambda: 0.0,
        sleep=sleep,
        clock=lambda: 1234.0,
    )
    assert [await loop.step() for _ in range(5)] == [0.5, 1.0, 2.0, 0.0, 60.0]
    assert loop.failures == 0
    assert metrics.errors == ["database", "database", "database", "parked"]
    assert metrics.backlog == [5, 0]
    assert metrics.successes == [1234.0, 1234.0]

    # Run: the failures are slept out, a call's end wakes the idle loop, and close stops it.
    batcher.outcomes = [down, BatchResult(1, 1, 0, 0, 0, False), BatchResult(1, 1, 0, 0, 0, False)]
    loop.start()
    for _ in range(200):
        if not batcher.outcomes:
            break
        if len(batcher.outcomes) == 1:
            await loop.notify(CallEvent(CallEventKind.ENDED, ended(), T0))
        await asyncio.sleep(0.01)
    assert batcher.outcomes == []
    assert 0.5 in waits
    await loop.aclose()
    assert batcher.closed


# -- the commands: sync --status / --once, purge in team mode -----------------------------------


@pytest.fixture
def seat(tmp_path: Path) -> tuple[Path, Engine, Path, list[Path]]:
    """A seat config in team mode (the "central" database is a SQLite file) with two old recordings."""
    data = tmp_path / "data"
    store_dir = tmp_path / "store"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{data}"\n\n'
        f'[central]\nurl = "sqlite:///{tmp_path / "central.db"}"\nrecordings_dir = "{store_dir}"\n',
        encoding="utf-8",
    )
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        enable(session)
    files = [add_recording(engine, data, ended(f"call-{n}"), f"audio {n}".encode()) for n in range(2)]
    with Session(engine) as session, session.begin():
        for row in session.scalars(select(Recording)):
            row.created_at = datetime.now(UTC) - timedelta(days=200)
    return config, engine, store_dir, files


def test_sync_status_once_and_purge_in_team_mode(seat: tuple[Path, Engine, Path, list[Path]]) -> None:
    from click.testing import CliRunner

    from agent.commands.purge import purge
    from agent.commands.sync import sync as sync_command

    config, engine, store_dir, files = seat
    runner = CliRunner()
    shown = runner.invoke(sync_command, ["--config", str(config), "--status"])
    assert shown.exit_code == 0, shown.output
    assert "backlog:            2 call(s), 2 recording(s)" in shown.output

    purged = runner.invoke(purge, ["--older-than", "180d", "--config", str(config)])
    assert purged.exit_code == 0, purged.output
    assert "deleted 0 recording(s)" in purged.output
    assert "kept 2 recording(s) not yet verified upstream" in purged.output
    assert all(f.exists() for f in files)

    once = runner.invoke(sync_command, ["--config", str(config), "--once"])
    assert once.exit_code == 0, once.output
    assert "sent 2 call(s) and 2 recording(s)" in once.output
    shown = runner.invoke(sync_command, ["--config", str(config), "--status"])
    assert "backlog:            0 call(s), 0 recording(s)" in shown.output
    assert "last in sync:       20" in shown.output

    with Session(engine) as session:
        second = session.scalars(select(Recording).where(Recording.call_uuid == "call-1")).one()
        central_path(store_dir, second.path_or_uri).write_bytes(b"bit rot")
    purged = runner.invoke(purge, ["--older-than", "180d", "--config", str(config)])
    assert purged.exit_code == 0, purged.output
    assert "deleted 1 recording(s)" in purged.output
    assert "kept 1 recording(s)" in purged.output
    assert [f.exists() for f in files] == [False, True]
    shown = runner.invoke(sync_command, ["--config", str(config), "--status"])
    assert "backlog:            0 call(s), 1 recording(s)" in shown.output


def test_sync_without_a_central_url_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.commands.sync import sync as sync_command

    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    result = CliRunner().invoke(sync_command, ["--config", str(config), "--once"])
    assert result.exit_code == 2
    assert "no central database" in result.output
    shown = CliRunner().invoke(sync_command, ["--config", str(config), "--status"])
    assert shown.exit_code == 0
    assert "not configured (single-machine mode)" in shown.output
    assert "outbox:             off" in shown.output


def test_the_central_url_gets_a_connect_timeout_unless_it_has_one() -> None:
    from agent.seat.transport import with_connect_timeout

    assert with_connect_timeout("postgresql+psycopg://u:s3cret@db/cti") == (
        "postgresql+psycopg://u:s3cret@db/cti?connect_timeout=10"
    )
    assert (
        with_connect_timeout("postgresql://db/cti?connect_timeout=3")
        == "postgresql://db/cti?connect_timeout=3"
    )
    assert with_connect_timeout("sqlite:///central.db") == "sqlite:///central.db"
