"""The seat page: a Starlette app showing this seat's lines and calls, live over Server-Sent Events.

Routes: ``/`` (the page, with the caller card), ``/events`` (the event stream),
``/api/state`` (the snapshot as JSON), ``/healthz``, ``/listen/{call_uuid}`` (a
call's live audio for the supervisor console, only with ``[web] listen_token``
and that token as ``Authorization: Bearer``), the card/note/today/dial/
claim/rep-state API of :mod:`agent.seat.web.api`, ``/login`` and ``/logout`` (the rep's
log-in, needed only when the page is reached over the network: :mod:`agent.seat.web.login`),
``/static/...`` (served from the package, so it works offline) and whatever plugins add
through ``register_routes``.

Everything a caller controls (name, number) reaches the browser as text only:
Jinja2 autoescapes the page, JSON escapes ``<``, ``>`` and ``&``, and the page's
script builds rows with ``textContent``. The Content-Security-Policy allows no
inline script, so an injected tag could not run even if one slipped through.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from importlib import metadata
from typing import Any

import anyio
import pluggy
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from agent.seat.health import probe, verdict
from agent.seat.observers import PluginErrorCounter
from agent.seat.web.api import MAX_BODY, SeatApi
from agent.seat.web.bus import Subscription, SubscriptionEnded
from agent.seat.web.context import SeatContext
from agent.seat.web.login import LoginViews, SeatLoginMiddleware, arrived_on_loopback
from agent.web import (
    SafeJSONResponse,
    SecurityHeadersMiddleware,
    bearer_ok,
    format_duration,
    i18n,
    parse_last_event_id,
    to_json,
)
from agent.web.guard import BodyLimitMiddleware, HostGuardMiddleware

logger = logging.getLogger(__name__)

#: Where the seat page's templates, static files and catalogs live.
PACKAGE = "agent.seat.web"

#: How long the browser waits before reconnecting a dropped event stream, in milliseconds.
RECONNECT_MS = 2000
#: Live listen-in audio, in the style of RFC 2586 but little-endian (what numpy and Web Audio use).
LISTEN_MEDIA_TYPE = "audio/L16;rate=8000;channels=1"
#: The largest piece of live audio sent at once: 100 ms at 8 kHz, 16-bit mono.
LISTEN_CHUNK_BYTES = 1600


class EventStreamResponse(Response):
    """Streams a bus subscription as ``text/event-stream`` until the client goes or the bus ends it.

    Sends a ``retry`` field first, then the frames (all that wait, in one write), and a comment
    line every ``heartbeat`` seconds of silence so proxies and browsers keep the
    connection open and a dead client is noticed. The subscription is closed
    however the stream ends.
    """

    media_type = "text/event-stream"

    def __init__(self, subscription: Subscription, *, heartbeat: float) -> None:
        # Not Response.__init__: it would add "Content-Length: 0" for the absent body.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.subscription = subscription
        self.heartbeat = heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream until the client goes or the bus ends the subscription."""
        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await self._stream(send)
                group.cancel_scope.cancel()
        except OSError:
            logger.debug("seat page client went away mid-write")
        finally:
            self.subscription.close()

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send(
            {"type": "http.response.body", "body": f"retry: {RECONNECT_MS}\n\n".encode(), "more_body": True}
        )
        while True:
            try:
                waiting = await self.subscription.frames(timeout=self.heartbeat)
            except SubscriptionEnded:
                break
            if waiting is None:
                await send({"type": "http.response.body", "body": b": heartbeat\n\n", "more_body": True})
                continue
            # Everything waiting in one write (8 lines ringing at once are one send, not 8),
            # each frame encoded once by the bus for every client.
            last_id, body = waiting
            await send({"type": "http.response.body", "body": body, "more_body": True})
            self.subscription.written(last_id)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def format_clock(iso: str | None) -> str:
    """``HH:MM:SS`` in this machine's local time, from an ISO 8601 time."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")


def number_text(call: dict[str, Any], t: Callable[[str], str]) -> tuple[str, bool]:
    """What to show for a call's number, and whether it is a placeholder (no number sent)."""
    if call.get("number_display"):
        return str(call["number_display"]), False
    if call.get("number_raw"):
        return str(call["number_raw"]), False
    absence = call.get("absence")
    if absence == "P":
        return t("number.withheld"), True
    if absence == "O":
        return t("number.unavailable"), True
    return t("number.unknown"), True


