"""A real ``cti-agent centre`` process keeping recordings in a real S3 store (Ceph RGW), over real HTTP.

A seat uploads a recording; a connection cut half-way through a multipart upload leaves neither
an object nor an unfinished upload in the bucket, and the retry succeeds; a logged-in console
user plays it with HTTP Range, straight from the bucket.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from factories import ended, make_call
from rgw_fixture import RgwServer
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_centre_process import start_centre

from agent.seatapi import CallEntry
from storage.blobstore import S3BlobStore, S3Credentials
from storage.db import make_engine
from storage.models import Recording

UUID = "3c2e1d0f-bbbb-4ccc-8ddd-{:012d}"
PASSWORD = "correct horse battery"
MiB = 1024 * 1024
PARAMS = {"ext": "flac", "codec": "flac", "sample_rate": "8000", "channels": "1", "seconds": "60.0"}


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
    )


@dataclass(frozen=True)
class Centre:
    address: str
    config: Path
    data_dir: Path
    bucket: S3BlobStore


def start_data_dir(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    return start_centre(data_dir)


def start(config: Path) -> tuple[subprocess.Popen[str], str]:
    return start_centre(config.parent, "--config", str(config))


@pytest.fixture
def centre(rgw: RgwServer, tmp_path: Path) -> Iterator[Centre]:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    bucket = S3BlobStore(rgw.endpoint, name, S3Credentials(rgw.access_key, rgw.secret_key), prefix="floor-1")
    bucket.client.create_bucket(Bucket=name)
    creds = tmp_path / "s3.credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {rgw.access_key}\naws_secret_access_key = {rgw.secret_key}\n",
        encoding="utf-8",
    )
    creds.chmod(0o600)
    data_dir = tmp_path / "centre"
    config = tmp_path / "centre.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{data_dir}"\n\n'
        f'[centre.recordings]\ns3_url = "{rgw.endpoint}"\nbucket = "{name}"\nprefix = "floor-1"\n'
        f'credentials_file = "{creds}"\npart_size_mb = 5\n',
        encoding="utf-8",
    )
    process, address = start(config)
    try:
        yield Centre(address, config, data_dir, bucket)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        for page in bucket.client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                bucket.client.delete_object(Bucket=name, Key=item["Key"])


def objects(centre: Centre) -> list[str]:
    return list(centre.bucket.iter_keys())


def cut_upload(
    address: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    send: int,
    before_close: Callable[[], object] | None = None,
) -> None:
    """Send the request line, the headers and ``send`` bytes of ``body``, then drop the connection.

    ``before_close`` runs while the connection is still open (e.g. to kill the centre then).
    """
    parts = urlsplit(address)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        head = [f"PUT {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        view = memoryview(body)[:send]
        for start in range(0, len(view), 256 * 1024):
            sock.sendall(view[start : start + 256 * 1024])
        time.sleep(0.5)  # the centre has the part it was sent in hand: now the line goes dead
        if before_close is not None:
            before_close()
        # Linger 0: the close is a reset, as when a seat's network goes away mid-upload.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def prepare_upload(data_dir: Path, address: str, n: int) -> tuple[dict[str, str], str, bytes, str]:
    """Seat-7 added with its call ``n`` sent: its auth header, the upload's path, a body and its SHA-256."""
    token = cli("seats", "add", "seat-7", "--data-dir", str(data_dir)).stdout.strip()
    call = ended(make_call(UUID.format(n), seat="seat-7", started_at=datetime.now(UTC)))
    body = os.urandom(3 * MiB)
    auth = {"authorization": f"Bearer {token}"}
    path = f"/api/v1/recordings/{UUID.format(n)}?{urlencode({**PARAMS, 'status': 'complete'})}"
    with httpx.Client(base_url=address, headers=auth, timeout=60) as seat:
        seat.post("/api/v1/calls", json={"seat": "seat-7", "calls": [CallEntry.of(call, None, None)]})
    return auth, path, body, hashlib.sha256(body).hexdigest()


def wait_until(check: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def log_in(client: httpx.Client, login: str) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/login", data={"login": login, "password": PASSWORD, "csrf": token[1], "next": "/calls"}
    )
    assert answer.status_code == 303, answer.text


