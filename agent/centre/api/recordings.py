"""``PUT`` and ``GET /api/v1/recordings/{call_uuid}``: a seat's recordings into the centre's store.

The upload (``PUT``) streams the body into the recording store (:mod:`storage.blobstore`), which
makes it visible only once its SHA-256 (``X-Content-SHA256``) and length (``Content-Length``)
matched, then writes the call's ``recordings`` row (:mod:`storage.centre_recordings`). The
recording's facts travel as query parameters: ``ext`` (flac, ogg, wav, opus), ``codec``,
``sample_rate``, ``channels``, ``seconds``, ``status`` and the optional comma-separated ``flags``.

Answers, all JSON (the seat's client, :mod:`agent.seat.centre_client`, relies on each):

- 201 ``{"key", "sha256", "bytes", "stored": true}``: stored now; 200 the same with ``"stored":
  false`` when the store already held this key with this SHA-256 (a replayed upload);
- 400 a bad parameter or header; 401 (:func:`~agent.centre.api.context.seat_only`); 403 another
  seat's call; 409 the centre has no such call yet (the seat sends its calls first and retries);
  411 no ``Content-Length``; 413 over :data:`MAX_RECORDING_BYTES`; 422 the body's SHA-256 or
  length did not match, or it was cut (nothing was stored); 503 the store or the database is
  unavailable (the seat retries).

A different SHA-256 for a key already stored (the seat repaired the file again) replaces the
stored copy; the seat keeps its own until the centre confirms the new SHA-256 (``GET``), so a
replacement cut half-way loses nothing. ``GET`` answers what the store holds now (its ``stat``),
so a copy deleted from the store is 404 and the seat's ``purge`` keeps its local file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from agent.centre.api.context import SeatApiContext, error, seat_only
from agent.web import SafeJSONResponse
from storage.blobstore import (
    BlobConflictError,
    BlobInfo,
    BlobIntegrityError,
    BlobStoreError,
    RecordingBlobStore,
    put_async,
    recording_key,
    verified,
)
from storage.centre_recordings import (
    CallOwner,
    UploadedRecording,
    call_owner,
    held_recording,
    save_uploaded,
)
from storage.models import RECORDING_STATUSES
from storage.seats import SeatInfo

logger = logging.getLogger(__name__)

#: The largest recording the centre takes (a day-long call in WAV is about 1.4 GB at 8 kHz).
MAX_RECORDING_BYTES = 2 * 1024**3
#: A refused upload's body up to this size is read and dropped before the answer, so the seat
#: reads the answer instead of a connection reset (it sends the whole body before it reads).
DRAIN_LIMIT = 64 * 1024 * 1024
EXTENSIONS = ("flac", "ogg", "wav", "opus")

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_SHA = re.compile(r"[0-9a-fA-F]{64}")
_FLAG = re.compile(r"[a-z0-9_]{1,32}")
_MAX_FLAGS = 16


class UploadParams(BaseModel):
    """The recording's facts from the upload's query string (unknown parameters are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ext: str
    codec: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.+-]+$")
    sample_rate: int = Field(ge=0, le=768_000)
    channels: int = Field(ge=0, le=32)
    seconds: float = Field(ge=0, le=7 * 86_400, allow_inf_nan=False)
    status: str
    flags: tuple[str, ...] = ()

    @field_validator("ext")
    @classmethod
    def _ext(cls, value: str) -> str:
        if value not in EXTENSIONS:
            raise ValueError(f"ext must be one of {', '.join(EXTENSIONS)}")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        if value not in RECORDING_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RECORDING_STATUSES)}")
        return value

    @field_validator("flags", mode="before")
    @classmethod
    def _flags(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        flags = tuple(value)
        if len(flags) > _MAX_FLAGS or not all(isinstance(f, str) and _FLAG.fullmatch(f) for f in flags):
            raise ValueError(f"flags are up to {_MAX_FLAGS} comma-separated words of a-z 0-9 _")
        return flags

    @classmethod
    def of(cls, request: Request) -> UploadParams:
        """From the query string; :class:`ValueError` naming the first bad parameter."""
        try:
            return cls.model_validate(dict(request.query_params))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "query"
            raise ValueError(f"{where}: {first['msg']}") from None


def _answer(info: BlobInfo, *, stored: bool) -> Response:
    body = {"key": info.key, "sha256": info.sha256, "bytes": info.size, "stored": stored}
    return SafeJSONResponse(body, status_code=201 if stored else 200)


async def _drain(request: Request, length: int | None) -> None:
    """Read and drop the body of a refused upload (up to :data:`DRAIN_LIMIT`), see its docstring."""
    if length is None or length > DRAIN_LIMIT:
        return
    try:
        async for _ in request.stream():
            pass
    except ClientDisconnect:
        return


async def _refuse(request: Request, length: int | None, status: int, message: str) -> Response:
    await _drain(request, length)
    return error(status, message)


def _call_uuid(request: Request) -> str | None:
    value = str(request.path_params["call_uuid"])
    return value if _UUID.fullmatch(value) else None


async def _owner(ctx: SeatApiContext, call_uuid: str) -> CallOwner | None:
    def look_up() -> CallOwner | None:
        with ctx.sessions() as session:
            return call_owner(session, call_uuid)

    return await run_in_threadpool(look_up)


def _other_seat(ctx: SeatApiContext, seat: SeatInfo, owner: CallOwner) -> str:
    ctx.metrics.auth_failures.labels("seat_mismatch").inc()
    logger.warning(
        "seat API: seat %s asked for the recording of seat %s's call %s", seat.name, owner.seat, owner.uuid
    )
    return f"call {owner.uuid} is not seat {seat.name!r}'s"


@dataclass(frozen=True, slots=True)
class _Upload:
    """An upload's request, checked: the call, the facts, the announced SHA-256 and length."""

    call_uuid: str
    params: UploadParams
    sha256: str
    length: int


def _checked(request: Request, length: int | None) -> _Upload | tuple[int, str]:
    """The upload the request announces, or the (status, message) refusing it."""
    call_uuid = _call_uuid(request)
    if call_uuid is None:
        return 400, "not a call UUID"
    try:
        params = UploadParams.of(request)
    except ValueError as exc:
        return 400, str(exc)
    sha = request.headers.get("x-content-sha256", "").strip()
    if not _SHA.fullmatch(sha):
        return 400, "X-Content-SHA256 must be the body's SHA-256 in hex"
    raw_length = request.headers.get("content-length")
    if raw_length is None:
        return 411, "Content-Length is required (the body's size in bytes)"
    if length is None:
        return 400, "Content-Length must be a number of bytes"
    if length > MAX_RECORDING_BYTES:
        return 413, f"a recording may be at most {MAX_RECORDING_BYTES} bytes"
    return _Upload(call_uuid, params, sha.lower(), length)


@seat_only
async def put_recording(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """Store the seat's recording of one of its calls if its body is what it announced (see the module)."""
    raw_length = request.headers.get("content-length", "")
    length = int(raw_length) if raw_length.isdigit() else None
    store = ctx.store
    if store is None:
        return await _refuse(request, length, 503, "this centre has no recording store")
    upload = _checked(request, length)
    if isinstance(upload, tuple):
        ctx.metrics.recordings.labels("refused").inc()
        status, message = upload
        # 411/413: the body is not read at all (no length to bound it, or too long to drain).
        return await _refuse(request, length if status == 400 else None, status, message)
    try:
        owner = await _owner(ctx, upload.call_uuid)
    except SQLAlchemyError as exc:
        logger.warning(
            "seat API: recording %s from seat %s: database failed: %s", upload.call_uuid, seat.name, exc
        )
        return await _refuse(request, length, 503, "the centre's database is unavailable; retry later")
    if owner is None:
        ctx.metrics.recordings.labels("refused").inc()
        message = f"the centre has no call {upload.call_uuid} yet; send the call first"
        return await _refuse(request, length, 409, message)
    if owner.seat != seat.name:
        ctx.metrics.recordings.labels("refused").inc()
        return await _refuse(request, length, 403, _other_seat(ctx, seat, owner))
    key = recording_key(owner.uuid, owner.started_at, upload.params.ext)
    try:
        info, outcome = await _store(store, request, key, upload, seat)
    except BlobIntegrityError as exc:
        ctx.metrics.recordings.labels("damaged").inc()
        logger.warning("seat API: recording %s from seat %s not stored: %s", key, seat.name, exc)
        return error(422, str(exc))
    except BlobConflictError as exc:
        # Another upload of this call, with other bytes, got in between: the seat retries.
        ctx.metrics.recordings.labels("failed").inc()
        logger.warning("seat API: recording %s from seat %s raced another upload: %s", key, seat.name, exc)
        return error(503, "another upload of this recording is in progress; retry later")
    except BlobStoreError as exc:
        ctx.metrics.recordings.labels("failed").inc()
        logger.warning("seat API: recording %s from seat %s not stored: %s", key, seat.name, exc)
        return error(503, "the centre's recording store is unavailable; retry later")
    params = upload.params
    row = UploadedRecording(
        call_uuid=owner.uuid,
        key=key,
        codec=params.codec,
        sample_rate=params.sample_rate,
        channels=params.channels,
        seconds=params.seconds,
        bytes=info.size,
        sha256=info.sha256 or upload.sha256,
        status=params.status,
        flags=params.flags,
    )

    def write() -> None:
        with ctx.sessions.begin() as session:
            save_uploaded(session, row)

    try:
        await run_in_threadpool(write)
    except SQLAlchemyError as exc:
        # The object is in the store; the retry finds it there (200) and writes the row then.
        ctx.metrics.recordings.labels("failed").inc()
        logger.warning("seat API: recording %s stored but its row not written: %s", key, exc)
        return error(503, "the centre's database is unavailable; retry later")
    ctx.metrics.recordings.labels(outcome).inc()
    stored = outcome != "duplicate"
    if stored:
        ctx.metrics.recording_bytes.inc(info.size)
    return _answer(info, stored=stored)


async def _store(
    store: RecordingBlobStore, request: Request, key: str, upload: _Upload, seat: SeatInfo
) -> tuple[BlobInfo, str]:
    """Put the body under ``key`` unless it is there already; what is stored and the outcome.

    The outcome is ``stored``, ``replaced`` (another SHA-256 was there) or ``duplicate``.
    """
    sha, length = upload.sha256, upload.length
    # Checked against the bytes: a copy damaged since it was stored is replaced, not kept as a duplicate.
    existing = await run_in_threadpool(verified, store, key)
    if existing is not None and existing.sha256 == sha and existing.size == length:
        await _drain(request, length)
        return existing, "duplicate"
    if existing is not None:
        logger.warning(
            "seat API: seat %s replaces recording %s (SHA-256 %s, %d bytes) with SHA-256 %s, %d bytes",
            seat.name,
            key,
            existing.sha256,
            existing.size,
            sha,
            length,
        )
        await run_in_threadpool(store.delete, key)
    info = await put_async(store, key, request.stream(), sha, length)
    logger.info("seat API: recording %s from seat %s stored (%d bytes)", key, seat.name, info.size)
    return info, "stored" if existing is None else "replaced"


@seat_only
async def get_recording(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """What the store holds now of the seat's recording of this call: 200 ``{key, sha256, bytes}``, or 404.

    403 for another seat's call; 503 when the database or the store cannot answer.
    """
    store = ctx.store
    if store is None:
        return error(503, "this centre has no recording store")
    call_uuid = _call_uuid(request)
    if call_uuid is None:
        return error(400, "not a call UUID")

    def look_up() -> tuple[CallOwner | None, str | None]:
        with ctx.sessions() as session:
            owner = call_owner(session, call_uuid)
            row = held_recording(session, call_uuid) if owner is not None else None
            return owner, row.path_or_uri if row is not None else None

    try:
        owner, key = await run_in_threadpool(look_up)
    except SQLAlchemyError as exc:
        logger.warning("seat API: recording %s: the database failed: %s", call_uuid, exc)
        return error(503, "the centre's database is unavailable; retry later")
    if owner is None:
        return error(404, f"the centre has no call {call_uuid}")
    if owner.seat != seat.name:
        return error(403, _other_seat(ctx, seat, owner))
    if key is None:
        return error(404, f"the centre holds no recording of call {call_uuid}")
    try:
        info = await run_in_threadpool(verified, store, key)
    except BlobStoreError as exc:
        logger.warning("seat API: recording %s cannot be checked in the store: %s", key, exc)
        return error(503, "the centre's recording store is unavailable; retry later")
    if info is None:
        logger.warning("seat API: recording %s has a row but is missing from the store", key)
        return error(404, f"the centre's store has lost recording {key}")
    return SafeJSONResponse({"key": info.key, "sha256": info.sha256, "bytes": info.size})


__all__ = ["EXTENSIONS", "MAX_RECORDING_BYTES", "UploadParams", "get_recording", "put_recording"]
