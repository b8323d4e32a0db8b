"""The seat page's API: caller card, notes with CSRF, today's follow-ups and counts, click-to-dial."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.config import DailyTarget
from agent.errors import DeviceError
from agent.events import Call, CallEvent, CallEventKind, Customer, Direction, Disposition
from agent.seat.web.api import play_url
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from storage.db import make_engine, upgrade
from storage.models import AuditEntry, CustomerPhone, CustomerRecord, Recording
from storage.repository import get_call, upsert_call

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from seat_client import BASE_URL, SeatClient

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=CST)
TOKEN = "test-token"
XSS = "<script>alert(1)</script>"


def make_call(uuid: str, start: datetime, **changes: object) -> Call:
    call = Call(
        uuid=uuid,
        seat="seat-7",
        device_id="modem0",
        line="L1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=start.astimezone(UTC),
        number_raw="13812345678",
        number_e164="+8613812345678",
    )
    return replace(call, **changes)


def ended(call: Call, talk: float = 90.0, disposition: Disposition = Disposition.ANSWERED) -> Call:
    answered = call.started_at + timedelta(seconds=5)
    return replace(
        call,
        answered_at=answered if disposition is Disposition.ANSWERED else None,
        ended_at=answered + timedelta(seconds=talk),
        talk_seconds=talk if disposition is Disposition.ANSWERED else None,
        disposition=disposition,
    )


class FakeDialer:
    def __init__(self) -> None:
        self.dialed: list[tuple[str, str]] = []
        self.error: Exception | None = None

    def dialable_lines(self) -> list[str]:
        return ["L1"]

    async def dial(self, line_id: str, number: str) -> None:
        if self.error is not None:
            raise self.error
        self.dialed.append((line_id, number))


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def customer_id(engine: Engine) -> int:
    with Session(engine) as session, session.begin():
        record = CustomerRecord(
            name=XSS, company="天津贸易", owner_rep="bob", tags="VIP,天津", notes="大客户"
        )
        record.phones.append(CustomerPhone(number_e164="+8613812345678", number_raw="13812345678"))
        record.phones.append(CustomerPhone(number_e164="+862223456789;ext=8001", number_raw="022-23456789"))
        session.add(record)
        session.flush()
        return record.id


@pytest.fixture
def dialer() -> FakeDialer:
    return FakeDialer()


@pytest.fixture
def client(engine: Engine, dialer: FakeDialer) -> TestClient:
    bus = SeatBus()
    app = make_seat_app(
        SeatContext(
            bus=bus,
            seat="seat-7",
            engine=engine,
            dialer=dialer,
            rep="alice",
            targets=DailyTarget(calls=80, talk_seconds=7200),
            now=lambda: NOW,
        )
    )
    test_client = SeatClient(app)
    test_client.bus = bus  # type: ignore[attr-defined]
    return test_client


def write(engine: Engine, *calls: Call) -> None:
    with Session(engine) as session, session.begin():
        for call in calls:
            upsert_call(session, call)


def post(client: TestClient, url: str, body: object, token: str | None = TOKEN, **headers: str) -> object:
    if token is TOKEN:  # the page's own token, as the page's script sends it
        token = client.page_token  # type: ignore[attr-defined]
    if token is not None:
        headers["X-CSRF-Token"] = token
    return client.post(url, json=body, headers=headers)


def test_page_carries_the_token_and_the_card(client: TestClient) -> None:
    html = client.get("/").text
    assert f'<meta name="csrf-token" content="{client.page_token}">' in html  # type: ignore[attr-defined]
    assert 'id="card"' in html
    assert 'id="note-form"' in html
    assert 'data-rep="alice"' in html


def test_card_shows_customer_history_and_the_conflict(
    client: TestClient, engine: Engine, customer_id: int
) -> None:
    earlier = ended(make_call("old-1", NOW - timedelta(days=2), customer_id=customer_id))
    missed = ended(make_call("old-2", NOW - timedelta(days=1)), disposition=Disposition.MISSED)
    other = ended(make_call("other", NOW - timedelta(hours=1), number_e164="+8613900000000"))
    current = make_call("now", NOW, customer_id=customer_id, customer_name=XSS)
    write(engine, earlier, missed, other, current)
    with Session(engine) as session, session.begin():
        from storage.repository import save_note

        save_note(session, "old-1", f"wants a quote {XSS}", NOW - timedelta(days=2))
    bus: SeatBus = client.bus  # type: ignore[attr-defined]
    current = current.with_customer(Customer(id=customer_id, name=XSS, owner_rep="bob", source="sql"))
    bus.publish(CallEvent(CallEventKind.IDENTIFIED, current, NOW))

    response = client.get("/api/card/now")
    assert response.status_code == 200
    assert "<script>" not in response.text  # JSON escapes < > &
    card = response.json()
    assert card["customer"]["name"] == XSS
    assert card["customer"]["tags"] == ["VIP", "天津"]
    assert card["customer"]["phones"] == ["+8613812345678", "+862223456789 ext. 8001"]
    assert card["owned_by_other"] is True
    assert [h["uuid"] for h in card["history"]] == ["old-2", "old-1"]
    assert card["history"][1]["notes"] == f"wants a quote {XSS}"
    assert card["history"][1]["talk_seconds"] == 90.0
    assert card["history"][0]["disposition"] == "missed"
    assert card["dial_lines"] == ["L1"]
    assert client.get("/api/card/unknown").status_code == 404


def test_note_needs_the_token_and_is_saved(client: TestClient, engine: Engine) -> None:
    write(engine, make_call("c1", NOW))
    body = {"notes": f"call back {XSS}", "follow_up": "2026-03-04"}
    assert post(client, "/api/calls/c1/note", body, token=None).status_code == 403
    assert post(client, "/api/calls/c1/note", body, token="wrong").status_code == 403
    cross = post(client, "/api/calls/c1/note", body, Origin="http://evil.example")
    assert cross.status_code == 403
    response = post(client, "/api/calls/c1/note", body, Origin=BASE_URL)
    assert response.status_code == 200, response.text
    with Session(engine) as session:
        row = get_call(session, "c1")
        assert row is not None
        assert row.notes == f"call back {XSS}"
        assert row.follow_up_at == datetime(2026, 3, 4, tzinfo=CST)
    assert post(client, "/api/calls/nope/note", body).status_code == 404
    assert post(client, "/api/calls/c1/note", {"notes": "x", "follow_up": "next week"}).status_code == 400
    assert post(client, "/api/calls/c1/note", ["not", "an", "object"]).status_code == 400
    assert post(client, "/api/calls/c1/note", {"notes": "x" * 10_001}).status_code == 400


def test_note_shows_on_the_next_call_from_that_number(client: TestClient, engine: Engine) -> None:
    write(engine, ended(make_call("first", NOW - timedelta(hours=2))))
    assert post(client, "/api/calls/first/note", {"notes": "asked for 张经理"}).status_code == 200
    nxt = make_call("second", NOW)
    write(engine, nxt)
    client.bus.publish(CallEvent(CallEventKind.IDENTIFIED, nxt, NOW))  # type: ignore[attr-defined]
    card = client.get("/api/card/second").json()
    assert card["customer"] is None
    assert [(h["uuid"], h["notes"]) for h in card["history"]] == [("first", "asked for 张经理")]


def test_history_shows_a_call_that_ended_before_storage_wrote_it(client: TestClient, engine: Engine) -> None:
    first = make_call("first", NOW - timedelta(minutes=2))
    write(engine, first)  # the row is still the unended snapshot: storage is behind the bus
    bus: SeatBus = client.bus  # type: ignore[attr-defined]
    done = ended(first, talk=42.0)
    bus.publish(CallEvent(CallEventKind.ENDED, done, NOW))
    nxt = make_call("second", NOW)
    bus.publish(CallEvent(CallEventKind.IDENTIFIED, nxt, NOW))
    history = client.get("/api/card/second").json()["history"]
    shown = [(h["uuid"], h["disposition"], h["talk_seconds"]) for h in history]
    assert shown == [("first", "answered", 42.0)]


def test_today_counts_targets_and_due_follow_ups(
    client: TestClient, engine: Engine, customer_id: int
) -> None:
    yesterday = NOW - timedelta(days=1)
    write(
        engine,
        ended(make_call("t1", NOW - timedelta(hours=3)), talk=120),
        ended(make_call("t2", NOW - timedelta(hours=2), number_e164="+8613900000001"), talk=30),
        ended(
            make_call("t3", NOW - timedelta(hours=1), number_e164="+8613900000002"),
            disposition=Disposition.MISSED,
        ),
        ended(make_call("y1", yesterday, number_e164="+8613900000003", customer_id=customer_id)),
        ended(make_call("y2", yesterday, number_e164="+8613900000004")),
        ended(make_call("bob", yesterday, number_e164="+8613900000005", rep="bob")),
    )
    with Session(engine) as session, session.begin():
        from storage.repository import save_note

        save_note(session, "y1", "overdue one", yesterday)  # due yesterday, never called back
        save_note(session, "t1", "due today", NOW.replace(hour=0))
        save_note(session, "y2", "done", yesterday)  # called back below
        save_note(session, "bob", "not mine", yesterday)
        save_note(session, "t2", "later", NOW + timedelta(days=3))
    write(engine, ended(make_call("callback", NOW - timedelta(minutes=5), number_e164="+8613900000004")))

    today = client.get("/api/today").json()
    assert today["counts"] == {
        "calls": 4,
        "answered": 3,
        "inbound": 4,
        "outbound": 0,
        "missed": 1,
        "talk_seconds": 240.0,
        "effective_calls": 2,
    }
    assert today["targets"] == {"calls": 80, "talk_seconds": 7200.0, "effective_calls": None}
    assert [(f["uuid"], f["overdue"], f["name"]) for f in today["follow_ups"]] == [
        ("y1", True, XSS),
        ("t1", False, ""),
    ]
    assert "<script>" not in client.get("/api/today").text


def test_dial(client: TestClient, dialer: FakeDialer) -> None:
    assert post(client, "/api/dial", {"line": "L1", "number": "138 1234 5678"}, token=None).status_code == 403
    response = post(client, "/api/dial", {"line": "L1", "number": "+86 138-1234-5678"})
    assert response.status_code == 200
    assert dialer.dialed == [("L1", "+8613812345678")]
    assert post(client, "/api/dial", {"line": "L1", "number": "+862223456789 ext. 8001"}).status_code == 200
    assert dialer.dialed[-1] == ("L1", "+862223456789")
    assert post(client, "/api/dial", {"line": "L2", "number": "10086"}).status_code == 409
    assert post(client, "/api/dial", {"line": "L1", "number": "abc"}).status_code == 400
    dialer.error = DeviceError("modem0: NO DIALTONE")
    failed = post(client, "/api/dial", {"line": "L1", "number": "10086"})
    assert failed.status_code == 502
    assert "NO DIALTONE" in failed.json()["error"]
    dialer.error = LookupError("gone")
    assert post(client, "/api/dial", {"line": "L1", "number": "10086"}).status_code == 404


def test_without_a_database_the_card_still_answers() -> None:
    bus = SeatBus()
    client = SeatClient(make_seat_app(SeatContext(bus=bus, seat="s")))
    call = make_call("c1", NOW)
    bus.publish(CallEvent(CallEventKind.STARTED, call, NOW))
    card = client.get("/api/card/c1").json()
    assert (card["customer"], card["history"], card["dial_lines"]) == (None, [], [])
    assert client.get("/api/today").json()["counts"] is None
    assert post(client, "/api/calls/c1/note", {"notes": "x"}).status_code == 503
    assert post(client, "/api/dial", {"line": "L1", "number": "10086"}).status_code == 409


def add_customer(engine: Engine, number: str, owner: str | None, age: timedelta) -> int:
    with Session(engine) as session, session.begin():
        record = CustomerRecord(
            name=f"lead {number}", owner_rep=owner, created_at=NOW - age, updated_at=NOW - age
        )
        record.phones.append(CustomerPhone(number_e164=number))
        session.add(record)
        session.flush()
        return record.id


def test_claims_respect_protection_and_the_daily_limit_and_are_audited(engine: Engine) -> None:
    bus = SeatBus()
    client = SeatClient(
        make_seat_app(
            SeatContext(
                bus=bus,
                seat="s",
                engine=engine,
                rep="alice",
                now=lambda: NOW,
                protection_days=30,
                daily_claim_limit=2,
            )
        )
    )
    fresh = add_customer(engine, "+8613800000001", "bob", timedelta(days=3))
    expired = add_customer(engine, "+8613800000002", "bob", timedelta(days=31))
    unowned = add_customer(engine, "+8613800000003", None, timedelta(days=1))
    third = add_customer(engine, "+8613800000004", None, timedelta(days=1))

    # The card says what a claim would do.
    call = make_call("c1", NOW, number_e164="+8613800000001", customer_id=fresh)
    call = call.with_customer(Customer(id=fresh, name="x", owner_rep="bob", source="sql"))
    bus.publish(CallEvent(CallEventKind.IDENTIFIED, call, NOW))
    claim = client.get("/api/card/c1").json()["claim"]
    assert claim["reason"] == "protected"
    assert claim["protected_until"].startswith("2026-03-29")
    assert claim["claims_left"] == 2

    assert post(client, f"/api/customers/{fresh}/claim", {}, token=None).status_code == 403
    refused = post(client, f"/api/customers/{fresh}/claim", {})
    assert refused.status_code == 409
    assert refused.json()["error"] == "protected"
    assert post(client, f"/api/customers/{expired}/claim", {}).json()["claimed"] is True
    assert post(client, f"/api/customers/{expired}/claim", {}).json()["claimed"] is False  # already hers
    assert post(client, f"/api/customers/{unowned}/claim", {}).status_code == 200
    limited = post(client, f"/api/customers/{third}/claim", {})
    assert (limited.status_code, limited.json()["error"]) == (409, "limit")
    assert post(client, "/api/customers/9999/claim", {}).status_code == 404

    with Session(engine) as session:
        owners = dict(session.execute(select(CustomerRecord.id, CustomerRecord.owner_rep)).all())
        audit = session.execute(
            select(AuditEntry.user_login, AuditEntry.action, AuditEntry.target, AuditEntry.detail)
        ).all()
    assert owners == {fresh: "bob", expired: "alice", unowned: "alice", third: None}
    assert audit == [
        ("alice", "lead_claim", f"customer:{expired}", "from=bob"),
        ("alice", "lead_claim", f"customer:{unowned}", "from="),
    ]
    # Claimed: now protected for alice against bob.
    with Session(engine) as session:
        from storage.repository import claim_status

        status = claim_status(
            session,
            expired,
            "bob",
            now=NOW + timedelta(days=29),
            day_start=NOW,
            protection=timedelta(days=30),
            daily_limit=5,
        )
    assert (status.reason, status.owner_rep) == ("protected", "alice")


# -- links to play earlier calls' recordings in the console ----------------------------------------

U_COMPLETE = "0b8f6a2e-1c3d-4e5f-8a9b-000000000001"
U_PARTIAL = "0b8f6a2e-1c3d-4e5f-8a9b-000000000002"
U_FAILED = "0b8f6a2e-1c3d-4e5f-8a9b-000000000003"
U_NONE = "0b8f6a2e-1c3d-4e5f-8a9b-000000000004"
NOT_A_UUID = "../admin?x=<script>"
CONSOLE = "https://console.example:8340/cti"


def recorded_history(engine: Engine, bus: SeatBus) -> None:
    """Five earlier calls with one number: recorded (complete, partial, failed), not recorded, odd uuid."""
    uuids = [U_COMPLETE, U_PARTIAL, U_FAILED, U_NONE, NOT_A_UUID]
    earlier = [ended(make_call(uuid, NOW - timedelta(hours=n + 1))) for n, uuid in enumerate(uuids)]
    current = make_call("now", NOW)
    write(engine, *earlier, current)
    with Session(engine) as session, session.begin():
        for uuid, status in [
            (U_COMPLETE, "complete"),
            (U_PARTIAL, "partial"),
            (U_FAILED, "failed"),
            (NOT_A_UUID, "recovered"),
        ]:
            session.add(Recording(call_uuid=uuid, path_or_uri=f"recordings/{status}.flac", status=status))
    bus.publish(CallEvent(CallEventKind.IDENTIFIED, current, NOW))


def test_card_links_recorded_calls_to_the_console(engine: Engine) -> None:
    bus = SeatBus()
    client = SeatClient(make_seat_app(SeatContext(bus=bus, seat="s", engine=engine, console_url=CONSOLE)))
    recorded_history(engine, bus)
    history = {h["uuid"]: h for h in client.get("/api/card/now").json()["history"]}
    assert {uuid: h["has_recording"] for uuid, h in history.items()} == {
        U_COMPLETE: True,
        U_PARTIAL: True,
        U_FAILED: False,  # a failed recording has nothing to play
        U_NONE: False,
        NOT_A_UUID: True,
    }
    assert history[U_COMPLETE]["play_url"] == f"{CONSOLE}/calls/{U_COMPLETE}"
    assert history[U_PARTIAL]["play_url"] == f"{CONSOLE}/calls/{U_PARTIAL}"
    assert history[U_FAILED]["play_url"] is None
    assert history[U_NONE]["play_url"] is None
    assert history[NOT_A_UUID]["play_url"] is None  # never a link built from something not a UUID


def test_without_a_console_there_is_no_link(client: TestClient, engine: Engine) -> None:
    recorded_history(engine, client.bus)  # type: ignore[attr-defined]
    history = {h["uuid"]: h for h in client.get("/api/card/now").json()["history"]}
    assert history[U_COMPLETE]["has_recording"] is True
    assert all(h["play_url"] is None for h in history.values())


def test_play_url_validates_the_uuid() -> None:
    assert play_url("http://127.0.0.1:8340", U_NONE) == f"http://127.0.0.1:8340/calls/{U_NONE}"
    assert play_url(None, U_NONE) is None
    assert play_url("http://127.0.0.1:8340", f"{U_NONE}/../../x") is None
    assert play_url("http://127.0.0.1:8340", "javascript:alert(1)") is None


def test_card_shows_the_teams_calls_from_other_seats_beside_its_own(engine: Engine) -> None:
    from storage.lookup import CardCall

    own = ended(make_call(U_COMPLETE, NOW - timedelta(hours=3)))
    current = make_call("now", NOW)
    write(engine, own, current)

    def team(number: str, at: datetime, uuid: str, **fields: object) -> CardCall:
        values: dict[str, object] = {
            "uuid": uuid,
            "started_at": at,
            "direction": "out",
            "seat": "seat-9",
            "rep": "bob",
            "talk_seconds": 42.0,
            "disposition": "answered",
            "notes": XSS,
            "has_recording": True,
        }
        values.update(fields)
        return CardCall(**values)  # type: ignore[arg-type]

    asked: list[str] = []

    def team_calls(number: str) -> list[CardCall]:
        asked.append(number)
        return [
            team(number, (NOW - timedelta(hours=1)).astimezone(UTC), U_PARTIAL),
            # The centre's copy of the seat's own call: the seat's row is shown, once.
            team(number, own.started_at, U_COMPLETE, seat="seat-7", rep="alice", notes="stale copy"),
            team(number, NOW.astimezone(UTC), "now"),  # the call on the card itself: never history
        ]

    bus = SeatBus()
    client = SeatClient(
        make_seat_app(
            SeatContext(bus=bus, seat="seat-7", engine=engine, console_url=CONSOLE, team_calls=team_calls)
        )
    )
    bus.publish(CallEvent(CallEventKind.IDENTIFIED, current, NOW))
    response = client.get("/api/card/now")
    assert "<script>" not in response.text
    history = response.json()["history"]
    assert asked == ["+8613812345678"]
    assert [h["uuid"] for h in history] == [U_PARTIAL, U_COMPLETE]  # newest first across both sources
    assert history[0]["seat"] == "seat-9"
    assert history[0]["rep"] == "bob"
    assert history[0]["notes"] == XSS
    assert history[0]["play_url"] == f"{CONSOLE}/calls/{U_PARTIAL}"
    assert "seat" not in history[1]  # the seat's own row
    assert history[1]["notes"] == ""


def test_card_without_a_number_does_not_ask_for_team_calls(engine: Engine) -> None:
    bus = SeatBus()

    def team_calls(number: str) -> list[object]:
        raise AssertionError("asked for a call without a number")

    client = SeatClient(make_seat_app(SeatContext(bus=bus, seat="s", engine=engine, team_calls=team_calls)))  # type: ignore[arg-type]
    current = make_call("now", NOW, number_raw="", number_e164=None)
    write(engine, current)
    bus.publish(CallEvent(CallEventKind.IDENTIFIED, current, NOW))
    assert client.get("/api/card/now").json()["history"] == []
