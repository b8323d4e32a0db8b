"""The centre's seat API: credentials, per-entry answers, idempotent replays, one seat never another."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from factories import ended, make_call
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.events import Disposition
from agent.seatapi import CallEntry
from storage.db import make_engine, upgrade
from storage.models import CallRecord
from storage.seats import add_seat, list_seats, revoke_seat

UUID = "2b1f0c7e-aaaa-4bbb-8ccc-{:012d}"


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def client(engine: Engine, registry: CollectorRegistry) -> TestClient:
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry))
    return TestClient(Starlette(routes=seat_api_routes(ctx)))


def _token(engine: Engine, name: str = "seat-7", team: str | None = "north") -> str:
    with Session(engine) as session, session.begin():
        _, token = add_seat(session, name, team)
    return token


def _entry(n: int, seat: str = "seat-7", **changes: Any) -> dict[str, Any]:
    call = ended(make_call(UUID.format(n), seat=seat, line="L1"), talk=60.0 + n)
    return CallEntry.of(call, changes.pop("notes", None), None) | changes


def _post(client: TestClient, token: str | None, body: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/v1/calls", json=body, headers=headers)


def _stored(engine: Engine) -> dict[str, CallRecord]:
    with Session(engine) as session:
        return {row.uuid: row for row in session.scalars(select(CallRecord))}


def _count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_batch_is_stored_and_answered_per_entry(client: TestClient, engine: Engine) -> None:
    token = _token(engine)
    answer = _post(
        client, token, {"seat": "seat-7", "backlog": 3, "calls": [_entry(1), _entry(2, notes="回电")]}
    )
    assert answer.status_code == 200
    assert [r["status"] for r in answer.json()["results"]] == ["accepted", "accepted"]
    rows = _stored(engine)
    assert set(rows) == {UUID.format(1), UUID.format(2)}
    assert rows[UUID.format(2)].notes == "回电"
    assert rows[UUID.format(1)].talk_seconds == 61.0
    assert [(s.name, s.backlog) for s in list_seats(Session(engine))] == [("seat-7", 3)]


def test_a_replayed_batch_changes_nothing_and_says_duplicate(client: TestClient, engine: Engine) -> None:
    token = _token(engine)
    body = {"seat": "seat-7", "calls": [_entry(1)]}
    assert _post(client, token, body).json()["results"][0]["status"] == "accepted"
    assert _post(client, token, body).json()["results"][0]["status"] == "duplicate"
    assert len(_stored(engine)) == 1


def test_a_late_snapshot_never_moves_a_call_back(client: TestClient, engine: Engine) -> None:
    token = _token(engine)
    assert _post(client, token, {"seat": "seat-7", "calls": [_entry(1)]}).status_code == 200
    started = CallEntry.of(make_call(UUID.format(1), seat="seat-7", line="L1"), None, None)
    result = _post(client, token, {"seat": "seat-7", "calls": [started]}).json()["results"][0]
    assert result["status"] == "duplicate"
    assert _stored(engine)[UUID.format(1)].disposition == Disposition.ANSWERED.value


def test_a_bad_entry_is_rejected_with_its_reason_and_the_rest_stored(
    client: TestClient, engine: Engine, registry: CollectorRegistry
) -> None:
    token = _token(engine)
    nul = _entry(2, cid_name="Zhang\x00San")
    no_zone = _entry(3, started_at="2026-11-27T09:30:00")
    calls = [_entry(1), nul, no_zone, "not an object", _entry(4)]
    results = _post(client, token, {"seat": "seat-7", "calls": calls}).json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "rejected", "accepted"]
    assert "NUL" in results[1]["reason"]
    assert results[1]["uuid"] == UUID.format(2)
    assert "UTC offset" in results[2]["reason"]
    assert set(_stored(engine)) == {UUID.format(1), UUID.format(4)}
    assert _count(registry, "cti_centre_sync_entries_total", status="rejected") == 3


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("Bearer cti_seat_wrong", "unknown"),
        ("Basic abc", "missing"),
        ("Bearer ", "missing"),
    ],
)
def test_a_missing_or_wrong_token_is_refused_and_counted(
    client: TestClient, engine: Engine, registry: CollectorRegistry, header: str | None, reason: str
) -> None:
    _token(engine)
    headers = {"authorization": header} if header else {}
    answer = client.post("/api/v1/calls", json={"seat": "seat-7", "calls": [_entry(1)]}, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert _stored(engine) == {}
    assert _count(registry, "cti_centre_auth_failures_total", reason=reason) == 1


def test_a_revoked_token_opens_nothing(client: TestClient, engine: Engine) -> None:
    token = _token(engine)
    with Session(engine) as session, session.begin():
        revoke_seat(session, "seat-7")
    assert _post(client, token, {"seat": "seat-7", "calls": [_entry(1)]}).status_code == 401
    assert client.get("/api/v1/whoami", headers={"authorization": f"Bearer {token}"}).status_code == 401


def test_a_seat_claiming_another_seats_name_is_refused(
    client: TestClient, engine: Engine, registry: CollectorRegistry
) -> None:
    token = _token(engine)
    _token(engine, "seat-8")
    assert _post(client, token, {"seat": "seat-8", "calls": [_entry(1, seat="seat-8")]}).status_code == 403
    # Its own name on the batch, another seat's on one call: the whole batch is refused.
    assert (
        _post(client, token, {"seat": "seat-7", "calls": [_entry(1), _entry(2, seat="seat-8")]}).status_code
        == 403
    )
    assert _stored(engine) == {}
    assert _count(registry, "cti_centre_auth_failures_total", reason="seat_mismatch") == 2


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"seat": "seat-7"}', "\ufeff{}".encode()])
def test_a_body_that_is_no_batch_is_a_400(client: TestClient, engine: Engine, body: bytes) -> None:
    token = _token(engine)
    answer = client.post("/api/v1/calls", content=body, headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 400
    assert "error" in answer.json()


def test_whoami_names_the_tokens_seat(client: TestClient, engine: Engine) -> None:
    token = _token(engine, "seat-9", "east-1")
    answer = client.get("/api/v1/whoami", headers={"authorization": f"Bearer {token}"})
    assert answer.json() == {"seat": "seat-9", "team": "east-1"}


def test_healthz_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
    answer = client.get("/healthz", headers={"accept": "application/json"})
    assert answer.json() == {"status": "ok", "database": "ok"}


def test_team_metrics_count_what_seats_sent_today(client: TestClient, engine: Engine) -> None:
    from datetime import UTC, datetime, timedelta

    from agent.centre.metrics import TeamCollector

    token = _token(engine)
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    calls = [
        CallEntry.of(
            ended(make_call(UUID.format(n), seat="seat-7", started_at=today + timedelta(minutes=n)), talk=t),
            None,
            None,
        )
        for n, t in ((1, 30.0), (2, 75.0), (3, 120.0))
    ]
    yesterday = ended(make_call(UUID.format(9), seat="seat-7", started_at=today - timedelta(days=1)))
    calls.append(CallEntry.of(yesterday, None, None))
    assert _post(client, token, {"seat": "seat-7", "backlog": 4, "calls": calls}).status_code == 200
    registry = CollectorRegistry()
    registry.register(TeamCollector(engine, UTC, 60.0, clock=lambda: today))
    sample = registry.get_sample_value
    labels = {"rep": "alice", "team": "north"}
    assert sample("cti_team_calls_today", labels | {"direction": "in", "disposition": "answered"}) == 3
    assert sample("cti_team_talk_seconds_today", labels) == 225.0
    assert sample("cti_team_effective_calls_today", labels) == 2
    assert sample("cti_seat_reported_backlog", {"seat": "seat-7", "team": "north"}) == 4
    assert sample("cti_seat_active", {"seat": "seat-7", "team": "north"}) == 1
    assert sample("cti_centre_database_up", {}) == 1
    text = "\n".join(str(m) for m in registry.collect())
    assert "13812345678" not in text


@pytest.mark.parametrize("skew_minutes", [10, -10])
def test_a_seat_with_a_skewed_clock_is_stored_as_sent_and_its_skew_is_exported(
    client: TestClient,
    engine: Engine,
    registry: CollectorRegistry,
    skew_minutes: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import UTC, datetime, timedelta

    token = _token(engine)
    seat_now = datetime.now(UTC) + timedelta(minutes=skew_minutes)
    entry = _entry(1, started_at=(seat_now - timedelta(minutes=2)).isoformat())
    body = {"seat": "seat-7", "sent_at": seat_now.isoformat(), "calls": [entry]}
    assert _post(client, token, body).json()["results"][0]["status"] == "accepted"
    stored = _stored(engine)[UUID.format(1)]
    assert (
        abs((stored.started_at.replace(tzinfo=UTC) - (seat_now - timedelta(minutes=2))).total_seconds()) < 1
    )
    skew = _count(registry, "cti_seat_clock_skew_seconds", seat="seat-7")
    assert abs(skew - skew_minutes * 60) < 5
    assert "clock is" in caplog.text
    assert ("ahead of" if skew_minutes > 0 else "behind") in caplog.text
    # The centre's own clock says when the seat was last seen, not the seat's.
    (seat,) = list_seats(Session(engine))
    assert seat.last_seen_at is not None
    assert abs((seat.last_seen_at.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()) < 5
