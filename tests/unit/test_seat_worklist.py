"""The worklist on the seat: fetched from the centre, kept offline, dispositions sent by the outbox.

The centre is the real seat API app over SQLite, reached through Starlette's test client (real
HTTP semantics, no socket); the seat is its own SQLite database with its outbox enabled.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from seat_client import SeatClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.seat.centre_client import CentreClient
from agent.seat.transport import HttpTransport
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.seat.worklist import SeatWorklist, end_of_day
from storage.db import make_engine, upgrade
from storage.faults import PARK_AFTER
from storage.leads import add_leads, add_rep, assign_to_rep, open_list
from storage.models import CustomerPhone, CustomerRecord, DispositionRecord, Lead, OutboxEntry
from storage.outbox import CentralSync
from storage.seats import add_seat, set_seat_rep
from storage.worklist import add_local_disposition

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def centre_db(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'centre.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        add_rep(session, "amy", "north")
        add_rep(session, "bob", "north")
        lead_list = open_list(session, "may", actor="mgr")
        ids = []
        for n in range(3):
            customer = CustomerRecord(name=f"客户{n}")
            session.add(customer)
            session.flush()
            session.add(CustomerPhone(customer_id=customer.id, number_e164=f"+8613900000{n:03d}"))
            ids.append(customer.id)
        add_leads(session, lead_list, ids, actor="mgr")
        assign_to_rep(session, "may", "amy", 3, actor="tl")
    yield engine
    engine.dispose()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'seat' / 'cti-agent.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(centre_db: Engine) -> CentreClient:
    with Session(centre_db) as session, session.begin():
        _, token = add_seat(session, "seat-1", "north", "amy")
    ctx = SeatApiContext(engine=centre_db, metrics=SeatApiMetrics(CollectorRegistry()))
    app = TestClient(Starlette(routes=seat_api_routes(ctx)), base_url="http://centre.test")
    return CentreClient("http://centre.test", token, client=app)


def _sync(local: Engine, client: CentreClient, tmp_path: Path) -> CentralSync:
    sync = CentralSync(local, transport=HttpTransport(client, "seat-1"), data_dir=tmp_path / "seat")
    sync.enable()
    return sync


def _worklist(client: CentreClient, local: Engine, tmp_path: Path) -> SeatWorklist:
    return SeatWorklist(client, local, tmp_path / "seat", now=lambda: datetime.now(UTC))


def test_the_worklist_is_fetched_kept_0600_and_shown_offline(
    client: CentreClient, local: Engine, tmp_path: Path
) -> None:
    worklist = _worklist(client, local, tmp_path)
    assert worklist.refresh()
    view = worklist.snapshot()
    assert (view["available"], view["offline"], len(view["items"])) == (True, False, 3)
    kept = tmp_path / "seat" / "worklist.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    # A seat started while the centre is down shows the kept list, and says it is offline.
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = CentreClient(
        "http://centre.test",
        "cti_seat_x",
        client=httpx.Client(base_url="http://centre.test", transport=httpx.MockTransport(refuse)),
    )
    later = SeatWorklist(down, local, tmp_path / "seat", now=lambda: datetime.now(UTC))
    assert not later.refresh()
    view = later.snapshot()
    assert (view["available"], view["offline"], len(view["items"])) == (True, True, 3)
    assert "unreachable" in view["error"]


def test_a_broken_cache_file_is_no_worklist_not_a_crash(
    client: CentreClient, local: Engine, tmp_path: Path
) -> None:
    (tmp_path / "seat").mkdir(parents=True, exist_ok=True)
    (tmp_path / "seat" / "worklist.json").write_text("{half", encoding="utf-8")
    worklist = _worklist(client, local, tmp_path)
    assert worklist.snapshot()["available"] is False
    assert worklist.refresh()
    assert json.loads((tmp_path / "seat" / "worklist.json").read_text())["data"]["rep"] == "amy"


def test_a_disposition_hides_its_lead_at_once_and_reaches_the_centre_by_the_outbox(
    client: CentreClient, local: Engine, centre_db: Engine, tmp_path: Path
) -> None:
    sync = _sync(local, client, tmp_path)
    worklist = _worklist(client, local, tmp_path)
    worklist.refresh()
    first, second, _ = (item["lead_id"] for item in worklist.snapshot()["items"])
    with Session(local) as session, session.begin():
        add_local_disposition(
            session, seat="seat-1", rep="amy", code="deal", at=datetime.now(UTC), lead_id=first
        )
    view = worklist.snapshot()
    assert [i["lead_id"] for i in view["items"]][0] == second
    assert view["pending"] == 1
    # Fetched again before the outbox sent it: the lead stays hidden.
    worklist.refresh()
    assert first not in [i["lead_id"] for i in worklist.snapshot()["items"]]
    result = sync.run_batch()
    assert result.parked == 0
    with Session(centre_db) as session:
        lead = session.scalars(select(Lead).where(Lead.id == first)).one()
        assert (lead.last_code, lead.closed_at is not None) == ("deal", True)
    with Session(local) as session:
        assert session.scalars(select(DispositionRecord)).one().received_at is not None
        assert session.scalar(select(OutboxEntry.id)) is None
    worklist.refresh()
    view = worklist.snapshot()
    assert (view["pending"], first in [i["lead_id"] for i in view["items"]]) == (0, False)


def test_an_offline_day_then_a_moved_lead_keeps_the_result_and_tells_the_rep(
    client: CentreClient, local: Engine, centre_db: Engine, tmp_path: Path
) -> None:
    sync = _sync(local, client, tmp_path)
    worklist = _worklist(client, local, tmp_path)
    worklist.refresh()
    lead = worklist.snapshot()["items"][0]["lead_id"]
    yesterday = datetime.now(UTC) - timedelta(days=1)
    with Session(local) as session, session.begin():
        add_local_disposition(
            session, seat="seat-1", rep="amy", code="not_interested", at=yesterday, lead_id=lead
        )
    with Session(centre_db) as session, session.begin():
        session.execute(Lead.__table__.update().where(Lead.id == lead).values(rep="bob"))
    assert sync.run_batch().parked == 0
    view = worklist.snapshot()
    assert [c["lead_id"] for c in view["conflicts"]] == [lead]
    assert "held by bob" in view["conflicts"][0]["conflict"]
    with Session(centre_db) as session:
        assert session.scalars(select(Lead.rep).where(Lead.id == lead)).one() == "bob"
        assert session.scalars(select(DispositionRecord.conflict)).one() is not None


def test_a_seat_without_a_rep_parks_its_dispositions_and_its_calls_go_on(
    client: CentreClient, local: Engine, centre_db: Engine, tmp_path: Path
) -> None:
    with Session(centre_db) as session, session.begin():
        set_seat_rep(session, "seat-1", None)
    sync = _sync(local, client, tmp_path)
    with Session(local) as session, session.begin():
        add_local_disposition(session, seat="seat-1", rep="amy", code="busy", at=datetime.now(UTC), lead_id=1)
    for _ in range(PARK_AFTER):
        sync.run_batch()  # refused as a whole batch: counted, not raised, so nothing else waits
    assert sync.status().parked == 1
    with Session(local) as session:
        assert "has no rep" in (session.scalar(select(OutboxEntry.last_error)) or "")


def test_end_of_day_is_the_last_moment_of_the_local_day() -> None:
    assert end_of_day(NOW) == datetime(2026, 12, 4, 23, 59, 59, 999999, tzinfo=UTC)


def _page(client: CentreClient, local: Engine, tmp_path: Path, worklist: bool = True) -> SeatClient:
    source = _worklist(client, local, tmp_path) if worklist else None
    if source is not None:
        source.refresh()
    context = SeatContext(
        bus=SeatBus(), seat="seat-1", rep="amy", engine=local, worklist=source, now=lambda: datetime.now(UTC)
    )
    return SeatClient(make_seat_app(context))


def _dispose(page: SeatClient, body: dict[str, object]) -> httpx.Response:
    return page.post("/api/dispositions", json=body, headers={"X-CSRF-Token": page.page_token})


def test_the_page_shows_no_worklist_outside_team_mode(
    client: CentreClient, local: Engine, tmp_path: Path
) -> None:
    page = _page(client, local, tmp_path, worklist=False)
    assert page.get("/api/worklist").json() == {"available": False, "items": []}
    assert _dispose(page, {"code": "busy", "lead_id": 1}).status_code == 409


def test_the_page_checks_a_result_before_keeping_it(
    client: CentreClient, local: Engine, tmp_path: Path
) -> None:
    page = _page(client, local, tmp_path)
    items = page.get("/api/worklist").json()["items"]
    assert items[0]["numbers_display"] == ["139 0000 0000"]
    lead = items[0]["lead_id"]
    refused = {
        "maybe": {"code": "maybe", "lead_id": lead},
        "when": {"code": "call_back", "lead_id": lead},
        "past": {"code": "call_back", "lead_id": lead, "follow_up_at": "2020-01-01T10:00"},
        "lead": {"code": "busy"},
        "bool": {"code": "busy", "lead_id": True},
        "uuid": {"code": "busy", "lead_id": lead, "call_uuid": "../../etc"},
    }
    for why, body in refused.items():
        answer = _dispose(page, body)
        assert answer.status_code == 400, why
    assert (
        page.post("/api/dispositions", json={"code": "busy", "lead_id": lead}).status_code == 403
    )  # no token
    saved = _dispose(page, {"code": "no_answer", "lead_id": lead, "note": "<script>x</script>"})
    assert saved.json()["saved"] is True
    view = page.get("/api/worklist").json()
    assert lead not in [i["lead_id"] for i in view["items"]]
    assert view["pending"] == 1
    with Session(local) as session:
        row = session.scalars(select(DispositionRecord)).one()
    assert (row.rep, row.seat, row.note) == ("amy", "seat-1", "<script>x</script>")
