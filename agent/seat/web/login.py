"""The rep's log-in to the seat page when the page is reached over the network.

On loopback nothing changes: the page trusts the machine it runs on (the Host
allow-list and the cookie-bound write token keep other sites out). A request
that arrived on a non-loopback address of this machine (``[web] listen`` set
to a LAN address or ``0.0.0.0``, and the browser elsewhere) must carry a
logged-in session first, for every route but the log-in form itself, the
static files, ``/healthz`` (no caller data) and ``/listen/...`` (which checks
the console's own bearer token).

The password is set with ``cti-agent seat-password`` and kept as one scrypt
hash (the console's hashing, :mod:`agent.web.passwords`) in the seat's data
directory, readable by its owner only. Sessions are a server-side table keyed
by the page's session cookie (:class:`agent.web.guard.PageTokens`), so log-out
ends one for good, a restart ends all, and a new password (the file changes)
ends every session at its next request. Wrong passwords are throttled per
address with the same growing delay as the console.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import secrets
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.web.guard import PageTokens
from agent.web.passwords import (
    LoginRateLimiter,
    check_password_strength,
    hash_password,
    verify_password,
    waste_a_hash,
)

logger = logging.getLogger(__name__)

#: The file in the seat's data directory that holds the rep's password hash.
HASH_FILE_NAME = "seat-password"
#: The paths a visitor from the network reaches before logging in.
OPEN_PATHS = ("/login", "/healthz")
OPEN_PREFIXES = ("/static/", "/listen/")
#: The throttle's name for the seat's single log-in.
REP_LOGIN = "rep"


def write_password(path: Path, password: str) -> None:
    """Store the hash of ``password`` at ``path`` (mode 0600, replaced atomically).

    :raises ValueError: the password is too short.
    """
    check_password_strength(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(hash_password(password) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(str(value).strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def arrived_on_loopback(scope: Scope) -> bool:
    """Whether the request came in on a loopback address of this machine (or a Unix socket).

    Decided by the address the server accepted the connection on (``scope["server"]``:
    uvicorn gives the socket's own address, so on a ``0.0.0.0`` listener a browser on
    the seat itself still arrives on 127.0.0.1). Servers that put a name there (only test
    clients do) are judged by the client's address instead; when neither is an address,
    the request counts as from the network.
    """
    server = scope.get("server")
    if not server or server[1] is None:  # a Unix socket: as local as loopback
        return True
    address = _ip(server[0])
    if address is None:
        client = scope.get("client")
        address = _ip(client[0]) if client else None
    return address is not None and address.is_loopback


class SeatLogin:
    """The seat's one log-in: its password file, its sessions and its throttle.

    :param path: the password hash file (:data:`HASH_FILE_NAME` in the data directory).
    :param session_seconds: how long a session lasts after log-in.
    :param max_sessions: sessions kept at once; past it the oldest is ended.
    """

    def __init__(
        self,
        path: Path,
        *,
        session_seconds: float = 12 * 3600,
        max_sessions: int = 256,
        limiter: LoginRateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.session_seconds = session_seconds
        self.max_sessions = max_sessions
        self.limiter = limiter or LoginRateLimiter(per_user=5, per_address=20, clock=clock)
        self._clock = clock
        self._sessions: dict[str, float] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._hash: str | None = None

    def password_hash(self) -> str | None:
        """The stored hash (re-read when the file changed; a change ends every session)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            previous = self._hash
            try:
                text = self.path.read_text(encoding="ascii").strip() if stamp is not None else ""
                self._hash = text or None
            except (OSError, UnicodeDecodeError) as exc:
                logger.warning("cannot read the seat password file %s: %s", self.path, exc)
                self._hash = None
            self._stamp = stamp
            if self._hash != previous and self._sessions:
                logger.info("seat password changed: %d page session(s) ended", len(self._sessions))
                self._sessions.clear()
        return self._hash

    def configured(self) -> bool:
        """Whether a password is set."""
        return self.password_hash() is not None

    def logged_in(self, session_id: str | None) -> bool:
        """Whether ``session_id`` is a live logged-in session."""
        stored = self.password_hash()
        if session_id is None or stored is None:
            return False
        until = self._sessions.get(session_id)
        if until is None:
            return False
        if self._clock() >= until:
            del self._sessions[session_id]
            return False
        return True

    def check(self, password: str) -> bool:
        """Whether ``password`` is the seat's (the same work when none is set)."""
        stored = self.password_hash()
        if stored is None:
            waste_a_hash(password)
            return False
        return verify_password(password, stored)

    def start(self) -> str:
        """A new logged-in session id (a fresh one: an id planted before log-in is never promoted)."""
        self.password_hash()  # sessions belong to the password read now; a later change ends them
        now = self._clock()
        for stale in [sid for sid, until in self._sessions.items() if until <= now]:
            del self._sessions[stale]
        while len(self._sessions) >= self.max_sessions:
            del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = now + self.session_seconds
        return session_id

    def end(self, session_id: str | None) -> None:
        """End one session (log-out)."""
        if session_id is not None:
            self._sessions.pop(session_id, None)


