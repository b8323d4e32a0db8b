"""Log-in, log-out, the page language, the start page and the health check."""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from agent.centre import i18n, queries
from agent.centre.access import (
    EVERYONE,
    Visit,
    client_address,
    cross_site,
    error,
    keep_session,
    read_form,
    render,
    requires,
    safe_next_path,
    visit,
)
from agent.centre.auth import Principal, csrf_ok, end_sessions, login_session, new_csrf_token
from agent.centre.context import SESSION_COOKIE, ConsoleContext

logger = logging.getLogger(__name__)


async def login_page(ctx: ConsoleContext, request: Request) -> Response:
    """``GET /login``: the form (a user already logged in goes on to ``next``)."""
    current = await visit(ctx, request)
    if current.who is not None:
        return RedirectResponse(safe_next_path(request.query_params.get("next")), status_code=303)
    return render(ctx, request, current, "login.html", next=safe_next_path(request.query_params.get("next")))


async def login_submit(ctx: ConsoleContext, request: Request) -> Response:
    """``POST /login``: check the CSRF token, the rate limit and the password; audited either way."""
    current = await visit(ctx, request)
    form = await read_form(request)
    if cross_site(request) or form is None:
        return error(ctx, request, current, 403, "error.csrf")
    if not csrf_ok(current.payload.get("csrf"), form.get("csrf")):
        return error(ctx, request, current, 403, "error.csrf")
    login = form.get("login", "").strip()
    password = form.get("password", "")
    addr = client_address(request)
    wait = ctx.limiter.retry_after(login, addr)
    if wait is not None:
        # Logged, not audited: a flood of refused attempts must not become a flood of rows.
        # The password was not checked (a guess made while throttled tells nothing) nor logged.
        logger.warning(
            "log-in attempt for %r from %s throttled for %.0f s after failures", login[:100], addr, wait
        )
        response = render(
            ctx,
            request,
            current,
            "login.html",
            status=429,
            next=safe_next_path(form.get("next")),
            message_key="login.throttled",
        )
        response.headers["Retry-After"] = str(max(math.ceil(wait), 1))
        return response

    found = await ctx.read(login_session, login, password)
    if found is None:
        ctx.limiter.failed(login, addr)
        await ctx.audit(login, "login_failed", addr=addr)
        return render(
            ctx,
            request,
            current,
            "login.html",
            status=401,
            next=safe_next_path(form.get("next")),
            message_key="login.failed",
        )
    ctx.limiter.succeeded(login, addr)
    await ctx.audit(login, "login", addr=addr)
    # A new session (and CSRF token) at log-in: a token planted before cannot ride along.
    fresh = Visit({**found, "csrf": new_csrf_token()}, None, fresh=True)
    return keep_session(ctx, RedirectResponse(safe_next_path(form.get("next")), status_code=303), fresh)


async def logout(ctx: ConsoleContext, request: Request) -> Response:
    """``POST /logout``: end the session server-side (the form's CSRF token required).

    The user's session generation is raised, so a copy of the cookie kept
    anywhere stops working too, and so do the user's sessions on other browsers.
    """
    current = await visit(ctx, request)
    form = await read_form(request)
    if form is None or not csrf_ok(current.payload.get("csrf"), form.get("csrf")):
        return error(ctx, request, current, 403, "error.csrf")
    if current.who is not None:
        await ctx.write(end_sessions, current.who.user_id)
        await ctx.audit(current.who.login, "logout", addr=client_address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@requires(*EVERYONE)
async def set_language(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``POST /language``: store the user's page language."""
    form = await read_form(request)
    if form is None or not csrf_ok(current.csrf, form.get("csrf")):
        return error(ctx, request, current, 403, "error.csrf")
    language = form.get("language", "")
    if language not in (*i18n.LANGUAGES, "auto"):
        return error(ctx, request, current, 400, "error.bad_request")
    await ctx.write(queries.set_language, who.user_id, language)
    return RedirectResponse(safe_next_path(form.get("next")), status_code=303)


@requires(*EVERYONE)
async def home(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /``: admins to the audit log, everyone else to the search."""
    return RedirectResponse("/audit" if who.role == "admin" else "/calls", status_code=303)


async def healthz(ctx: ConsoleContext, request: Request) -> Response:
    """``GET /healthz``: the process answers."""
    return PlainTextResponse("ok")
