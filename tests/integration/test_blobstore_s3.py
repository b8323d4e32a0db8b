"""S3BlobStore against a real S3 implementation: Ceph's radosgw, started once for the session (``rgw``).

The same contract as the directory store (tests/unit/test_blobstore.py): a body
whose SHA-256 or size is wrong, or that is cut, leaves no object and no
unfinished multipart upload; a repeated upload is a no-op; Range reads return
exactly the bytes asked for.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from rgw_fixture import RgwServer

from storage.blobconfig import RecordingStoreSettings, make_blob_store
from storage.blobstore import (
    MIN_PART_SIZE,
    BlobConflictError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobRangeError,
    BlobStoreError,
    RecordingBlobStore,
    S3BlobStore,
    S3Credentials,
    purge_before,
    put_async,
)

KEY = "2024/05/06/6f1c2a9e-1111-4222-8333-444455556666.flac"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def cut(data: bytes, after: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body whose connection breaks after ``after`` bytes."""
    yield from pieces(data[:after], size)
    raise ConnectionResetError("peer went away")


@pytest.fixture
def store(rgw: RgwServer) -> Iterator[S3BlobStore]:
    """A store on a new bucket (with a prefix, as a shared bucket would have), emptied afterwards."""
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    s3 = S3BlobStore(
        rgw.endpoint,
        bucket,
        S3Credentials(rgw.access_key, rgw.secret_key),
        prefix="floor-1",
        part_size=MIN_PART_SIZE,
    )
    s3.client.create_bucket(Bucket=bucket)
    try:
        yield s3
    finally:
        for _key, upload_id, _ in s3.incomplete_uploads():
            s3.client.abort_multipart_upload(Bucket=bucket, Key=_key, UploadId=upload_id)
        for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.client.delete_object(Bucket=bucket, Key=item["Key"])
        s3.client.delete_bucket(Bucket=bucket)


def bucket_keys(store: S3BlobStore) -> list[str]:
    """Every object name in the bucket, prefix and hidden keys included."""
    return [item["Key"] for item in store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])]


def test_s3_store_is_a_recording_blob_store(store: S3BlobStore) -> None:
    assert isinstance(store, RecordingBlobStore)


def test_small_put_stat_read_and_metadata(store: S3BlobStore) -> None:
    data = os.urandom(700_000)  # a minute of FLAC: one PutObject
    info = store.put_stream(KEY, pieces(data), sha(data), len(data))
    assert (info.key, info.size, info.sha256) == (KEY, len(data), sha(data))
    stored = store.stat(KEY)
    assert stored is not None
    assert (stored.key, stored.size, stored.sha256) == (info.key, info.size, info.sha256)
    assert abs((stored.modified - info.modified).total_seconds()) < 60
    assert bucket_keys(store) == [f"floor-1/{KEY}"]
    head: dict[str, Any] = store.client.head_object(Bucket=store.bucket, Key=f"floor-1/{KEY}")
    assert head["Metadata"] == {"sha256": sha(data)}
    assert head["ContentType"] == "audio/flac"
    assert b"".join(store.open_range(KEY)) == data


def test_a_20_mb_upload_streamed_in_chunks_goes_multipart(store: S3BlobStore) -> None:
    data = os.urandom(20 * 1024 * 1024)
    info = store.put_stream(KEY, pieces(data, 256 * 1024), sha(data), len(data))
    assert info.size == len(data)
    assert info.sha256 == sha(data)
    # A multipart object's ETag ends in -<parts>: 20 MiB in 5 MiB parts.
    head = store.client.head_object(Bucket=store.bucket, Key=f"floor-1/{KEY}")
    assert head["ETag"].strip('"').endswith("-4")
    assert hashlib.sha256(b"".join(store.open_range(KEY))).hexdigest() == sha(data)
    assert store.incomplete_uploads() == []


def test_put_from_a_file_like_object(store: S3BlobStore) -> None:
    data = os.urandom(6 * 1024 * 1024)
    store.put_stream(KEY, io.BytesIO(data), sha(data))
    assert (
        b"".join(store.open_range(KEY, 5 * 1024 * 1024 - 3, 5 * 1024 * 1024 + 2))
        == (data[5 * 1024 * 1024 - 3 : 5 * 1024 * 1024 + 3])
    )


