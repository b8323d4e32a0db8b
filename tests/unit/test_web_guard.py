"""The web guards: Host allow-list, streamed body limit, cookie-bound page tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from agent.web.guard import (
    BodyLimitMiddleware,
    HostGuardMiddleware,
    PageTokens,
    allowed_hosts,
    host_of,
    is_loopback,
)


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8330", "127.0.0.1"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8330", "::1"),
        ("seat-07.example.:80", "seat-07.example"),
        ("", ""),
    ],
)
def test_host_of(header: str, host: str) -> None:
    assert host_of(header) == host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True)]
    + [("0.0.0.0", False), ("192.0.2.7", False), ("seat-07", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_allowed_hosts_are_loopback_the_listen_address_and_what_is_named() -> None:
    assert allowed_hosts("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert "192.0.2.7" in allowed_hosts("192.0.2.7")
    assert allowed_hosts("0.0.0.0", ["Seat-07.example:8330"]) == {
        "localhost",
        "127.0.0.1",
        "::1",
        "seat-07.example",
    }


def _echo_app(*middleware: Middleware) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        return PlainTextResponse(f"{len(body)}")

    return Starlette(routes=[Route("/", echo, methods=["GET", "POST"])], middleware=list(middleware))


def test_an_unknown_host_is_refused_before_any_handler() -> None:
    app = _echo_app(Middleware(HostGuardMiddleware, hosts=allowed_hosts("127.0.0.1")))
    client = TestClient(app, base_url="http://127.0.0.1:8330")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"host": "localhost:8330"}).status_code == 200
    rebinding = client.get("/", headers={"host": "attacker.example:8330"})
    assert rebinding.status_code == 421
    assert "unknown host" in rebinding.text


def test_a_declared_oversize_body_is_refused_unread() -> None:
    app = _echo_app(Middleware(BodyLimitMiddleware, max_bytes=1000))
    client = TestClient(app)
    assert client.post("/", content=b"x" * 1000).text == "1000"
    refused = client.post("/", content=b"x" * 1001)
    assert refused.status_code == 413


def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(1000):
            yield b"x" * 1024

    app = _echo_app(Middleware(BodyLimitMiddleware, max_bytes=10 * 1024))
    refused = TestClient(app).post("/", content=chunks())
    assert refused.status_code == 413


def test_a_non_numeric_content_length_is_refused() -> None:
    app = _echo_app(Middleware(BodyLimitMiddleware, max_bytes=1000))
    assert TestClient(app).post("/", headers={"content-length": "12x"}, content=b"").status_code == 413


def _token_app(tokens: PageTokens) -> Starlette:
    async def page(request: Request) -> Response:
        response = JSONResponse({})
        token = tokens.issue(request, response)
        response.body = response.render({"token": token})
        response.headers["content-length"] = str(len(response.body))
        return response

    async def write(request: Request) -> Response:
        ok = tokens.check(request, request.headers.get("x-csrf-token"))
        return PlainTextResponse("ok" if ok else "refused", 200 if ok else 403)

    return Starlette(routes=[Route("/", page), Route("/write", write, methods=["POST"])])


def test_a_page_token_works_only_with_its_own_cookie() -> None:
    tokens = PageTokens("cti_seat")
    client = TestClient(_token_app(tokens))
    first = client.get("/")
    cookie = first.cookies["cti_seat"]
    set_cookie = first.headers["set-cookie"].lower()
    assert "httponly" in set_cookie
    assert "samesite=strict" in set_cookie
    token = first.json()["token"]
    assert client.post("/write", headers={"x-csrf-token": token}).text == "ok"
    # The same session keeps its token across reloads.
    assert client.get("/").json()["token"] == token
    assert client.cookies["cti_seat"] == cookie

    stranger = TestClient(_token_app(tokens))
    # The token without the cookie (a cross-site request: SameSite=Strict withholds it) fails.
    assert stranger.post("/write", headers={"x-csrf-token": token}).status_code == 403
    # Another session's cookie with this token fails too.
    stranger.get("/")
    assert stranger.post("/write", headers={"x-csrf-token": token}).status_code == 403
    assert client.post("/write").status_code == 403


def test_a_restart_invalidates_tokens() -> None:
    client = TestClient(_token_app(PageTokens("cti_seat")))
    token = client.get("/").json()["token"]
    restarted = PageTokens("cti_seat")
    request_cookie = client.cookies["cti_seat"]
    other = TestClient(_token_app(restarted), cookies={"cti_seat": request_cookie})
    assert other.post("/write", headers={"x-csrf-token": token}).status_code == 403


def test_a_malformed_session_cookie_is_no_session() -> None:
    tokens = PageTokens("cti_seat")
    client = TestClient(_token_app(tokens), cookies={"cti_seat": "../../etc"})
    assert client.post("/write", headers={"x-csrf-token": "x"}).status_code == 403
    fresh = client.get("/")
    assert fresh.cookies["cti_seat"] != "../../etc"
