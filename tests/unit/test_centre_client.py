"""The seat's centre client against the centre's own seat API app (in process), and its token file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import ended, make_call
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.errors import ConfigError
from agent.seat.centre_client import CentreClient, CentreRefused, CentreUnavailable, read_token
from agent.seatapi import CallEntry
from storage.db import make_engine, upgrade
from storage.seats import add_seat

UUID = "2b1f0c7e-aaaa-4bbb-8ccc-{:012d}"


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def centre(engine: Engine) -> TestClient:
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(CollectorRegistry()))
    return TestClient(Starlette(routes=seat_api_routes(ctx)), base_url="http://centre.test")


def _token(engine: Engine, name: str = "seat-7") -> str:
    with Session(engine) as session, session.begin():
        return add_seat(session, name)[1]


def test_a_batch_goes_through_and_comes_back_per_entry(engine: Engine, centre: TestClient) -> None:
    client = CentreClient("http://centre.test", _token(engine), client=centre)
    entries = [CallEntry.of(ended(make_call(UUID.format(n), seat="seat-7")), None, None) for n in (1, 2)]
    entries.append({"uuid": "x"})
    results = client.send_calls("seat-7", entries, backlog=0)
    assert [r.status for r in results] == ["accepted", "accepted", "rejected"]
    assert client.whoami() == {"seat": "seat-7", "team": None}


def test_a_wrong_token_is_refused_not_retried(engine: Engine, centre: TestClient) -> None:
    _token(engine)
    client = CentreClient("http://centre.test", "cti_seat_nope", client=centre)
    with pytest.raises(CentreRefused, match="valid seat token"):
        client.send_calls("seat-7", [], backlog=None)


def test_another_seats_name_is_refused(engine: Engine, centre: TestClient) -> None:
    client = CentreClient("http://centre.test", _token(engine), client=centre)
    with pytest.raises(CentreRefused, match="cannot write as"):
        client.send_calls("seat-8", [], backlog=None)


def test_a_5xx_is_unavailable() -> None:
    async def broken(request: object) -> PlainTextResponse:
        return PlainTextResponse("down", status_code=503)

    app = Starlette(routes=[Route("/api/v1/calls", broken, methods=["POST"])])
    client = CentreClient("http://c", "cti_seat_x", client=TestClient(app, base_url="http://c"))
    with pytest.raises(CentreUnavailable, match="503"):
        client.send_calls("seat-7", [], backlog=None)


def test_the_token_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("cti_seat_abc\n")
    os.chmod(path, 0o600)
    assert read_token(path) == "cti_seat_abc"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_token(path)
    os.chmod(path, 0o600)
    path.write_text("")
    with pytest.raises(ConfigError, match="does not hold a seat token"):
        read_token(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(tmp_path / "missing")