@pytest.mark.parametrize("size", [300_000, 12 * 1024 * 1024], ids=["single-put", "multipart"])
def test_sha256_mismatch_leaves_no_object_and_no_upload(store: S3BlobStore, size: int) -> None:
    data = os.urandom(size)
    with pytest.raises(BlobIntegrityError, match="does not match"):
        store.put_stream(KEY, pieces(data), sha(data + b"!"), len(data))
    assert store.stat(KEY) is None
    assert bucket_keys(store) == []
    assert store.incomplete_uploads() == []


@pytest.mark.parametrize("after", [100_000, 11 * 1024 * 1024], ids=["before-a-part", "after-two-parts"])
def test_a_cut_stream_leaves_nothing_and_the_retry_succeeds(store: S3BlobStore, after: int) -> None:
    data = os.urandom(12 * 1024 * 1024)
    with pytest.raises(BlobIntegrityError, match=f"cut after {after} bytes"):
        store.put_stream(KEY, cut(data, after), sha(data), len(data))
    assert bucket_keys(store) == []
    assert store.incomplete_uploads() == []
    store.put_stream(KEY, pieces(data), sha(data), len(data))
    assert store.stat(KEY).sha256 == sha(data)  # type: ignore[union-attr]


def test_short_and_long_bodies_against_the_announced_size(store: S3BlobStore) -> None:
    data = os.urandom(6 * 1024 * 1024)
    with pytest.raises(BlobIntegrityError, match="ended after"):
        store.put_stream(KEY, pieces(data), sha(data), len(data) + 1)
    with pytest.raises(BlobIntegrityError, match="longer than the announced"):
        store.put_stream(KEY, pieces(data), sha(data), len(data) - 1)
    assert bucket_keys(store) == []
    assert store.incomplete_uploads() == []


def test_identical_put_is_a_no_op_and_another_sha_is_a_conflict(store: S3BlobStore) -> None:
    data = os.urandom(50_000)
    first = store.put_stream(KEY, [data], sha(data))

    def must_not_be_read() -> Iterator[bytes]:
        raise AssertionError("the body of a repeated upload was read")
        yield b""

    again = store.put_stream(KEY, must_not_be_read(), sha(data), len(data))
    assert (again.key, again.size, again.sha256) == (first.key, first.size, first.sha256)
    other = os.urandom(50_000)
    with pytest.raises(BlobConflictError):
        store.put_stream(KEY, [other], sha(other))
    assert b"".join(store.open_range(KEY)) == data


def test_range_reads_return_exactly_the_asked_bytes(store: S3BlobStore) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    store.put_stream(KEY, pieces(data), sha(data))
    assert b"".join(store.open_range(KEY, 0, 0)) == data[:1]
    assert b"".join(store.open_range(KEY, 1000, 1999)) == data[1000:2000]
    assert b"".join(store.open_range(KEY, 300_000, 1_700_123)) == data[300_000:1_700_124]
    assert b"".join(store.open_range(KEY, len(data) - 10)) == data[-10:]
    assert b"".join(store.open_range(KEY, 10, 10**9)) == data[10:]  # clamped, as HTTP does
    with pytest.raises(BlobRangeError):
        store.open_range(KEY, len(data))
    with pytest.raises(BlobNotFoundError):
        store.open_range("2024/05/06/missing.flac", 0, 10)


def test_an_empty_object_reads_whole_but_has_no_range(store: S3BlobStore) -> None:
    store.put_stream(KEY, [], sha(b""), 0)
    assert store.stat(KEY).size == 0  # type: ignore[union-attr]
    assert b"".join(store.open_range(KEY)) == b""
    with pytest.raises(BlobRangeError):
        store.open_range(KEY, 0, 0)


def test_a_range_stream_closed_early_frees_its_connection(store: S3BlobStore) -> None:
    data = os.urandom(2 * 1024 * 1024)
    store.put_stream(KEY, [data], sha(data))
    for _ in range(40):  # more than the connection pool holds (32): a leak would block here
        stream = store.open_range(KEY)
        first = next(stream)
        assert first
        assert data.startswith(first)
        stream.close()  # type: ignore[attr-defined]
    assert b"".join(store.open_range(KEY, 5, 9)) == data[5:10]


