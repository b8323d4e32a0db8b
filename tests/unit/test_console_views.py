"""The console's views called directly: a test context and a Starlette request, no app and no HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from console_factories import (
    PASSWORD,
    audit_rows,
    console_context,
    make_request,
    seed,
    session_cookie,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.centre import access
from agent.centre.app import ROUTES
from agent.centre.auth import create_user
from agent.centre.context import ConsoleContext
from agent.centre.views import audit, calls, stats
from storage.db import make_engine, upgrade
from storage.report import ReportRow
from storage.repository import add_audit

#: Routes anyone may reach: the log-in form and its post, log-out (CSRF-checked), the health check.
PUBLIC = {"/login", "/logout", "/healthz"}


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
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "alice", PASSWORD, role="rep", rep="alice")
        create_user(session, "root", PASSWORD, role="admin")
    return console_context(engine, tmp_path)


def uuids(html: str) -> list[str]:
    return re.findall(r'data-uuid="([^"]+)"', html)


def text_of(response: object) -> str:
    body = getattr(response, "body", b"")
    assert isinstance(body, bytes)
    return body.decode("utf-8")


# -- the calls search ---------------------------------------------------------------------


async def test_calls_search_view_scopes_to_the_leads_team(ctx: ConsoleContext) -> None:
    request = make_request("/calls", "number=5678", cookie=session_cookie(ctx, "nina"))
    response = await calls.calls_page(ctx, request)
    assert response.status_code == 200
    html = text_of(response)
    assert sorted(uuids(html)) == ["c-a1", "c-b1"]  # carol's c-c1 matches too but is the south's
    assert "13812345678" in html  # leads see numbers whole


async def test_calls_search_view_masks_for_a_rep(ctx: ConsoleContext) -> None:
    request = make_request("/calls", "number=5678", cookie=session_cookie(ctx, "alice"))
    html = text_of(await calls.calls_page(ctx, request))
    assert uuids(html) == ["c-a1"]
    assert "138****5678" in html
    assert "13812345678" not in html


async def test_calls_search_view_refuses_a_malformed_query_beside_the_form(ctx: ConsoleContext) -> None:
    request = make_request("/calls", "talk_min=-3", cookie=session_cookie(ctx, "boss"))
    response = await calls.calls_page(ctx, request)
    assert response.status_code == 400
    assert "talk_min" in text_of(response)


async def test_calls_search_view_sends_a_visitor_without_a_session_to_log_in(ctx: ConsoleContext) -> None:
    response = await calls.calls_page(ctx, make_request("/calls", "number=5678"))
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fcalls%3Fnumber%3D5678"


async def test_calls_search_view_is_not_for_admins(ctx: ConsoleContext) -> None:
    response = await calls.calls_page(ctx, make_request("/calls", cookie=session_cookie(ctx, "root")))
    assert response.status_code == 403


async def test_export_view_writes_its_audit_row_with_the_clients_address(ctx: ConsoleContext) -> None:
    request = make_request("/calls/export.csv", "team=north", cookie=session_cookie(ctx, "boss"))
    response = await calls.export_csv(ctx, request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert audit_rows(ctx.engine, "export_csv") == [("boss", "export_csv", "3 calls")]


# -- the audit page -----------------------------------------------------------------------


def add_rows(ctx: ConsoleContext) -> None:
    with Session(ctx.engine) as session, session.begin():
        at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
        add_audit(session, "play", user="nina", target="recording:1", detail="call:c-a1", at=at)
        add_audit(session, "download", user="boss", target="recording:2", remote_addr="10.0.0.5", at=at)
        add_audit(session, "play", user="boss", target="recording:3", at=datetime(2026, 3, 5, 10, tzinfo=UTC))


async def test_audit_view_lists_filters_and_pages_for_a_manager(ctx: ConsoleContext) -> None:
    add_rows(ctx)
    cookie = session_cookie(ctx, "boss")
    html = text_of(await audit.audit_page(ctx, make_request("/audit", cookie=cookie)))
    assert re.findall(r'<td class="action" data-action="([^"]+)"', html) == ["play", "download", "play"]

    narrowed = await audit.audit_page(ctx, make_request("/audit", "action=play&to=2026-03-03", cookie=cookie))
    html = text_of(narrowed)
    assert re.findall(r'<td class="target">([^<]+)</td>', html) == ["recording:1"]


async def test_audit_view_is_for_managers_and_admins_only(ctx: ConsoleContext) -> None:
    add_rows(ctx)
    admin = await audit.audit_page(ctx, make_request("/audit", cookie=session_cookie(ctx, "root")))
    assert admin.status_code == 200
    for login in ("nina", "alice"):
        refused = await audit.audit_page(ctx, make_request("/audit", cookie=session_cookie(ctx, login)))
        assert refused.status_code == 403


async def test_audit_view_refuses_a_bad_date(ctx: ConsoleContext) -> None:
    request = make_request("/audit", "from=yesterday", cookie=session_cookie(ctx, "boss"))
    assert (await audit.audit_page(ctx, request)).status_code == 400


async def test_a_cross_site_request_is_refused_before_the_session_is_read(ctx: ConsoleContext) -> None:
    request = make_request(
        "/audit", cookie=session_cookie(ctx, "boss"), headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert (await audit.audit_page(ctx, request)).status_code == 403


# -- one place for rights -----------------------------------------------------------------


def test_every_route_but_the_public_ones_checks_rights_through_requires() -> None:
    for path, view, _, _ in ROUTES:
        roles = getattr(view, "roles", None)
        if path in PUBLIC:
            assert roles is None, path
        else:
            assert roles, f"{path} is not wrapped in requires()"
            assert roles <= set(access.EVERYONE)


def test_admins_reach_only_the_start_page_the_language_the_audit_log_users_and_the_lead_upload() -> None:
    admin_paths = {path for path, view, _, _ in ROUTES if "admin" in getattr(view, "roles", ())}
    assert admin_paths - {p for p in admin_paths if p.startswith("/leads/import")} == {
        "/",
        "/language",
        "/audit",
        "/users",
    }
    assert {p for p in admin_paths if p.startswith("/leads/")} == {
        "/leads/import", "/leads/import/{upload_id}", "/leads/import/{upload_id}/rejects.csv",
        "/leads/import/{upload_id}/changes.csv",
    }  # fmt: skip


# -- statistics: one ranking --------------------------------------------------------------


def test_ranking_orders_by_talk_time_then_calls_then_name() -> None:
    rows = [
        ReportRow("bob", calls=3, talk_seconds=100.0),
        ReportRow("amy", calls=5, talk_seconds=100.0),
        ReportRow("cid", calls=1, talk_seconds=300.0),
        ReportRow("abe", calls=5, talk_seconds=100.0),
    ]
    assert [r.key for r in stats.ranking(rows)] == ["cid", "abe", "amy", "bob"]
