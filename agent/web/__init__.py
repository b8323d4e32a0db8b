"""What both web apps (the seat page and the centre) share: security headers, JSON, SSE frames.

Everything a caller controls reaches a browser through these: JSON escapes ``<``,
``>`` and ``&`` so it is safe inside HTML and an event stream, and every
response carries a Content-Security-Policy that allows no inline script.
"""

from __future__ import annotations

import gzip
import hmac
import json
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.web.exposition import CONTENT_TYPE, no_created_series, render

#: No inline script or style, nothing from another origin, no framing.
CONTENT_SECURITY_POLICY = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (compared in constant time)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return False
    return hmac.compare_digest(value.encode("utf-8"), token.encode("utf-8"))


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response, plugin routes included.

    A response that sets one of these headers itself keeps its own value.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def to_json(value: Any) -> str:
    """Compact JSON with ``<``, ``>``, ``&`` escaped, safe to place anywhere in HTML or an event stream."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class SafeJSONResponse(Response):
    """A JSON response whose text never contains a raw ``<``, ``>`` or ``&``."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """The content as escaped, compact JSON bytes."""
        return to_json(content).encode("utf-8")


def format_sse(event_id: int, event: str, payload: dict[str, Any]) -> bytes:
    """One Server-Sent Events frame: ``id``, ``event`` and a single ``data`` line, then a blank line.

    The JSON is one line (newlines inside strings are escaped), so it cannot end
    the frame early or inject a field.
    """
    return f"id: {event_id}\nevent: {event}\ndata: {to_json(payload)}\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The integer in a ``Last-Event-ID`` header (or query value), None when absent or not one of ours."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return int(value)


def format_duration(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss`` from an hour), empty for None; the page's script formats the same way."""
    if seconds is None:
        return ""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class MetricsEndpoint:
    """``/metrics`` for a registry, as an endpoint: ``Route("/metrics", MetricsEndpoint(registry))``.

    The text format 0.0.4 written by :func:`agent.web.exposition.render` (Prometheus reads it
    whatever it asks for first), gzip at level 1 when the client accepts it: level 9, which
    ``make_asgi_app`` uses, cost more than formatting a thousand reps and saves a tenth of the
    bytes. The registry is read in a worker thread, so a scrape of a large exporter or of
    the centre's database never holds the event loop. No ``_created`` series (see
    :func:`agent.web.exposition.no_created_series`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        no_created_series()
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the registry in the Prometheus text format."""
        body = await run_in_threadpool(render, self._registry)
        headers = {"Content-Type": CONTENT_TYPE}
        accepted = Headers(scope=scope).get("accept-encoding", "")
        if "gzip" in accepted.lower():
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        await Response(body, headers=headers)(scope, receive, send)
