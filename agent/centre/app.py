"""The supervisor console: a Starlette app over the calls database.

Routes (all but ``/login``, ``/healthz`` and ``/static`` need a session)::

    GET  /login, POST /login, POST /logout, POST /language
    GET  /calls                      search (the query string is the search: bookmark or share it)
    GET  /calls/export.csv|.xlsx     the whole result (audited)
    GET  /calls/{uuid}               one call, its notes and recordings with a player
    GET  /recordings/{id}/audio      the audio, inline, with HTTP Range (each play audited)
    GET  /recordings/{id}/download   the audio as an attachment (audited)
    GET  /recordings/{id}/waveform.svg
    GET  /audit                      the audit log (managers and admins)
    GET  /stats/day, /stats/month    calls and talk time per rep against targets (a day by hour or half-hour)
    GET  /wallboard, /wallboard/events   full-screen live figures fed by Server-Sent Events
    GET  /live                       calls in progress (leads and managers)
    GET  /live/{uuid}/audio          listen in: the seat's live PCM, proxied (audited; see listen.py)

Access to a recording is decided on the audio URL itself: the id in the URL is
an integer, the file's path comes from the ``recordings`` row (never from the
URL) and must lie inside the configured recordings directory, and the row's
call must be within the user's scope (:func:`agent.centre.search.scope_clause`).

Cross-site requests are refused twice over: the session cookie is
``SameSite=Strict`` (a page elsewhere cannot send it) and any request a browser
marks ``Sec-Fetch-Site: cross-site`` is answered 403. Every POST carries the
session's CSRF token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import mimetypes
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import phonenumbers
import soundfile as sf
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent.centre import i18n
from agent.centre.auth import (
    LoginRateLimiter,
    Principal,
    SessionSigner,
    authenticate,
    csrf_ok,
    new_csrf_token,
    password_fingerprint,
    principal_of,
)
from agent.centre.listen import live_call, live_calls, may_listen, proxy_seat_audio
from agent.centre.search import (
    DIRECTIONS,
    DISPOSITIONS,
    PER_PAGE_CHOICES,
    QueryError,
    SearchQuery,
    display_number,
    export_rows,
    mask_number,
    recording_exists,
    recording_filename,
    scope_clause,
    search,
    to_csv,
    to_xlsx,
    visible_call,
    visible_recording,
)
from agent.config import DailyTarget, TargetsSection
from agent.web import SecurityHeadersMiddleware, format_duration, format_sse
from storage.models import AuditEntry, CallRecord, Recording, User
from storage.report import CLOCK_STEPS, call_report, start_of_day

logger = logging.getLogger(__name__)

SESSION_COOKIE = "cti_console"
#: Form bodies are small; anything larger is refused before it is parsed.
MAX_FORM_BYTES = 16 * 1024
AUDIT_PAGE = 100
MIME_TYPES: dict[str, str] = {
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
}
WAVEFORM_POINTS = 600


@dataclass(frozen=True)
class ConsoleSettings:
    """How the console runs.

    :param secret: the session-signing key (32+ bytes); keep it across restarts or everyone logs in again.
    :param recordings_dir: where recording paths are resolved; files outside it are never served.
    :param zone: the floor's time zone (search dates, statistics days and hours).
    :param mask_roles: roles that see numbers masked (``138****5678``) in pages, exports and file names.
    :param secure_cookies: mark the session cookie ``Secure`` (set it when served over HTTPS).
    :param language: a fixed page language; None lets the user's setting or the browser decide.
    :param region: the floor's region (``[agent] region``): a wildcard number search is
        matched against the national number after its country code.
    :param seats: seat name → the seat page's base URL, for live listen-in (:mod:`agent.centre.listen`).
    :param listen_token: the seats' ``[web] listen_token``; None turns listen-in off.
    """

    secret: bytes
    recordings_dir: Path
    zone: tzinfo = UTC
    mask_roles: frozenset[str] = frozenset({"rep"})
    secure_cookies: bool = False
    session_seconds: float = 12 * 3600
    language: str | None = None
    region: str = "CN"
    effective_seconds: float = 60.0
    targets: TargetsSection = field(default_factory=TargetsSection)
    login_per_user: int = 5
    login_per_address: int = 20
    login_window: float = 300.0
    wallboard_interval: float = 5.0
    seats: dict[str, str] = field(default_factory=dict)
    listen_token: str | None = None


@dataclass
class _Visit:
    """What a request carries: its session payload (possibly fresh) and, when logged in, the user."""

    payload: dict[str, Any]
    who: Principal | None
    fresh: bool = False

    @property
    def csrf(self) -> str:
        return str(self.payload["csrf"])


_LOCAL_PATH = re.compile(r"/(?!/)[\w\-./?=&%+~:,*]*")


def safe_next_path(value: str | None) -> str:
    """A path on this console to go to after log-in (anything else goes to the search page).

    Only a plain local path passes: no ``//host``, no backslash, no tab or newline
    (browsers drop those, so ``/\t/evil.example`` would become ``//evil.example``).
    """
    if value and _LOCAL_PATH.fullmatch(value):
        return value
    return "/calls"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a repeated key wins)."""
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return dict(pairs)


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


def waveform_peaks(path: Path, points: int = WAVEFORM_POINTS) -> list[float]:
    """The peak level (0..1) of each of ``points`` equal slices of an audio file."""
    peaks = np.zeros(points, dtype=np.float64)
    with sf.SoundFile(str(path)) as audio:
        frames = audio.frames
        if frames <= 0:
            return [0.0] * points
        per_point = max(math.ceil(frames / points), 1)
        index = 0
        for block in audio.blocks(blocksize=per_point * 64, dtype="float32", always_2d=True):
            level = np.abs(block).max(axis=1)
            usable = len(level) - len(level) % per_point
            chunks = [level[:usable].reshape(-1, per_point).max(axis=1)]
            if usable < len(level):
                chunks.append(np.array([level[usable:].max()]))
            for value in np.concatenate(chunks):
                if index < points:
                    peaks[index] = value
                index += 1
    return [float(v) for v in np.clip(peaks, 0.0, 1.0)]


def waveform_svg(peaks: list[float]) -> str:
    """A symmetric bar waveform as SVG (no script, no external reference)."""
    width, height = len(peaks), 100
    bars = "".join(
        f'<rect x="{n}" y="{50 - peak * 48:.1f}" width="1" height="{max(peak * 96, 0.5):.1f}"/>'
        for n, peak in enumerate(peaks)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="none"><g fill="#3b6ea8">{bars}</g></svg>'
    )


def bar_chart_svg(labels: list[str], values: list[float], *, target: float | None = None) -> str:
    """A plain bar chart as inline SVG (labels under the bars, an optional target line)."""
    width, height, bottom = max(len(values), 1) * 40, 160, 20
    top = max([*values, target or 0.0, 1.0])
    parts = []
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        bar = (height - bottom - 10) * value / top
        x = n * 40 + 6
        parts.append(
            f'<rect class="bar" x="{x}" y="{height - bottom - bar:.1f}" width="28" height="{bar:.1f}">'
            f"<title>{_xml(label)}: {value:g}</title></rect>"
            f'<text x="{x + 14}" y="{height - 5}" text-anchor="middle">{_xml(label)}</text>'
        )
    if target:
        y = height - bottom - (height - bottom - 10) * target / top
        parts.append(f'<line class="target" x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}"/>')
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def make_console_app(engine: Engine, settings: ConsoleSettings) -> Starlette:  # noqa: C901
    """Build the console app over ``engine`` (already migrated)."""
    signer = SessionSigner(settings.secret, max_age=settings.session_seconds)
    limiter = LoginRateLimiter(
        per_user=settings.login_per_user,
        per_address=settings.login_per_address,
        window=settings.login_window,
    )
    recordings_root = settings.recordings_dir
    env = Environment(
        loader=PackageLoader("agent.centre", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_duration
    zone = settings.zone
    country_code = str(phonenumbers.country_code_for_region(settings.region) or "")

    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if moment else ""

    env.filters["local"] = local

    # -- sessions --------------------------------------------------------------------

    def load_principal(payload: dict[str, Any]) -> Principal | None:
        uid = payload.get("uid")
        if not isinstance(uid, int):
            return None
        with Session(engine) as session:
            user = session.get(User, uid)
            if user is None or user.disabled or password_fingerprint(user.password_hash) != payload.get("pw"):
                return None
            return principal_of(session, user)

    async def visit(request: Request) -> _Visit:
        payload = signer.unsign(request.cookies.get(SESSION_COOKIE))
        if payload is None or not isinstance(payload.get("csrf"), str):
            return _Visit({"csrf": new_csrf_token()}, None, fresh=True)
        who = await run_in_threadpool(load_principal, payload)
        if who is None and "uid" in payload:
            return _Visit({"csrf": new_csrf_token()}, None, fresh=True)
        return _Visit(payload, who)

    def keep_session(response: Response, current: _Visit) -> Response:
        if current.fresh:
            response.set_cookie(
                SESSION_COOKIE,
                signer.sign(current.payload),
                max_age=int(settings.session_seconds),
                httponly=True,
                samesite="strict",
                secure=settings.secure_cookies,
                path="/",
            )
        return response

    def language_of(request: Request, who: Principal | None) -> str:
        chosen = request.query_params.get("lang") or settings.language or (who.language if who else None)
        return i18n.negotiate(chosen, request.headers.get("accept-language"))

    def render(request: Request, current: _Visit, name: str, status: int = 200, **context: Any) -> Response:
        lang = language_of(request, current.who)
        t = i18n.Translator(lang)
        html = env.get_template(name).render(
            lang=lang,
            t=t,
            who=current.who,
            csrf=current.csrf,
            path=request.url.path,
            other_languages=[(code, t(f"lang.{code}")) for code in i18n.LANGUAGES if code != lang],
            **context,
        )
        response = HTMLResponse(
            html,
            status_code=status,
            headers={
                "Cache-Control": "no-store",
                "Vary": "Accept-Language, Cookie",
                "Content-Language": lang,
            },
        )
        return keep_session(response, current)

    def error(request: Request, current: _Visit, status: int, key: str) -> Response:
        return render(request, current, "error.html", status=status, message_key=key, status_code=status)

    def audit(who: str | None, action: str, target: str | None, detail: str | None, addr: str) -> None:
        with Session(engine) as session, session.begin():
            session.add(
                AuditEntry(user_login=who, action=action, target=target, detail=detail, remote_addr=addr)
            )

    Handler = Callable[[Request, _Visit, Principal], Awaitable[Response]]

    def page(
        minimum: str = "rep", *, audio: bool = False, admin: bool = False
    ) -> Callable[[Handler], Callable[..., Any]]:
        """Wrap a handler: log-in required (pages redirect to /login, audio gets 401) and role checked.

        Roles rank rep < lead < manager; ``admin`` is not above them but beside:
        admins manage users and read the audit log, and reach only handlers marked ``admin=True``.
        """

        def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                if request.headers.get("sec-fetch-site") == "cross-site":
                    return PlainTextResponse("cross-site request refused", status_code=403)
                current = await visit(request)
                if current.who is None:
                    if audio:
                        return keep_session(PlainTextResponse("log in first", status_code=401), current)
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    location = "/login?" + urllib.parse.urlencode({"next": target})
                    return keep_session(RedirectResponse(location, status_code=303), current)
                role = current.who.role
                if (role == "admin" and not admin) or (role != "admin" and not current.who.at_least(minimum)):
                    return error(request, current, 403, "error.forbidden")
                return await handler(request, current, current.who)

            endpoint.__name__ = handler.__name__
            return endpoint

        return wrap

    async def read_form(request: Request) -> dict[str, str] | None:
        """The form body, or None when it is larger than :data:`MAX_FORM_BYTES`."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        return parse_form(body)

    # -- log-in ----------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        current = await visit(request)
        if current.who is not None:
            return RedirectResponse(safe_next_path(request.query_params.get("next")), status_code=303)
        return render(request, current, "login.html", next=safe_next_path(request.query_params.get("next")))

    async def login_submit(request: Request) -> Response:
        current = await visit(request)
        form = await read_form(request)
        if request.headers.get("sec-fetch-site") == "cross-site" or form is None:
            return error(request, current, 403, "error.csrf")
        if not csrf_ok(current.payload.get("csrf"), form.get("csrf")):
            return error(request, current, 403, "error.csrf")
        login = form.get("login", "").strip()
        password = form.get("password", "")
        addr = _client(request)
        wait = limiter.retry_after(login, addr)
        if wait is not None:
            # Logged, not audited: a flood of refused attempts must not become a flood of rows.
            logger.warning("log-in attempt for %r from %s refused: too many failures", login, addr)
            response = render(
                request,
                current,
                "login.html",
                status=429,
                next=safe_next_path(form.get("next")),
                message_key="login.throttled",
            )
            response.headers["Retry-After"] = str(max(int(wait), 1))
            return response

        def check() -> tuple[int, str] | None:
            with Session(engine) as session:
                user = authenticate(session, login, password)
                return None if user is None else (user.id, password_fingerprint(user.password_hash))

        found = await run_in_threadpool(check)
        if found is None:
            limiter.failed(login, addr)
            await run_in_threadpool(audit, login, "login_failed", None, None, addr)
            return render(
                request,
                current,
                "login.html",
                status=401,
                next=safe_next_path(form.get("next")),
                message_key="login.failed",
            )
        limiter.succeeded(login)
        await run_in_threadpool(audit, login, "login", None, None, addr)
        # A new session (and CSRF token) at log-in: a token planted before cannot ride along.
        fresh = _Visit({"uid": found[0], "pw": found[1], "csrf": new_csrf_token()}, None, fresh=True)
        return keep_session(RedirectResponse(safe_next_path(form.get("next")), status_code=303), fresh)

    async def logout(request: Request) -> Response:
        current = await visit(request)
        form = await read_form(request)
        if form is None or not csrf_ok(current.payload.get("csrf"), form.get("csrf")):
            return error(request, current, 403, "error.csrf")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @page("rep", admin=True)
    async def set_language(request: Request, current: _Visit, who: Principal) -> Response:
        form = await read_form(request)
        if form is None or not csrf_ok(current.csrf, form.get("csrf")):
            return error(request, current, 403, "error.csrf")
        language = form.get("language", "")
        if language not in (*i18n.LANGUAGES, "auto"):
            return error(request, current, 400, "error.bad_request")

        def store() -> None:
            with Session(engine) as session, session.begin():
                user = session.get(User, who.user_id)
                if user is not None:
                    user.language = language

        await run_in_threadpool(store)
        return RedirectResponse(safe_next_path(form.get("next")), status_code=303)

    # -- search ----------------------------------------------------------------------

    def masked_for(who: Principal) -> bool:
        return who.role in settings.mask_roles

    @page("rep", admin=True)
    async def home(request: Request, current: _Visit, who: Principal) -> Response:
        return RedirectResponse("/audit" if who.role == "admin" else "/calls", status_code=303)

    @page("rep")
    async def calls_page(request: Request, current: _Visit, who: Principal) -> Response:
        try:
            query = SearchQuery.from_params(request.query_params, zone, country_code=country_code)
        except QueryError as exc:
            return render(
                request,
                current,
                "calls.html",
                status=400,
                query_error=str(exc),
                result=None,
                params=dict(request.query_params),
                page_links={},
                export_query="",
                **_choices(),
            )

        def run() -> Any:
            with Session(engine) as session:
                return search(session, query, who, masked=masked_for(who))

        result = await run_in_threadpool(run)
        params = query.to_params(zone, page=1)
        page_links = {
            "prev": urllib.parse.urlencode(query.to_params(zone, page=query.page - 1))
            if query.page > 1
            else None,
            "next": urllib.parse.urlencode(query.to_params(zone, page=query.page + 1))
            if query.page < result.pages
            else None,
        }
        return render(
            request,
            current,
            "calls.html",
            query_error=None,
            result=result,
            params=params,
            page_links=page_links,
            export_query=urllib.parse.urlencode(params),
            **_choices(),
        )

    def _choices() -> dict[str, Any]:
        return {"directions": DIRECTIONS, "dispositions": DISPOSITIONS, "per_page_choices": PER_PAGE_CHOICES}

    async def export(request: Request, current: _Visit, who: Principal, kind: str) -> Response:
        try:
            query = SearchQuery.from_params(request.query_params, zone, country_code=country_code)
        except QueryError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        addr = _client(request)

        def run() -> tuple[Any, int]:
            with Session(engine) as session:
                rows = export_rows(session, query, who, masked=masked_for(who))
            detail = urllib.parse.urlencode(query.to_params(zone))
            audit(who.login, f"export_{kind}", f"{len(rows)} calls", detail, addr)
            if kind == "csv":
                return to_csv(rows, zone).encode("utf-8"), len(rows)
            return to_xlsx(rows, zone), len(rows)

        body, _ = await run_in_threadpool(run)
        stamp = datetime.now(zone).strftime("%Y%m%d-%H%M%S")
        media = (
            "text/csv; charset=utf-8"
            if kind == "csv"
            else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        return Response(
            body,
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="calls-{stamp}.{kind}"',
                "Cache-Control": "no-store",
            },
        )

    @page("rep")
    async def export_csv(request: Request, current: _Visit, who: Principal) -> Response:
        return await export(request, current, who, "csv")

    @page("rep")
    async def export_xlsx(request: Request, current: _Visit, who: Principal) -> Response:
        return await export(request, current, who, "xlsx")

    @page("rep")
    async def call_page(request: Request, current: _Visit, who: Principal) -> Response:
        call_uuid = request.path_params["call_uuid"]

        def run() -> tuple[CallRecord, list[Recording]] | None:
            with Session(engine) as session:
                call = visible_call(session, call_uuid, who)
                if call is None:
                    return None
                recordings = list(
                    session.scalars(
                        select(Recording).where(Recording.call_uuid == call.uuid).order_by(Recording.id)
                    )
                )
                session.expunge_all()
                return call, recordings

        found = await run_in_threadpool(run)
        if found is None:
            return error(request, current, 404, "error.not_found")
        call, recordings = found
        number = display_number(call.number_e164, call.number_raw)
        return render(
            request,
            current,
            "call.html",
            call=call,
            recordings=recordings,
            number=mask_number(number) if masked_for(who) else number,
        )

    # -- recordings ------------------------------------------------------------------

    def locate(
        recording_id: int, who: Principal
    ) -> tuple[int, Path | None, Recording | None, CallRecord | None]:
        with Session(engine) as session:
            found = visible_recording(session, recording_id, who)
            if found is None:
                return (403 if recording_exists(session, recording_id) else 404), None, None, None
            recording, call = found
            session.expunge_all()
        path = Path(recording.path_or_uri)
        path = path if path.is_absolute() else recordings_root / path
        if not within(path, recordings_root) or not path.is_file():
            logger.warning("recording %d: file missing or outside the recordings directory", recording_id)
            return 404, None, None, None
        return 200, path, recording, call

    async def serve_recording(
        request: Request, who: Principal, current: _Visit, *, download: bool
    ) -> Response:
        recording_id = int(request.path_params["recording_id"])
        addr = _client(request)
        status, path, recording, call = await run_in_threadpool(locate, recording_id, who)
        if status != 200 or path is None or recording is None or call is None:
            if status == 403:
                await run_in_threadpool(
                    audit,
                    who.login,
                    "download_denied" if download else "play_denied",
                    f"recording:{recording_id}",
                    None,
                    addr,
                )
            return PlainTextResponse("forbidden" if status == 403 else "not found", status_code=status)
        ext = path.suffix.lstrip(".").lower()
        media = MIME_TYPES.get(ext) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        filename = recording_filename(call, recording, zone, masked=masked_for(who))
        # A player fetches many ranges of one play; the one from byte 0 (or no range) is the play.
        start = range_start(request.headers.get("range"))
        if download or start in (None, 0):
            await run_in_threadpool(
                audit,
                who.login,
                "download" if download else "play",
                f"recording:{recording.id}",
                f"call:{call.uuid}",
                addr,
            )
        return FileResponse(
            path,
            media_type=media,
            filename=filename,
            content_disposition_type="attachment" if download else "inline",
            headers={"Cache-Control": "private, no-store"},
        )

    @page("rep", audio=True)
    async def recording_audio(request: Request, current: _Visit, who: Principal) -> Response:
        return await serve_recording(request, who, current, download=False)

    @page("rep", audio=True)
    async def recording_download(request: Request, current: _Visit, who: Principal) -> Response:
        return await serve_recording(request, who, current, download=True)

    @page("rep", audio=True)
    async def recording_waveform(request: Request, current: _Visit, who: Principal) -> Response:
        recording_id = int(request.path_params["recording_id"])
        status, path, _, _ = await run_in_threadpool(locate, recording_id, who)
        if status != 200 or path is None:
            return PlainTextResponse("not available", status_code=status)
        try:
            peaks = await run_in_threadpool(waveform_peaks, path)
        except (sf.LibsndfileError, RuntimeError, OSError):
            return PlainTextResponse("cannot read the audio", status_code=422)
        return Response(
            waveform_svg(peaks),
            media_type="image/svg+xml",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    # -- audit -----------------------------------------------------------------------

    @page("manager", admin=True)
    async def audit_page(request: Request, current: _Visit, who: Principal) -> Response:
        params = request.query_params
        user = params.get("user", "").strip()
        action = params.get("action", "").strip()
        target = params.get("target", "").strip()
        try:
            start = _date_param(params.get("from"))
            end = _date_param(params.get("to"))
            page_no = max(int(params.get("page") or 1), 1)
        except ValueError:
            return error(request, current, 400, "error.bad_request")

        def run() -> tuple[list[AuditEntry], int, list[str]]:
            with Session(engine) as session:
                where = []
                if user:
                    where.append(AuditEntry.user_login == user)
                if action:
                    where.append(AuditEntry.action == action)
                if target:
                    where.append(AuditEntry.target.contains(target, autoescape=True))
                if start is not None:
                    where.append(AuditEntry.at >= start_of_day(start, zone))
                if end is not None:
                    where.append(AuditEntry.at < start_of_day(end + timedelta(days=1), zone))
                total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
                rows = list(
                    session.scalars(
                        select(AuditEntry)
                        .where(*where)
                        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                        .limit(AUDIT_PAGE)
                        .offset((page_no - 1) * AUDIT_PAGE)
                    )
                )
                actions = list(
                    session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
                )
                session.expunge_all()
                return rows, int(total), actions

        rows, total, actions = await run_in_threadpool(run)
        pages = max(math.ceil(total / AUDIT_PAGE), 1)
        base = {k: v for k, v in (("user", user), ("action", action), ("target", target)) if v}
        base.update({k: params[k] for k in ("from", "to") if params.get(k)})
        return render(
            request,
            current,
            "audit.html",
            rows=rows,
            total=total,
            actions=actions,
            filters=base,
            prev_link=urllib.parse.urlencode({**base, "page": page_no - 1}) if page_no > 1 else None,
            next_link=urllib.parse.urlencode({**base, "page": page_no + 1}) if page_no < pages else None,
        )

    # -- statistics ------------------------------------------------------------------

    def team_filter(request: Request, who: Principal) -> str | None:
        if who.role == "lead":
            return who.team
        return request.query_params.get("team") or None

    def rep_filter(who: Principal) -> str | None:
        return who.rep if who.role == "rep" else None

    def target_for(rep: str, team: str) -> DailyTarget:
        return settings.targets.for_rep(rep, team)

    def per_rep(
        by: str, start: datetime, end: datetime, team: str | None, rep_only: str | None
    ) -> dict[str, Any]:
        """Blocking: per-rep totals, each rep's breakdown ``by`` hour, half-hour or day, and their teams."""
        with Session(engine) as session:
            by_rep = call_report(
                session,
                by="rep",
                start=start,
                end=end,
                zone=zone,
                effective_seconds=settings.effective_seconds,
                team=team,
                rep=rep_only,
            )
            breakdown = {
                row.key: call_report(
                    session,
                    by=by,  # type: ignore[arg-type]
                    start=start,
                    end=end,
                    zone=zone,
                    effective_seconds=settings.effective_seconds,
                    team=team,
                    rep=row.key,
                ).rows
                for row in by_rep.rows
            }
            teams = _rep_teams(session, list(breakdown), start, end)
        return {"by_rep": by_rep, "breakdown": breakdown, "teams": teams}

    @page("rep")
    async def stats_day(request: Request, current: _Visit, who: Principal) -> Response:
        try:
            day = _date_param(request.query_params.get("date")) or datetime.now(zone).date()
        except ValueError:
            return error(request, current, 400, "error.bad_request")
        # The per-rep breakdown is by hour or by half-hour on the floor's clock.
        step = request.query_params.get("step") or "hour"
        if step not in CLOCK_STEPS:
            return error(request, current, 400, "error.bad_request")
        team = team_filter(request, who)
        rep_only = rep_filter(who)
        start = start_of_day(day, zone)
        end = start_of_day(day + timedelta(days=1), zone)

        data = await run_in_threadpool(per_rep, step, start, end, team, rep_only)
        by_rep = data["by_rep"]
        ranking = sorted(by_rep.rows, key=lambda r: (-r.talk_seconds, -r.calls, r.key))
        reps = []
        for position, row in enumerate(ranking, start=1):
            target = target_for(row.key, data["teams"].get(row.key, team or ""))
            hourly = data["breakdown"][row.key]
            labels = [r.key[11:13] if step == "hour" else r.key[11:16] for r in hourly]
            reps.append(
                {
                    "rank": position,
                    "row": row,
                    "target": target,
                    "hours": hourly,
                    "chart": bar_chart_svg(labels, [float(r.calls) for r in hourly]),
                }
            )
        return render(
            request,
            current,
            "stats_day.html",
            day=day.isoformat(),
            step=step,
            steps=list(CLOCK_STEPS),
            reps=reps,
            total=by_rep.total,
            team=team or "",
            prev_day=(day - timedelta(days=1)).isoformat(),
            next_day=(day + timedelta(days=1)).isoformat(),
        )

    @page("rep")
    async def stats_month(request: Request, current: _Visit, who: Principal) -> Response:
        text = request.query_params.get("month") or datetime.now(zone).strftime("%Y-%m")
        try:
            first = datetime.strptime(text + "-01", "%Y-%m-%d").date()
        except ValueError:
            return error(request, current, 400, "error.bad_request")
        following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        team = team_filter(request, who)
        rep_only = rep_filter(who)
        start, end = start_of_day(first, zone), start_of_day(following, zone)

        data = await run_in_threadpool(per_rep, "day", start, end, team, rep_only)
        ranking = sorted(data["by_rep"].rows, key=lambda r: (-r.talk_seconds, -r.calls, r.key))
        reps = []
        for position, row in enumerate(ranking, start=1):
            target = target_for(row.key, data["teams"].get(row.key, team or ""))
            daily = data["breakdown"][row.key]
            reps.append(
                {
                    "rank": position,
                    "row": row,
                    "days": daily,
                    "target": target,
                    "days_on_target": sum(
                        1 for d in daily if target.calls is not None and d.calls >= target.calls
                    ),
                    "chart": bar_chart_svg(
                        [d.key[8:10] for d in daily], [float(d.calls) for d in daily], target=target.calls
                    ),
                }
            )
        return render(
            request,
            current,
            "stats_month.html",
            month=first.strftime("%Y-%m"),
            reps=reps,
            total=data["by_rep"].total,
            team=team or "",
            prev_month=(first - timedelta(days=1)).strftime("%Y-%m"),
            next_month=following.strftime("%Y-%m"),
        )

    # -- wallboard -------------------------------------------------------------------

    def wallboard_figures(who: Principal, team: str | None) -> dict[str, Any]:
        now = datetime.now(zone)
        start = start_of_day(now.date(), zone)
        with Session(engine) as session:
            report = call_report(
                session,
                by="rep",
                start=start,
                end=now + timedelta(seconds=1),
                zone=zone,
                effective_seconds=settings.effective_seconds,
                team=team,
                rep=rep_filter(who),
            )
            live_where = [scope_clause(who), CallRecord.ended_at.is_(None), CallRecord.started_at >= start]
            if team:
                live_where.append(CallRecord.team == team)
            live = dict(
                session.execute(
                    select(CallRecord.rep, func.count()).where(*live_where).group_by(CallRecord.rep)
                ).all()
            )
            teams = _rep_teams(session, [r.key for r in report.rows], start, now + timedelta(seconds=1))
        rows = []
        for row in sorted(report.rows, key=lambda r: (-r.talk_seconds, -r.calls, r.key)):
            target = target_for(row.key, teams.get(row.key, team or ""))
            rows.append(
                {
                    "rep": row.key,
                    "calls": row.calls,
                    "answered": row.answered,
                    "missed": row.missed,
                    "talk": format_duration(row.talk_seconds),
                    "effective": row.effective,
                    "target_calls": target.calls,
                    "on_call": int(live.get(row.key, 0)),
                }
            )
        total = report.total
        return {
            "at": now.strftime("%H:%M:%S"),
            "rows": rows,
            "total": {
                "calls": total.calls,
                "talk": format_duration(total.talk_seconds),
                "missed": total.missed,
            },
        }

    @page("rep")
    async def wallboard(request: Request, current: _Visit, who: Principal) -> Response:
        team = team_filter(request, who)
        figures = await run_in_threadpool(wallboard_figures, who, team)
        return render(
            request,
            current,
            "wallboard.html",
            figures=figures,
            team=team or "",
        )

    @page("rep")
    async def wallboard_events(request: Request, current: _Visit, who: Principal) -> Response:
        team = team_filter(request, who)

        async def frames() -> AsyncIterator[bytes]:
            yield f"retry: {int(settings.wallboard_interval * 1000)}\n\n".encode()
            sequence = 0
            while True:
                figures = await run_in_threadpool(wallboard_figures, who, team)
                sequence += 1
                yield format_sse(sequence, "figures", figures)
                await asyncio.sleep(settings.wallboard_interval)

        # StreamingResponse stops the generator when the client disconnects.
        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- live listen-in -------------------------------------------------------------

    listen_seats = settings.seats if settings.listen_token else {}

    @page("lead")
    async def live_page(request: Request, current: _Visit, who: Principal) -> Response:
        def run() -> Any:
            with Session(engine) as session:
                return live_calls(session, who, listen_seats, masked=masked_for(who))

        calls = await run_in_threadpool(run)
        return render(request, current, "live.html", calls=calls)

    @page("rep", audio=True)
    async def live_audio(request: Request, current: _Visit, who: Principal) -> Response:
        call_uuid = request.path_params["call_uuid"]
        addr = _client(request)

        def find() -> tuple[CallRecord | None, bool]:
            with Session(engine) as session:
                return live_call(session, call_uuid, who)

        call, exists = await run_in_threadpool(find)
        if call is None:
            if exists or not may_listen(who):
                await run_in_threadpool(audit, who.login, "listen_denied", f"call:{call_uuid}", None, addr)
                return PlainTextResponse("forbidden", status_code=403)
            return PlainTextResponse("not found", status_code=404)
        if call.ended_at is not None:
            return PlainTextResponse("the call has ended", status_code=404)
        base = listen_seats.get(call.seat)
        if base is None or settings.listen_token is None:
            return PlainTextResponse("listen-in is not set up for this seat", status_code=503)
        await run_in_threadpool(audit, who.login, "listen", f"call:{call.uuid}", f"seat:{call.seat}", addr)
        return await proxy_seat_audio(base, settings.listen_token, call.uuid)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", home, name="home"),
        Route("/login", login_page, methods=["GET"], name="login"),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/language", set_language, methods=["POST"], name="language"),
        Route("/calls", calls_page, name="calls"),
        Route("/calls/export.csv", export_csv, name="export_csv"),
        Route("/calls/export.xlsx", export_xlsx, name="export_xlsx"),
        Route("/calls/{call_uuid}", call_page, name="call"),
        Route("/recordings/{recording_id:int}/audio", recording_audio, name="audio"),
        Route("/recordings/{recording_id:int}/download", recording_download, name="download"),
        Route("/recordings/{recording_id:int}/waveform.svg", recording_waveform, name="waveform"),
        Route("/audit", audit_page, name="audit"),
        Route("/stats/day", stats_day, name="stats_day"),
        Route("/stats/month", stats_month, name="stats_month"),
        Route("/wallboard", wallboard, name="wallboard"),
        Route("/wallboard/events", wallboard_events, name="wallboard_events"),
        Route("/live", live_page, name="live"),
        Route("/live/{call_uuid}/audio", live_audio, name="live_audio"),
        Route("/healthz", healthz, name="healthz"),
        Mount("/static", StaticFiles(packages=[("agent.centre", "static")]), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeadersMiddleware)])


def _date_param(value: str | None) -> date | None:
    if not value:
        return None
    return date.fromisoformat(value.strip())


def _rep_teams(session: Session, reps: list[str], start: datetime, end: datetime) -> dict[str, str]:
    """The team each rep's calls in the window carry (for team targets)."""
    if not reps:
        return {}
    rows = session.execute(
        select(CallRecord.rep, func.max(CallRecord.team))
        .where(CallRecord.rep.in_(reps), CallRecord.started_at >= start, CallRecord.started_at < end)
        .group_by(CallRecord.rep)
    )
    return {rep: team for rep, team in rows}


def load_or_create_secret(path: Path) -> bytes:
    """The session secret kept in ``path`` (created 0600 with 32 random bytes the first time)."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return data
