"""The console explains itself: a missing recording, the live rows' states, the audit page's words."""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from console_factories import (
    MANAGER,
    PASSWORD,
    audit_rows,
    console_context,
    make_request,
    seed,
    session_cookie,
)
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from starlette.requests import Request

from agent.centre.auth import create_user, list_users
from agent.centre.context import ConsoleContext
from agent.centre.i18n import catalog
from agent.centre.listen import line_state, live_calls
from agent.centre.queries import AUDIT_ACTIONS, detail_fields
from agent.centre.views import audit, calls, users
from agent.centre.views.recordings import MISSING, PLAYABLE, UNREACHABLE, availability
from storage.blobstore import BlobInfo, BlobStoreError, DirectoryBlobStore
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Recording
from storage.repository import add_audit


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ctx(engine: Engine, tmp_path: Path) -> ConsoleContext:
    seed(engine, tmp_path)
    with Session(engine) as session, session.begin():
        create_user(session, "boss", PASSWORD, role="manager")
        create_user(session, "root", PASSWORD, role="admin")
    return console_context(engine, tmp_path)


def text_of(response: object) -> str:
    body = getattr(response, "body", b"")
    assert isinstance(body, bytes)
    return body.decode("utf-8")


def recording(path: str, rid: int = 7) -> Recording:
    return Recording(id=rid, call_uuid="c-x", path_or_uri=path, codec="wav", status="complete")


class BrokenStore(DirectoryBlobStore):
    """A store whose every stat fails, as an unreachable object store's does."""

    def stat(self, key: str) -> BlobInfo | None:
        raise BlobStoreError("connection refused")


# -- a recording's availability -----------------------------------------------------------


def test_a_legacy_file_that_is_there_is_playable(tmp_path: Path) -> None:
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "a.wav").write_bytes(b"RIFF")
    store = DirectoryBlobStore(tmp_path / "store")
    assert availability(recording("recordings/a.wav"), tmp_path, store) == PLAYABLE


def test_a_missing_legacy_file_is_logged_with_the_path_tried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DirectoryBlobStore(tmp_path / "store")
    with caplog.at_level(logging.WARNING, logger="agent.centre.views.recordings"):
        assert availability(recording("recordings/gone.wav"), tmp_path, store) == MISSING
    assert str(tmp_path / "recordings" / "gone.wav") in caplog.text
    assert "recording 7" in caplog.text


def test_a_path_outside_the_recordings_directory_is_missing(tmp_path: Path) -> None:
    outside = tmp_path.parent / "elsewhere.wav"
    store = DirectoryBlobStore(tmp_path / "store")
    assert availability(recording(str(outside)), tmp_path / "root", store) == MISSING
    (tmp_path / "root").mkdir()
    assert availability(recording("../../etc/passwd"), tmp_path / "root", store) == MISSING


def test_a_recordings_directory_that_is_not_there_is_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "not-mounted"
    with caplog.at_level(logging.WARNING, logger="agent.centre.views.recordings"):
        found = availability(recording("recordings/a.wav"), root, DirectoryBlobStore(root / "store"))
    assert found == UNREACHABLE
    assert str(root / "recordings" / "a.wav") in caplog.text


def test_a_store_key_is_asked_of_the_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = DirectoryBlobStore(tmp_path / "store")
    key = "2026/03/02/c-x.wav"
    with caplog.at_level(logging.WARNING, logger="agent.centre.views.recordings"):
        assert availability(recording(key), tmp_path, store) == MISSING
    assert key in caplog.text
    assert "DirectoryBlobStore" in caplog.text
    body = b"RIFF0000WAVE"
    store.put_stream(key, [body], hashlib.sha256(body).hexdigest(), len(body))
    assert availability(recording(key), tmp_path, store) == PLAYABLE


def test_a_store_that_cannot_be_read_is_unreachable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = "2026/03/02/c-x.wav"
    with caplog.at_level(logging.WARNING, logger="agent.centre.views.recordings"):
        assert availability(recording(key), tmp_path, BrokenStore(tmp_path)) == UNREACHABLE
    assert key in caplog.text
    assert "connection refused" in caplog.text


# -- the call page ------------------------------------------------------------------------


