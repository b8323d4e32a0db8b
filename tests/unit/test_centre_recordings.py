"""The centre's recordings: the seat API's upload and check, the console's playback from the store, the purge.

The centre here is the real app over a SQLite database and a :class:`DirectoryBlobStore`, reached
through Starlette's test client, or as a bare ASGI app fed a body that stops half-way (what a cut
connection looks like to the app); tests/integration/test_centre_recordings.py runs the real
process over real HTTP against a real S3 store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from console_factories import PASSWORD, SECRET, log_in
from factories import ended, make_call
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.centre.api.recordings import MAX_RECORDING_BYTES
from agent.centre.auth import create_user
from agent.centre.context import ConsoleSettings
from agent.centre.server import make_centre_app
from agent.centre.views.recordings import byte_range
from agent.cli import cli
from agent.events import Call
from storage.blobstore import DirectoryBlobStore, recording_key
from storage.centre_recordings import is_store_key, purge_recordings
from storage.db import make_engine, upgrade
from storage.models import AuditEntry, Recording
from storage.repository import upsert_call
from storage.seats import add_seat

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
UUID = "6a1c0e2f-1111-4222-8333-{:012d}"
BODY = b"fLaC" + bytes(range(256)) * 40
PARAMS = {
    "ext": "flac",
    "codec": "flac",
    "sample_rate": "8000",
    "channels": "1",
    "seconds": "61.5",
    "status": "complete",
    "flags": "silent,short",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def call(n: int, seat: str = "seat-1", started_at: datetime = T0) -> Call:
    return ended(make_call(UUID.format(n), seat=seat, started_at=started_at + timedelta(minutes=n)))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'centre.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "store")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def app(engine: Engine, store: DirectoryBlobStore, registry: CollectorRegistry) -> Starlette:
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry), store=store)
    return Starlette(routes=seat_api_routes(ctx))


@pytest.fixture
def client(app: Starlette) -> TestClient:
    return TestClient(app, base_url="http://centre.test")


def token_for(engine: Engine, seat: str = "seat-1") -> str:
    with Session(engine) as session, session.begin():
        return add_seat(session, seat, "north")[1]


def add_calls(engine: Engine, *calls: Call) -> None:
    for c in calls:
        with Session(engine) as session, session.begin():
            upsert_call(session, c)


def rows(engine: Engine) -> list[Recording]:
    with Session(engine) as session:
        found = list(session.scalars(select(Recording).order_by(Recording.id)))
        session.expunge_all()
    return found


def files_under(root: Path) -> list[Path]:
    """Every file under ``root``, hidden ones (uploads in progress, checksums) included."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def put(
    client: TestClient,
    token: str,
    n: int = 1,
    body: bytes = BODY,
    *,
    digest: str | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    return client.put(
        f"/api/v1/recordings/{UUID.format(n)}",
        params=PARAMS if params is None else params,
        content=body,
        headers={
            "authorization": f"Bearer {token}",
            "x-content-sha256": sha(body) if digest is None else digest,
            **(headers or {}),
        },
    )


def get(client: TestClient, token: str, n: int = 1) -> Any:
    return client.get(f"/api/v1/recordings/{UUID.format(n)}", headers={"authorization": f"Bearer {token}"})


async def raw_put(
    app: ASGIApp, path: str, headers: dict[str, str], parts: list[bytes], *, cut: bool
) -> tuple[int, dict[str, Any]]:
    """PUT to the bare ASGI app; ``cut``: the client goes away after ``parts`` (no final chunk)."""
    incoming: list[Message] = [{"type": "http.request", "body": p, "more_body": True} for p in parts]
    incoming.append({"type": "http.disconnect"} if cut else {"type": "http.request", "body": b""})
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("centre.test", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(0)
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body) if body else {}


def query(**changes: str) -> str:
    return "&".join(f"{k}={v}" for k, v in {**PARAMS, **changes}.items())


# -- the upload ---------------------------------------------------------------------------


