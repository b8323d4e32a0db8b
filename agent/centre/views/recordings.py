"""A recording's audio (inline, with HTTP Range), its download and its waveform.

Access is decided on the audio URL itself: the id in the URL is an integer, the
audio's location comes from the ``recordings`` row (never from the URL), and the
row's call must be within the user's scope (:func:`agent.centre.search.scope_clause`).
A row uploaded by a seat names a key of the centre's recording store (a directory
or an S3 bucket, :mod:`storage.blobstore`), read with ranged reads; a legacy row
(``recordings/YYYY/MM/DD/...`` from the old direct-database team mode or a local
seat) names a file that must lie inside the configured recordings directory.
Each play (the request from byte 0), each download and each refusal is audited.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import soundfile as sf
from sqlalchemy.orm import Session
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from agent.centre.access import STAFF, Visit, client_address, requires
from agent.centre.auth import Principal
from agent.centre.charts import waveform_peaks, waveform_svg
from agent.centre.context import ConsoleContext
from agent.centre.search import recording_exists, recording_filename, visible_recording
from storage.blobstore import BlobInfo, BlobNotFoundError, BlobStoreError, RecordingBlobStore
from storage.centre_recordings import is_store_key
from storage.models import CallRecord, Recording

logger = logging.getLogger(__name__)

MIME_TYPES: dict[str, str] = {
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
}

_RANGE = re.compile(r"bytes=\s*(\d*)\s*-\s*(\d*)\s*")


def range_start(header: str | None) -> int | None:
    """The first byte a ``Range`` header asks for (None for a suffix range or no header)."""
    if not header or not header.startswith("bytes="):
        return None
    first = header[len("bytes=") :].split(",", 1)[0].strip()
    start, _, _ = first.partition("-")
    start = start.strip()
    return int(start) if start.isdigit() else None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """The one byte range (first, last; inclusive) a ``Range`` header asks of ``size`` bytes.

    None: serve the whole (no header, several ranges, or one that is not ``bytes=``: RFC 9110
    lets a server ignore those); False: the range cannot be satisfied (416).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match[1], match[2]
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return False
        return max(size - length, 0), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or end < start:
        return False
    return start, end


def within(path: Path, root: Path) -> bool:
    """Whether ``path``, symlinks resolved, lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Located:
    """What :func:`locate` found: a status (200, 403 or 404) and, for 200, the audio's place, row and call.

    ``key`` is set for a recording in the store, ``path`` for a legacy file.
    """

    status: int
    path: Path | None = None
    recording: Recording | None = None
    call: CallRecord | None = None
    key: str | None = None


def locate(session: Session, recording_id: int, who: Principal, root: Path) -> Located:
    """The recording's audio if ``who`` may hear it (403 when out of scope).

    A store key is returned as it is (the store is asked when it is served); a legacy path
    must be a file inside ``root``.
    """
    found = visible_recording(session, recording_id, who)
    if found is None:
        return Located(403 if recording_exists(session, recording_id) else 404)
    recording, call = found
    session.expunge_all()
    if is_store_key(recording.path_or_uri):
        return Located(200, None, recording, call, recording.path_or_uri)
    path = Path(recording.path_or_uri)
    path = path if path.is_absolute() else root / path
    if not within(path, root):
        logger.warning("recording %d: %s lies outside the recordings directory %s", recording_id, path, root)
        return Located(404)
    if not path.is_file():
        logger.warning("recording %d: no file at %s", recording_id, path)
        return Located(404)
    return Located(200, path, recording, call)


#: What the call page shows in a recording's place: its player, or why there is none.
PLAYABLE, MISSING, UNREACHABLE = "ok", "missing", "unreachable"


def availability(recording: Recording, root: Path, store: RecordingBlobStore) -> str:
    """Whether a recording can be played: :data:`PLAYABLE`, :data:`MISSING` or :data:`UNREACHABLE`.

    Asked once per recording when the call page is built (a ``stat``, no audio read), so the
    page says why instead of showing a player that stays at 0:00. What was not found is
    logged with the path or store key tried.
    """
    where = recording.path_or_uri
    if not where:
        logger.warning("recording %d: the row names no file", recording.id)
        return MISSING
    if is_store_key(where):
        try:
            info = store.stat(where)
        except BlobStoreError as exc:
            logger.warning(
                "recording %d: the store %r cannot be read for %s: %s", recording.id, store, where, exc
            )
            return UNREACHABLE
        if info is None:
            logger.warning("recording %d: %s is missing from the store %r", recording.id, where, store)
            return MISSING
        return PLAYABLE
    path = Path(where)
    path = path if path.is_absolute() else root / path
    if not within(path, root):
        logger.warning("recording %d: %s lies outside the recordings directory %s", recording.id, path, root)
        return MISSING
    try:
        if path.is_file():
            return PLAYABLE
    except OSError as exc:  # an unreadable mount: is_file() raises on more than "not there"
        logger.warning("recording %d: cannot look at %s: %s", recording.id, path, exc)
        return UNREACHABLE
    if not root.is_dir():
        logger.warning(
            "recording %d: the recordings directory %s is not there (tried %s)", recording.id, root, path
        )
        return UNREACHABLE
    logger.warning("recording %d: no file at %s", recording.id, path)
    return MISSING


def _store(ctx: ConsoleContext) -> RecordingBlobStore:
    return ctx.store if ctx.store is not None else ctx.settings.store()


async def _stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The store's blocking iterator, read in worker threads; closed when the client goes away."""
    try:
        async for chunk in iterate_in_threadpool(chunks):
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await run_in_threadpool(close)