async def test_the_call_page_says_a_recording_is_missing_instead_of_a_dead_player(
    ctx: ConsoleContext, tmp_path: Path
) -> None:
    (tmp_path / "recordings/2026/03/02/c-a1.wav").unlink()
    cookie = session_cookie(ctx, "boss")
    request = make_request("/calls/c-a1", cookie=cookie, path_params={"call_uuid": "c-a1"})
    html = text_of(await calls.call_page(ctx, request))
    assert "<audio" not in html
    assert re.search(r'class="recording-problem" data-reason="missing"', html)
    assert "The recording file is missing" in html

    zh = make_request("/calls/c-a1", "lang=zh-CN", cookie=cookie, path_params={"call_uuid": "c-a1"})
    assert "录音文件缺失" in text_of(await calls.call_page(ctx, zh))

    # The one that is there still gets its player.
    request = make_request("/calls/c-b1", cookie=cookie, path_params={"call_uuid": "c-b1"})
    html = text_of(await calls.call_page(ctx, request))
    assert "<audio" in html
    assert 'data-reason="missing"' not in html


async def test_the_call_page_says_the_store_is_unreachable(ctx: ConsoleContext, tmp_path: Path) -> None:
    with Session(ctx.engine) as session, session.begin():
        session.execute(
            update(Recording).where(Recording.call_uuid == "c-a1").values(path_or_uri="2026/03/02/c-a1.wav")
        )
        assert session.scalar(select(Recording.path_or_uri).where(Recording.call_uuid == "c-a1"))
    broken = console_context(ctx.engine, tmp_path, recordings_store=BrokenStore(tmp_path))
    request = make_request(
        "/calls/c-a1", cookie=session_cookie(broken, "boss"), path_params={"call_uuid": "c-a1"}
    )
    html = text_of(await calls.call_page(broken, request))
    assert 'data-reason="unreachable"' in html
    assert "cannot be reached" in html


# -- live rows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "answered", "state"),
    [("in", False, "ringing"), ("out", False, "dialing"), ("in", True, "talking"), ("out", True, "talking")],
)
def test_a_live_rows_line_state(direction: str, answered: bool, state: str) -> None:
    assert line_state(direction, answered) == state


def test_live_rows_time_the_state_from_the_answer(engine: Engine) -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        for uuid, direction, answered in (("l-1", "in", True), ("l-2", "out", False)):
            session.add(
                CallRecord(
                    uuid=uuid, seat="s1", device_id="d", line="L1", rep="alice", team="north",
                    direction=direction, number_e164="+8613700001111", number_raw="13700001111",
                    started_at=now - timedelta(seconds=90),
                    answered_at=now - timedelta(seconds=30) if answered else None,
                )
            )  # fmt: skip
    with Session(engine) as session:
        rows = live_calls(session, MANAGER, set(), masked=False, now=now)
    assert [(r.uuid, r.state, r.state_seconds, r.elapsed_seconds) for r in rows] == [
        ("l-1", "talking", 30.0, 90.0),
        ("l-2", "dialing", 90.0, 90.0),
    ]


# -- the audit page -----------------------------------------------------------------------


def test_every_action_the_code_writes_is_translated() -> None:
    for lang in ("en", "zh-CN"):
        strings = catalog(lang)
        assert [a for a in AUDIT_ACTIONS if f"audit.action.{a}" not in strings] == [], lang


def test_audit_details_are_fields_when_json_and_text_otherwise() -> None:
    assert detail_fields('{"reason": "lunch", "previous_seconds": 12.5, "x": [1]}') == [
        ("reason", "lunch"),
        ("previous_seconds", "12.5"),
        ("x", "[1]"),
    ]
    assert detail_fields("from=bob") is None
    assert detail_fields("{not json") is None
    assert detail_fields("[1, 2]") is None
    assert detail_fields(None) is None


