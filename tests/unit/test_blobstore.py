"""The directory recording store, the key helpers and the ``[centre.recordings]`` settings.

The S3 store keeps the same contract against a real Ceph RGW in
``tests/integration/test_blobstore_s3.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.errors import ConfigError, StorageError
from storage.blobconfig import RecordingStoreSettings, load_credentials, make_blob_store
from storage.blobstore import (
    BlobConflictError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobRangeError,
    DirectoryBlobStore,
    RecordingBlobStore,
    S3BlobStore,
    key_date,
    purge_before,
    put_async,
    recording_key,
    validate_key,
)

KEY = "2024/05/06/6f1c2a9e-1111-4222-8333-444455556666.flac"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pieces(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def cut(data: bytes, after: int) -> Iterator[bytes]:
    """A body whose connection breaks after ``after`` bytes."""
    yield data[:after]
    raise ConnectionResetError("peer went away")


def everything_under(root: Path) -> list[str]:
    """Every file under ``root``, hidden ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "recordings")


def test_directory_store_is_a_recording_blob_store(store: DirectoryBlobStore) -> None:
    assert isinstance(store, RecordingBlobStore)


def test_put_then_stat_and_read(store: DirectoryBlobStore) -> None:
    data = os.urandom(300_000)
    info = store.put_stream(KEY, pieces(data), sha(data), len(data))
    assert (info.key, info.size, info.sha256) == (KEY, len(data), sha(data))
    assert info.modified.tzinfo is not None
    assert store.stat(KEY) == info
    assert b"".join(store.open_range(KEY)) == data
    path = store.root / KEY
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_put_from_a_file_like_object_and_from_bytes(store: DirectoryBlobStore) -> None:
    data = os.urandom(1_000_000)
    store.put_stream(KEY, io.BytesIO(data), sha(data))
    assert b"".join(store.open_range(KEY)) == data
    other = "2024/05/06/other.wav"
    store.put_stream(other, data, sha(data))  # a bytes body is one chunk, not bytes-as-ints
    assert store.stat(other) is not None
    assert store.stat(other).size == len(data)  # type: ignore[union-attr]


def test_sha256_mismatch_leaves_nothing(store: DirectoryBlobStore) -> None:
    data = os.urandom(50_000)
    with pytest.raises(BlobIntegrityError, match="does not match"):
        store.put_stream(KEY, pieces(data), sha(data + b"x"))
    assert store.stat(KEY) is None
    assert everything_under(store.root) == []
    assert list(store.iter_keys()) == []


def test_a_cut_stream_leaves_nothing_and_the_retry_succeeds(store: DirectoryBlobStore) -> None:
    data = os.urandom(80_000)
    with pytest.raises(BlobIntegrityError, match="cut after 30000 bytes"):
        store.put_stream(KEY, cut(data, 30_000), sha(data), len(data))
    assert everything_under(store.root) == []
    store.put_stream(KEY, pieces(data), sha(data), len(data))
    assert b"".join(store.open_range(KEY)) == data


def test_short_and_long_bodies_against_the_announced_size(store: DirectoryBlobStore) -> None:
    data = os.urandom(10_000)
    # A short body that still hashes right (the seat announced more than it sent) is refused.
    with pytest.raises(BlobIntegrityError, match="ended after 10000 of 10001 bytes"):
        store.put_stream(KEY, pieces(data), sha(data), len(data) + 1)
    with pytest.raises(BlobIntegrityError, match="longer than the announced 9999"):
        store.put_stream(KEY, pieces(data), sha(data), len(data) - 1)
    assert everything_under(store.root) == []


def test_an_integrity_error_is_a_storage_error(store: DirectoryBlobStore) -> None:
    with pytest.raises(StorageError):
        store.put_stream(KEY, [b"abc"], sha(b"abd"))