def test_an_upload_is_stored_under_its_key_and_its_row_written(
    client: TestClient, engine: Engine, store: DirectoryBlobStore, registry: CollectorRegistry
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    answer = put(client, token)
    key = recording_key(UUID.format(1), T0 + timedelta(minutes=1), "flac")
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"key": key, "sha256": sha(BODY), "bytes": len(BODY), "stored": True}
    assert b"".join(store.open_range(key)) == BODY
    (row,) = rows(engine)
    assert (row.call_uuid, row.path_or_uri, row.sha256, row.bytes) == (
        UUID.format(1),
        key,
        sha(BODY),
        len(BODY),
    )
    assert (row.codec, row.sample_rate, row.channels, row.seconds) == ("flac", 8000, 1, 61.5)
    assert (row.status, row.flags) == ("complete", "silent,short")
    assert is_store_key(row.path_or_uri)
    assert get(client, token).json() == {"key": key, "sha256": sha(BODY), "bytes": len(BODY)}
    assert registry.get_sample_value("cti_centre_recordings_total", {"outcome": "stored"}) == 1
    assert registry.get_sample_value("cti_centre_recording_bytes_total") == len(BODY)


def test_a_replayed_upload_is_answered_200_and_changes_nothing(
    client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    first = put(client, token)
    again = put(client, token)
    assert again.status_code == 200
    assert again.json() == {**first.json(), "stored": False}
    assert len(rows(engine)) == 1
    assert len(list(store.iter_keys())) == 1


def test_another_sha256_for_a_stored_key_replaces_the_copy_and_its_row(
    client: TestClient, engine: Engine, store: DirectoryBlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    put(client, token)
    repaired = BODY[:-100]
    answer = put(client, token, body=repaired, params={**PARAMS, "status": "recovered", "flags": ""})
    assert answer.status_code == 201
    assert answer.json()["sha256"] == sha(repaired)
    assert b"".join(store.open_range(answer.json()["key"])) == repaired
    (row,) = rows(engine)
    assert (row.sha256, row.bytes, row.status, row.flags) == (sha(repaired), len(repaired), "recovered", None)
    assert "replaces recording" in caplog.text


def test_a_body_whose_sha256_or_length_differs_leaves_nothing(
    client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    wrong = put(client, token, digest=sha(b"something else"))
    assert wrong.status_code == 422
    assert "does not match" in wrong.json()["error"]
    assert files_under(store.root) == []
    assert rows(engine) == []
    assert get(client, token).status_code == 404


async def test_a_body_shorter_than_its_content_length_leaves_nothing(
    app: Starlette, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    headers = {
        "authorization": f"Bearer {token}",
        "x-content-sha256": sha(BODY),
        "content-length": str(len(BODY) + 10),
    }
    status, body = await raw_put(
        app, f"/api/v1/recordings/{UUID.format(1)}?{query()}", headers, [BODY], cut=False
    )
    assert status == 422
    assert "ended after" in body["error"]
    assert files_under(store.root) == []


async def test_a_connection_cut_mid_upload_leaves_nothing_and_the_retry_succeeds(
    app: Starlette, client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    headers = {
        "authorization": f"Bearer {token}",
        "x-content-sha256": sha(BODY),
        "content-length": str(len(BODY)),
    }
    half = len(BODY) // 2
    path = f"/api/v1/recordings/{UUID.format(1)}?{query()}"
    status, body = await raw_put(app, path, headers, [BODY[:1000], BODY[1000:half]], cut=True)
    assert status == 422
    assert "cut" in body["error"]
    assert files_under(store.root) == []
    assert rows(engine) == []
    status, body = await raw_put(app, path, headers, [BODY[:half], BODY[half:]], cut=False)
    assert (status, body["stored"]) == (201, True)
    assert get(client, token).json()["sha256"] == sha(BODY)


async def test_an_upload_without_content_length_is_411_and_one_too_large_413(
    app: Starlette, engine: Engine
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    path = f"/api/v1/recordings/{UUID.format(1)}?{query()}"
    headers = {"authorization": f"Bearer {token}", "x-content-sha256": sha(BODY)}
    status, body = await raw_put(app, path, headers, [BODY], cut=False)
    assert status == 411
    assert "Content-Length" in body["error"]
    too_big = {**headers, "content-length": str(MAX_RECORDING_BYTES + 1)}
    status, _ = await raw_put(app, path, too_big, [], cut=False)
    assert status == 413


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ext": "mp3"}, "ext"),
        ({"ext": "../x"}, "ext"),
        ({"status": "great"}, "status"),
        ({"sample_rate": "eight"}, "sample_rate"),
        ({"channels": "-1"}, "channels"),
        ({"seconds": "nan"}, "seconds"),
        ({"flags": "silent,DROP TABLE"}, "flags"),
        ({"codec": "flac\x00"}, "codec"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: TestClient, engine: Engine, store: DirectoryBlobStore, change: dict[str, str], expected: str
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    answer = put(client, token, params={**PARAMS, **change})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(expected)
    assert files_under(store.root) == []


def test_a_bad_sha256_header_or_call_uuid_is_400(client: TestClient, engine: Engine) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    assert put(client, token, digest="abc").status_code == 400
    bad_uuid = client.put(
        "/api/v1/recordings/not-a-uuid",
        params=PARAMS,
        content=BODY,
        headers={"authorization": f"Bearer {token}", "x-content-sha256": sha(BODY)},
    )
    assert bad_uuid.status_code == 400


def test_no_token_is_401_and_nothing_is_stored(
    client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    add_calls(engine, call(1))
    answer = client.put(
        f"/api/v1/recordings/{UUID.format(1)}",
        params=PARAMS,
        content=BODY,
        headers={"x-content-sha256": sha(BODY)},
    )
    assert answer.status_code == 401
    assert client.get(f"/api/v1/recordings/{UUID.format(1)}").status_code == 401
    assert files_under(store.root) == []


def test_another_seats_call_is_403_both_ways(
    client: TestClient, engine: Engine, store: DirectoryBlobStore, registry: CollectorRegistry
) -> None:
    mine, theirs = token_for(engine, "seat-1"), token_for(engine, "seat-2")
    add_calls(engine, call(1, seat="seat-1"))
    assert put(client, theirs).status_code == 403
    assert files_under(store.root) == []
    assert put(client, mine).status_code == 201
    assert get(client, theirs).status_code == 403
    assert registry.get_sample_value("cti_centre_auth_failures_total", {"reason": "seat_mismatch"}) == 2


def test_a_call_the_centre_does_not_have_yet_is_409_then_taken_once_it_arrives(
    client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    early = put(client, token)
    assert early.status_code == 409
    assert "send the call first" in early.json()["error"]
    assert files_under(store.root) == []
    assert get(client, token).status_code == 404
    add_calls(engine, call(1))
    assert put(client, token).status_code == 201


def test_a_store_that_cannot_be_written_is_503(
    engine: Engine, tmp_path: Path, registry: CollectorRegistry
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store's root should be")
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry), store=DirectoryBlobStore(blocked))
    client = TestClient(Starlette(routes=seat_api_routes(ctx)), base_url="http://centre.test")
    token = token_for(engine)
    add_calls(engine, call(1))
    answer = put(client, token)
    assert answer.status_code == 503
    assert "retry" in answer.json()["error"]
    assert rows(engine) == []
    health = client.get("/healthz", headers={"accept": "application/json"})
    assert health.status_code == 503
    assert health.json()["status"] == "down"
    assert health.json()["database"] == "ok"
    assert "not-a-directory" in health.json()["recordings"]


def test_a_database_that_fails_at_the_calls_look_up_is_503(client: TestClient, engine: Engine) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    failed: list[str] = []

    def fail_on_calls(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM calls" in statement:  # the credential check (seats) passes
            failed.append(statement)
            raise OperationalError(statement, {}, Exception("disk I/O error"))

    event.listen(engine, "before_cursor_execute", fail_on_calls)
    try:
        answer = put(client, token)
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_calls)
    assert answer.status_code == 503
    assert "database" in answer.json()["error"]
    assert len(failed) == 1


def test_a_copy_deleted_from_the_store_is_404_to_the_seat(
    client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    key = put(client, token).json()["key"]
    store.delete(key)
    assert get(client, token).status_code == 404


def test_healthz_reports_the_store(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
    answer = client.get("/healthz", headers={"accept": "application/json"})
    assert answer.json() == {"status": "ok", "database": "ok", "recordings": "ok"}


# -- the console plays from the store -----------------------------------------------------


def flac_bytes(seconds: float = 1.0) -> bytes:
    import io

    t = np.arange(int(seconds * 8000)) / 8000
    out = io.BytesIO()
    sf.write(out, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, format="FLAC", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture
def centre(engine: Engine, store: DirectoryBlobStore, tmp_path: Path) -> TestClient:
    with Session(engine) as session, session.begin():
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "bob", PASSWORD, role="rep", rep="bob")
    settings = ConsoleSettings(secret=SECRET, recordings_dir=tmp_path / "legacy", recordings_store=store)
    app = make_centre_app(engine, settings, registry=CollectorRegistry(), hosts=["127.0.0.1"])
    return TestClient(app, base_url="http://127.0.0.1")


def audit_of(engine: Engine) -> list[tuple[str | None, str]]:
    with Session(engine) as session:
        return [
            (e.user_login, e.action)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if not e.action.startswith("login")
        ]


def test_the_console_plays_downloads_and_draws_an_uploaded_recording_from_the_store(
    centre: TestClient, engine: Engine
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    audio = flac_bytes()
    assert put(centre, token, body=audio).status_code == 201
    (row,) = rows(engine)
    log_in(centre, "nina")
    whole = centre.get(f"/recordings/{row.id}/audio")
    assert whole.status_code == 200
    assert whole.content == audio
    assert whole.headers["content-type"] == "audio/flac"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"].startswith("inline")
    part = centre.get(f"/recordings/{row.id}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == audio[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(audio)}"
    assert part.headers["content-length"] == "100"
    tail = centre.get(f"/recordings/{row.id}/audio", headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, audio[-10:])
    beyond = centre.get(f"/recordings/{row.id}/audio", headers={"Range": f"bytes={len(audio)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(audio)}"
    download = centre.get(f"/recordings/{row.id}/download")
    assert download.content == audio
    assert download.headers["content-disposition"].startswith("attachment")
    wave = centre.get(f"/recordings/{row.id}/waveform.svg")
    assert wave.status_code == 200
    assert wave.headers["content-type"].startswith("image/svg+xml")
    # As for files: each request from byte 0 or with no start (whole, suffix) is a play; the
    # ranges after it are not; the download is audited too.
    assert audit_of(engine) == [("nina", "play"), ("nina", "play"), ("nina", "download")]
    log_in(centre, "bob")  # a rep sees only their own calls: alice's is out of scope
    assert centre.get(f"/recordings/{row.id}/audio").status_code == 403
    assert audit_of(engine)[-1] == ("bob", "play_denied")


def test_the_console_still_plays_a_legacy_row_from_the_recordings_directory(
    centre: TestClient, engine: Engine, tmp_path: Path, store: DirectoryBlobStore
) -> None:
    add_calls(engine, call(2))
    legacy = "recordings/2026/11/30/legacy.flac"
    audio = flac_bytes(0.5)
    (tmp_path / "legacy" / legacy).parent.mkdir(parents=True)
    (tmp_path / "legacy" / legacy).write_bytes(audio)
    with Session(engine) as session, session.begin():
        session.add(Recording(call_uuid=UUID.format(2), path_or_uri=legacy, codec="flac", status="complete"))
    (row,) = rows(engine)
    assert not is_store_key(row.path_or_uri)
    log_in(centre, "nina")
    answer = centre.get(f"/recordings/{row.id}/audio", headers={"Range": "bytes=0-9"})
    assert (answer.status_code, answer.content) == (206, audio[:10])


def test_a_row_whose_object_is_gone_is_404_in_the_console(
    centre: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    add_calls(engine, call(1))
    key = put(centre, token, body=flac_bytes()).json()["key"]
    store.delete(key)
    (row,) = rows(engine)
    log_in(centre, "nina")
    assert centre.get(f"/recordings/{row.id}/audio").status_code == 404
    assert centre.get(f"/recordings/{row.id}/waveform.svg").status_code == 404


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-", 100, (0, 99)),
        ("bytes=10-19", 100, (10, 19)),
        ("bytes=90-500", 100, (90, 99)),
        ("bytes=-5", 100, (95, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=100-", 100, False),
        ("bytes=20-10", 100, False),
        ("bytes=-0", 100, False),
        ("bytes=0-1,5-6", 100, None),
        ("items=0-1", 100, None),
        ("bytes=0-", 0, False),
    ],
)
def test_byte_range(header: str | None, size: int, expected: object) -> None:
    assert byte_range(header, size) == expected


# -- retention ----------------------------------------------------------------------------


def test_purge_deletes_old_objects_and_their_rows_and_keeps_the_rest(
    client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    token = token_for(engine)
    now = datetime.now(UTC)
    add_calls(
        engine, call(1, started_at=now - timedelta(days=40)), call(2, started_at=now - timedelta(days=1))
    )
    old = put(client, token, 1).json()["key"]
    new = put(client, token, 2).json()["key"]
    stray = recording_key(UUID.format(9), now - timedelta(days=50), "ogg")  # an object no row names
    store.put_stream(stray, [b"x"], sha(b"x"))
    cutoff = now - timedelta(days=30)
    dry = purge_recordings(engine, store, cutoff, dry_run=True)
    assert (dry.rows, dry.objects) == (1, 2)
    assert len(list(store.iter_keys())) == 3
    done = purge_recordings(engine, store, cutoff)
    assert (done.rows, done.objects, done.bytes) == (1, 2, len(BODY))
    assert list(store.iter_keys()) == [new]
    assert [r.path_or_uri for r in rows(engine)] == [new]
    assert store.stat(old) is None


def test_centre_purge_command_purges_the_embedded_centre_and_audits(tmp_path: Path) -> None:
    data = tmp_path / "centre"
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    try:
        upgrade(engine)
        store = DirectoryBlobStore(data / "recordings")
        now = datetime.now(UTC)
        add_calls(engine, call(1, started_at=now - timedelta(days=40)))
        ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(CollectorRegistry()), store=store)
        client = TestClient(Starlette(routes=seat_api_routes(ctx)), base_url="http://centre.test")
        assert put(client, token_for(engine), 1).status_code == 201
        runner = CliRunner()
        dry = runner.invoke(
            cli, ["centre", "purge", "--data-dir", str(data), "--older-than", "30d", "--dry-run"]
        )
        assert dry.exit_code == 0, dry.output
        assert "would delete 1 recording(s)" in dry.output
        assert len(list(store.iter_keys())) == 1
        done = runner.invoke(cli, ["centre", "purge", "--data-dir", str(data), "--older-than", "30"])
        assert done.exit_code == 0, done.output
        assert "deleted 1 recording(s)" in done.output
        assert list(store.iter_keys()) == []
        assert rows(engine) == []
        with Session(engine) as session:
            entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "recordings.purge")).one()
            assert json.loads(entry.detail or "{}")["objects"] == 1
        bad = runner.invoke(cli, ["centre", "purge", "--data-dir", str(data)])
        assert bad.exit_code == 2
    finally:
        engine.dispose()


def test_a_bad_recordings_table_is_a_config_error_at_start_up(tmp_path: Path) -> None:
    config = tmp_path / "centre.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[centre.recordings]\ns3_url = "ftp://nope"\nbucket = "b-1"\n',
        encoding="utf-8",
    )
    answer = CliRunner().invoke(cli, ["centre", "--config", str(config)])
    assert answer.exit_code == 2
    assert "[centre.recordings]" in answer.output
    assert "s3_url" in answer.output


def test_a_copy_altered_in_the_store_is_confirmed_with_its_hash_now_so_the_seat_uploads_again(
    client: TestClient, engine: Engine, store: DirectoryBlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Same size, one byte flipped on the centre's disk: the seat must not take it as its copy."""
    token = token_for(engine)
    add_calls(engine, call(1))
    key = put(client, token).json()["key"]
    path = store.root / key
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING, logger="storage.blobstore"):
        answer = get(client, token).json()
    assert answer == {"key": key, "sha256": sha(bytes(damaged)), "bytes": len(BODY)}
    assert answer["sha256"] != sha(BODY)
    assert "has changed since it was stored" in caplog.text
    again = put(client, token)
    assert again.status_code == 201
    assert b"".join(store.open_range(key)) == BODY
    assert get(client, token).json()["sha256"] == sha(BODY)


def test_purge_keeps_each_teams_recordings_for_its_own_retention(
    client: TestClient, engine: Engine, store: DirectoryBlobStore
) -> None:
    """Compliance keeps team A's calls a year; the rest of the floor 30 days; orphans wait for the longest."""
    token = token_for(engine)
    now = datetime.now(UTC)
    forty_days = now - timedelta(days=40)
    add_calls(
        engine,
        replace(call(1, started_at=forty_days), team="compliance"),
        replace(call(2, started_at=forty_days), team="east"),
        call(3, started_at=forty_days),  # no team: the default applies
        replace(call(4, started_at=now - timedelta(days=400)), team="compliance"),
    )
    keys = {n: put(client, token, n).json()["key"] for n in (1, 2, 3, 4)}
    orphan = recording_key(UUID.format(9), now - timedelta(days=50), "ogg")
    store.put_stream(orphan, [b"x"], sha(b"x"))
    cutoff = now - timedelta(days=30)
    teams = {"compliance": now - timedelta(days=365)}
    dry = purge_recordings(engine, store, cutoff, team_cutoffs=teams, dry_run=True)
    assert (dry.rows, dry.objects) == (3, 3)  # the orphan is younger than the longest retention
    done = purge_recordings(engine, store, cutoff, team_cutoffs=teams)
    assert (done.rows, done.objects) == (3, 3)
    assert sorted(store.iter_keys()) == sorted([keys[1], orphan])
    # Teams not listed and no default: only the listed team's old recordings go, and no orphan.
    kept = purge_recordings(engine, store, None, team_cutoffs={"compliance": now - timedelta(days=20)})
    assert (kept.rows, kept.objects) == (1, 1)
    assert list(store.iter_keys()) == [orphan]


def test_centre_purge_command_takes_team_retention_from_the_config(tmp_path: Path) -> None:
    data = tmp_path / "centre"
    config = tmp_path / "centre.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{data}"\n\n[recording]\nretention_days = 30\n\n'
        "[recording.team_retention_days]\ncompliance = 365\n",
        encoding="utf-8",
    )
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    try:
        upgrade(engine)
        store = DirectoryBlobStore(data / "recordings")
        old = datetime.now(UTC) - timedelta(days=40)
        add_calls(
            engine,
            replace(call(1, started_at=old), team="compliance"),
            replace(call(2, started_at=old), team="east"),
        )
        ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(CollectorRegistry()), store=store)
        client = TestClient(Starlette(routes=seat_api_routes(ctx)), base_url="http://centre.test")
        token = token_for(engine)
        kept = put(client, token, 1).json()["key"]
        assert put(client, token, 2).status_code == 201
        done = CliRunner().invoke(cli, ["centre", "purge", "--config", str(config)])
        assert done.exit_code == 0, done.output
        assert "team compliance: 365d; other teams: 30d" in done.output
        assert kept in list(store.iter_keys())
        with Session(engine) as session:
            entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "recordings.purge")).one()
            detail = json.loads(entry.detail or "{}")
        assert detail["team_retention_days"] == {"compliance": 365}
        assert detail["retention_days"] == 30
    finally:
        engine.dispose()