async def _from_store(
    store: RecordingBlobStore, key: str, request: Request, headers: dict[str, str], media: str
) -> Response:
    """The object under ``key`` as a 200 or 206 (one ``Range``) response, 416 or 404 or 503."""
    try:
        info: BlobInfo | None = await run_in_threadpool(store.stat, key)
    except BlobStoreError as exc:
        logger.warning("recording %s: the store %r cannot be read: %s", key, store, exc)
        return PlainTextResponse("the recording store is unavailable", status_code=503)
    if info is None:
        logger.warning("recording %s: missing from the recording store %r", key, store)
        return PlainTextResponse("not found", status_code=404)
    wanted = byte_range(request.headers.get("range"), info.size)
    headers = {**headers, "Accept-Ranges": "bytes"}
    if wanted is False:
        headers["Content-Range"] = f"bytes */{info.size}"
        return PlainTextResponse("range not satisfiable", status_code=416, headers=headers)
    status = 200
    start, end = 0, info.size - 1
    if isinstance(wanted, tuple):
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    headers["Content-Length"] = str(end - start + 1 if info.size else 0)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media)
    try:
        if info.size == 0:
            chunks: Iterator[bytes] = iter(())
        else:
            chunks = await run_in_threadpool(store.open_range, key, start, end)
    except BlobNotFoundError:
        return PlainTextResponse("not found", status_code=404)
    except BlobStoreError as exc:
        logger.warning("recording %s: the store cannot be read: %s", key, exc)
        return PlainTextResponse("the recording store is unavailable", status_code=503)
    return StreamingResponse(_stream(chunks), status_code=status, headers=headers, media_type=media)


async def _serve(ctx: ConsoleContext, request: Request, who: Principal, *, download: bool) -> Response:
    recording_id = int(request.path_params["recording_id"])
    addr = client_address(request)
    found = await ctx.read(locate, recording_id, who, ctx.settings.recordings_dir)
    recording, call = found.recording, found.call
    where = found.key or (found.path.name if found.path is not None else None)
    if found.status != 200 or where is None or recording is None or call is None:
        if found.status == 403:
            action = "download_denied" if download else "play_denied"
            await ctx.audit(who.login, action, f"recording:{recording_id}", addr=addr)
        return PlainTextResponse(
            "forbidden" if found.status == 403 else "not found", status_code=found.status
        )
    ext = where.rpartition(".")[2].lower() if "." in where else ""
    media = MIME_TYPES.get(ext) or mimetypes.guess_type(where)[0] or "application/octet-stream"
    filename = recording_filename(call, recording, ctx.zone, masked=ctx.masked_for(who))
    # A player fetches many ranges of one play; the one from byte 0 (or no range) is the play.
    start = range_start(request.headers.get("range"))
    if download or start in (None, 0):
        action = "download" if download else "play"
        await ctx.audit(who.login, action, f"recording:{recording.id}", f"call:{call.uuid}", addr)
    if found.key is not None:
        headers = {
            "Cache-Control": "private, no-store",
            "Content-Disposition": _disposition("attachment" if download else "inline", filename),
        }
        return await _from_store(_store(ctx), found.key, request, headers, media)
    assert found.path is not None
    return FileResponse(
        found.path,
        media_type=media,
        filename=filename,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "private, no-store"},
    )


def _disposition(kind: str, filename: str) -> str:
    """A ``Content-Disposition`` as Starlette's ``FileResponse`` writes it."""
    quoted = quote(filename)
    if quoted != filename:
        return f"{kind}; filename*=utf-8''{quoted}"
    return f'{kind}; filename="{filename}"'


def _peaks_from_store(store: RecordingBlobStore, key: str) -> list[float]:
    """The waveform of a stored recording, read through a temporary file (libsndfile seeks)."""
    suffix = "." + key.rpartition(".")[2]
    with tempfile.NamedTemporaryFile(suffix=suffix) as copy:
        for chunk in store.open_range(key):
            copy.write(chunk)
        copy.flush()
        return waveform_peaks(Path(copy.name))


@requires(*STAFF, audio=True)
async def recording_audio(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /recordings/{id}/audio``: the audio inline, with HTTP Range (each play audited)."""
    return await _serve(ctx, request, who, download=False)


@requires(*STAFF, audio=True)
async def recording_download(
    ctx: ConsoleContext, request: Request, current: Visit, who: Principal
) -> Response:
    """``GET /recordings/{id}/download``: the audio as an attachment (audited)."""
    return await _serve(ctx, request, who, download=True)


@requires(*STAFF, audio=True)
async def recording_waveform(
    ctx: ConsoleContext, request: Request, current: Visit, who: Principal
) -> Response:
    """``GET /recordings/{id}/waveform.svg``: the recording's peaks as an SVG (not audited: no audio)."""
    recording_id = int(request.path_params["recording_id"])
    found = await ctx.read(locate, recording_id, who, ctx.settings.recordings_dir)
    if found.status != 200 or (found.path is None and found.key is None):
        return PlainTextResponse("not available", status_code=found.status)
    try:
        if found.path is not None:
            peaks = await run_in_threadpool(waveform_peaks, found.path)
        else:
            peaks = await run_in_threadpool(_peaks_from_store, _store(ctx), str(found.key))
    except BlobNotFoundError:
        return PlainTextResponse("not available", status_code=404)
    except BlobStoreError:
        return PlainTextResponse("the recording store is unavailable", status_code=503)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return PlainTextResponse("cannot read the audio", status_code=422)
    return Response(
        waveform_svg(peaks),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=3600"},
    )
