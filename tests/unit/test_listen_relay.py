"""The centre's listen relay (seats dial in; pure asyncio) and the seat API routes over it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.centre.relay import ONLINE_GRACE, ListenRelay
from storage.db import make_engine, upgrade
from storage.seats import add_seat


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_waiting_seat_gets_the_request_at_once_and_streams_to_the_listener() -> None:
    relay = ListenRelay()
    waiting = asyncio.create_task(relay.wait("seat-1", timeout=5))
    await asyncio.sleep(0)
    assert relay.online("seat-1")
    ticket = relay.open("seat-1", "call-1")
    got = await asyncio.wait_for(waiting, 1)
    assert got is ticket
    assert relay.attach("seat-2", ticket.id) is None  # another seat cannot take it
    assert relay.attach("seat-1", ticket.id) is ticket
    assert relay.attach("seat-1", ticket.id) is None  # one stream per ticket
    assert await relay.attached(ticket, 0.1)
    for n in range(3):
        ticket.put(bytes([n]) * 4)
    ticket.finish()
    assert [chunk async for chunk in ticket.audio()] == [b"\0" * 4, b"\1" * 4, b"\2" * 4]


async def test_a_request_made_before_the_poll_is_handed_to_the_next_poll() -> None:
    relay = ListenRelay()
    ticket = relay.open("seat-1", "call-1")
    assert await relay.wait("seat-1", timeout=0.01) is ticket


async def test_a_seat_that_never_answers_times_out_and_a_closed_ticket_is_skipped() -> None:
    relay = ListenRelay()
    ticket = relay.open("seat-1", "call-1")
    assert not await relay.attached(ticket, 0.01)
    relay.close(ticket)
    assert await relay.wait("seat-1", timeout=0.01) is None
    assert relay.attach("seat-1", ticket.id) is None


async def test_online_lasts_a_grace_after_the_last_poll() -> None:
    clock = Clock()
    relay = ListenRelay(clock=clock)
    assert not relay.online("seat-1")
    assert await relay.wait("seat-1", timeout=0) is None
    assert relay.online("seat-1")
    assert relay.online_seats() == {"seat-1"}
    clock.now += ONLINE_GRACE + 1
    assert not relay.online("seat-1")
    assert relay.online_seats() == frozenset()


async def test_a_slow_listener_loses_the_oldest_audio_not_the_seat() -> None:
    relay = ListenRelay()
    ticket = relay.open("seat-1", "call-1")
    for n in range(500):
        ticket.put(n.to_bytes(2, "little"))
    assert ticket.dropped == 500 - len(ticket.chunks)
    first = await anext(ticket.audio())
    assert int.from_bytes(first, "little") == 500 - len(ticket.chunks) - 1
    relay.close(ticket)
    ticket.put(b"after")
    assert not ticket.chunks


async def test_a_refusal_reaches_the_listener() -> None:
    relay = ListenRelay()
    ticket = relay.open("seat-1", "call-1")
    assert relay.attach("seat-1", ticket.id) is ticket
    ticket.refuse("not live")
    assert await relay.attached(ticket, 0.1)
    assert ticket.refused == "not live"
    assert [chunk async for chunk in ticket.audio()] == []


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


def test_the_routes_need_the_seats_token_and_its_own_ticket(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        token = add_seat(session, "seat-1")[1]
        other = add_seat(session, "seat-2")[1]
    relay = ListenRelay()
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(CollectorRegistry()), relay=relay)
    client = TestClient(Starlette(routes=seat_api_routes(ctx)))
    assert client.get("/api/v1/listen/wait").status_code == 401
    ticket = relay.open("seat-1", "call-1")
    answer = client.get("/api/v1/listen/wait", headers={"authorization": f"Bearer {token}"})
    assert answer.json() == {"ticket": ticket.id, "call_uuid": "call-1"}
    stolen = client.post(f"/api/v1/listen/{ticket.id}", headers={"authorization": f"Bearer {other}"})
    assert stolen.status_code == 404
    sent = client.post(
        f"/api/v1/listen/{ticket.id}", content=b"\1\2" * 800, headers={"authorization": f"Bearer {token}"}
    )
    assert sent.json() == {"bytes": 1600}
    assert ticket.ended
    assert b"".join(ticket.chunks) == b"\1\2" * 800