def test_delete_and_iter_keys(store: S3BlobStore) -> None:
    keys = ["2024/05/06/b.flac", "2024/05/06/a.flac", "2024/06/01/c.opus", "2023/12/31/d.wav"]
    for key in keys:
        store.put_stream(key, [key.encode()], sha(key.encode()))
    # An object outside the prefix (another floor) is never listed or purged.
    store.client.put_object(Bucket=store.bucket, Key="floor-2/2020/01/01/x.flac", Body=b"x")
    assert list(store.iter_keys()) == sorted(keys)
    assert list(store.iter_keys("2024/05/")) == ["2024/05/06/a.flac", "2024/05/06/b.flac"]
    store.delete("2024/05/06/a.flac")
    store.delete("2024/05/06/a.flac")  # deleting twice is fine
    assert store.stat("2024/05/06/a.flac") is None
    assert purge_before(store, date(2024, 6, 1)) == ["2023/12/31/d.wav", "2024/05/06/b.flac"]
    assert list(store.iter_keys()) == ["2024/06/01/c.opus"]
    assert "floor-2/2020/01/01/x.flac" in bucket_keys(store)


def test_iter_keys_follows_every_page(store: S3BlobStore) -> None:
    store.list_page_size = 3  # S3 gives at most 1000 keys a page; 3 makes several pages cheap
    keys = [f"2024/01/01/{i:03d}.flac" for i in range(11)]
    for key in keys:
        store.put_stream(key, [b""], sha(b""))
    assert list(store.iter_keys("2024/01/")) == keys


def test_abort_incomplete_removes_what_a_crash_left(store: S3BlobStore) -> None:
    left = store.client.create_multipart_upload(Bucket=store.bucket, Key=f"floor-1/{KEY}")
    assert [upload_id for _, upload_id, _ in store.incomplete_uploads()] == [left["UploadId"]]
    assert store.abort_incomplete(timedelta(hours=1)) == 0  # still young: maybe running
    assert store.abort_incomplete(timedelta(0)) == 1
    assert store.incomplete_uploads() == []
    assert bucket_keys(store) == []


def test_health(store: S3BlobStore, rgw: RgwServer) -> None:
    ok = store.health()
    assert ok.ok, ok.detail
    assert bucket_keys(store) == []  # the probe is gone
    absent = S3BlobStore(rgw.endpoint, "no-such-bucket", S3Credentials(rgw.access_key, rgw.secret_key))
    bad = absent.health()
    assert not bad.ok
    assert "NoSuchBucket" in bad.detail
    wrong = S3BlobStore(rgw.endpoint, store.bucket, S3Credentials(rgw.access_key, "wrong-secret"))
    assert not wrong.health().ok
    with pytest.raises(BlobStoreError):
        wrong.put_stream(KEY, [b"x"], sha(b"x"))


def test_store_down_is_a_store_error_not_an_integrity_error() -> None:
    down = S3BlobStore(
        "http://127.0.0.1:9",  # discard port: nothing listens
        "rec-down",
        S3Credentials("AK", "SK"),
        connect_timeout=0.5,
        max_attempts=1,
    )
    with pytest.raises(BlobStoreError) as caught:
        down.put_stream(KEY, [b"x"], sha(b"x"))
    assert not isinstance(caught.value, BlobIntegrityError)  # the seat's body was fine: retry later
    assert not down.health().ok


async def test_put_async_streams_a_request_like_body(store: S3BlobStore) -> None:
    data = os.urandom(7 * 1024 * 1024)

    async def body() -> Any:
        for piece in pieces(data):
            yield piece

    info = await put_async(store, KEY, body(), sha(data), len(data))
    assert info.sha256 == sha(data)
    assert store.incomplete_uploads() == []


def test_factory_builds_the_s3_store_from_settings(rgw: RgwServer, tmp_path: Path) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    creds = tmp_path / "s3.credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {rgw.access_key}\naws_secret_access_key = {rgw.secret_key}\n"
    )
    creds.chmod(0o600)
    settings = RecordingStoreSettings(s3_url=rgw.endpoint, bucket=bucket, credentials_file=creds)
    built = make_blob_store(settings, tmp_path, environ={})
    assert isinstance(built, S3BlobStore)
    built.client.create_bucket(Bucket=bucket)
    try:
        built.put_stream(KEY, [b"abc"], sha(b"abc"))
        assert list(built.iter_keys()) == [KEY]
        built.delete(KEY)
    finally:
        built.client.delete_bucket(Bucket=bucket)