def must_log_in(login: SeatLogin | None, tokens: PageTokens, request: Request) -> bool:
    """Whether ``request`` came from the network without a logged-in session (whatever its path)."""
    if arrived_on_loopback(request.scope):
        return False
    return login is None or not login.logged_in(tokens.session_of(request))


def login_required(login: SeatLogin | None, tokens: PageTokens, request: Request) -> bool:
    """Whether ``request`` must log in before it is answered (the open paths never)."""
    path = request.url.path
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return False
    return must_log_in(login, tokens, request)


class SeatLoginMiddleware:
    """Sends a request from the network without a logged-in session to ``/login`` (pages) or a 401."""

    def __init__(self, app: ASGIApp, login: SeatLogin | None, tokens: PageTokens) -> None:
        self.app = app
        self.login = login
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a local or logged-in request on; answer any other."""
        if scope["type"] != "http":
            if scope["type"] == "websocket" and not arrived_on_loopback(scope):
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not login_required(self.login, self.tokens, request):
            await self.app(scope, receive, send)
            return
        response: Response
        if request.method == "GET" and request.url.path == "/":
            response = RedirectResponse(scope.get("root_path", "") + "/login", status_code=303)
        else:
            response = PlainTextResponse("log in first: this page is reached over the network\n", 401)
        response.headers["Cache-Control"] = "no-store"
        await response(scope, receive, send)


def client_address(request: Request) -> str:
    """The client's address, for the throttle and the log."""
    return request.client.host if request.client else "unknown"


class LoginViews:
    """``GET /login`` (the form), ``POST /login`` and ``POST /logout``.

    :param render: renders the log-in page for a request: ``render(request, status, message_key,
        csrf_token)`` (the app supplies its template and language).
    """

    def __init__(
        self,
        login: SeatLogin | None,
        tokens: PageTokens,
        render: Callable[[Request, int, str | None, str], Response],
    ) -> None:
        self.login = login
        self.tokens = tokens
        self.render = render

    def routes(self) -> list[BaseRoute]:
        """The log-in routes."""
        return [
            Route("/login", self.form, methods=["GET"], name="login"),
            Route("/login", self.submit, methods=["POST"], name="login_submit"),
            Route("/logout", self.logout, methods=["POST"], name="logout"),
        ]

    def _page(self, request: Request, status: int = 200, message_key: str | None = None) -> Response:
        session_id, token = self.tokens.begin(request)
        if self.login is None or not self.login.configured():
            status, message_key = (503 if request.method == "POST" else 200), "login.not_set"
        response = self.render(request, status, message_key, token)
        self.tokens.set_cookie(response, session_id)
        return response

    def _home(self, request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "") + "/", status_code=303)

    async def form(self, request: Request) -> Response:
        """The log-in form; on loopback or when logged in already, the page itself."""
        if not must_log_in(self.login, self.tokens, request):
            return self._home(request)
        return self._page(request)

    async def submit(self, request: Request) -> Response:
        """Check the form's token, the throttle and the password; a success starts a new session."""
        form = await read_form(request)
        if form is None or not self.tokens.check(request, form.get("csrf")):
            return self._page(request, 403, "login.expired")
        if self.login is None or not self.login.configured():
            return self._page(request)
        address = client_address(request)
        wait = self.login.limiter.retry_after(REP_LOGIN, address)
        if wait is not None:
            # The password is neither checked (a guess now tells nothing) nor logged.
            logger.warning("seat page log-in from %s throttled for %.0f s after failures", address, wait)
            response = self._page(request, 429, "login.throttled")
            response.headers["Retry-After"] = str(max(math.ceil(wait), 1))
            return response
        password = form.get("password", "")
        if not await run_in_threadpool(self.login.check, password):
            self.login.limiter.failed(REP_LOGIN, address)
            logger.warning("seat page log-in from %s failed: wrong password", address)
            return self._page(request, 401, "login.failed")
        self.login.limiter.succeeded(REP_LOGIN, address)
        self.login.end(self.tokens.session_of(request))
        logger.info("seat page log-in from %s", address)
        response = self._home(request)
        self.tokens.set_cookie(response, self.login.start())
        return response

    async def logout(self, request: Request) -> Response:
        """End this session (the page's token required) and go back to the form."""
        form = await read_form(request)
        if form is None or not self.tokens.check(request, form.get("csrf")):
            return PlainTextResponse("missing or wrong CSRF token; reload the page\n", 403)
        if self.login is not None:
            self.login.end(self.tokens.session_of(request))
        logger.info("seat page log-out from %s", client_address(request))
        response = RedirectResponse(request.scope.get("root_path", "") + "/login", status_code=303)
        response.delete_cookie(self.tokens.cookie_name, path="/", httponly=True, samesite="strict")
        return response


#: Log-in forms are small; anything larger is refused before it is parsed.
MAX_FORM_BYTES = 4096


async def read_form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form body, or None when it is over :data:`MAX_FORM_BYTES` or not a form."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
