"""The outbox of team mode: triggers, replay, idempotence, outages, recordings and the purge guard.

The centre here is the real seat API app in process (tests/centre_fixture.py) over a second
SQLite file and a directory store, reached by the seat's real HTTP transport; the PostgreSQL run
is in tests/integration/test_sync_pg.py. An outage is a listener that makes every statement on
the centre's database fail: the centre answers 503 and the seat sees a ``centre`` fault.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid as uuid_module
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from centre_fixture import BASE_URL, Centre
from factories import add_recording
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.errors import ConfigError
from agent.events import Call, CallEvent, CallEventKind, Disposition, EndReason
from agent.seat.centre_client import CentreClient
from agent.seat.sync import SyncLoop
from agent.seat.transport import HttpTransport
from storage.blobstore import DirectoryBlobStore, recording_key
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
from storage.repository import get_call, save_note, upsert_call

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
_NAMESPACE = uuid_module.UUID("5b0d6a58-3c1e-4e8f-9a57-0c7a1d2e3f40")
#: UUID -> the short name a test gave the call (the seat API takes real UUIDs only).
NAMES: dict[str, str] = {}


def U(name: str) -> str:
    """The call UUID this suite uses for the call it calls ``name``."""
    value = str(uuid_module.uuid5(_NAMESPACE, name))
    NAMES[value] = name
    return value


def make_call(name: str = "c-1", **changes: Any) -> Call:
    """A call of this suite (the shared factory, seat ``seat-1``, the centre's seat) named ``name``."""
    return factories.make_call(U(name), **{"device_id": "sim", "line": "L1", "started_at": T0, **changes})


def ended(name: str = "c-1", **changes: Any) -> Call:
    return make_call(
        name,
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
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "central-recordings"


@pytest.fixture
def centre(tmp_path: Path, store_dir: Path) -> Iterator[Centre]:
    engine = make_engine(f"sqlite:///{tmp_path / 'central' / 'central.db'}")
    yield Centre(engine, store_dir)
    engine.dispose()


@pytest.fixture
def central(centre: Centre) -> Engine:
    """The centre's database, which the tests read as "central"."""
    return centre.engine


@pytest.fixture
def sync(local: Engine, centre: Centre, tmp_path: Path) -> CentralSync:
    return centre.sync(local, tmp_path / "seat", batch_size=50)


def write(engine: Engine, *calls: Call) -> None:
    for call in calls:
        with Session(engine) as session, session.begin():
            upsert_call(session, call)


def outbox(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [
            (e.kind, NAMES.get(e.ref, e.ref))
            for e in session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))
        ]


def central_calls(engine: Engine) -> dict[str, CallRecord]:
    """The centre's calls by the name the test gave them, in name order."""
    with Session(engine) as session:
        rows = list(session.scalars(select(CallRecord)))
        session.expunge_all()
    return dict(sorted((NAMES.get(r.uuid, r.uuid), r) for r in rows))


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
        save_note(session, U("b"), "call back", T0 + timedelta(days=1))
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
        save_note(session, U("a"), "wants a quote", T0 + timedelta(days=2))
    results = drain(sync)
    assert results[0].calls == 2
    assert results[0].entries == 4
    rows = central_calls(central)
    assert list(rows) == ["a", "b"]
    assert rows["a"].disposition == "answered"
    assert rows["a"].talk_seconds == 60.0
    assert rows["a"].notes == "wants a quote"
    assert rows["a"].follow_up_at == T0 + timedelta(days=2)
    assert rows["b"].ended_at is None
    assert outbox(local) == []
    assert sync.status().pending == 0
    assert sync.status().last_success_at is not None


def test_a_cleared_note_is_cleared_upstream(local: Engine, central: Engine, sync: CentralSync) -> None:
    write(local, ended())
    with Session(local) as session, session.begin():
        save_note(session, U("c-1"), "first", None)
    drain(sync)
    with Session(local) as session, session.begin():
        save_note(session, U("c-1"), None, None)
    drain(sync)
    assert central_calls(central)["c-1"].notes is None


def test_the_local_customer_id_is_not_sent(local: Engine, central: Engine, sync: CentralSync) -> None:
    with Session(local) as session, session.begin():
        session.add(CustomerRecord(id=7, name="Local Co"))
    sync.ensure_schema()
    with Session(central) as session, session.begin():
        session.add(CustomerRecord(id=7, name="Someone else entirely"))
    write(local, ended(customer_id=7))
    with Session(local) as session:
        stored = get_call(session, U("c-1"))
        assert stored is not None
        assert stored.customer_id == 7
        assert call_of(stored).customer_id is None
    drain(sync)
    assert central_calls(central)["c-1"].customer_id is None


def test_a_batch_sent_twice_changes_nothing(local: Engine, central: Engine, sync: CentralSync) -> None:
    write(local, ended("a"), ended("b"))
    drain(sync)
    before = [(name, r.ended_at, r.talk_seconds) for name, r in central_calls(central).items()]
    # The seat died after the centre stored the batch, before deleting its entries: they come back.
    with Session(local) as session, session.begin():
        session.add_all([OutboxEntry(kind="call", ref=U("a")), OutboxEntry(kind="call", ref=U("b"))])
    drain(sync)
    assert [(name, r.ended_at, r.talk_seconds) for name, r in central_calls(central).items()] == before


def test_small_batches_keep_order_and_reach_the_final_state(
    local: Engine, centre: Centre, central: Engine, tmp_path: Path
) -> None:
    sync = centre.sync(local, tmp_path / "seat", batch_size=3)
    for i in range(10):
        write(local, make_call(f"c{i:02d}"))
    for i in range(10):
        write(local, ended(f"c{i:02d}"))
    results = drain(sync)
    assert [r.full for r in results[:-1]] == [True] * (len(results) - 2) + [False]
    rows = central_calls(central)
    assert len(rows) == 10
    assert all(r.ended_at is not None for r in rows.values())


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
        # The seat no longer sees the database itself: the centre answers 503 while its database is down.
        assert failed.value.kind == "centre"
    state = sync.status()
    assert state.pending_calls == 3  # rows, not entries: "a", "b", "c"
    assert "database is unavailable" in (state.last_error or "")  # the centre's 503, not the driver's error
    with Session(local) as session:
        assert session.scalar(select(func.max(OutboxEntry.attempts))) == 3
    outage.down = False
    drain(sync)
    rows = central_calls(central)
    assert [(name, r.ended_at is not None) for name, r in rows.items()] == [
        ("a", True),
        ("b", True),
        ("c", False),
    ]
    assert sync.status().pending == 0
    assert sync.status().last_error is None


def test_a_seat_needs_a_local_sqlite_database(centre: Centre, tmp_path: Path) -> None:
    pg = make_engine("postgresql+psycopg://seat@127.0.0.1:1/seat")
    try:
        with pytest.raises(ConfigError, match="SQLite"):
            CentralSync(pg, transport=centre.transport(), data_dir=tmp_path)
    finally:
        pg.dispose()


# -- recordings ---------------------------------------------------------------------------------


def local_recording(local: Engine) -> Recording:
    with Session(local) as session:
        row = session.scalars(select(Recording)).one()
        session.expunge(row)
        return row


def stored_bytes(store: DirectoryBlobStore, key: str) -> bytes:
    return b"".join(store.open_range(key))


def replace_in_store(store: DirectoryBlobStore, key: str, content: bytes) -> None:
    """Put other bytes under ``key`` through the store itself (as a bad restore or an operator would)."""
    store.delete(key)
    store.put_stream(key, [content], hashlib.sha256(content).hexdigest(), len(content))


class Damaging:
    """ASGI middleware that flips a byte of the next ``times`` recording uploads on their way in."""

    def __init__(self, app: ASGIApp, times: int) -> None:
        self.app = app
        self.times = times
        self.damaged = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upload = scope["type"] == "http" and scope["method"] == "PUT" and "/recordings/" in scope["path"]
        if not upload or self.damaged >= self.times:
            await self.app(scope, receive, send)
            return
        self.damaged += 1
        flipped = False

        async def damaged() -> Message:
            nonlocal flipped
            message = await receive()
            body = message.get("body", b"")
            if message["type"] == "http.request" and body and not flipped:
                broken = bytearray(body)
                broken[min(3, len(broken) - 1)] ^= 0xFF
                message = {**message, "body": bytes(broken)}
                flipped = True
            return message

        await self.app(scope, damaged, send)


def damaging_sync(local: Engine, centre: Centre, data_dir: Path, times: int) -> tuple[CentralSync, Damaging]:
    """A seat whose uploads reach the centre damaged ``times`` times (a bad link, a broken proxy)."""
    damaging = Damaging(centre.client.app, times)
    client = CentreClient(BASE_URL, centre.token(), client=TestClient(damaging, base_url=BASE_URL))
    sync = CentralSync(local, transport=HttpTransport(client, "seat-1"), data_dir=data_dir)
    sync.enable()
    return sync, damaging


def key_of(call: Call, ext: str = "flac") -> str:
    """Where the centre keeps this call's recording (it names the key, never the seat's path)."""
    return recording_key(call.uuid, call.started_at, ext)


def test_a_recording_is_copied_verified_and_recorded_upstream(
    local: Engine, central: Engine, centre: Centre, sync: CentralSync, tmp_path: Path
) -> None:
    source = add_recording(local, tmp_path / "seat", ended())
    results = drain(sync)
    assert results[0].recordings == 1
    row = local_recording(local)
    key = key_of(ended())
    assert stored_bytes(centre.store, key) == source.read_bytes()
    with Session(central) as session:
        upstream = session.scalars(select(Recording)).one()
        # The centre's row names its store's key (the seat's path stays on the seat).
        assert upstream.path_or_uri == key
        assert upstream.sha256 == row.sha256
        assert session.scalars(select(CallRecord)).one().uuid == U("c-1")
    with Session(local) as session:
        assert is_verified_upstream(session, row)
        assert session.get(RecordingUpload, row.id) is not None


def test_a_corrupted_copy_is_detected_and_copied_again(local: Engine, centre: Centre, tmp_path: Path) -> None:
    # A bit flipped on the way to the store: the centre hashes the body as it streams in, refuses
    # it (422) and keeps nothing; the seat's next round uploads it again.
    sync, damaging = damaging_sync(local, centre, tmp_path / "seat", times=1)
    source = add_recording(local, tmp_path / "seat", ended())
    with pytest.raises(SyncError) as failed:
        sync.run_batch()
    assert failed.value.kind == "centre"
    assert centre.store.stat(key_of(ended())) is None
    drain(sync)
    assert damaging.damaged == 1
    assert stored_bytes(centre.store, key_of(ended())) == source.read_bytes()
    with Session(local) as session:
        assert is_verified_upstream(session, local_recording(local))


def test_a_store_that_always_corrupts_is_an_error_and_nothing_is_marked(
    local: Engine, centre: Centre, tmp_path: Path
) -> None:
    # Every upload arrives damaged: each round fails as the centre's (kind "centre"; with the old
    # shared directory it was "recording_store"), nothing is stored and nothing marked verified.
    sync, _ = damaging_sync(local, centre, tmp_path / "seat", times=1_000)
    add_recording(local, tmp_path / "seat", ended())
    for _ in range(3):
        with pytest.raises(SyncError) as failed:
            sync.run_batch()
        assert failed.value.kind == "centre"
    row = local_recording(local)
    with Session(local) as session:
        assert not is_verified_upstream(session, row)
    assert sync.status().pending_recordings == 1
    assert centre.store.stat(key_of(ended())) is None


def test_a_wrong_file_already_in_the_store_is_replaced(
    local: Engine, centre: Centre, sync: CentralSync, tmp_path: Path
) -> None:
    source = add_recording(local, tmp_path / "seat", ended())
    replace_in_store(centre.store, key_of(ended()), b"half a file")
    drain(sync)
    assert stored_bytes(centre.store, key_of(ended())) == source.read_bytes()


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
    assert set(central_calls(central)) == {"c-1", "later"}


def test_a_local_file_that_does_not_match_its_checksum_is_parked(
    local: Engine, sync: CentralSync, tmp_path: Path, store_dir: Path
) -> None:
    source = add_recording(local, tmp_path / "seat", ended())
    source.write_bytes(b"something else")
    assert sync.run_batch().parked == 1
    assert not store_dir.exists() or not any(store_dir.rglob("*.flac"))


def test_a_recording_the_centre_never_takes_is_parked(
    local: Engine, central: Engine, sync: CentralSync, tmp_path: Path
) -> None:
    # Was "without a store recordings are parked": a centre without a store now answers 503 (its
    # config may be fixed, so the seat retries); what no retry fixes is a final refusal, here a
    # flag the centre's API does not take (400). It is parked at once, and its call still arrives.
    add_recording(local, tmp_path / "seat", ended(), flags=("Gain Clipped!",))
    assert sync.run_batch().parked == 1
    assert len(central_calls(central)) == 1
    assert sync.status().pending == 0


# -- the purge guard ----------------------------------------------------------------------------


def test_purge_waits_for_verification_and_rechecks_the_central_copy(
    local: Engine, centre: Centre, sync: CentralSync, tmp_path: Path
) -> None:
    add_recording(local, tmp_path / "seat", ended())
    row = local_recording(local)
    with Session(local) as session:
        assert not purge_allowed(session, row, sync.transport)  # not uploaded yet
    drain(sync)
    with Session(local) as session:
        assert purge_allowed(session, row, sync.transport)
        assert not purge_allowed(session, row, None)  # the store cannot be checked
    key = key_of(ended())
    replace_in_store(centre.store, key, b"rotten")
    with Session(local) as session, session.begin():
        assert not purge_allowed(session, row, sync.transport)
    with Session(local) as session:
        assert not is_verified_upstream(session, row)
    assert status_of(local).pending_recordings == 1
    drain(sync)
    with Session(local) as session:
        assert purge_allowed(session, row, sync.transport)
    assert hashlib.sha256(stored_bytes(centre.store, key)).hexdigest() == row.sha256


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
    down = SyncError("the centre answered 503", "centre")
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
    assert metrics.errors == ["centre", "centre", "centre", "parked"]
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
def seat(
    tmp_path: Path, centre: Centre, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Engine, Centre, list[Path]]]:
    """A seat config in team mode (the in-process centre, by URL and token file), two old recordings."""
    data = tmp_path / "data"
    token_file = tmp_path / "seat.token"
    token_file.write_text(centre.token("seat-1") + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nseat = "seat-1"\ndata_dir = "{data}"\n\n'
        f'[central]\nurl = "{BASE_URL}"\ntoken_file = "{token_file}"\n',
        encoding="utf-8",
    )
    # The commands build their client from the config as in production; only its connection is
    # the in-process centre's (unit tests open no sockets).
    monkeypatch.setattr(
        "agent.seat.transport.CentreClient",
        lambda url, token, *, verify=True: CentreClient(url, token, client=centre.client),
    )
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        enable(session)
    files = [add_recording(engine, data, ended(f"call-{n}"), f"audio {n}".encode()) for n in range(2)]
    with Session(engine) as session, session.begin():
        for row in session.scalars(select(Recording)):
            row.created_at = datetime.now(UTC) - timedelta(days=200)
    yield config, engine, centre, files
    engine.dispose()


