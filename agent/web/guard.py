"""What every web surface checks before a handler runs.

The Host it was asked for, the body's size, and (for the seat page) that a write comes from a
page this server handed out.

- :class:`HostGuardMiddleware` answers 421 to a request whose ``Host`` is not one the server is
  known by. A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) sends
  its own name as Host, so it never reaches a handler on loopback.
- :class:`BodyLimitMiddleware` refuses a body over the limit while it is being read: a declared
  ``Content-Length`` over the limit is refused before a byte is read, and a chunked body is cut
  off at the first chunk that crosses it. Nothing buffers more than the limit.
- :class:`PageTokens` binds a page's write token to the page's session cookie (HttpOnly,
  SameSite=Strict): the token is an HMAC of the cookie's random id, so only a request carrying that
  cookie can present a token that checks, and a cross-site request never carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

#: The names a loopback listener is reached by.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_of(header: str) -> str:
    """The host part of a ``Host`` header value, lower-case, without port or IPv6 brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") > 1:  # a bare IPv6 address (not valid in Host, but harmless to read)
        return value
    return value.partition(":")[0].rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, as in a listen address) is this machine only."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(listen_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server listening on ``listen_host`` answers to.

    Loopback names always; the listen address itself when it is a specific one; and ``extra``
    (what the configuration names: the seat's host name, a DNS name, a reverse proxy's name).
    A wildcard listen address (``0.0.0.0``, ``::``) adds nothing by itself: name the hosts.
    """
    names = set(LOOPBACK_NAMES)
    listen = listen_host.strip("[]").lower()
    if listen and listen not in {"0.0.0.0", "::"}:  # noqa: S104 - compared, not bound
        names.add(listen)
    names.update(host_of(name) for name in extra if name.strip())
    return frozenset(names)


class HostGuardMiddleware:
    """Answers 421 (Misdirected Request) to HTTP and WebSocket requests for an unknown Host."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a request for a known Host on; answer any other with 421."""
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        host = host_of(Headers(scope=scope).get("host", ""))
        if host in self.hosts:
            await self.app(scope, receive, send)
            return
        logger.warning("refused a request for unknown host %r from %s", host[:80], scope.get("client"))
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = PlainTextResponse("unknown host: this server is not reached by that name\n", 421)
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    """A request body crossed the limit while it was read."""


class BodyLimitMiddleware:
    """Limits every request body to ``max_bytes``, while it streams in.

    A handler that reads the body sees :class:`BodyTooLarge` raised from ``receive`` once the
    limit is crossed; the middleware turns that into a 413 when no response has started yet.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body counted; 413 once it is over the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(f"request body over {self.max_bytes} bytes\n", 413)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class PageTokens:
    """Write tokens bound to a page's session cookie.

    The cookie holds a random id; the page's token is ``HMAC(secret, id)``. The secret lives only
    in this process, so a restart invalidates every open page's token (the page reloads).
    """

    def __init__(self, cookie_name: str, *, secret: bytes | None = None, secure: bool = False) -> None:
        self.cookie_name = cookie_name
        self.secure = secure
        self._secret = secret or secrets.token_bytes(32)

    def _token_for(self, session_id: str) -> str:
        return hmac.new(self._secret, session_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def session_of(self, request: Request) -> str | None:
        """The request's session id, when it carries a well-formed one."""
        value = request.cookies.get(self.cookie_name, "")
        return value if 20 <= len(value) <= 64 and value.isascii() and value.isalnum() else None

    def begin(self, request: Request) -> tuple[str, str]:
        """The session id and write token for a page served to ``request``: its session's, or a new one's.

        Call :meth:`set_cookie` on the response with the same id, so the token and the cookie
        always travel together.
        """
        session_id = self.session_of(request) or secrets.token_hex(16)
        return session_id, self._token_for(session_id)

    def set_cookie(self, response: Response, session_id: str) -> None:
        """Put the session cookie (HttpOnly, SameSite=Strict) on ``response``."""
        response.set_cookie(
            self.cookie_name,
            session_id,
            httponly=True,
            samesite="strict",
            secure=self.secure,
            path="/",
        )

    def issue(self, request: Request, response: Response) -> str:
        """:meth:`begin` and :meth:`set_cookie` in one, for a response made before its body."""
        session_id, token = self.begin(request)
        self.set_cookie(response, session_id)
        return token

    def token_for_request(self, request: Request) -> str | None:
        """The token a page served to this request's session would carry (None without a session)."""
        session_id = self.session_of(request)
        return None if session_id is None else self._token_for(session_id)

    def check(self, request: Request, presented: str | None) -> bool:
        """Whether ``presented`` is the token of the request's own session cookie (constant time)."""
        expected = self.token_for_request(request)
        if expected is None or not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode("ascii"))