def test_identical_put_is_a_no_op_and_does_not_read_the_body(store: DirectoryBlobStore) -> None:
    data = os.urandom(20_000)
    first = store.put_stream(KEY, pieces(data), sha(data))

    def must_not_be_read() -> Iterator[bytes]:
        raise AssertionError("the body of a repeated upload was read")
        yield b""

    again = store.put_stream(KEY, must_not_be_read(), sha(data).upper(), len(data))
    assert again == first


def test_another_object_under_an_existing_key_is_a_conflict(store: DirectoryBlobStore) -> None:
    data = os.urandom(20_000)
    store.put_stream(KEY, pieces(data), sha(data))
    other = os.urandom(20_000)
    with pytest.raises(BlobConflictError, match="already holds another object"):
        store.put_stream(KEY, pieces(other), sha(other))
    assert b"".join(store.open_range(KEY)) == data
    # Same hash, another announced size: not the same object either.
    with pytest.raises(BlobConflictError):
        store.put_stream(KEY, pieces(data), sha(data), len(data) + 1)


def test_losing_a_race_to_an_identical_upload_is_success(store: DirectoryBlobStore) -> None:
    data = os.urandom(5_000)

    def racing() -> Iterator[bytes]:
        # Another upload of the same recording finishes while this one streams.
        store.put_stream(KEY, [data], sha(data))
        yield data

    info = store.put_stream(KEY, racing(), sha(data))
    assert info.sha256 == sha(data)
    assert [p for p in everything_under(store.root) if p.endswith(".tmp")] == []


def test_range_reads_are_http_inclusive_and_clamped(store: DirectoryBlobStore) -> None:
    data = bytes(range(256)) * 4000  # 1 024 000 bytes, several read chunks
    store.put_stream(KEY, pieces(data, 65536), sha(data))
    assert b"".join(store.open_range(KEY, 0, 0)) == data[:1]
    assert b"".join(store.open_range(KEY, 1000, 1999)) == data[1000:2000]
    assert b"".join(store.open_range(KEY, 300_000, 700_123)) == data[300_000:700_124]
    assert b"".join(store.open_range(KEY, len(data) - 10)) == data[-10:]
    assert b"".join(store.open_range(KEY, 10, 10**9)) == data[10:]
    with pytest.raises(BlobRangeError):
        store.open_range(KEY, len(data))
    with pytest.raises(BlobRangeError):
        store.open_range(KEY, 5, 4)
    with pytest.raises(BlobNotFoundError):
        store.open_range("2024/05/06/missing.flac")


def test_an_empty_object_reads_whole_but_has_no_range(store: DirectoryBlobStore) -> None:
    store.put_stream(KEY, [], sha(b""), 0)
    assert store.stat(KEY).size == 0  # type: ignore[union-attr]
    assert b"".join(store.open_range(KEY)) == b""
    with pytest.raises(BlobRangeError):
        store.open_range(KEY, 0, 0)


def test_open_range_fails_before_streaming(store: DirectoryBlobStore) -> None:
    # The error must come from the call itself, before a response is started.
    with pytest.raises(BlobNotFoundError):
        store.open_range("2024/01/01/nothing.flac", 0, 10)


def test_delete_is_idempotent_and_removes_empty_day_directories(store: DirectoryBlobStore) -> None:
    store.put_stream(KEY, [b"one"], sha(b"one"))
    keep = "2024/05/07/keep.flac"
    store.put_stream(keep, [b"two"], sha(b"two"))
    store.delete(KEY)
    store.delete(KEY)
    assert store.stat(KEY) is None
    assert not (store.root / "2024" / "05" / "06").exists()
    assert list(store.iter_keys()) == [keep]
    store.put_stream(KEY, [b"three"], sha(b"three"))  # the key is free again
    assert store.stat(KEY).sha256 == sha(b"three")  # type: ignore[union-attr]


