"""The do-not-call list: the CLI, the worklist, a result that lists a customer, dialing, flags.

The worklist leaves listed numbers out, a disposition lists a customer, the seat page asks before
it dials one, and a call that happened anyway is flagged once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from factories import ended, make_call
from prometheus_client import CollectorRegistry
from seat_client import SeatClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.commands.dnc import dnc
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.seatapi import CallEntry
from storage.db import make_engine, upgrade
from storage.dnc import add_numbers, listed
from storage.leads import add_leads, add_rep, assign_to_rep, open_list
from storage.models import AuditEntry, CustomerPhone, CustomerRecord
from storage.seats import add_seat

BOTH = ("+8613900000010", "+861065529988")  # a customer with a mobile and a landline
ONE = "+8613900000011"


def run(*args: str, data_dir: Path) -> Result:
    return CliRunner().invoke(dnc, [*args, "--data-dir", str(data_dir)])


def test_numbers_are_added_listed_and_removed_and_a_bad_file_row_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "centre"
    assert (
        run("add", "139 0000 0010", "+86 10 6552 9988", "--reason", "客户要求", data_dir=data).exit_code == 0
    )
    bad = run("add", "12345", data_dir=data)
    assert bad.exit_code == 2
    assert "not a phone number" in bad.output
    source = tmp_path / "dnc.csv"
    source.write_bytes(
        "号码,备注\n１３９００００００１１,全角\n不是号码,x\n13900000010,again\n".encode("gbk")
    )
    imported = run("import", str(source), "--days", "30", data_dir=data)
    assert imported.exit_code == 1  # one row was not a number: said, and the rest are in
    assert "line 3" in imported.output
    assert "1 number(s) added, 1 already listed" in imported.output
    rows = [json.loads(line) for line in run("list", "--json", data_dir=data).output.splitlines()]
    assert {r["number"] for r in rows} == {*BOTH, ONE}
    assert {r["source"] for r in rows} == {"manual", "import"}
    assert run("remove", "13900000011", data_dir=data).exit_code == 0
    assert run("remove", "13900000011", data_dir=data).exit_code == 1


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    with Session(eng) as session, session.begin():
        add_rep(session, "amy", "north")
        lead_list = open_list(session, "may", actor="mgr")
        ids = []
        for n, numbers in enumerate((BOTH, (ONE,), ("+8613900000012",))):
            customer = CustomerRecord(name=f"客户{n}")
            session.add(customer)
            session.flush()
            session.add_all(CustomerPhone(customer_id=customer.id, number_e164=x) for x in numbers)
            ids.append(customer.id)
        add_leads(session, lead_list, ids, actor="mgr")
        assign_to_rep(session, "may", "amy", 3, actor="tl")
    yield eng
    eng.dispose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def centre(engine: Engine, registry: CollectorRegistry) -> tuple[TestClient, str]:
    with Session(engine) as session, session.begin():
        token = add_seat(session, "seat-1", "north", "amy")[1]
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry))
    return TestClient(Starlette(routes=seat_api_routes(ctx))), token


def _get(client: TestClient, token: str, path: str, **params: str) -> Any:
    return client.get(path, params=params, headers={"authorization": f"Bearer {token}"}).json()


def test_the_worklist_leaves_listed_numbers_out(centre: tuple[TestClient, str], engine: Engine) -> None:
    client, token = centre
    with Session(engine) as session, session.begin():
        add_numbers(session, [BOTH[0], ONE], source="manual", added_by="mgr")
    items = _get(client, token, "/api/v1/worklist")["items"]
    numbers = [item["numbers"] for item in items]
    assert numbers == [[BOTH[1]], ["+8613900000012"]]  # the landline stays; the lead with only ONE goes
    answer = _get(client, token, "/api/v1/lookup", number=ONE)
    assert answer["do_not_call"] is True
    assert _get(client, token, "/api/v1/lookup", number="+8613900000012")["do_not_call"] is False


def test_a_do_not_call_result_lists_every_number_of_the_customer(
    centre: tuple[TestClient, str], engine: Engine
) -> None:
    client, token = centre
    lead = _get(client, token, "/api/v1/worklist")["items"][0]
    entry = {"uuid": str(uuid.uuid4()), "lead_id": lead["lead_id"], "code": "do_not_call",
             "at": datetime.now(UTC).isoformat(), "note": "客户投诉"}  # fmt: skip
    answer = client.post(
        "/api/v1/dispositions",
        json={"seat": "seat-1", "dispositions": [entry]},
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.json()["results"][0]["status"] == "accepted"
    with Session(engine) as session:
        rows = listed(session)
    assert {(r.number_e164, r.source, r.added_by, r.reason) for r in rows} == {
        (BOTH[0], "disposition", "amy", "客户投诉"),
        (BOTH[1], "disposition", "amy", "客户投诉"),
    }


def test_an_outbound_call_to_a_listed_number_is_flagged_once(
    centre: tuple[TestClient, str], engine: Engine, registry: CollectorRegistry
) -> None:
    client, token = centre
    with Session(engine) as session, session.begin():
        add_numbers(session, [ONE], source="manual", added_by="mgr")
    for n, direction in ((1, "out"), (1, "out"), (2, "in")):
        call = ended(make_call(str(uuid.UUID(int=n)), seat="seat-1", line="L1"), talk=20.0)
        entry = CallEntry.of(call, None, None) | {"number_e164": ONE, "rep": "amy", "direction": direction}
        client.post(
            "/api/v1/calls",
            json={"seat": "seat-1", "calls": [entry]},
            headers={"authorization": f"Bearer {token}"},
        )
    with Session(engine) as session:
        flagged = session.scalars(select(AuditEntry.target).where(AuditEntry.action == "dnc_dialed")).all()
    assert flagged == [f"call:{uuid.UUID(int=1)}"]
    assert registry.get_sample_value("cti_centre_dnc_dialed_total") == 1.0


class Dialer:
    def __init__(self) -> None:
        self.dialed: list[str] = []

    def dialable_lines(self) -> list[str]:
        return ["L1"]

    async def dial(self, line_id: str, number: str) -> None:
        self.dialed.append(number)


def test_the_seat_page_asks_before_it_dials_a_listed_number() -> None:
    dialer = Dialer()
    context = SeatContext(bus=SeatBus(), seat="s", rep="amy", dialer=dialer, do_not_call=lambda n: n == ONE)
    page = SeatClient(make_seat_app(context))
    headers = {"X-CSRF-Token": page.page_token}
    refused = page.post("/api/dial", json={"line": "L1", "number": "139 0000 0011"}, headers=headers)
    assert (refused.status_code, refused.json()["do_not_call"]) == (409, True)
    assert dialer.dialed == []
    body = {"line": "L1", "number": "13900000011", "confirm_do_not_call": True}
    assert page.post("/api/dial", json=body, headers=headers).status_code == 200
    assert (
        page.post("/api/dial", json={"line": "L1", "number": "13900000012"}, headers=headers).status_code
        == 200
    )
    assert dialer.dialed == ["13900000011", "13900000012"]
