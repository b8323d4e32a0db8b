"""A recording's audio (inline, with HTTP Range), its download and its waveform.

Access is decided on the audio URL itself: the id in the URL is an integer, the
file's path comes from the ``recordings`` row (never from the URL) and must lie
inside the configured recordings directory, and the row's call must be within
the user's scope (:func:`agent.centre.search.scope_clause`). Each play (the
request from byte 0), each download and each refusal is audited.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from agent.centre.access import STAFF, Visit, client_address, requires
from agent.centre.auth import Principal
from agent.centre.charts import waveform_peaks, waveform_svg
from agent.centre.context import ConsoleContext
from agent.centre.search import recording_exists, recording_filename, visible_recording
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


def range_start(header: str | None) -> int | None:
    """The first byte a ``Range`` header asks for (None for a suffix range or no header)."""
    if not header or not header.startswith("bytes="):
        return None
    first = header[len("bytes=") :].split(",", 1)[0].strip()
    start, _, _ = first.partition("-")
    start = start.strip()
    return int(start) if start.isdigit() else None


def within(path: Path, root: Path) -> bool:
    """Whether ``path``, symlinks resolved, lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Located:
    """What :func:`locate` found: a status (200, 403 or 404) and, for 200, the file, its row and its call."""

    status: int
    path: Path | None = None
    recording: Recording | None = None
    call: CallRecord | None = None


def locate(session: Session, recording_id: int, who: Principal, root: Path) -> Located:
    """The recording's file if ``who`` may hear it and it lies inside ``root`` (403 when out of scope)."""
    found = visible_recording(session, recording_id, who)
    if found is None:
        return Located(403 if recording_exists(session, recording_id) else 404)
    recording, call = found
    session.expunge_all()
    path = Path(recording.path_or_uri)
    path = path if path.is_absolute() else root / path
    if not within(path, root) or not path.is_file():
        logger.warning("recording %d: file missing or outside the recordings directory", recording_id)
        return Located(404)
    return Located(200, path, recording, call)


async def _serve(ctx: ConsoleContext, request: Request, who: Principal, *, download: bool) -> Response:
    recording_id = int(request.path_params["recording_id"])
    addr = client_address(request)
    found = await ctx.read(locate, recording_id, who, ctx.settings.recordings_dir)
    path, recording, call = found.path, found.recording, found.call
    if found.status != 200 or path is None or recording is None or call is None:
        if found.status == 403:
            action = "download_denied" if download else "play_denied"
            await ctx.audit(who.login, action, f"recording:{recording_id}", addr=addr)
        return PlainTextResponse(
            "forbidden" if found.status == 403 else "not found", status_code=found.status
        )
    ext = path.suffix.lstrip(".").lower()
    media = MIME_TYPES.get(ext) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    filename = recording_filename(call, recording, ctx.zone, masked=ctx.masked_for(who))
    # A player fetches many ranges of one play; the one from byte 0 (or no range) is the play.
    start = range_start(request.headers.get("range"))
    if download or start in (None, 0):
        action = "download" if download else "play"
        await ctx.audit(who.login, action, f"recording:{recording.id}", f"call:{call.uuid}", addr)
    return FileResponse(
        path,
        media_type=media,
        filename=filename,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "private, no-store"},
    )


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
    if found.status != 200 or found.path is None:
        return PlainTextResponse("not available", status_code=found.status)
    try:
        peaks = await run_in_threadpool(waveform_peaks, found.path)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return PlainTextResponse("cannot read the audio", status_code=422)
    return Response(
        waveform_svg(peaks),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=3600"},
    )