def test_iter_keys_is_sorted_filters_by_prefix_and_hides_internal_files(store: DirectoryBlobStore) -> None:
    keys = ["2024/05/06/b.flac", "2024/05/06/a.flac", "2024/06/01/c.opus", "2023/12/31/d.wav"]
    for key in keys:
        store.put_stream(key, [key.encode()], sha(key.encode()))
    (store.root / "2024" / "05" / "06" / ".x.flac.abc.tmp").write_bytes(b"in progress")
    assert list(store.iter_keys()) == sorted(keys)
    assert list(store.iter_keys("2024/05/")) == ["2024/05/06/a.flac", "2024/05/06/b.flac"]
    assert list(store.iter_keys("2025/")) == []
    assert list(DirectoryBlobStore(store.root / "absent").iter_keys()) == []


def test_purge_before_deletes_only_older_days(store: DirectoryBlobStore) -> None:
    keys = ["2024/05/05/old.flac", "2024/05/06/edge.flac", "2024/05/07/new.flac", "misc/not-a-day.flac"]
    for key in keys:
        store.put_stream(key, [b"x"], sha(b"x"))
    assert purge_before(store, date(2024, 5, 6)) == ["2024/05/05/old.flac"]
    assert list(store.iter_keys()) == ["2024/05/06/edge.flac", "2024/05/07/new.flac", "misc/not-a-day.flac"]


def test_a_lost_checksum_file_is_recomputed(store: DirectoryBlobStore) -> None:
    data = os.urandom(4096)
    store.put_stream(KEY, [data], sha(data))
    sidecar = store.root / "2024/05/06" / f".{KEY.rsplit('/', 1)[1]}.sha256"
    assert sidecar.exists()
    sidecar.unlink()  # a crash between the link and the checksum file
    assert store.stat(KEY).sha256 == sha(data)  # type: ignore[union-attr]
    assert sidecar.exists()


def test_abort_incomplete_removes_only_stale_uploads(store: DirectoryBlobStore) -> None:
    store.put_stream(KEY, [b"done"], sha(b"done"))
    folder = store.root / "2024/05/06"
    stale = folder / ".crashed.flac.0123.tmp"
    fresh = folder / ".running.flac.4567.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.abort_incomplete(timedelta(minutes=30)) == 1
    assert not stale.exists()
    assert fresh.exists()
    assert store.stat(KEY) is not None


def test_health_reports_writable_and_unwritable(tmp_path: Path) -> None:
    ok = DirectoryBlobStore(tmp_path / "rec").health()
    assert ok.ok
    assert ok.backend == "directory"
    assert "writable" in ok.detail
    assert list((tmp_path / "rec").iterdir()) == []  # the probe is gone
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    bad = DirectoryBlobStore(blocker / "rec").health()
    assert not bad.ok
    assert str(blocker) in bad.detail


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a//b", "../x", "2024/../../etc/passwd", ".hidden", "a/.b", "a b", "a/b\n", "x" * 129],
)
def test_bad_keys_are_refused_before_any_io(store: DirectoryBlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="not a valid recording key"):
        store.put_stream(key, [b"x"], sha(b"x"))
    with pytest.raises(ValueError, match="not a valid recording key"):
        store.stat(key)
    assert not store.root.exists()


def test_a_malformed_sha256_is_refused(store: DirectoryBlobStore) -> None:
    with pytest.raises(ValueError, match="not a SHA-256"):
        store.put_stream(KEY, [b"x"], "abc")


def test_recording_key_and_key_date() -> None:
    started = datetime(2024, 5, 6, 23, 30, tzinfo=UTC)
    assert recording_key("u-1", started, "flac") == "2024/05/06/u-1.flac"
    assert validate_key("2024/05/06/u-1.flac") == "2024/05/06/u-1.flac"
    assert key_date("2024/05/06/u-1.flac") == date(2024, 5, 6)
    assert key_date("2024/13/06/u-1.flac") is None
    assert key_date("misc/u-1.flac") is None
    with pytest.raises(ValueError, match="not a valid"):
        recording_key("../x", started, "flac")


