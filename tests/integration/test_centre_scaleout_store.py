"""Two centre processes on one PostgreSQL and one object store (Ceph RGW), seats spread over both.

Seat A syncs and uploads to centre A only, seat B to centre B only. Every recording either seat
made is in the one bucket once, and either centre's console serves any of them byte for byte
(the SHA-256 the seat computed), whichever centre took the upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rgw_fixture import RgwServer
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_centre_process import start_centre, stop
from test_listen import PASSWORD, log_in

from agent.centre.auth import create_user
from agent.config import load_config
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from storage.blobstore import S3BlobStore, S3Credentials
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Recording
from storage.seats import add_seat


def centre_config(root: Path, url: str, rgw: RgwServer, bucket: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    creds = root / "s3.credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {rgw.access_key}\naws_secret_access_key = {rgw.secret_key}\n",
        encoding="utf-8",
    )
    creds.chmod(0o600)
    config = root / "centre.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{root}"\n\n[storage]\nurl = "{url}"\n\n'
        f'[centre.recordings]\ns3_url = "{rgw.endpoint}"\nbucket = "{bucket}"\nprefix = "floor-1"\n'
        f'credentials_file = "{creds}"\n',
        encoding="utf-8",
    )
    return config


def seat(tmp_path: Path, name: str, rep: str, centre: str, token: str, seed: int) -> Agent:
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    overrides: dict[str, Any] = {
        "agent": {"seat": name, "rep": rep, "team": "north", "data_dir": str(tmp_path / name)},
        "web": {"enabled": False},
        "metrics": {"enabled": False},
        "recording": {"enabled": True},
        "central": {"url": centre, "token_file": str(token_file), "interval": 0.2},
        "devices": [
            {
                "id": "sim", "type": "simulator", "lines": 1, "rate": 120, "seed": seed, "speed": 5.0,
                "inbound_ratio": 0.5, "answer_rate": 1.0, "talk_median": 8.0, "talk_sigma": 0.0,
            }
        ],
    }  # fmt: skip
    pm = make_plugin_manager(load_entrypoints=False)
    return Agent(load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides), pm)


async def test_seats_on_two_centres_share_one_store_and_either_centre_plays_every_recording(
    pg_database_url: str, rgw: RgwServer, tmp_path: Path
) -> None:
    name = f"scale-{uuid.uuid4().hex[:12]}"
    bucket = S3BlobStore(rgw.endpoint, name, S3Credentials(rgw.access_key, rgw.secret_key), prefix="floor-1")
    bucket.client.create_bucket(Bucket=name)
    engine = make_engine(pg_database_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        token_a = add_seat(session, "seat-a", "north")[1]
        token_b = add_seat(session, "seat-b", "north")[1]
        create_user(session, "nina", PASSWORD, role="lead", team="north")
    a, url_a = start_centre(
        tmp_path / "a", "--config", str(centre_config(tmp_path / "a", pg_database_url, rgw, name))
    )
    b, url_b = start_centre(
        tmp_path / "b", "--config", str(centre_config(tmp_path / "b", pg_database_url, rgw, name))
    )
    seats = [
        seat(tmp_path, "seat-a", "rep01", url_a, token_a, 3),
        seat(tmp_path, "seat-b", "rep02", url_b, token_b, 4),
    ]
    stopping = asyncio.Event()
    runs: list[asyncio.Task[None]] = []
    try:
        for agent in seats:  # one after the other: Alembic's migration context is one per process
            runs.append(asyncio.create_task(agent.run(stopping)))
            await asyncio.wait_for(agent.started.wait(), 30)
        # Two recordings from each seat reach the centres' database and the one bucket.
        held: dict[str, list[tuple[int, str, str]]] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            with Session(engine) as session:
                rows = session.execute(
                    select(CallRecord.seat, Recording.id, Recording.path_or_uri, Recording.sha256).join(
                        CallRecord, CallRecord.uuid == Recording.call_uuid
                    )
                ).all()
            held = {}
            for seat_name, row_id, key, sha in rows:
                held.setdefault(seat_name, []).append((row_id, key, sha))
            if all(len(held.get(s, [])) >= 2 for s in ("seat-a", "seat-b")):
                break
        assert all(len(held.get(s, [])) >= 2 for s in ("seat-a", "seat-b")), held
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*runs), 60)
    try:
        keys = sorted(bucket.iter_keys())
        everything = [entry for entries in held.values() for entry in entries]
        assert sorted(key for _, key, _ in everything) == [
            k for k in keys if k in {key for _, key, _ in everything}
        ]
        assert len({key for _, key, _ in everything}) == len(everything)  # each recording stored once
        # Each seat's own copy is what the store holds: compare by the seat's SHA-256.
        for agent in seats:
            local = make_engine(agent.config.database_url)
            with Session(local) as session:
                mine = dict(session.execute(select(Recording.call_uuid, Recording.sha256)).all())
            local.dispose()
            with Session(engine) as session:
                theirs = dict(
                    session.execute(
                        select(Recording.call_uuid, Recording.sha256).where(
                            Recording.call_uuid.in_(list(mine))
                        )
                    ).all()
                )
            assert theirs
            assert all(mine[call] == sha for call, sha in theirs.items())
        # Either centre plays what the other took.
        for address, other_seat in ((url_a, "seat-b"), (url_b, "seat-a")):
            async with httpx.AsyncClient(base_url=address, timeout=30) as nina:
                await log_in(nina, "nina")
                for row_id, _key, sha in held[other_seat]:
                    answer = await nina.get(f"/recordings/{row_id}/download")
                    assert answer.status_code == 200, answer.text
                    assert hashlib.sha256(answer.content).hexdigest() == sha
    finally:
        assert stop(a) == 0
        assert stop(b) == 0
        engine.dispose()
        for page in bucket.client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                bucket.client.delete_object(Bucket=name, Key=item["Key"])
