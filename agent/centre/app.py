"""The supervisor console: a Starlette app over the calls database.

Routes (all but ``/login``, ``/logout``, ``/healthz`` and ``/static`` need a session)::

    GET  /login, POST /login, POST /logout, POST /language
    GET  /calls                      search (the query string is the search: bookmark or share it)
    GET  /calls/export.csv|.xlsx     the whole result (audited)
    GET  /calls/{uuid}               one call, its notes and recordings with a player
    GET  /customers, /customers/{id}[.json]   customers by name, company or number; one customer's
                                     history across the floor, newest first, keyset-paged (audited)
    GET  /recordings/{id}/audio      the audio, inline, with HTTP Range (each play audited)
    GET  /recordings/{id}/download   the audio as an attachment (audited)
    GET  /recordings/{id}/waveform.svg
    GET  /audit                      the audit log (managers and admins)
    GET  /users, POST /users         console log-ins (admins; the rules of ``cti-agent users``)
    GET  /stats/day, /stats/month    KPIs per rep against targets, ranked, sortable (a day by hour, half-hour)
    GET  /wallboard, /wallboard/events   full-screen live KPIs fed by Server-Sent Events (?kiosk=1: the TV's)
    GET  /live                       calls in progress (leads and managers)
    GET  /live/{uuid}/audio          listen in: the seat's live PCM, proxied (audited; see listen.py)
    GET  /leads/import, POST         a manager's lead file: upload, preview and mapping, import onto a
                                     list, the reject and changes files (managers and admins; audited)
    GET  /leads/coverage             a list's coverage (打透) per rep, chart, 过数据 warnings (leads)
    GET  /leads/coverage/export.csv|.xlsx   the same rows (audited)

:func:`make_console_app` builds one :class:`~agent.centre.context.ConsoleContext`
and binds it to the views of :data:`ROUTES` (``agent/centre/views/``); who may
reach each is decided by :func:`agent.centre.access.requires`.

Cross-site requests are refused twice over: the session cookie is
``SameSite=Strict`` (a page elsewhere cannot send it) and any request a browser
marks ``Sec-Fetch-Site: cross-site`` is answered 403. Every POST carries the
session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent.centre.access import Endpoint
from agent.centre.context import (
    SESSION_COOKIE,
    ConsoleContext,
    ConsoleSettings,
    load_or_create_secret,
    make_context,
)
from agent.centre.relay import ListenRelay
from agent.centre.views import (
    audit,
    auth,
    calls,
    collisions,
    coverage,
    customers,
    leads,
    live,
    recordings,
    stats,
    users,
)
from agent.web import SecurityHeadersMiddleware

__all__ = [
    "ROUTES",
    "SESSION_COOKIE",
    "ConsoleSettings",
    "load_or_create_secret",
    "make_console_app",
    "routes",
]

#: path, view, methods (None: any, as Starlette routes default), route name.
ROUTES: tuple[tuple[str, Endpoint, tuple[str, ...] | None, str | None], ...] = (
    ("/", auth.home, None, "home"),
    ("/login", auth.login_page, ("GET",), "login"),
    ("/login", auth.login_submit, ("POST",), None),
    ("/logout", auth.logout, ("POST",), "logout"),
    ("/language", auth.set_language, ("POST",), "language"),
    ("/calls", calls.calls_page, None, "calls"),
    ("/calls/export.csv", calls.export_csv, None, "export_csv"),
    ("/calls/export.xlsx", calls.export_xlsx, None, "export_xlsx"),
    ("/calls/{call_uuid}", calls.call_page, None, "call"),
    ("/customers", customers.customers_page, ("GET",), "customers"),
    ("/customers/{customer_id:int}.json", customers.customer_json, ("GET",), "customer_json"),
    ("/customers/{customer_id:int}", customers.customer_page, ("GET",), "customer"),
    ("/recordings/{recording_id:int}/audio", recordings.recording_audio, None, "audio"),
    ("/recordings/{recording_id:int}/download", recordings.recording_download, None, "download"),
    ("/recordings/{recording_id:int}/waveform.svg", recordings.recording_waveform, None, "waveform"),
    ("/audit", audit.audit_page, None, "audit"),
    ("/collisions", collisions.collisions_page, None, "collisions"),
    ("/users", users.users_page, ("GET", "POST"), "users"),
    ("/stats/day", stats.stats_day, None, "stats_day"),
    ("/stats/month", stats.stats_month, None, "stats_month"),
    ("/wallboard", stats.wallboard, None, "wallboard"),
    ("/wallboard/events", stats.wallboard_events, None, "wallboard_events"),
    ("/live", live.live_page, None, "live"),
    ("/live/{call_uuid}/audio", live.live_audio, None, "live_audio"),
    ("/leads/import", leads.upload_page, ("GET", "POST"), "lead_upload"),
    ("/leads/import/{upload_id}", leads.preview_page, ("GET", "POST"), "lead_preview"),
    ("/leads/import/{upload_id}/rejects.csv", leads.download_rejects, ("GET",), "lead_rejects"),
    ("/leads/import/{upload_id}/changes.csv", leads.download_changes, ("GET",), "lead_changes"),
    ("/leads/coverage", coverage.coverage_page, ("GET",), "lead_coverage"),
    ("/leads/coverage/export.csv", coverage.coverage_csv, ("GET",), "lead_coverage_csv"),
    ("/leads/coverage/export.xlsx", coverage.coverage_xlsx, ("GET",), "lead_coverage_xlsx"),
    ("/healthz", auth.healthz, None, "healthz"),
)


def _bound(ctx: ConsoleContext, view: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await view(ctx, request)

    endpoint.__name__ = view.__name__
    endpoint.__doc__ = view.__doc__
    return endpoint


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    """The console's routes with ``ctx`` bound to every view, and the static files."""
    table: list[BaseRoute] = [
        Route(path, _bound(ctx, view), methods=list(methods) if methods else None, name=name)
        for path, view, methods, name in ROUTES
    ]
    table.append(Mount("/static", StaticFiles(packages=[("agent.centre", "static")]), name="static"))
    return table


def make_console_app(
    engine: Engine, settings: ConsoleSettings, *, relay: ListenRelay | None = None
) -> Starlette:
    """Build the console app over ``engine`` (already migrated); ``relay``: the seat API's listen relay."""
    return Starlette(
        routes=routes(make_context(engine, settings, relay)),
        middleware=[Middleware(SecurityHeadersMiddleware)],
    )
