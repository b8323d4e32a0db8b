"""The centre's recording store: the finished recordings the seats upload, in a directory or an S3 bucket.

A recording is one immutable object under a key like the seat's layout,
``YYYY/MM/DD/<call-uuid>.<ext>`` (:func:`recording_key`), with its size and
SHA-256 kept beside it. Two implementations of :class:`RecordingBlobStore`:

- :class:`DirectoryBlobStore`: files under a root directory on the centre's disk;
- :class:`S3BlobStore`: objects in a bucket of any S3-compatible store (Ceph RGW,
  SeaweedFS, Garage, AWS S3, Alibaba OSS and Tencent COS in S3 mode), through boto3.

The contract both keep, whatever the input:

- :meth:`~RecordingBlobStore.put_stream` hashes the body while it streams and makes
  it visible under its key only once the whole body arrived and its SHA-256 (and
  size, when given) matched. A mismatch, a short body, or an exception from the
  source leaves **nothing** under the key: the seat retries the whole upload.
  The directory store writes a temporary file in the same directory, fsyncs it
  and links it into place; the S3 store buffers a small body and checks it
  before one ``PutObject``, and streams a large one as a multipart upload that
  is completed only after the check (and aborted otherwise). A multipart upload
  is invisible until it is completed, so no temporary key and no server-side copy
  are needed: a copy would write every byte twice and is limited to 5 GB.
- Objects are write-once: putting the same SHA-256 again is a no-op success,
  another SHA-256 under an existing key is :class:`BlobConflictError`.
- What a crash of the centre leaves (a temporary file, an incomplete multipart
  upload) is invisible to readers and removed by
  :meth:`~RecordingBlobStore.abort_incomplete`.

Every method blocks: call it from a worker thread (Starlette's
``run_in_threadpool``), or use :func:`put_async` for a request body.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agent.errors import StorageError

logger = logging.getLogger(__name__)

#: Bytes read from a file-like source at a time, and yielded per chunk by ``open_range``.
CHUNK = 256 * 1024
#: S3 multipart uploads need parts of at least 5 MiB (but the last).
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
#: An upload left by a crash is removed after this long (longer than any upload takes).
STALE_AFTER = timedelta(hours=6)

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_KEY_DATE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/")
_CONTENT_TYPES = {
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
}
_TMP_SUFFIX = ".tmp"
_SHA_SUFFIX = ".sha256"


class BlobStoreError(StorageError):
    """The recording store could not be reached or refused an operation (disk full, S3 down): retry later."""


class BlobIntegrityError(BlobStoreError):
    """The uploaded body is not what was announced (SHA-256 or size differs, or it was cut); nothing kept."""


class BlobConflictError(BlobStoreError):
    """Another object (a different SHA-256) already exists under the key; nothing was changed."""


class BlobNotFoundError(BlobStoreError):
    """No object under the key."""


class BlobRangeError(BlobStoreError):
    """A byte range that does not overlap the object (HTTP 416)."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One stored object: its key, size in bytes, SHA-256 (hex) and last change."""

    key: str
    size: int
    sha256: str | None
    """None only for an object written by something else than this store (no checksum kept)."""
    modified: datetime


@dataclass(frozen=True, slots=True)
class BlobHealth:
    """The answer of :meth:`RecordingBlobStore.health`: whether a probe could be written and removed."""

    ok: bool
    backend: str
    detail: str