async def test_audit_page_translates_hides_automatic_rows_and_escapes_details(ctx: ConsoleContext) -> None:
    with Session(ctx.engine) as session, session.begin():
        add_audit(session, "play", user="boss", target="recording:1", detail="call:c-a1")
        add_audit(session, "rep_state", user="alice", target="paused", detail='{"reason": "<b>x</b>"}')
    cookie = session_cookie(ctx, "boss")
    html = text_of(await audit.audit_page(ctx, make_request("/audit", cookie=cookie)))
    assert re.findall(r'data-action="([^"]+)"', html) == ["play"]
    assert "Played a recording" in html

    shown = await audit.audit_page(ctx, make_request("/audit", "automatic=1&lang=zh-CN", cookie=cookie))
    html = text_of(shown)
    assert re.findall(r'data-action="([^"]+)"', html) == ["rep_state", "play"]
    assert "坐席状态变化" in html
    assert "播放录音" in html
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<dt>原因</dt>" in html

    # Asking for the automatic action by name shows it without the box ticked.
    only = await audit.audit_page(ctx, make_request("/audit", "action=rep_state", cookie=cookie))
    assert re.findall(r'data-action="([^"]+)"', text_of(only)) == ["rep_state"]


# -- the users page -----------------------------------------------------------------------


def form_request(ctx: ConsoleContext, login: str, body: dict[str, str]) -> Request:
    cookie = session_cookie(ctx, login)
    encoded = urllib.parse.urlencode({"csrf": "test-csrf", **body}).encode()
    scope = make_request("/users", cookie=cookie, method="POST").scope

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": encoded, "more_body": False}

    return Request(scope, receive)


def user_row(ctx: ConsoleContext, login: str) -> dict[str, object]:
    with Session(ctx.engine) as session:
        return next(u for u in list_users(session) if u["login"] == login)


async def test_the_users_page_is_for_admins_only(ctx: ConsoleContext, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "alice", PASSWORD, role="rep", rep="alice")
    admin = await users.users_page(ctx, make_request("/users", cookie=session_cookie(ctx, "root")))
    assert admin.status_code == 200
    assert 'data-login="boss"' in text_of(admin)
    for login in ("boss", "nina", "alice"):
        refused = await users.users_page(ctx, make_request("/users", cookie=session_cookie(ctx, login)))
        assert refused.status_code == 403, login
        posted = await users.users_page(ctx, form_request(ctx, login, {"op": "disable", "login": "root"}))
        assert posted.status_code == 403
    assert user_row(ctx, "root")["disabled"] is False
    assert getattr(users.users_page, "roles", None) == {"admin"}


async def test_the_users_page_changes_users_by_the_clis_rules_and_audits_each(ctx: ConsoleContext) -> None:
    ok = await users.users_page(
        ctx, form_request(ctx, "root", {"op": "add", "login": "zoe", "role": "rep", "rep": "zoe",
                                        "team": "north", "password": "a long secret"})
    )  # fmt: skip
    assert ok.status_code == 303
    assert user_row(ctx, "zoe")["team"] == "north"

    # The CLI's rules: a rep needs a rep name; a weak password is refused.
    for body in (
        {"op": "add", "login": "yan", "role": "rep", "password": "a long secret"},
        {"op": "add", "login": "yan", "role": "lead", "password": "a long secret"},
        {"op": "add", "login": "yan", "role": "manager", "password": "x"},
        {"op": "add", "login": "yan", "role": "boss", "password": "a long secret"},
        {"op": "update", "login": "zoe", "role": "rep", "rep": ""},
    ):
        refused = await users.users_page(ctx, form_request(ctx, "root", body))
        assert refused.status_code == 400, body
        assert 'id="users-problem"' in text_of(refused)

    for body in (
        {"op": "update", "login": "zoe", "role": "lead", "team": "south", "rep": ""},
        {"op": "disable", "login": "zoe"},
        {"op": "enable", "login": "zoe"},
        {"op": "password", "login": "zoe", "password": "another long one"},
    ):
        assert (await users.users_page(ctx, form_request(ctx, "root", body))).status_code == 303, body
    row = user_row(ctx, "zoe")
    assert (row["role"], row["team"], row["disabled"]) == ("lead", "south", False)
    assert [a for _, a, _ in audit_rows(ctx.engine) if a.startswith("user_")] == [
        "user_add", "user_update", "user_disable", "user_enable", "user_password",
    ]  # fmt: skip
    assert all(t == "user:zoe" for _, a, t in audit_rows(ctx.engine) if a.startswith("user_"))


async def test_a_users_form_without_the_csrf_token_is_refused(ctx: ConsoleContext) -> None:
    request = form_request(ctx, "root", {"op": "disable", "login": "boss", "csrf": "forged"})
    assert (await users.users_page(ctx, request)).status_code == 403
    assert user_row(ctx, "boss")["disabled"] is False