def test_sync_status_once_and_purge_in_team_mode(seat: tuple[Path, Engine, Centre, list[Path]]) -> None:
    from click.testing import CliRunner

    from agent.commands.purge import purge
    from agent.commands.sync import sync as sync_command

    config, engine, centre, files = seat
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

    replace_in_store(centre.store, key_of(ended("call-1")), b"bit rot")
    purged = runner.invoke(purge, ["--older-than", "180d", "--config", str(config)])
    assert purged.exit_code == 0, purged.output
    assert "deleted 1 recording(s)" in purged.output
    assert "kept 1 recording(s)" in purged.output
    assert [f.exists() for f in files] == [False, True]
    shown = runner.invoke(sync_command, ["--config", str(config), "--status"])
    assert "backlog:            0 call(s), 1 recording(s)" in shown.output


def test_a_database_url_is_refused_with_the_way_to_the_centre(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from agent.commands.sync import sync as sync_command

    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    monkeypatch.setenv("CTI_AGENT_CENTRAL_URL", "postgresql+psycopg://cti:s3cret@db/cti")
    result = CliRunner().invoke(sync_command, ["--config", str(config), "--once"])
    assert result.exit_code == 2
    assert "direct-database team mode is gone" in result.output
    assert "Moving from the direct-database team mode" in result.output
    assert "s3cret" not in result.output
    shown = CliRunner().invoke(sync_command, ["--config", str(config), "--status"])
    assert shown.exit_code == 0
    assert "the direct-database team mode is gone" in shown.output
    assert "s3cret" not in shown.output


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