def call_status(call: dict[str, Any]) -> str:
    """A catalog key for a call's status: its disposition once ended, else what it is doing."""
    if call.get("disposition"):
        return f"disposition.{call['disposition']}"
    if call.get("answered_at"):
        return "state.talking"
    return "state.ringing" if call.get("direction") == "in" else "state.dialing"


def call_view(call: dict[str, Any], t: Callable[[str], str]) -> dict[str, Any]:
    """The display strings of one call row (``seat.js`` builds the same row from the same dict)."""
    number, placeholder = number_text(call, t)
    status = call_status(call)
    return {
        "uuid": call["uuid"],
        "time": format_clock(call.get("started_at")),
        "started_at": call.get("started_at") or "",
        "answered_at": call.get("answered_at") or "",
        "line": call.get("line") or "",
        "direction": call.get("direction") or "",
        "direction_text": t(f"direction.{call.get('direction')}"),
        "number": number,
        "number_placeholder": placeholder,
        "cid_name": call.get("cid_name") or "",
        "customer_name": call.get("customer_name") or "",
        "status": status.split(".", 1)[1],
        "status_text": t(status),
        "waiting": bool(call.get("waiting")),
        "ring": format_duration(call.get("ring_seconds")),
        "talk": format_duration(call.get("talk_seconds")),
    }


#: The ``health`` counts the page's status line shows when any is above zero, in this order.
PARKED_COUNTS = ("storage_parked", "sync_parked")


def parked_counts(health: Callable[[], dict[str, int]] | None) -> dict[str, int]:
    """The parked counts worth a line on the page (those above zero); none when health fails."""
    if health is None:
        return {}
    try:
        counts = health()
    except Exception:  # the page must render even when the runtime cannot count
        logger.exception("seat page: reading the parked counts failed")
        return {}
    return {key: int(counts[key]) for key in PARKED_COUNTS if counts.get(key)}


def page_language(request: Request, configured: str | None) -> str:
    """The language of a page: ``?lang=``, the seat's configured one, then the browser's."""
    return i18n.negotiate(
        request.query_params.get("lang"), request.headers.get("accept-language"), default=configured
    )


def _login_renderer(
    env: Environment, context: SeatContext, version: str
) -> Callable[[Request, int, str | None, str], Response]:
    """What :class:`~agent.seat.web.login.LoginViews` renders its form with."""
    template = env.get_template("login.html")

    def render(request: Request, status: int, message_key: str | None, token: str) -> Response:
        lang = page_language(request, context.language)
        t = i18n.Translator(lang, PACKAGE)
        html = template.render(
            lang=lang,
            t=t,
            seat=context.seat,
            root=request.scope.get("root_path", ""),
            version=version,
            csrf_token=token,
            message_key=message_key,
            other_languages=[(code, t(f"lang.{code}")) for code in i18n.LANGUAGES if code != lang],
        )
        return HTMLResponse(
            html,
            status_code=status,
            headers={"Cache-Control": "no-store", "Vary": "Accept-Language", "Content-Language": lang},
        )

    return render


def _package_version() -> str:
    try:
        return metadata.version("cti-agent")
    except metadata.PackageNotFoundError:
        return "0"


def _plugin_routes(pm: pluggy.PluginManager, errors: PluginErrorCounter | None) -> list[BaseRoute]:
    """Routes from every ``register_routes`` implementation; a plugin that fails adds none of its own."""
    routes: list[BaseRoute] = []
    for impl in pm.hook.register_routes.get_hookimpls():
        contributed: list[Any] = []
        try:
            impl.function(**{name: contributed.append for name in impl.argnames if name == "register"})
            for route in contributed:
                if not isinstance(route, BaseRoute):
                    raise TypeError(
                        f"register() expects a Starlette Route or Mount, got {type(route).__name__}"
                    )
        except Exception:
            logger.exception("plugin %s failed in register_routes; its pages are left out", impl.plugin_name)
            if errors is not None:
                errors.plugin_error(impl.plugin_name, "register_routes")
            continue
        routes.extend(contributed)
        logger.debug("plugin %s added %d route(s)", impl.plugin_name, len(contributed))
    return routes


