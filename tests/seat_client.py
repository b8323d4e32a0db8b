"""A test client for the seat page that behaves like the rep's browser: loopback Host, the page's cookie."""

from __future__ import annotations

import re

from starlette.testclient import TestClient
from starlette.types import ASGIApp

BASE_URL = "http://127.0.0.1:8330"
_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def page_token(html: str) -> str:
    """The write token a served page carries."""
    match = _META.search(html)
    assert match is not None, "the page carries no write token"
    return match.group(1)


class SeatClient(TestClient):
    """A ``TestClient`` on the seat page's loopback address that has loaded the page once.

    ``page_token`` is the token that page carried; it works only with the session cookie the
    client got with it, as in a browser.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, base_url=BASE_URL)
        self.page_token = page_token(self.get("/").text)
