"""Ownership on the pop, team-wide, and calls to another rep's customer (撞单) flagged to both team leads.

The centre's seat API and console in process (Starlette's test client), over SQLite.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from console_factories import PASSWORD, SECRET, log_in
from factories import ended, make_call
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.seatapi import CallEntry
from storage.db import make_engine, upgrade
from storage.leads import add_leads, add_rep, assign_to_rep, open_list
from storage.models import AuditEntry, CustomerPhone, CustomerRecord
from storage.ownership import ownership_of
from storage.seats import add_seat

AMY = "+8613900000001"  # amy's (north) customer
CAI = "+8613900000002"  # cai's (south) customer
POOL = "+8613900000003"  # nobody's


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    with Session(eng) as session, session.begin():
        add_rep(session, "amy", "north")
        add_rep(session, "bob", "north")
        add_rep(session, "cai", "south")
        lead_list = open_list(session, "may", actor="mgr")
        ids = []
        for n, number in enumerate((AMY, CAI, POOL)):
            customer = CustomerRecord(name=f"客户{n}")
            session.add(customer)
            session.flush()
            session.add(CustomerPhone(customer_id=customer.id, number_e164=number))
            ids.append(customer.id)
        add_leads(session, lead_list, ids, actor="mgr")
        assign_to_rep(session, "may", "amy", 1, actor="tl")
        assign_to_rep(session, "may", "cai", 1, actor="tl")
    yield eng
    eng.dispose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def seat_api(engine: Engine, registry: CollectorRegistry) -> TestClient:
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry), protection=timedelta(days=30))
    return TestClient(Starlette(routes=seat_api_routes(ctx)))


def _token(engine: Engine, name: str, team: str, rep: str) -> str:
    with Session(engine) as session, session.begin():
        return add_seat(session, name, team, rep)[1]


def _lookup(client: TestClient, token: str, number: str) -> Any:
    return client.get(
        "/api/v1/lookup", params={"number": number}, headers={"authorization": f"Bearer {token}"}
    ).json()


def test_the_pop_says_whose_a_number_is_even_when_the_customer_is_another_teams(
    seat_api: TestClient, engine: Engine
) -> None:
    bob = _token(engine, "seat-b", "north", "bob")
    answer = _lookup(seat_api, bob, CAI)
    assert answer["customer"] is None  # another team's customer stays hidden
    owner = answer["ownership"]
    assert (owner["state"], owner["owner_rep"], owner["owner_team"], owner["may_claim"]) == (
        "protected",
        "cai",
        "south",
        False,
    )
    assert datetime.fromisoformat(owner["until"]) > datetime.now(UTC) + timedelta(days=29)
    assert _lookup(seat_api, bob, POOL)["ownership"]["state"] == "pool"
    assert _lookup(seat_api, bob, POOL)["ownership"]["may_claim"] is True
    amy = _token(engine, "seat-a", "north", "amy")
    assert _lookup(seat_api, amy, AMY)["ownership"]["state"] == "yours"
    assert _lookup(seat_api, amy, "+8613700000000")["ownership"] is None


def test_past_its_protection_a_customer_is_owned_and_claimable(engine: Engine) -> None:
    with Session(engine) as session:
        later = datetime.now(UTC) + timedelta(days=31)
        owned = ownership_of(session, CAI, "bob", protection=timedelta(days=30), now=later)
    assert owned is not None
    assert (owned.state, owned.owner_rep, owned.may_claim) == ("owned", "cai", True)


def _calls(client: TestClient, token: str, seat: str, rep: str, team: str, number: str, n: int) -> Any:
    call = ended(make_call(str(uuid.UUID(int=n)), seat=seat, line="L1"), talk=30.0)
    entry = CallEntry.of(call, None, None) | {"rep": rep, "team": team, "number_e164": number}
    body = {"seat": seat, "calls": [entry]}
    return client.post("/api/v1/calls", json=body, headers={"authorization": f"Bearer {token}"})


def test_a_call_to_another_reps_customer_is_kept_and_flagged_once(
    seat_api: TestClient, engine: Engine, registry: CollectorRegistry
) -> None:
    bob = _token(engine, "seat-b", "north", "bob")
    for _ in range(2):  # sent twice: one flag
        answer = _calls(seat_api, bob, "seat-b", "bob", "north", CAI, 1)
        assert answer.json()["results"][0]["status"] in ("accepted", "duplicate")
    _calls(seat_api, bob, "seat-b", "bob", "north", POOL, 2)  # nobody's: no collision
    amy = _token(engine, "seat-a", "north", "amy")
    _calls(seat_api, amy, "seat-a", "amy", "north", AMY, 3)  # her own: no collision
    with Session(engine) as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "lead_collision")).all()
    assert [(r.user_login, r.target) for r in rows] == [("bob", f"call:{uuid.UUID(int=1)}")]
    assert registry.get_sample_value("cti_centre_lead_collisions_total") == 1.0


@pytest.fixture
def console(engine: Engine, seat_api: TestClient, tmp_path: Path) -> TestClient:
    with Session(engine) as session, session.begin():
        create_user(session, "boss", PASSWORD, role="manager")
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "sam", PASSWORD, role="lead", team="south")
        create_user(session, "wes", PASSWORD, role="lead", team="west")
        create_user(session, "bob", PASSWORD, role="rep", rep="bob", team="north")
    bob = _token(engine, "seat-b", "north", "bob")
    _calls(seat_api, bob, "seat-b", "bob", "north", CAI, 1)
    settings = ConsoleSettings(secret=SECRET, recordings_dir=tmp_path)
    return TestClient(make_console_app(engine, settings), base_url="http://127.0.0.1")


def test_both_team_leads_see_the_collision_and_nobody_else_below_manager(console: TestClient) -> None:
    for lead in ("nina", "sam", "boss"):
        log_in(console, lead)
        page = console.get("/collisions")
        assert page.status_code == 200, lead
        assert f'data-call="{uuid.UUID(int=1)}"' in page.text, lead
        assert "cai (south)" in page.text
    log_in(console, "wes")
    assert 'id="no-collisions"' in console.get("/collisions").text
    log_in(console, "bob")
    assert console.get("/collisions").status_code == 403
    log_in(console, "nina")
    assert console.get("/collisions", params={"days": "x"}).status_code == 400
