"""Who may reach what: sessions, the :func:`requires` decorator, and the page helpers every view uses.

Every route but ``/login``, ``/logout``, ``/healthz`` and ``/static`` is wrapped
in :func:`requires`, the one place where rights are checked: a cross-site
request is refused, a visitor without a session is sent to ``/login`` (audio
and streams get 401), and a role not named is answered 403. A session is
checked against the user row on every request (:func:`visit`): disabled, a new
password or a log-out since (the session generation moved on) ends it. Which calls and
recordings a role may see is decided in SQL by
:func:`agent.centre.search.scope_clause`.

Roles: ``rep``, ``lead`` and ``manager`` see calls (each a wider scope);
``admin`` is not above them but beside: admins manage users and read the audit
log, and reach only the routes that name ``admin``.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from agent.centre import i18n
from agent.centre.auth import Principal, new_csrf_token, session_user
from agent.centre.context import SESSION_COOKIE, ConsoleContext

logger = logging.getLogger(__name__)

#: Form bodies are small; anything larger is refused before it is parsed.
MAX_FORM_BYTES = 16 * 1024
#: The roles that see calls (scoped by :func:`agent.centre.search.scope_clause`).
STAFF: tuple[str, ...] = ("rep", "lead", "manager")
#: Every role.
EVERYONE: tuple[str, ...] = (*STAFF, "admin")


@dataclass
class Visit:
    """What a request carries: its session payload (possibly fresh) and, when logged in, the user."""

    payload: dict[str, Any]
    who: Principal | None
    fresh: bool = False

    @property
    def csrf(self) -> str:
        """The session's CSRF token (every form carries it back)."""
        return str(self.payload["csrf"])


#: A view behind :func:`requires`: the context, the request, the visit and its logged-in user.
Handler = Callable[[ConsoleContext, Request, Visit, Principal], Awaitable[Response]]
#: What a route calls once the context is bound (:func:`agent.centre.app.make_console_app`).
Endpoint = Callable[[ConsoleContext, Request], Awaitable[Response]]


async def visit(ctx: ConsoleContext, request: Request) -> Visit:
    """The request's session: its signed cookie and user, or a fresh anonymous one."""
    payload = ctx.signer.unsign(request.cookies.get(SESSION_COOKIE))
    if payload is None or not isinstance(payload.get("csrf"), str):
        return Visit({"csrf": new_csrf_token()}, None, fresh=True)
    who = await ctx.read(session_user, payload) if "uid" in payload else None
    if who is None and "uid" in payload:
        # Disabled, a new password, logged out (the generation moved on) or a cookie of an
        # older version without one: the session ends here.
        return Visit({"csrf": new_csrf_token()}, None, fresh=True)
    return Visit(payload, who)


def keep_session(ctx: ConsoleContext, response: Response, current: Visit) -> Response:
    """``response`` with the session cookie set when the visit's session is new."""
    if current.fresh:
        response.set_cookie(
            SESSION_COOKIE,
            ctx.signer.sign(current.payload),
            max_age=int(ctx.settings.session_seconds),
            httponly=True,
            samesite="strict",
            secure=ctx.settings.secure_cookies,
            path="/",
        )
    return response


def language_of(ctx: ConsoleContext, request: Request, who: Principal | None) -> str:
    """The page language: ``?lang=``, the console's fixed one, the user's setting, then the browser's."""
    chosen = request.query_params.get("lang") or ctx.settings.language or (who.language if who else None)
    return i18n.negotiate(chosen, request.headers.get("accept-language"))


def render(
    ctx: ConsoleContext, request: Request, current: Visit, name: str, status: int = 200, **context: Any
) -> Response:
    """A template as an uncached HTML page in the visit's language."""
    lang = language_of(ctx, request, current.who)
    t = i18n.Translator(lang)
    html = ctx.templates.get_template(name).render(
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
    return keep_session(ctx, response, current)


def error(ctx: ConsoleContext, request: Request, current: Visit, status: int, key: str) -> Response:
    """The error page with the message ``key`` (a locale string)."""
    return render(ctx, request, current, "error.html", status=status, message_key=key, status_code=status)


def cross_site(request: Request) -> bool:
    """Whether the browser marks the request as sent from another site."""
    return request.headers.get("sec-fetch-site") == "cross-site"


def requires(*roles: str, audio: bool = False) -> Callable[[Handler], Endpoint]:
    """Wrap a view: a session needed (pages redirect to /login, ``audio`` answers 401), a role in ``roles``.

    :param roles: the roles that may reach the view (:data:`STAFF`, :data:`EVERYONE` or a few of them).
    :param audio: the view serves media or a stream, which a redirect to a page would not help.
    """
    allowed = frozenset(roles)

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(ctx: ConsoleContext, request: Request) -> Response:
            if cross_site(request):
                return PlainTextResponse("cross-site request refused", status_code=403)
            current = await visit(ctx, request)
            if current.who is None:
                if audio:
                    return keep_session(ctx, PlainTextResponse("log in first", status_code=401), current)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                location = "/login?" + urllib.parse.urlencode({"next": target})
                return keep_session(ctx, RedirectResponse(location, status_code=303), current)
            if current.who.role not in allowed:
                return error(ctx, request, current, 403, "error.forbidden")
            return await handler(ctx, request, current, current.who)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        endpoint.roles = allowed  # type: ignore[attr-defined]
        return endpoint

    return wrap


_LOCAL_PATH = re.compile(r"/(?!/)[\w\-./?=&%+~:,*]*")


def safe_next_path(value: str | None) -> str:
    """A path on this console to go to after log-in (anything else goes to the search page).

    Only a plain local path passes: no ``//host``, no backslash, no tab or newline
    (browsers drop those, so ``/\t/evil.example`` would become ``//evil.example``).
    """
    if value and _LOCAL_PATH.fullmatch(value):
        return value
    return "/calls"


def client_address(request: Request) -> str:
    """The client's address for the audit log."""
    return request.client.host if request.client else "unknown"


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a repeated key wins)."""
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return dict(pairs)


async def read_form(request: Request) -> dict[str, str] | None:
    """The form body, or None when it is larger than :data:`MAX_FORM_BYTES` (the rest is not read)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return parse_form(body)