def make_seat_app(context: SeatContext) -> Starlette:
    """Build the seat page app from its context (see :class:`~agent.seat.web.context.SeatContext`)."""
    bus = context.bus
    api = SeatApi(context, json_response=SafeJSONResponse)
    env = Environment(
        loader=PackageLoader(PACKAGE, "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("seat.html")
    version = _package_version()
    login_views = LoginViews(context.login, context.tokens, _login_renderer(env, context, version))

    async def page(request: Request) -> Response:
        lang = page_language(request, context.language)
        t = i18n.Translator(lang, PACKAGE)
        state = bus.snapshot()
        root = request.scope.get("root_path", "")
        session_id, token = context.tokens.begin(request)
        html = template.render(
            lang=lang,
            t=t,
            seat=context.seat,
            root=root,
            version=version,
            last_id=state["last_id"],
            lines=[{**line, "state_text": t(f"state.{line['state']}")} for line in state["lines"]],
            calls=[call_view(call, t) for call in state["calls"]],
            other_languages=[(code, t(f"lang.{code}")) for code in i18n.LANGUAGES if code != lang],
            strings_json=to_json(t.strings),
            csrf_token=token,
            rep=context.rep,
            parked=parked_counts(context.health),
            # Reached over the network means logged in (the middleware saw to it): offer a log-out.
            networked=not arrived_on_loopback(request.scope),
        )
        response = HTMLResponse(
            html, headers={"Cache-Control": "no-store", "Vary": "Accept-Language", "Content-Language": lang}
        )
        # The token in the page works only with this cookie, which a page on another site never sends.
        context.tokens.set_cookie(response, session_id)
        return response

    async def events(request: Request) -> Response:
        last_id = parse_last_event_id(request.headers.get("last-event-id"))
        if last_id is None:
            last_id = parse_last_event_id(request.query_params.get("last_event_id"))
        if bus.clients >= context.max_clients:
            logger.warning("seat page: %d event streams open, refusing another", bus.clients)
            return PlainTextResponse("too many open pages", status_code=503, headers={"Retry-After": "5"})
        return EventStreamResponse(bus.subscribe(last_id), heartbeat=context.heartbeat)

    async def api_state(request: Request) -> Response:
        counts = context.health() if context.health is not None else {}
        return SafeJSONResponse(
            {"seat": context.seat, **bus.snapshot(), **counts}, headers={"Cache-Control": "no-store"}
        )

    async def healthz(request: Request) -> Response:
        counts = context.health() if context.health is not None else {}
        problems = await run_in_threadpool(probe, context.engine, context.recordings_dir)
        status, body = verdict(problems, {"clients": bus.clients, **counts})
        return SafeJSONResponse({"seat": context.seat, **body}, status_code=status)

    async def listen(request: Request) -> Response:
        listen_token, live = context.listen_token, context.live
        if listen_token is None or live is None:
            return PlainTextResponse("not found", status_code=404)
        if not bearer_ok(request.headers.get("authorization"), listen_token):
            logger.warning("listen-in refused: bad or missing token from %s", request.client)
            return PlainTextResponse(
                "unauthorized", status_code=401, headers={"WWW-Authenticate": 'Bearer realm="listen"'}
            )
        call_uuid = request.path_params["call_uuid"]
        tap = live(call_uuid)
        if tap is None:
            return PlainTextResponse("no such call in progress", status_code=404)
        logger.info("listen-in: call %s streamed to %s", call_uuid, request.client)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in tap:
                    for start in range(0, len(chunk), LISTEN_CHUNK_BYTES):
                        yield chunk[start : start + LISTEN_CHUNK_BYTES]
            finally:
                tap.close()

        return StreamingResponse(
            chunks(),
            media_type=LISTEN_MEDIA_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    routes: list[BaseRoute] = [
        Route("/", page, name="page"),
        Route("/listen/{call_uuid}", listen, methods=["GET"], name="listen"),
        Route("/events", events, methods=["GET"], name="events"),
        Route("/api/state", api_state, name="state"),
        Route("/healthz", healthz, name="healthz"),
        *api.routes(),
        *login_views.routes(),
    ]
    if context.pm is not None:
        routes.extend(_plugin_routes(context.pm, context.errors))
    routes.append(Mount("/static", StaticFiles(packages=[(PACKAGE, "static")]), name="static"))
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(HostGuardMiddleware, hosts=context.hosts),
            Middleware(BodyLimitMiddleware, max_bytes=MAX_BODY),
            Middleware(SecurityHeadersMiddleware),
            # Inside the security headers, so its redirects and 401s carry them too.
            Middleware(SeatLoginMiddleware, login=context.login, tokens=context.tokens),
        ],
    )
