"""The customer pages: scope, masking, escaping, keyset paging and the audit row of each view."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from console_factories import PASSWORD, T0, audit_rows, console_context, make_request, seed, session_cookie
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.centre.auth import create_user
from agent.centre.context import ConsoleContext
from agent.centre.views import customers
from storage.db import make_engine, upgrade
from storage.models import CustomerPhone, CustomerRecord, DispositionRecord, Transfer
from storage.timeline import Cursor, Viewer, timeline


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
        create_user(session, "sam", PASSWORD, role="lead", team="south")
        create_user(session, "alice", PASSWORD, role="rep", rep="alice")
        create_user(session, "root", PASSWORD, role="admin")
        customer = CustomerRecord(name="<img src=x onerror=alert(1)>", company="ACME", notes="VIP <b>")
        customer.phones = [
            CustomerPhone(number_e164="+8613812345678", number_raw="13812345678"),  # alice's c-a1 (north)
            CustomerPhone(number_e164="+8615012345678", number_raw="15012345678"),  # carol's c-c1 (south)
        ]
        session.add(customer)
        session.add(CustomerRecord(name="Other", company=None))
        session.flush()
        session.add(
            DispositionRecord(uuid="d-1", rep="alice", customer_id=customer.id, code="call_back",
                              note="<script>x</script>", at=T0 + timedelta(hours=3))
        )  # fmt: skip
        session.add(
            Transfer(actor="nina", action="to_rep", customer_id=customer.id, to_team="north", to_rep="alice",
                     at=T0 - timedelta(hours=1))
        )  # fmt: skip
    return console_context(engine, tmp_path)


def body(response: object) -> str:
    raw = getattr(response, "body", b"")
    assert isinstance(raw, bytes)
    return raw.decode("utf-8")


async def page(ctx: ConsoleContext, login: str, query: str = "", customer_id: int = 1) -> tuple[int, str]:
    request = make_request(
        f"/customers/{customer_id}",
        query,
        cookie=session_cookie(ctx, login),
        path_params={"customer_id": customer_id},
    )
    response = await customers.customer_page(ctx, request)
    return response.status_code, body(response)


async def test_manager_sees_calls_from_both_seats_a_disposition_and_a_transfer_newest_first(
    ctx: ConsoleContext,
) -> None:
    status, html = await page(ctx, "boss")
    assert status == 200
    kinds = [part.split('"')[0] for part in html.split('data-kind="')[1:]]
    assert kinds == [
        "call",
        "disposition",
        "call",
        "transfer",
    ]  # c-c1 (+24 h), d-1 (+3 h), c-a1 (0), assign (-1 h)
    assert "/calls/c-a1" in html
    assert "/calls/c-c1" in html
    assert "/recordings/" in html


async def test_names_and_notes_are_shown_as_text(ctx: ConsoleContext) -> None:
    _, html = await page(ctx, "boss")
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;" in html
    assert "VIP &lt;b&gt;" in html


async def test_a_lead_sees_the_other_teams_call_but_may_not_open_or_play_it(ctx: ConsoleContext) -> None:
    status, html = await page(ctx, "nina")
    assert status == 200
    assert "/calls/c-a1" in html
    assert "/calls/c-c1" not in html
    assert html.count("<audio") == 1


async def test_a_rep_sees_numbers_masked_and_a_customer_they_never_called_is_not_found(
    ctx: ConsoleContext,
) -> None:
    status, html = await page(ctx, "alice")
    assert status == 200
    assert "138****5678" in html
    assert "13812345678" not in html
    status, _ = await page(ctx, "alice", customer_id=2)
    assert status == 404


async def test_admins_are_refused(ctx: ConsoleContext) -> None:
    status, _ = await page(ctx, "root")
    assert status == 403


async def test_each_view_is_audited(ctx: ConsoleContext) -> None:
    await page(ctx, "boss")
    request = make_request(
        "/customers/1.json", cookie=session_cookie(ctx, "nina"), path_params={"customer_id": 1}
    )
    response = await customers.customer_json(ctx, request)
    assert response.status_code == 200
    data = json.loads(body(response))
    assert [e["kind"] for e in data["entries"]] == ["call", "disposition", "call", "transfer"]
    assert audit_rows(ctx.engine, "view_customer") == [
        ("boss", "view_customer", "customer:1"),
        ("nina", "view_customer", "customer:1"),
    ]


async def test_a_malformed_cursor_is_a_bad_request(ctx: ConsoleContext) -> None:
    status, _ = await page(ctx, "boss", "before=nonsense")
    assert status == 400


def test_keyset_pages_neither_repeat_nor_skip(ctx: ConsoleContext) -> None:
    seen = []
    cursor: Cursor | None = None
    with Session(ctx.engine) as session:
        while True:
            found = timeline(session, 1, Viewer(everything=True), before=cursor, per_page=1)
            assert found is not None
            seen += [(e.kind, e.id) for e in found.entries]
            if found.next_cursor is None:
                break
            cursor = Cursor.decode(found.next_cursor.encode())
    assert [kind for kind, _ in seen] == ["call", "disposition", "call", "transfer"]
    assert len(set(seen)) == 4


async def test_the_list_finds_by_number_and_masks_for_a_rep(ctx: ConsoleContext) -> None:
    request = make_request("/customers", "q=5678", cookie=session_cookie(ctx, "alice"))
    html = body(await customers.customers_page(ctx, request))
    assert 'data-customer="1"' in html
    assert "138****5678" in html
    assert "13812345678" not in html
    request = make_request("/customers", "q=Other", cookie=session_cookie(ctx, "alice"))
    assert 'data-customer="2"' not in body(await customers.customers_page(ctx, request))
