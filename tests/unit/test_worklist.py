"""The rep's worklist at the centre and the dispositions that move it on (issue 16, item 3).

Through the seat API in process (``GET /api/v1/worklist``, ``POST /api/v1/dispositions``): the
order a rep calls in, a seat that only ever sees its own rep's leads, dispositions kept once,
a lead moved while its seat was offline (kept, logged, the lead not handed back), a disabled rep.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from storage.db import make_engine, upgrade
from storage.leads import add_leads, add_rep, assign_to_rep, open_list
from storage.models import CustomerPhone, CustomerRecord, DispositionRecord, Lead, Rep
from storage.seats import add_seat, set_seat_rep


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    with Session(eng) as session, session.begin():
        add_rep(session, "amy", "north")
        add_rep(session, "bob", "north")
        lead_list = open_list(session, "may", actor="mgr")
        ids = []
        for n in range(6):
            customer = CustomerRecord(name=f"客户{n}", company=f"公司{n}")
            session.add(customer)
            session.flush()
            session.add(CustomerPhone(customer_id=customer.id, number_e164=f"+86139000000{n:02d}"))
            ids.append(customer.id)
        add_leads(session, lead_list, ids, actor="mgr")
        assign_to_rep(session, "may", "amy", 4, actor="tl")
        assign_to_rep(session, "may", "bob", 2, actor="tl")
    yield eng
    eng.dispose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def client(engine: Engine, registry: CollectorRegistry) -> TestClient:
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry))
    return TestClient(Starlette(routes=seat_api_routes(ctx)))


def _token(engine: Engine, name: str, rep: str | None) -> str:
    with Session(engine) as session, session.begin():
        _, token = add_seat(session, name, "north", rep)
    return token


def _get(client: TestClient, token: str, **params: str) -> Any:
    return client.get("/api/v1/worklist", params=params, headers={"authorization": f"Bearer {token}"})


def _post(client: TestClient, token: str, seat: str, *entries: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/dispositions",
        json={"seat": seat, "dispositions": list(entries)},
        headers={"authorization": f"Bearer {token}"},
    )


def _disposition(lead_id: int, code: str, at: datetime, **more: Any) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "lead_id": lead_id, "code": code, "at": at.isoformat(), **more}


def test_a_seat_gets_its_reps_leads_only_with_the_floors_dispositions(
    client: TestClient, engine: Engine
) -> None:
    token = _token(engine, "seat-1", "amy")
    answer = _get(client, token)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["seat"], body["rep"], body["rep_active"]) == ("seat-1", "amy", True)
    assert len(body["items"]) == 4
    assert {item["reason"] for item in body["items"]} == {"new"}
    assert body["items"][0]["numbers"] == ["+8613900000000"]
    assert body["items"][0]["name"] == "客户0"
    assert [d["code"] for d in body["dispositions"]][:2] == ["no_answer", "busy"]
    with Session(engine) as session:
        bobs = set(session.scalars(select(Lead.id).where(Lead.rep == "bob")))
    assert bobs.isdisjoint(item["lead_id"] for item in body["items"])


def test_a_seat_without_a_rep_is_told_how_to_give_it_one(client: TestClient, engine: Engine) -> None:
    token = _token(engine, "seat-9", None)
    answer = _get(client, token)
    assert answer.status_code == 409
    assert "seats set-rep seat-9" in answer.json()["error"]
    assert _post(client, token, "seat-9").status_code == 409
    with Session(engine) as session, session.begin():
        set_seat_rep(session, "seat-9", "bob")
    assert len(_get(client, token).json()["items"]) == 2


def test_dispositions_order_the_list_follow_ups_due_first_then_new_then_retries(
    client: TestClient, engine: Engine
) -> None:
    token = _token(engine, "seat-1", "amy")
    first, second, third, fourth = (item["lead_id"] for item in _get(client, token).json()["items"])
    now = datetime.now(UTC)
    later_today = now + timedelta(hours=2)
    answer = _post(
        client,
        token,
        "seat-1",
        _disposition(first, "no_answer", now - timedelta(minutes=5)),
        _disposition(second, "call_back", now - timedelta(minutes=4), follow_up_at=later_today.isoformat()),
        _disposition(third, "deal", now - timedelta(minutes=3), note="签了一年"),
    )
    assert [r["status"] for r in answer.json()["results"]] == ["accepted"] * 3
    # Until now the call-back is not due: the new lead first, then the retry.
    items = _get(client, token).json()["items"]
    assert [(i["lead_id"], i["reason"]) for i in items] == [(fourth, "new"), (first, "retry")]
    assert items[1]["last_code"] == "no_answer"
    # By the end of the seat's day it is, and comes first.
    until = (now + timedelta(hours=6)).isoformat()
    items = _get(client, token, until=until).json()["items"]
    assert [(i["lead_id"], i["reason"]) for i in items] == [
        (second, "follow_up"),
        (fourth, "new"),
        (first, "retry"),
    ]


def test_a_disposition_is_kept_once_and_bad_ones_are_rejected_alone(
    client: TestClient, engine: Engine, registry: CollectorRegistry
) -> None:
    token = _token(engine, "seat-1", "amy")
    lead = _get(client, token).json()["items"][0]["lead_id"]
    now = datetime.now(UTC)
    good = _disposition(lead, "busy", now)
    answer = _post(
        client,
        token,
        "seat-1",
        good,
        _disposition(lead, "maybe", now),  # not one of the floor's codes
        _disposition(lead, "call_back", now),  # a call-back without its time
        {"uuid": "not-a-uuid", "code": "busy", "at": now.isoformat()},
        {**_disposition(lead, "busy", now), "at": "2026-12-04T10:00:00"},  # no UTC offset
    )
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "rejected", "rejected"]
    assert "unknown disposition 'maybe'" in results[1]["reason"]
    assert "needs the time to call again" in results[2]["reason"]
    assert _post(client, token, "seat-1", good).json()["results"][0]["status"] == "duplicate"
    with Session(engine) as session:
        assert session.scalar(select(DispositionRecord.code)) == "busy"
        assert len(session.scalars(select(DispositionRecord)).all()) == 1
    assert registry.get_sample_value("cti_centre_dispositions_total", {"status": "rejected"}) == 4.0
    # A batch naming another seat writes nothing.
    assert _post(client, token, "seat-2", _disposition(lead, "busy", now)).status_code == 403


def test_a_lead_moved_while_the_seat_was_offline_keeps_the_disposition_and_stays_moved(
    client: TestClient, engine: Engine
) -> None:
    token = _token(engine, "seat-1", "amy")
    lead = _get(client, token).json()["items"][0]["lead_id"]
    with Session(engine) as session, session.begin():
        session.execute(update(Lead).where(Lead.id == lead).values(rep="bob"))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    result = _post(client, token, "seat-1", _disposition(lead, "deal", yesterday, note="昨天成交")).json()
    assert result["results"][0]["status"] == "conflict"
    assert "held by bob" in result["results"][0]["reason"]
    with Session(engine) as session:
        row = session.scalars(select(Lead).where(Lead.id == lead)).one()
        kept = session.scalars(select(DispositionRecord)).one()
    assert (row.rep, row.closed_at, row.last_code) == ("bob", None, None)
    assert (kept.rep, kept.note, kept.conflict) == ("amy", "昨天成交", result["results"][0]["reason"])


def test_an_older_disposition_does_not_roll_the_lead_back(client: TestClient, engine: Engine) -> None:
    token = _token(engine, "seat-1", "amy")
    lead = _get(client, token).json()["items"][0]["lead_id"]
    now = datetime.now(UTC)
    _post(client, token, "seat-1", _disposition(lead, "not_interested", now))
    late = _post(client, token, "seat-1", _disposition(lead, "no_answer", now - timedelta(hours=1)))
    assert late.json()["results"][0]["status"] == "accepted"
    with Session(engine) as session:
        row = session.scalars(select(Lead).where(Lead.id == lead)).one()
    assert row.last_code == "not_interested"
    assert row.closed_at is not None
    assert lead not in {i["lead_id"] for i in _get(client, token).json()["items"]}


def test_a_disabled_reps_worklist_stops_and_their_leads_stay(client: TestClient, engine: Engine) -> None:
    token = _token(engine, "seat-1", "amy")
    with Session(engine) as session, session.begin():
        session.execute(update(Rep).where(Rep.name == "amy").values(active=False))
    body = _get(client, token).json()
    assert (body["rep_active"], body["items"]) == (False, [])
    with Session(engine) as session:
        assert len(session.scalars(select(Lead).where(Lead.rep == "amy")).all()) == 4


def test_until_must_be_a_time_near_the_centres_clock(client: TestClient, engine: Engine) -> None:
    token = _token(engine, "seat-1", "amy")
    assert _get(client, token, until="tomorrow").status_code == 400
    assert _get(client, token, until="2026-12-04T23:59:59").status_code == 400
    far = (datetime.now(UTC) + timedelta(days=9)).isoformat()
    assert "more than 2 days" in _get(client, token, until=far).json()["error"]
