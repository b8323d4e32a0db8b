"""Console test data shared by the unit and integration suites: calls, users, recordings, log-ins, requests.

The same six calls (two teams, four reps, three recordings as real WAV files)
are searched on SQLite (``tests/unit/test_console_search.py``), on PostgreSQL
(``tests/integration/test_console_pg.py``) and in Chromium
(``tests/integration/test_console_browser.py``), so a difference between them
is the database's or the browser's, not the data's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.requests import Request

from agent.centre.auth import Principal, password_fingerprint
from agent.centre.context import SESSION_COOKIE, ConsoleContext, ConsoleSettings, make_context
from storage.models import AuditEntry, CallRecord, Recording, User

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse"
SECRET = b"s" * 32

# uuid: (rep, team, seat, line, direction, e164, raw, start offset hours, disposition, talk, notes, recorded)
CALLS: dict[str, tuple[Any, ...]] = {
    "c-a1": ("alice", "north", "s1", "L1", "in", "+8613812345678", "13812345678", 0, "answered", 120.0,
             "客户要报价 wants a QUOTE", True),
    "c-a2": ("alice", "north", "s1", "L1", "out", "+8613900001111", "139 0000 1111", 1, "missed", None,
             None, False),
    "c-b1": ("bob", "north", "s2", "L1", "in", "+862212345678", "022-1234 5678", 2, "answered", 30.0,
             "100% sure", True),
    "c-c1": ("carol", "south", "s3", "L2", "out", "+8615012345678", "15012345678", 24, "answered", 600.0,
             "call back", True),
    "c-c2": ("carol", "south", "s3", "L2", "in", None, None, 25, "missed", None, None, False),
    "c-d1": ("dave", "south", "s4", "L1", "in", "+8613812349999", "13812349999", -24, "answered", 45.0,
             None, False),
}  # fmt: skip

MANAGER = Principal(1, "boss", "manager", None, None, "en")
LEAD_NORTH = Principal(2, "nina", "lead", "north", None, "en")
LEAD_SOUTH = Principal(5, "sam", "lead", "south", None, "en")
REP_ALICE = Principal(3, "alice", "rep", "north", "alice", "en")
ADMIN = Principal(4, "root", "admin", None, None, "en")


def write_wav(path: Path, seconds: float = 2.0, rate: int = 8000) -> None:
    """A 440 Hz tone as 16-bit WAV at ``path`` (directories made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16")


def seed(engine: Engine, data_dir: Path) -> dict[str, int]:
    """The calls of :data:`CALLS`, recordings as real WAV files under ``data_dir``; recording ids by call."""
    recording_ids = {}
    with Session(engine) as session, session.begin():
        for uuid, row in CALLS.items():
            rep, team, seat, line, direction, e164, raw, hours, disp, talk, notes, rec = row
            started = T0 + timedelta(hours=hours)
            session.add(
                CallRecord(
                    uuid=uuid, seat=seat, device_id="d", line=line, rep=rep, team=team, direction=direction,
                    number_e164=e164, number_raw=raw, absence=None if raw else "P", started_at=started,
                    answered_at=started if disp == "answered" else None,
                    ended_at=started + timedelta(seconds=(talk or 0) + 10), ring_seconds=10.0,
                    talk_seconds=talk, disposition=disp, notes=notes,
                )
            )  # fmt: skip
            session.flush()
            if rec:
                relative = f"recordings/2026/03/02/{uuid}.wav"
                write_wav(data_dir / relative)
                recording = Recording(
                    call_uuid=uuid, path_or_uri=relative, codec="wav", sample_rate=8000, channels=1,
                    seconds=2.0, status="complete",
                )  # fmt: skip
                session.add(recording)
                session.flush()
                recording_ids[uuid] = recording.id
    return recording_ids


def audit_rows(engine: Engine, *actions: str) -> list[tuple[str | None, str, str | None]]:
    """``(user, action, target)`` of every audit row in order, only ``actions`` when given."""
    with Session(engine) as session:
        return [
            (e.user_login, e.action, e.target)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if not actions or e.action in actions
        ]


# -- over HTTP (a TestClient) -------------------------------------------------------------


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def log_in(client: Any, login: str, password: str = PASSWORD) -> None:
    """Log ``client`` (a Starlette ``TestClient``) in afresh as ``login``."""
    client.cookies.clear()
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"login": login, "password": password, "csrf": token, "next": "/calls"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


# -- a view called directly ---------------------------------------------------------------


def console_context(engine: Engine, recordings_dir: Path, **settings: Any) -> ConsoleContext:
    """A console context over ``engine`` with the test secret (``settings`` override the rest)."""
    return make_context(engine, ConsoleSettings(secret=SECRET, recordings_dir=recordings_dir, **settings))


def session_cookie(ctx: ConsoleContext, login: str) -> str:
    """A signed session cookie value for the user ``login`` (as a log-in would set it)."""
    with Session(ctx.engine) as session:
        user = session.scalars(select(User).where(User.login == login)).one()
        payload = {"uid": user.id, "pw": password_fingerprint(user.password_hash), "csrf": "test-csrf"}
    return ctx.signer.sign(payload)


def make_request(
    path: str,
    query: str = "",
    *,
    cookie: str | None = None,
    path_params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> Request:
    """A Starlette request for ``path`` as the app's router would hand it to a view (no body)."""
    raw = [(b"host", b"127.0.0.1")]
    if cookie is not None:
        raw.append((b"cookie", f"{SESSION_COOKIE}={cookie}".encode()))
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.9", 50000),
        "path": path,
        "root_path": "",
        "query_string": query.encode(),
        "headers": raw,
        "path_params": path_params or {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    return Request(scope, receive)
