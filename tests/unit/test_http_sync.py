"""A seat's outbox replayed to the centre's seat API (in process): per-entry answers, credentials, outages.

The centre here is the real seat API app over a SQLite database, reached through Starlette's
test client (real HTTP semantics, no socket); the process-level run over real HTTP is in
tests/integration/test_centre_sync.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import add_recording, ended, make_call
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.config import Config
from agent.errors import ConfigError
from agent.events import Call
from agent.seat.centre_client import CentreClient
from agent.seat.transport import HttpTransport, make_transport
from storage.blobstore import DirectoryBlobStore
from storage.db import make_engine, upgrade
from storage.faults import PARK_AFTER, SyncError
from storage.models import CallRecord, OutboxEntry, Recording
from storage.outbox import CentralSync, purge_allowed, retry_parked
from storage.repository import save_note, upsert_call
from storage.seats import add_seat, revoke_seat

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
UUID = "6a1c0e2f-1111-4222-8333-{:012d}"


def call(n: int, seat: str = "seat-1", **changes: Any) -> Call:
    return ended(make_call(UUID.format(n), seat=seat, started_at=T0 + timedelta(minutes=n), **changes))


@pytest.fixture
def centre_db(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'centre' / 'centre.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'seat' / 'cti-agent.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def centre_store(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "centre" / "recordings")


@pytest.fixture
def centre(centre_db: Engine, registry: CollectorRegistry, centre_store: DirectoryBlobStore) -> TestClient:
    ctx = SeatApiContext(engine=centre_db, metrics=SeatApiMetrics(registry), store=centre_store)
    return TestClient(Starlette(routes=seat_api_routes(ctx)), base_url="http://centre.test")


def token_for(centre_db: Engine, seat: str = "seat-1") -> str:
    with Session(centre_db) as session, session.begin():
        return add_seat(session, seat, "north")[1]


def syncer(
    local: Engine, centre: TestClient, token: str, tmp_path: Path, seat: str = "seat-1"
) -> CentralSync:
    client = CentreClient("http://centre.test", token, client=centre)
    sync = CentralSync(
        local, transport=HttpTransport(client, seat), data_dir=tmp_path / "seat", batch_size=50
    )
    sync.enable()
    return sync


def write(engine: Engine, *calls: Call) -> None:
    for c in calls:
        with Session(engine) as session, session.begin():
            upsert_call(session, c)


def stored(engine: Engine) -> dict[str, CallRecord]:
    with Session(engine) as session:
        rows = list(session.scalars(select(CallRecord)))
        for row in rows:
            session.expunge(row)
    return {row.uuid: row for row in rows}


def test_calls_and_notes_reach_the_centre_once_over_the_seat_api(
    local: Engine, centre_db: Engine, centre: TestClient, tmp_path: Path, registry: CollectorRegistry
) -> None:
    sync = syncer(local, centre, token_for(centre_db), tmp_path)
    write(local, *(call(n) for n in range(3)))
    with Session(local) as session, session.begin():
        save_note(session, UUID.format(1), "wants a quote 报价", T0 + timedelta(days=1))
    result = sync.run_batch()
    assert (result.calls, result.parked, result.remaining) == (3, 0, 0)
    rows = stored(centre_db)
    assert sorted(rows) == [UUID.format(n) for n in range(3)]
    assert rows[UUID.format(1)].notes == "wants a quote 报价"
    assert rows[UUID.format(0)].talk_seconds == 90.0  # the factory's ended() default
    # A replay of the same rows changes nothing at the centre and is answered "duplicate".
    with Session(local) as session, session.begin():
        session.add_all(OutboxEntry(kind="call", ref=UUID.format(n)) for n in range(3))
    assert sync.run_batch().calls == 3
    assert registry.get_sample_value("cti_centre_sync_entries_total", {"status": "duplicate"}) == 3
    assert stored(centre_db).keys() == rows.keys()


def test_a_row_the_centre_rejects_is_parked_alone_and_the_rest_flows(
    local: Engine, centre_db: Engine, centre: TestClient, tmp_path: Path
) -> None:
    sync = syncer(local, centre, token_for(centre_db), tmp_path)
    # A NUL byte in a caller-ID name: the seat's SQLite keeps it, the centre's API refuses it.
    write(local, call(0, cid_name="bad\x00name"), *(call(n) for n in range(1, 4)))
    first = sync.run_batch()
    assert (first.calls, first.parked) == (3, 0)
    assert sorted(stored(centre_db)) == [UUID.format(n) for n in range(1, 4)]
    results = [sync.run_batch() for _ in range(PARK_AFTER - 1)]
    assert [r.parked for r in results] == [0] * (PARK_AFTER - 2) + [1]
    state = sync.status()
    assert (state.pending, state.parked) == (0, 1)
    with Session(local) as session:
        entry = session.scalars(select(OutboxEntry).where(OutboxEntry.parked.is_(True))).one()
        assert entry.ref == UUID.format(0)
        assert "NUL" in (entry.last_error or "")
    write(local, call(9))
    assert sync.run_batch().calls == 1  # later calls flow on
    # After the fix on the seat, the parked call is queued again and goes through.
    write(local, call(0, cid_name="good name"))
    with Session(local) as session, session.begin():
        assert retry_parked(session) >= 1
    while sync.run_batch().entries:
        pass
    assert stored(centre_db)[UUID.format(0)].cid_name == "good name"


def test_a_wrong_or_revoked_token_fails_the_batch_and_loses_nothing(
    local: Engine, centre_db: Engine, centre: TestClient, tmp_path: Path, registry: CollectorRegistry
) -> None:
    token = token_for(centre_db)
    sync = syncer(local, centre, "cti_seat_not-a-real-one", tmp_path)
    write(local, call(1), call(2))
    with pytest.raises(SyncError) as failed:
        sync.run_batch()
    assert failed.value.kind == "credential"
    assert failed.value.pending == 2
    assert stored(centre_db) == {}
    assert registry.get_sample_value("cti_centre_auth_failures_total", {"reason": "unknown"}) == 1

    good = syncer(local, centre, token, tmp_path)
    assert good.run_batch().calls == 2
    with Session(centre_db) as session, session.begin():
        revoke_seat(session, "seat-1")
    write(local, call(3))
    revoked = syncer(local, centre, token, tmp_path)
    with pytest.raises(SyncError, match="refused this seat"):
        revoked.run_batch()
    assert sync.status().pending == 1
    assert UUID.format(3) not in stored(centre_db)


def test_another_seats_token_is_caught_before_anything_is_sent(
    local: Engine, centre_db: Engine, centre: TestClient, tmp_path: Path
) -> None:
    other = token_for(centre_db, "seat-2")
    sync = syncer(local, centre, other, tmp_path, seat="seat-1")
    write(local, call(1))
    with pytest.raises(SyncError, match="seat 'seat-2'.s, not this seat's") as failed:
        sync.run_batch()
    assert failed.value.kind == "credential"
    assert stored(centre_db) == {}


def test_a_seat_writing_as_another_seat_is_refused(
    local: Engine, centre_db: Engine, centre: TestClient, tmp_path: Path
) -> None:
    token = token_for(centre_db, "seat-1")
    sync = syncer(local, centre, token, tmp_path)
    write(local, call(1, seat="seat-2"))  # a row of another seat's name in this seat's database
    with pytest.raises(SyncError, match="cannot write as"):
        sync.run_batch()
    assert stored(centre_db) == {}
    assert sync.status().pending == 1


def test_the_centres_database_down_is_a_retry_with_the_backlog(
    local: Engine, centre_db: Engine, centre: TestClient, tmp_path: Path
) -> None:
    sync = syncer(local, centre, token_for(centre_db), tmp_path)
    sync.ensure_schema()  # the token is checked while the centre is up
    write(local, *(call(n) for n in range(4)))
    down = {"on": True}

    def fail(*_args: object) -> None:
        if down["on"]:
            raise OperationalError("centre", {}, ConnectionRefusedError("connection refused"))

    event.listen(centre_db, "before_cursor_execute", fail)
    for _ in range(PARK_AFTER + 1):
        with pytest.raises(SyncError) as failed:
            sync.run_batch()
        assert failed.value.kind == "centre"
        assert (failed.value.pending, failed.value.parked) == (4, 0)
    down["on"] = False
    assert sync.run_batch().calls == 4
    assert len(stored(centre_db)) == 4


def test_the_seat_reports_its_backlog_to_the_centre(
    local: Engine, centre_db: Engine, centre: TestClient, tmp_path: Path
) -> None:
    client = CentreClient("http://centre.test", token_for(centre_db), client=centre)
    sync = CentralSync(local, transport=HttpTransport(client, "seat-1"), data_dir=tmp_path, batch_size=2)
    sync.enable()
    write(local, *(call(n) for n in range(5)))
    sync.run_batch()
    with Session(centre_db) as session:
        from storage.seats import list_seats

        (seat,) = list_seats(session)
    assert seat.backlog == 3
    assert seat.last_seen_at is not None


def test_the_config_names_the_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "seat.token"
    token_file.write_text("cti_seat_abc\n", encoding="utf-8")
    token_file.chmod(0o600)
    http = Config.model_validate(
        {"central": {"url": "https://centre.example:8340", "token_file": str(token_file)}}
    )
    transport = make_transport(http)
    assert isinstance(transport, HttpTransport)
    transport.close()
    # A database URL was the direct-database team mode: gone, and said so with the way to the centre.
    with pytest.raises(ConfigError, match="direct-database team mode is gone") as refused:
        make_transport(Config.model_validate({"central": {"url": f"sqlite:///{tmp_path / 'c.db'}"}}))
    assert "cti-agent seats add" in str(refused.value)
    assert "Moving from the direct-database team mode" in str(refused.value)
    monkeypatch.setenv("CTI_AGENT_CENTRAL_URL", "postgresql+psycopg://cti:s3cret@db/cti")
    with pytest.raises(ConfigError, match="direct-database team mode is gone") as refused:
        make_transport(Config())
    assert "s3cret" not in str(refused.value)
    monkeypatch.delenv("CTI_AGENT_CENTRAL_URL")
    assert make_transport(Config()) is None
    with pytest.raises(ValueError, match="token_file"):
        Config.model_validate({"central": {"url": "http://centre:8340"}})
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        make_transport(http)


def test_the_old_recordings_share_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    from agent.config import load_config

    config = tmp_path / "agent.toml"
    config.write_text(
        '[central]\nurl = "https://centre.example:8340"\ntoken_file = "/etc/cti-agent/seat.token"\n'
        'recordings_dir = "/mnt/cti-recordings"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="recordings now upload to the centre") as refused:
        load_config(config)
    assert "unknown key" not in str(refused.value)
    assert "Moving from the direct-database team mode" in str(refused.value)


def test_a_recording_reaches_the_centres_store_and_purge_asks_the_centre_first(
    local: Engine, centre_db: Engine, centre: TestClient, centre_store: DirectoryBlobStore, tmp_path: Path
) -> None:
    sync = syncer(local, centre, token_for(centre_db), tmp_path)
    c = call(1)
    write(local, c)
    source = add_recording(local, tmp_path / "seat", c)
    while sync.run_batch().entries:
        pass
    with Session(centre_db) as session:
        upstream = session.scalars(select(Recording)).one()
        key = upstream.path_or_uri
        assert upstream.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert b"".join(centre_store.open_range(key)) == source.read_bytes()
    with Session(local) as session, session.begin():
        row = session.scalars(select(Recording)).one()
        assert purge_allowed(session, row, sync.transport)
    # The centre's copy lost: purge keeps the local file and queues the recording again.
    centre_store.delete(key)
    with Session(local) as session, session.begin():
        row = session.scalars(select(Recording)).one()
        assert not purge_allowed(session, row, sync.transport)
    with Session(local) as session:
        assert session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "recording")).all()
    assert sync.run_batch().recordings == 1
    assert centre_store.stat(key) is not None
    with Session(local) as session, session.begin():
        row = session.scalars(select(Recording)).one()
        assert purge_allowed(session, row, sync.transport)
