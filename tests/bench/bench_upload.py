"""Recording upload through the centre: seats' PUT /api/v1/recordings into its store, disk and Ceph RGW.

A real ``cti-agent centre`` process (its own process) takes the uploads; this process plays the
seats: it first posts the calls (the centre takes a recording only for a call it has), then
uploads FLAC-sized files (0.3-2 MB, a half to three minutes of 8 kHz speech) through the seat's
own client (:class:`agent.seat.centre_client.CentreClient`), with 1 and ``--threads`` uploaders
at once. Beside each figure: the same files written straight into the same store from this
process, without HTTP (the peer: what the store alone costs). The S3 store is a throwaway
single-node Ceph cluster (tests/ceph/ceph-rgw-up.sh, data in RAM on memstore). Everything shares
this machine's cores, so the figures are a lower bound for a centre with its own.

Run: .venv/bin/python tests/bench/bench_upload.py [--files 40] [--threads 4]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from centre_process import centre_process
from rgw_fixture import start_rgw
from sqlalchemy.orm import Session

from agent.events import Call, Direction, Disposition, EndReason
from agent.seat.centre_client import CentreClient
from agent.seatapi import CallEntry
from storage.blobstore import (
    DirectoryBlobStore,
    RecordingBlobStore,
    S3BlobStore,
    S3Credentials,
    recording_key,
)
from storage.db import make_engine, upgrade
from storage.seats import add_seat

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def workload(root: Path, files: int, seed: int = 11) -> list[tuple[Call, Path, str]]:
    """Calls in time order, each with a recording file of FLAC size and its SHA-256."""
    rng = random.Random(seed)
    items = []
    at = T0
    for n in range(files):
        at += timedelta(seconds=rng.uniform(30, 240))
        talk = rng.uniform(30, 180)
        call = Call(
            uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            seat="seat-001", device_id="sim", line="L1", rep="rep01", team="north",
            direction=Direction.OUT, started_at=at, number_raw=f"1380013{n:04d}",
            number_e164=f"+861380013{n:04d}", answered_at=at + timedelta(seconds=8),
            ended_at=at + timedelta(seconds=8 + talk), ring_seconds=8.0, talk_seconds=round(talk, 3),
            disposition=Disposition.ANSWERED, end_reason=EndReason.HANGUP,
        )  # fmt: skip
        body = rng.randbytes(int(talk * 11_000))  # ~11 kB/s: FLAC of 8 kHz 16-bit speech
        path = root / f"{call.uuid}.flac"
        path.write_bytes(body)
        items.append((call, path, hashlib.sha256(body).hexdigest()))
    return items


@contextmanager
def seat_centre(root: Path, recordings: str) -> Iterator[tuple[str, str]]:
    """A centre on its own SQLite with ``recordings`` as its [centre.recordings] table; (address, token)."""
    data = root / "centre"
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        token = add_seat(session, "seat-001", "north")[1]
    engine.dispose()
    with centre_process(root, data, recordings) as address:
        yield address, token


def upload(address: str, token: str, items: list[tuple[Call, Path, str]], threads: int) -> float:
    """Seconds to upload every file with ``threads`` seats' clients at once."""
    clients = [CentreClient(address, token) for _ in range(threads)]
    clients[0].send_calls("seat-001", [CallEntry.of(call, None, None) for call, _, _ in items], backlog=0)

    def one(index: int) -> None:
        call, path, sha = items[index]
        params = {"ext": "flac", "codec": "flac", "sample_rate": "8000", "channels": "1",
                  "seconds": str(call.talk_seconds), "status": "complete"}  # fmt: skip
        copy = clients[index % threads].put_recording(call.uuid, path, sha, params)
        assert copy.sha256 == sha

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(items))))
    took = time.perf_counter() - started
    for client in clients:
        client.close()
    return took


def direct(store: RecordingBlobStore, items: list[tuple[Call, Path, str]], threads: int) -> float:
    """Seconds to put the same files straight into the store (no HTTP, no centre)."""

    def one(item: tuple[Call, Path, str]) -> None:
        call, path, sha = item
        key = "direct/" + recording_key(call.uuid, call.started_at, "flac")
        with path.open("rb") as f:
            store.put_stream(key, f, expected_sha256=sha, expected_size=path.stat().st_size)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, items))
    return time.perf_counter() - started


def report(label: str, items: list[tuple[Call, Path, str]], seconds: float) -> None:
    size = sum(path.stat().st_size for _, path, _ in items)
    print(f"{label:38s} {len(items) / seconds:7.1f} files/s  {size / seconds / 1e6:7.1f} MB/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cti-bench-upload-") as tmp:
        root = Path(tmp)
        (root / "files").mkdir()
        items = workload(root / "files", args.files)
        total = sum(path.stat().st_size for _, path, _ in items)
        print(f"{len(items)} recordings, {total / 1e6:.1f} MB, calls in time order", flush=True)
        for threads in (1, args.threads):
            run = root / f"dir-{threads}"
            run.mkdir()
            with seat_centre(run, "") as (address, token):
                report(
                    f"directory via the centre, {threads} uploader(s)",
                    items,
                    upload(address, token, items, threads),
                )
            peer = DirectoryBlobStore(run / "peer")
            report(f"directory direct (peer), {threads} writer(s)", items, direct(peer, items, threads))
        with start_rgw(memstore_bytes=2 << 30) as rgw:
            creds = root / "s3.credentials"
            keys = f"aws_access_key_id = {rgw.access_key}\naws_secret_access_key = {rgw.secret_key}\n"
            creds.write_text(f"[default]\n{keys}", encoding="utf-8")
            creds.chmod(0o600)
            for threads in (1, args.threads):
                name = f"bench-{uuid.uuid4().hex[:8]}"
                bucket = S3BlobStore(rgw.endpoint, name, S3Credentials(rgw.access_key, rgw.secret_key))
                bucket.client.create_bucket(Bucket=name)
                table = (
                    f'[centre.recordings]\ns3_url = "{rgw.endpoint}"\nbucket = "{name}"\n'
                    f'credentials_file = "{creds}"\n'
                )
                run = root / f"s3-{threads}"
                run.mkdir()
                with seat_centre(run, table) as (address, token):
                    report(
                        f"ceph rgw via the centre, {threads} uploader(s)",
                        items,
                        upload(address, token, items, threads),
                    )
                report(f"ceph rgw direct (peer), {threads} writer(s)", items, direct(bucket, items, threads))


if __name__ == "__main__":
    main()
