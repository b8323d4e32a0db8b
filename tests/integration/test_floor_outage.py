"""Twenty seats through outages of their centre, its database and its store: nothing lost or doubled.

Twenty real ``cti-agent run`` processes on simulated lines (time compressed 120 times, so
30 s of wall clock is an hour of the floor's calls) record and sync to a real centre on
PostgreSQL with its recordings in Ceph RGW. The centre process is stopped for an hour of
calls; later its database refuses connections while the centre runs; then its object store
(radosgw) is stopped while calls go on, and started again. Afterwards every call
is at the centre once, in its final state, and every recording the seats made is in the
store with the SHA-256 the seat computed (compared by call UUID).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from rgw_fixture import RgwServer, start_gateway, stop_gateway
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool
from test_centre_process import start_centre
from test_crash_recovery import free_port, query

from storage.blobstore import S3BlobStore, S3Credentials
from storage.db import make_engine, upgrade
from storage.seats import add_seat

CLI = [sys.executable, "-m", "agent.cli"]
SEATS = 20
CALLS = "SELECT uuid, seat, ended_at IS NOT NULL, talk_seconds FROM calls ORDER BY uuid"
RECORDINGS = "SELECT call_uuid, sha256 FROM recordings WHERE sha256 IS NOT NULL ORDER BY call_uuid"


def seat_config(root: Path, name: str, url: str, token: str, seed: int, rate: float) -> Path:
    data = root / name
    data.mkdir(exist_ok=True)
    token_file = data / "seat.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = root / f"{name}.toml"
    config.write_text(
        f'[agent]\nseat = "{name}"\nrep = "rep-{name}"\nteam = "north"\ndata_dir = "{data}"\n\n'
        "[web]\nenabled = false\n\n[metrics]\nenabled = false\n\n[recording]\nenabled = true\n\n"
        "[tracker]\nring_timeout = 0.2\ndial_timeout = 0.1\n\n"
        f'[central]\nurl = "{url}"\ntoken_file = "{token_file}"\ninterval = 0.5\nbackoff_max = 2.0\n\n'
        f'[[devices]]\nid = "sim"\ntype = "simulator"\nlines = 1\nrate = {rate}\nseed = {seed}\n'
        "speed = 120.0\ntalk_median = 90.0\n",
        encoding="utf-8",
    )
    return config


def start_seat(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "run", "--config", str(config)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def stop_seats(seats: dict[str, subprocess.Popen[bytes]], root: Path) -> None:
    for process in seats.values():
        process.send_signal(signal.SIGTERM)
    for name, process in seats.items():
        assert process.wait(timeout=120) == 0, (root / f"{name}.log").read_text()[-3000:]


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM the centre; its exit status (it must go within a minute, as systemd expects)."""
    asked = time.monotonic()
    process.send_signal(signal.SIGTERM)
    status = process.wait(timeout=60)
    print(f"centre stopped in {time.monotonic() - asked:.1f} s")
    return status


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


@pytest.mark.slow
def test_twenty_seats_lose_nothing_through_a_centre_a_database_and_a_store_outage(
    pg_url: str, pg_database_url: str, rgw: RgwServer, tmp_path: Path
) -> None:
    bucket_name = f"outage-{uuid.uuid4().hex[:12]}"
    bucket = S3BlobStore(rgw.endpoint, bucket_name, S3Credentials(rgw.access_key, rgw.secret_key), prefix="f")
    bucket.client.create_bucket(Bucket=bucket_name)
    creds = tmp_path / "s3.credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {rgw.access_key}\naws_secret_access_key = {rgw.secret_key}\n",
        encoding="utf-8",
    )
    creds.chmod(0o600)
    centre_dir = tmp_path / "centre"
    centre_dir.mkdir()
    config = centre_dir / "centre.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{centre_dir}"\n\n[storage]\nurl = "{pg_database_url}"\n\n'
        f'[centre.recordings]\ns3_url = "{rgw.endpoint}"\nbucket = "{bucket_name}"\nprefix = "f"\n'
        f'credentials_file = "{creds}"\n',
        encoding="utf-8",
    )
    engine = make_engine(pg_database_url)
    upgrade(engine)
    tokens: dict[str, str] = {}
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        for n in range(SEATS):
            tokens[f"seat-{n:02d}"] = add_seat(session, f"seat-{n:02d}", "north")[1]
    listen = f"127.0.0.1:{free_port()}"
    centre, url = start_centre(centre_dir, "--config", str(config), "--listen", listen)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    database = pg_database_url.rsplit("/", 1)[1]
    seats: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for n, name in enumerate(tokens):
            seats[name] = start_seat(
                seat_config(tmp_path, name, url, tokens[name], n + 1, rate=1.0), tmp_path / f"{name}.log"
            )
        wait_for(lambda: len(rows(engine, CALLS)) >= SEATS, 120, "the floor's first calls at the centre")
        # An hour of calls (30 s at speed 120) without the centre.
        assert stop(centre) == 0
        before = len(rows(engine, CALLS))
        time.sleep(30)
        centre, _ = start_centre(centre_dir, "--config", str(config), "--listen", listen)
        wait_for(lambda: len(rows(engine, CALLS)) > before, 60, "the backlog after the centre's return")
        # The database refuses the centre for a while; the centre answers 503, the seats wait.
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": database},
            )
        time.sleep(15)
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
        engine.dispose()  # its pooled connections were terminated
        # The recording store goes down (radosgw stopped, its data kept): the calls still reach the
        # centre, the recordings wait at the seats until it is back.
        with_store = len(rows(engine, CALLS))
        stop_gateway(rgw)
        try:
            stored = len(rows(engine, RECORDINGS))
            wait_for(
                lambda: len(rows(engine, CALLS)) > with_store,
                60,
                "calls at the centre while its store is down",
            )
            time.sleep(10)
            # No recording is taken in while there is nowhere to keep it (the seats keep theirs).
            assert len(rows(engine, RECORDINGS)) == stored
        finally:
            start_gateway(rgw)
        stop_seats(seats, tmp_path)
        # A last quiet run of every seat sends what shutdown left: batches and recordings.
        for n, name in enumerate(tokens):
            seats[name] = start_seat(
                seat_config(tmp_path, name, url, tokens[name], n + 1, rate=0.01), tmp_path / f"{name}.log"
            )

        def local(sql: str) -> list[tuple[Any, ...]]:
            return sorted(row for name in tokens for row in query(tmp_path / name / "cti-agent.db", sql))

        wait_for(
            lambda: rows(engine, CALLS) == local(CALLS) and rows(engine, RECORDINGS) == local(RECORDINGS),
            180,
            "every call and recording at the centre",
        )
        stop_seats(seats, tmp_path)
        calls = local(CALLS)
        recordings = local(RECORDINGS)
        assert len(calls) > 3 * SEATS
        assert len(recordings) > SEATS
        assert all(row[2] for row in calls)  # every call ended, at the seat and at the centre
        assert rows(engine, CALLS) == calls  # nothing lost, nothing doubled (by UUID)
        assert rows(engine, RECORDINGS) == recordings  # every recording, with the seat's SHA-256
        assert len(list(bucket.iter_keys())) == len(recordings)
    finally:
        for process in seats.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()
        stop(centre)
        engine.dispose()
        for page in bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket_name):
            for item in page.get("Contents", []):
                bucket.client.delete_object(Bucket=bucket_name, Key=item["Key"])