async def test_put_async_streams_an_async_body(store: DirectoryBlobStore) -> None:
    data = os.urandom(200_000)

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces(data, 65536):
            await asyncio.sleep(0)
            yield piece

    info = await put_async(store, KEY, body(), sha(data), len(data))
    assert info.size == len(data)
    assert b"".join(store.open_range(KEY)) == data


async def test_put_async_disconnect_leaves_nothing(store: DirectoryBlobStore) -> None:
    data = os.urandom(100_000)

    async def body() -> AsyncIterator[bytes]:
        yield data[:40_000]
        raise OSError("client disconnected")

    with pytest.raises(BlobIntegrityError, match="cut after 40000"):
        await put_async(store, KEY, body(), sha(data), len(data))
    assert everything_under(store.root) == []


# -- settings ---------------------------------------------------------------------------------


def test_default_settings_give_a_directory_under_the_data_dir(tmp_path: Path) -> None:
    built = make_blob_store(RecordingStoreSettings(), tmp_path)
    assert isinstance(built, DirectoryBlobStore)
    assert built.root == tmp_path / "recordings"
    chosen = make_blob_store(RecordingStoreSettings(dir=tmp_path / "elsewhere"), tmp_path)
    assert isinstance(chosen, DirectoryBlobStore)
    assert chosen.root == tmp_path / "elsewhere"


# urllib3 (under boto3) probes for IPv6 by creating a socket when it is first imported; nothing connects.
@pytest.mark.enable_socket
def test_s3_settings_with_keys_from_the_environment(tmp_path: Path) -> None:
    settings = RecordingStoreSettings(s3_url="http://127.0.0.1:9/", bucket="cti-rec", prefix="/floor-1/")
    assert settings.uses_s3
    assert settings.s3_url == "http://127.0.0.1:9"
    assert settings.prefix == "floor-1/"
    env = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}
    built = make_blob_store(settings, tmp_path, env)
    assert isinstance(built, S3BlobStore)  # boto3 builds the client without any I/O
    assert built.prefix == "floor-1/"
    assert "SK" not in repr(load_credentials(settings, env))


def test_s3_settings_without_keys_are_a_config_error(tmp_path: Path) -> None:
    settings = RecordingStoreSettings(s3_url="https://s3.example", bucket="cti-rec")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        make_blob_store(settings, tmp_path, {})


def test_credentials_file_in_aws_format(tmp_path: Path) -> None:
    path = tmp_path / "s3.credentials"
    path.write_text("[default]\naws_access_key_id = AK1\naws_secret_access_key = S%K1\n[other]\n")
    path.chmod(0o600)
    settings = RecordingStoreSettings(s3_url="https://s3.example", bucket="cti-rec", credentials_file=path)
    creds = load_credentials(settings, {"AWS_ACCESS_KEY_ID": "env", "AWS_SECRET_ACCESS_KEY": "env"})
    assert (creds.access_key_id, creds.secret_access_key) == ("AK1", "S%K1")  # the file wins
    other = settings.model_copy(update={"credentials_profile": "other"})
    with pytest.raises(ConfigError, match=r"\[other\] needs aws_access_key_id"):
        load_credentials(other, {})
    missing = settings.model_copy(update={"credentials_file": tmp_path / "absent"})
    with pytest.raises(ConfigError, match="credentials_file"):
        load_credentials(missing, {})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"s3_url": "ftp://x"}, "http:// or https://"),
        ({"s3_url": "https://ak:sk@s3.example", "bucket": "abc"}, "must not carry credentials"),
        ({"s3_url": "https://s3.example"}, "bucket is required"),
        ({"bucket": "abc"}, "s3_url is not"),
        ({"s3_url": "https://s3.example", "bucket": "Bad_Bucket"}, "bucket name"),
        ({"s3_url": "https://s3.example", "bucket": "abc", "prefix": "../up"}, "not a valid recording key"),
        ({"access_key": "AK"}, "Extra inputs are not permitted"),
        ({"part_size_mb": 1}, "greater than or equal to 5"),
    ],
)
def test_bad_settings_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RecordingStoreSettings.model_validate(table)