def test_a_recording_goes_to_the_object_store_survives_a_cut_and_plays_in_the_console(
    centre: Centre,
) -> None:
    added = cli("seats", "add", "seat-7", "--team", "north", "--config", str(centre.config))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    user = cli(
        "users", "add", "nina", "--role", "lead", "--team", "north", "--password-stdin",
        "--config", str(centre.config), stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert user.returncode == 0, user.stderr
    started = datetime.now(UTC) - timedelta(minutes=5)
    call = ended(make_call(UUID.format(1), seat="seat-7", rep="alice", team="north", started_at=started))
    # Over one 5 MiB part, so the cut below happens inside a multipart upload.
    body = os.urandom(6 * MiB + 123)
    digest = hashlib.sha256(body).hexdigest()
    auth = {"authorization": f"Bearer {token}"}
    path = f"/api/v1/recordings/{UUID.format(1)}?{urlencode({**PARAMS, 'status': 'complete'})}"
    with httpx.Client(base_url=centre.address, headers=auth, timeout=60) as seat:
        assert seat.get(f"/api/v1/recordings/{UUID.format(1)}").status_code == 404
        early = seat.put(path, content=body, headers={"x-content-sha256": digest})
        assert early.status_code == 409  # the call first
        sent = seat.post("/api/v1/calls", json={"seat": "seat-7", "calls": [CallEntry.of(call, None, None)]})
        assert sent.json()["results"][0]["status"] == "accepted"

        cut_upload(centre.address, path, {**auth, "X-Content-SHA256": digest}, body, send=5 * MiB + MiB // 2)
        time.sleep(1.0)
        assert objects(centre) == []
        wait_until(lambda: centre.bucket.incomplete_uploads() == [])
        assert seat.get(f"/api/v1/recordings/{UUID.format(1)}").status_code == 404

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), 256 * 1024):
                yield body[start : start + 256 * 1024]

        stored = seat.put(
            path, content=chunks(), headers={"x-content-sha256": digest, "content-length": str(len(body))}
        )
        assert stored.status_code == 201, stored.text
        key = stored.json()["key"]
        assert stored.json() == {"key": key, "sha256": digest, "bytes": len(body), "stored": True}
        assert objects(centre) == [key]
        head = centre.bucket.stat(key)
        assert head is not None
        assert (head.sha256, head.size) == (digest, len(body))
        assert seat.get(f"/api/v1/recordings/{UUID.format(1)}").json() == {
            "key": key, "sha256": digest, "bytes": len(body),
        }  # fmt: skip
        replay = seat.put(path, content=body, headers={"x-content-sha256": digest})
        assert (replay.status_code, replay.json()["stored"]) == (200, False)
        health = seat.get("/healthz", headers={"accept": "application/json"}).json()
        assert health == {"status": "ok", "database": "ok", "recordings": "ok"}

    engine = make_engine(f"sqlite:///{centre.data_dir / 'cti-agent.db'}")
    try:
        with Session(engine) as session:
            row = session.scalars(select(Recording)).one()
            assert (row.path_or_uri, row.sha256, row.bytes) == (key, digest, len(body))
    finally:
        engine.dispose()
    with httpx.Client(base_url=centre.address, timeout=60) as console:
        log_in(console, "nina")
        part = console.get(f"/recordings/{row.id}/audio", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.content == body[1000:2000]
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(body)}"
        whole = console.get(f"/recordings/{row.id}/audio")
        assert whole.status_code == 200
        assert hashlib.sha256(whole.content).hexdigest() == digest
        metrics = console.get("/metrics").text
        assert 'cti_centre_recordings_total{outcome="damaged"} 1.0' in metrics  # the cut upload
        assert 'cti_centre_recordings_total{outcome="stored"} 1.0' in metrics

        # Retention on the object store: the object and its row go, the call stays, audited.
        args = ["centre", "purge", "--config", str(centre.config), "--older-than", "1m"]
        dry = cli(*args, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would delete 1 recording(s)" in dry.stdout
        assert objects(centre) == [key]
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        assert "deleted 1 recording(s)" in done.stdout
        assert objects(centre) == []
        assert console.get(f"/recordings/{row.id}/audio").status_code == 404


def test_a_cut_upload_leaves_no_file_in_the_directory_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "centre"
    process, address = start_data_dir(data_dir)
    try:
        auth, path, body, digest = prepare_upload(data_dir, address, 2)
        with httpx.Client(base_url=address, headers=auth, timeout=60) as seat:
            cut_upload(address, path, {**auth, "X-Content-SHA256": digest}, body, send=2 * MiB)
            wait_until(lambda: 'outcome="damaged"} 1.0' in seat.get("/metrics").text)
            store = data_dir / "recordings"
            assert not store.exists() or [p for p in store.rglob("*") if p.is_file()] == []
            stored = seat.put(path, content=body, headers={"x-content-sha256": digest})
            assert stored.status_code == 201, stored.text
            files = [p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")]
            assert [p.read_bytes() == body for p in files] == [True]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_a_centre_killed_mid_upload_restarts_with_no_partial_copy_and_takes_the_retry(tmp_path: Path) -> None:
    """SIGKILL while 2 of 3 MiB are in: after the restart nothing half-written is visible or confirmed."""
    data_dir = tmp_path / "centre"
    process, address = start_data_dir(data_dir)
    try:
        auth, path, body, digest = prepare_upload(data_dir, address, 3)
        cut_upload(address, path, {**auth, "X-Content-SHA256": digest}, body, 2 * MiB, process.kill)
        process.wait(timeout=30)
        store = data_dir / "recordings"
        if store.exists():
            assert [p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")] == []
        process, address = start_data_dir(data_dir)
        with httpx.Client(base_url=address, headers=auth, timeout=60) as seat:
            # The seat asks before it purges: the centre holds nothing of this call yet.
            assert seat.get(f"/api/v1/recordings/{UUID.format(3)}").status_code == 404
            stored = seat.put(path, content=body, headers={"x-content-sha256": digest})
            assert stored.status_code == 201, stored.text
            confirmed = seat.get(f"/api/v1/recordings/{UUID.format(3)}").json()
            assert (confirmed["sha256"], confirmed["bytes"]) == (digest, len(body))
        files = [p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")]
        assert [p.read_bytes() == body for p in files] == [True]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
