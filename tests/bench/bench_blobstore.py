"""The centre's recording store: upload throughput and ranged-read latency, directory vs. a real Ceph RGW.

The workload is what a floor uploads: ``--small`` recordings of FLAC size
(0.3-2 MB, a half to three minutes of 8 kHz speech) plus ``--large`` long calls
of 20 MB, streamed in 64 KiB chunks as a request body arrives, each with its
SHA-256 checked (the store hashes while it streams). Uploads run with 1 and
``--threads`` concurrent uploaders (the centre serves seats in parallel).
Ranged reads are what the console's player asks when a user seeks: 64 KiB at a
random offset, timed from the call to the last byte; p50/p99 over ``--reads``.

The S3 store is a throwaway single-node Ceph cluster (tests/ceph/ceph-rgw-up.sh,
its data in RAM on memstore) whose daemons run in their own processes; this
process is only the client. Both stores share this machine's cores with the
client, so the figures are a lower bound for a centre with its own store.

Run: .venv/bin/python tests/bench/bench_blobstore.py [--small 60] [--large 3] [--threads 4] [--reads 300]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from rgw_fixture import start_rgw

from storage.blobstore import (
    DirectoryBlobStore,
    RecordingBlobStore,
    S3BlobStore,
    S3Credentials,
)

CHUNK = 64 * 1024
MB = 1_000_000


def workload(small: int, large: int, seed: int = 7) -> list[tuple[str, bytes, str]]:
    """(key, body, sha256) for each recording; bodies are random (FLAC does not compress further)."""
    rng = random.Random(seed)
    sizes = [rng.randint(300_000, 2_000_000) for _ in range(small)] + [20 * MB] * large
    out = []
    for size in sizes:
        body = os.urandom(size)
        key = f"2026/12/03/{uuid.uuid4()}.flac"
        out.append((key, body, hashlib.sha256(body).hexdigest()))
    return out


def chunks(body: bytes) -> Iterator[bytes]:
    for i in range(0, len(body), CHUNK):
        yield body[i : i + CHUNK]


def upload_all(store: RecordingBlobStore, items: list[tuple[str, bytes, str]], threads: int) -> float:
    """Seconds to upload every item with ``threads`` uploaders."""

    def one(item: tuple[str, bytes, str]) -> None:
        key, body, sha = item
        store.put_stream(key, chunks(body), sha, len(body))

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, items))
    return time.perf_counter() - started


def ranged_reads(store: RecordingBlobStore, items: list[tuple[str, bytes, str]], reads: int) -> list[float]:
    """Seconds per 64 KiB ranged read at a random offset (checked against the body)."""
    rng = random.Random(11)
    times = []
    for _ in range(reads):
        key, body, _ = rng.choice(items)
        start = rng.randrange(0, max(1, len(body) - CHUNK))
        t0 = time.perf_counter()
        got = b"".join(store.open_range(key, start, start + CHUNK - 1))
        times.append(time.perf_counter() - t0)
        assert got == body[start : start + CHUNK]
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(
    name: str,
    make: Callable[[], RecordingBlobStore],
    items: list[tuple[str, bytes, str]],
    threads: int,
    reads: int,
) -> None:
    total = sum(len(body) for _, body, _ in items) / MB
    small = [item for item in items if len(item[1]) < 20 * MB]
    large = [item for item in items if len(item[1]) >= 20 * MB]
    for n in sorted({1, threads}):
        store = make()
        seconds = upload_all(store, small, n)
        small_mb = sum(len(b) for _, b, _ in small) / MB
        line = f"{name:10} {n} uploader(s): {len(small)} FLAC-sized {small_mb / seconds:6.1f} MB/s"
        if large:
            big = upload_all(store, large, n)
            line += f", {len(large)} x 20 MB {sum(len(b) for _, b, _ in large) / MB / big:6.1f} MB/s"
        print(line, flush=True)
        if n == 1:
            times = ranged_reads(store, items, reads)
            print(
                f"{name:10} ranged 64 KiB reads: p50 {pct(times, 0.5) * 1000:.2f} ms, "
                f"p99 {pct(times, 0.99) * 1000:.2f} ms, mean {statistics.fmean(times) * 1000:.2f} ms "
                f"({reads} reads over {total:.0f} MB)",
                flush=True,
            )
        for key, _, _ in items:
            store.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=60, help="FLAC-sized recordings (0.3-2 MB)")
    parser.add_argument("--large", type=int, default=3, help="20 MB recordings")
    parser.add_argument("--threads", type=int, default=4, help="concurrent uploaders in the second round")
    parser.add_argument("--reads", type=int, default=300, help="ranged reads for the latency figures")
    args = parser.parse_args()
    items = workload(args.small, args.large)
    print(f"{len(items)} recordings, {sum(len(b) for _, b, _ in items) / MB:.0f} MB, {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory(prefix="cti-bench-blobs.", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp) / "recordings"
        run("directory", lambda: DirectoryBlobStore(root), items, args.threads, args.reads)

    t0 = time.perf_counter()
    with start_rgw(memstore_bytes=2 << 30) as rgw:
        print(f"ceph rgw ready in {time.perf_counter() - t0:.1f} s at {rgw.endpoint}", flush=True)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"

        def s3() -> S3BlobStore:
            return S3BlobStore(rgw.endpoint, bucket, S3Credentials(rgw.access_key, rgw.secret_key))

        s3().client.create_bucket(Bucket=bucket)
        run("ceph-rgw", s3, items, args.threads, args.reads)


if __name__ == "__main__":
    main()