@runtime_checkable
class Readable(Protocol):
    """A binary file-like source (an open file, a socket file, ``io.BytesIO``)."""

    def read(self, size: int = ..., /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""


@runtime_checkable
class RecordingBlobStore(Protocol):
    """Where the centre keeps recordings; every method blocks and is safe to call from several threads."""

    def put_stream(
        self,
        key: str,
        chunks: Iterable[bytes] | Readable,
        expected_sha256: str,
        expected_size: int | None = None,
    ) -> BlobInfo:
        """Store the body read from ``chunks`` under ``key``, if it is what the uploader announced.

        :param key: where to store it (:func:`validate_key` rules; :func:`recording_key` builds one).
        :param chunks: the body, as an iterable of byte strings or a file-like object.
        :param expected_sha256: the SHA-256 (hex) the uploader sent.
        :param expected_size: the size it sent, if any; reading stops once the body is longer.
        :returns: the stored object. When an object with this SHA-256 is already there,
            returns it without reading ``chunks`` (a retried upload).
        :raises BlobIntegrityError: the body's SHA-256 or size differs, or ``chunks`` raised
            (a cut connection); nothing is stored.
        :raises BlobConflictError: a different object exists under ``key``.
        :raises BlobStoreError: the store failed; nothing is stored.
        :raises ValueError: ``key`` or ``expected_sha256`` is malformed.
        """

    def stat(self, key: str) -> BlobInfo | None:
        """The object under ``key``, or None when there is none."""

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``start`` to ``end`` (inclusive, as in HTTP ``Range``; None: to the end) of ``key``.

        The object is opened (or the ranged GET sent) before this returns, so a
        missing key or bad range raises here, before any response is started;
        the returned iterator streams the bytes and closes what it holds when
        exhausted or closed. An ``end`` past the object is clamped to its last byte;
        the whole of an empty object (``start=0, end=None``) is no bytes, not an error.

        :raises BlobNotFoundError: no object under ``key``.
        :raises BlobRangeError: ``start`` is at or past the end of the object.
        """

    def delete(self, key: str) -> None:
        """Remove the object under ``key``; no error when there is none."""

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with ``prefix``, in lexical order (so by day for recording keys)."""

    def abort_incomplete(self, older_than: timedelta = STALE_AFTER) -> int:
        """Remove uploads left unfinished (by a crash) more than ``older_than`` ago; returns how many."""

    def health(self) -> BlobHealth:
        """Whether the store accepts writes now: a probe is written, read back and removed."""


# -- keys -----------------------------------------------------------------------------------


def validate_key(key: str) -> str:
    """``key`` itself when it is a valid object key, else :class:`ValueError`.

    A key is 1 to 8 ``/``-separated segments of letters, digits, ``_-.`` (not
    starting with a dot, at most 128 characters each): it maps to the same path
    on every store and can never climb out of the root directory.
    """
    parts = key.split("/")
    if not key or len(parts) > 8 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise ValueError(f"not a valid recording key: {key!r}")
    return key


def recording_key(call_uuid: str, started_at: datetime, ext: str) -> str:
    """The key of a call's recording: ``YYYY/MM/DD/<call-uuid>.<ext>``, dated by the start in UTC."""
    day = started_at.astimezone(UTC)
    return validate_key(f"{day:%Y}/{day:%m}/{day:%d}/{call_uuid}.{ext}")


def key_date(key: str) -> date | None:
    """The day a recording key is filed under, or None for a key not in the ``YYYY/MM/DD/`` layout."""
    match = _KEY_DATE.match(key)
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def verified(store: RecordingBlobStore, key: str) -> BlobInfo | None:
    """What ``key`` holds with its SHA-256 computed from the bytes now, not from what was recorded.

    The seat deletes its own copy of a recording once the centre confirms the SHA-256, so the
    confirmation must speak for the bytes: a copy altered since it was stored (a disk error, a
    file edited or swapped in the directory store) answers with the hash it has now, which the
    seat sees differ from its own and uploads again instead of purging. Reads the whole object.

    :returns: None when ``key`` is not in the store.
    :raises BlobStoreError: the store cannot be read.
    """
    recorded = store.stat(key)
    if recorded is None:
        return None
    digest = hashlib.sha256()
    size = 0
    try:
        for block in store.open_range(key):
            digest.update(block)
            size += len(block)
    except BlobNotFoundError:
        return None
    actual = replace(recorded, sha256=digest.hexdigest(), size=size)
    if (actual.sha256, actual.size) != (recorded.sha256, recorded.size):
        logger.warning(
            "recording %s in %r has changed since it was stored: SHA-256 %s, %d bytes, "
            "recorded as %s, %d bytes",
            key,
            store,
            actual.sha256,
            actual.size,
            recorded.sha256,
            recorded.size,
        )
    return actual


def purge_before(store: RecordingBlobStore, cutoff: date) -> list[str]:
    """Delete every recording filed under a day before ``cutoff``; returns the deleted keys.

    Only keys in the ``YYYY/MM/DD/`` layout are considered; anything else in the
    store is left alone. The caller removes the rows that pointed at them.
    """
    deleted: list[str] = []
    for key in store.iter_keys():
        day = key_date(key)
        if day is None:
            continue
        if day >= cutoff:
            break  # keys come in lexical order, which is date order for this layout
        store.delete(key)
        deleted.append(key)
    return deleted


def _validate_sha(expected_sha256: str) -> str:
    sha = expected_sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError(f"not a SHA-256 in hex: {expected_sha256!r}")
    return sha


def _iter_source(chunks: Iterable[bytes] | Readable) -> Iterator[bytes]:
    if isinstance(chunks, bytes | bytearray | memoryview):
        yield bytes(chunks)  # one body, not an iterable of ints
    elif isinstance(chunks, Readable):
        while block := chunks.read(CHUNK):
            yield block
    else:
        yield from chunks


class _Body:
    """The upload being read: hashes and counts it, and stops a body longer than announced."""

    def __init__(self, key: str, chunks: Iterable[bytes] | Readable, expected_size: int | None) -> None:
        self.key = key
        self.digest = hashlib.sha256()
        self.size = 0
        self.expected_size = expected_size
        self._source = _iter_source(chunks)

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._source:
                if not chunk:
                    continue
                self.size += len(chunk)
                if self.expected_size is not None and self.size > self.expected_size:
                    raise BlobIntegrityError(
                        f"upload of {self.key} is longer than the announced {self.expected_size} bytes"
                    )
                self.digest.update(chunk)
                yield bytes(chunk)
        except BlobStoreError:
            raise
        except Exception as exc:
            raise BlobIntegrityError(f"upload of {self.key} was cut after {self.size} bytes: {exc}") from exc

    def check(self, expected_sha256: str) -> str:
        """The SHA-256 of the body read whole; :class:`BlobIntegrityError` if not the one announced."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise BlobIntegrityError(
                f"upload of {self.key} ended after {self.size} of {self.expected_size} bytes"
            )
        actual = self.digest.hexdigest()
        if actual != expected_sha256:
            raise BlobIntegrityError(
                f"upload of {self.key}: SHA-256 {actual} does not match the announced {expected_sha256}"
            )
        return actual


def _same_or_conflict(existing: BlobInfo, sha: str, size: int | None) -> BlobInfo:
    if existing.sha256 == sha and (size is None or existing.size == size):
        return existing
    raise BlobConflictError(
        f"{existing.key} already holds another object (SHA-256 {existing.sha256}, {existing.size} bytes)"
    )


# -- a directory ----------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryBlobStore:
    """Recordings as files under ``root`` (0600, directories 0700).

    Beside each file ``<name>`` a hidden ``.<name>.sha256`` keeps its checksum and
    size; uploads in progress are hidden ``.<name>.<random>.tmp`` files. Valid
    keys never start a segment with a dot, so neither can collide with a key.
    """

    backend = "directory"

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"DirectoryBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}{_SHA_SUFFIX}")

    def put_stream(
        self,
        key: str,
        chunks: Iterable[bytes] | Readable,
        expected_sha256: str,
        expected_size: int | None = None,
    ) -> BlobInfo:
        """See :meth:`RecordingBlobStore.put_stream`."""
        sha = _validate_sha(expected_sha256)
        final = self._path(key)
        existing = self.stat(key)
        if existing is not None:
            return _same_or_conflict(existing, sha, expected_size)
        body = _Body(key, chunks, expected_size)
        try:
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise BlobStoreError(f"cannot create {final}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in body:
                    out.write(chunk)
                out.flush()
                body.check(sha)
                os.fsync(out.fileno())
            linked = self._link(tmp, final)
        except OSError as exc:
            raise BlobStoreError(f"cannot write {final}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        if not linked:  # another upload of the same key won the race
            existing = self.stat(key)
            if existing is None:
                raise BlobStoreError(f"{final} vanished while it was being stored")
            return _same_or_conflict(existing, sha, expected_size)
        try:
            self._write_sidecar(final, sha, body.size)
            _fsync_dir(final.parent)
        except OSError as exc:
            # The data file is complete and checked; stat() recomputes a missing sidecar.
            logger.warning("recording store: checksum of %s not saved: %s", final, exc)
        logger.debug("recording store: stored %s (%d bytes)", key, body.size)
        return BlobInfo(key=key, size=body.size, sha256=sha, modified=self._mtime(final))

    @staticmethod
    def _link(tmp: Path, final: Path) -> bool:
        """Put ``tmp`` in place as ``final`` unless ``final`` exists; False when it does."""
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        except OSError:
            # A filesystem without hard links: a rename after the check (a race here is as
            # harmless as the seats' retries of one upload, which carry the same bytes).
            if final.exists():
                return False
            os.replace(tmp, final)
        return True

    def _write_sidecar(self, final: Path, sha: str, size: int) -> None:
        sidecar = self._sidecar(final)
        tmp = sidecar.with_name(sidecar.name + _TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(f"{sha} {size}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, sidecar)

    @staticmethod
    def _mtime(path: Path) -> datetime:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)

    def stat(self, key: str) -> BlobInfo | None:
        """See :meth:`RecordingBlobStore.stat`; a lost checksum file is recomputed and written again."""
        final = self._path(key)
        try:
            st = final.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BlobStoreError(f"cannot stat {final}: {exc}") from exc
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        try:
            sha, _, size = self._sidecar(final).read_text(encoding="ascii").strip().partition(" ")
            if int(size) == st.st_size and re.fullmatch(r"[0-9a-f]{64}", sha):
                return BlobInfo(key=key, size=st.st_size, sha256=sha, modified=modified)
        except (OSError, ValueError):
            pass
        # Linked but its checksum file not written (a crash in between): the data was checked
        # before it was linked, so its own hash is the right one.
        digest = hashlib.sha256()
        try:
            with final.open("rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            sha = digest.hexdigest()
            self._write_sidecar(final, sha, st.st_size)
        except OSError as exc:
            raise BlobStoreError(f"cannot read {final}: {exc}") from exc
        return BlobInfo(key=key, size=st.st_size, sha256=sha, modified=modified)

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """See :meth:`RecordingBlobStore.open_range`."""
        _check_range(start, end)
        final = self._path(key)
        try:
            f = final.open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFoundError(f"no recording {key}") from exc
        except OSError as exc:
            raise BlobStoreError(f"cannot open {final}: {exc}") from exc
        try:
            size = os.fstat(f.fileno()).st_size
            if start >= size and (start, end) != (0, None):
                raise BlobRangeError(f"range starts at {start}, {key} has {size} bytes")
            last = size - 1 if end is None else min(end, size - 1)
            f.seek(start)
        except BaseException:
            f.close()
            raise
        return _read_file(f, last - start + 1)

    def delete(self, key: str) -> None:
        """See :meth:`RecordingBlobStore.delete`; empty day directories are removed too."""
        final = self._path(key)
        try:
            final.unlink(missing_ok=True)
            self._sidecar(final).unlink(missing_ok=True)
        except OSError as exc:
            raise BlobStoreError(f"cannot delete {final}: {exc}") from exc
        folder = final.parent
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): stop climbing
            folder = folder.parent

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """See :meth:`RecordingBlobStore.iter_keys`."""
        if not self.root.is_dir():
            return
        yield from (key for key in self._walk(self.root, "") if key.startswith(prefix))

    def _walk(self, folder: Path, base: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BlobStoreError(f"cannot list {folder}: {exc}") from exc
        for entry in entries:
            if entry.name.startswith("."):
                continue  # checksums, uploads in progress
            key = base + entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key + "/")
            elif entry.is_file(follow_symlinks=False):
                yield key

    def abort_incomplete(self, older_than: timedelta = STALE_AFTER) -> int:
        """See :meth:`RecordingBlobStore.abort_incomplete`: removes stale hidden ``.tmp`` files."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for path in self.root.rglob(f".*{_TMP_SUFFIX}"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BlobStoreError(f"cannot remove {path}: {exc}") from exc
        if removed:
            logger.info("recording store: removed %d unfinished uploads under %s", removed, self.root)
        return removed

    def health(self) -> BlobHealth:
        """See :meth:`RecordingBlobStore.health`."""
        probe = self.root / f".health.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(b"ok")
                out.flush()
                os.fsync(out.fileno())
            if probe.read_bytes() != b"ok":
                return BlobHealth(False, self.backend, f"{self.root}: probe read back wrong")
            free = os.statvfs(self.root)
            free_mb = free.f_bavail * free.f_frsize // (1024 * 1024)
        except OSError as exc:
            return BlobHealth(False, self.backend, f"{self.root}: {exc}")
        finally:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
        return BlobHealth(True, self.backend, f"{self.root}: writable, {free_mb} MiB free")


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise BlobRangeError(f"not a byte range: {start}-{'' if end is None else end}")


def _read_file(f: Any, remaining: int) -> Iterator[bytes]:
    with f:
        while remaining > 0:
            block = f.read(min(CHUNK, remaining))
            if not block:
                return
            remaining -= len(block)
            yield block


# -- an S3 bucket ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """An access key pair (and a session token for temporary credentials)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"S3Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"


class S3BlobStore:
    """Recordings as objects in ``bucket`` (under ``prefix``) of an S3-compatible store, through boto3.

    The SHA-256 travels as user metadata (``x-amz-meta-sha256``), set when the
    upload is created and committed only after the body matched it. Every request
    also carries ``Content-MD5``, which every S3 implementation checks, so a body
    damaged on the way to the store is refused; the newer flexible-checksum
    headers are not sent, since several S3-compatible stores reject them.

    boto3 is imported when the store is built, so a seat never loads it. The
    client is thread-safe and shared by every thread.
    """

    backend = "s3"

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        credentials: S3Credentials,
        region: str = "us-east-1",
        prefix: str = "",
        *,
        addressing_style: str = "path",
        verify: bool | str = True,
        part_size: int = DEFAULT_PART_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        import boto3
        from botocore.config import Config

        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if prefix:
            validate_key(prefix.rstrip("/"))
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        #: Keys per ListObjectsV2 request (1000 is the most S3 gives).
        self.list_page_size = 1000
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            verify=verify,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": addressing_style},
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=32,
            ),
        )

    def __repr__(self) -> str:
        return f"S3BlobStore({self.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _object(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _call(self, doing: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """``fn(**kwargs)`` with the store's failures turned into :class:`BlobStoreError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise BlobNotFoundError(f"{doing}: no such object") from exc
            if code == "InvalidRange":
                raise BlobRangeError(f"{doing}: {code}") from exc
            raise BlobStoreError(f"{doing}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreError(f"{doing}: {exc}") from exc

    def put_stream(
        self,
        key: str,
        chunks: Iterable[bytes] | Readable,
        expected_sha256: str,
        expected_size: int | None = None,
    ) -> BlobInfo:
        """See :meth:`RecordingBlobStore.put_stream`."""
        sha = _validate_sha(expected_sha256)
        name = self._object(key)
        existing = self.stat(key)
        if existing is not None:
            return _same_or_conflict(existing, sha, expected_size)
        body = _Body(key, chunks, expected_size)
        extra: dict[str, Any] = {"Metadata": {"sha256": sha}}
        content_type = _CONTENT_TYPES.get(key.rpartition(".")[2].lower())
        if content_type:
            extra["ContentType"] = content_type
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in body:
                buffer += chunk
                while len(buffer) >= self.part_size:
                    if upload_id is None:
                        created = self._call(
                            f"starting the upload of {key}",
                            self.client.create_multipart_upload,
                            Bucket=self.bucket,
                            Key=name,
                            **extra,
                        )
                        upload_id = str(created["UploadId"])
                    parts.append(
                        self._upload_part(key, name, upload_id, len(parts) + 1, buffer[: self.part_size])
                    )
                    del buffer[: self.part_size]
            body.check(sha)
            if upload_id is None:
                data = bytes(buffer)
                self._call(
                    f"storing {key}",
                    self.client.put_object,
                    Bucket=self.bucket,
                    Key=name,
                    Body=data,
                    ContentMD5=_md5(data),
                    **extra,
                )
            else:
                if buffer:
                    parts.append(self._upload_part(key, name, upload_id, len(parts) + 1, buffer))
                self._call(
                    f"completing the upload of {key}",
                    self.client.complete_multipart_upload,
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
                upload_id = None
        finally:
            if upload_id is not None:
                self._abort(key, name, upload_id)
        logger.debug("recording store: stored %s (%d bytes, %d parts)", key, body.size, len(parts))
        # No HEAD to read it back: the store acknowledged the body (its Content-MD5 checked), and a
        # third round trip per recording costs more than a FLAC-sized upload's transfer on a LAN.
        return BlobInfo(key=key, size=body.size, sha256=sha, modified=datetime.now(UTC))

    def _upload_part(
        self, key: str, name: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> dict[str, Any]:
        payload = bytes(data)
        answer = self._call(
            f"uploading part {number} of {key}",
            self.client.upload_part,
            Bucket=self.bucket,
            Key=name,
            UploadId=upload_id,
            PartNumber=number,
            Body=payload,
            ContentMD5=_md5(payload),
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _abort(self, key: str, name: str, upload_id: str) -> None:
        try:
            self._call(
                f"aborting the upload of {key}",
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
            )
        except BlobStoreError as exc:
            # Still invisible to readers; abort_incomplete() removes it later.
            logger.warning("recording store: %s (left for the clean-up)", exc)

    def stat(self, key: str) -> BlobInfo | None:
        """See :meth:`RecordingBlobStore.stat`."""
        try:
            head = self._call(
                f"looking up {key}", self.client.head_object, Bucket=self.bucket, Key=self._object(key)
            )
        except BlobNotFoundError:
            return None
        sha = head.get("Metadata", {}).get("sha256")
        return BlobInfo(key=key, size=int(head["ContentLength"]), sha256=sha, modified=head["LastModified"])

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """See :meth:`RecordingBlobStore.open_range`: one ranged GET, streamed."""
        _check_range(start, end)
        # The whole object is a plain GET: a Range on an empty object would be refused (416).
        wanted = "" if (start, end) == (0, None) else f"bytes={start}-{'' if end is None else end}"
        answer = self._call(
            f"reading {key} ({wanted or 'whole'})",
            self.client.get_object,
            Bucket=self.bucket,
            Key=self._object(key),
            **({"Range": wanted} if wanted else {}),
        )
        return self._stream(key, answer["Body"])

    @staticmethod
    def _stream(key: str, stream: Any) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        try:
            yield from stream.iter_chunks(CHUNK)
        except BotoCoreError as exc:
            raise BlobStoreError(f"reading {key}: {exc}") from exc
        finally:
            stream.close()

    def delete(self, key: str) -> None:
        """See :meth:`RecordingBlobStore.delete`."""
        self._call(f"deleting {key}", self.client.delete_object, Bucket=self.bucket, Key=self._object(key))

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """See :meth:`RecordingBlobStore.iter_keys` (ListObjectsV2, 1000 keys a page)."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        iterator = iter(pages)
        while (page := self._call("listing the bucket", functools.partial(next, iterator, None))) is not None:
            for item in page.get("Contents", []):
                key = str(item["Key"])[len(self.prefix) :]
                if not any(part.startswith(".") for part in key.split("/")):
                    yield key

    def incomplete_uploads(self) -> list[tuple[str, str, datetime]]:
        """Multipart uploads begun under the prefix, neither completed nor aborted: (key, id, started)."""
        out: list[tuple[str, str, datetime]] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        iterator = iter(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix))
        while (
            page := self._call("listing unfinished uploads", functools.partial(next, iterator, None))
        ) is not None:
            out.extend(
                (str(upload["Key"]), str(upload["UploadId"]), upload["Initiated"])
                for upload in page.get("Uploads", [])
            )
        return out

    def abort_incomplete(self, older_than: timedelta = STALE_AFTER) -> int:
        """See :meth:`RecordingBlobStore.abort_incomplete`: aborts stale multipart uploads (prefix)."""
        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        for name, upload_id, started in self.incomplete_uploads():
            if started < cutoff:
                self._abort(name, name, upload_id)
                aborted += 1
        if aborted:
            logger.info("recording store: aborted %d unfinished uploads in %s", aborted, self.bucket)
        return aborted

    def health(self) -> BlobHealth:
        """See :meth:`RecordingBlobStore.health`: a probe object under ``<prefix>.health/``."""
        probe = f"{self.prefix}.health/{uuid.uuid4().hex}"
        where = f"{self.endpoint_url or 'aws'} bucket {self.bucket}"
        try:
            self._call("writing the probe", self.client.put_object, Bucket=self.bucket, Key=probe, Body=b"ok")
            try:
                got = self._call("reading the probe", self.client.get_object, Bucket=self.bucket, Key=probe)
                data = got["Body"].read()
            finally:
                self._call("removing the probe", self.client.delete_object, Bucket=self.bucket, Key=probe)
        except BlobStoreError as exc:
            return BlobHealth(False, self.backend, f"{where}: {exc}")
        if data != b"ok":
            return BlobHealth(False, self.backend, f"{where}: probe read back wrong")
        return BlobHealth(True, self.backend, f"{where}: writable")


def _md5(data: bytes) -> str:
    # Content-MD5 is an integrity check the store does on the wire, not a security measure.
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


# -- from a request handler -----------------------------------------------------------------


async def put_async(
    store: RecordingBlobStore,
    key: str,
    chunks: AsyncIterable[bytes],
    expected_sha256: str,
    expected_size: int | None = None,
) -> BlobInfo:
    """:meth:`~RecordingBlobStore.put_stream` of an async body (Starlette's ``request.stream()``).

    The store runs in a worker thread and pulls each chunk from the event loop as
    it needs it, so at most one chunk is held in between and a slow store slows the
    upload down instead of filling memory. A disconnect raised by ``chunks`` reaches
    the store as a cut body: nothing is stored.
    """
    loop = asyncio.get_running_loop()
    source = aiter(chunks)

    async def pull() -> bytes | None:
        try:
            return await anext(source)
        except StopAsyncIteration:
            return None

    def pulled() -> Iterator[bytes]:
        while (chunk := asyncio.run_coroutine_threadsafe(pull(), loop).result()) is not None:
            yield chunk

    return await asyncio.to_thread(store.put_stream, key, pulled(), expected_sha256, expected_size)
