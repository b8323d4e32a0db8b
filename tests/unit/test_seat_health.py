"""The seat's ``/healthz``: what it checks, what makes it 503, and what never does."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from agent.seat.health import probe_database, probe_directory, verdict
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext

with warnings.catch_warnings():
    # Starlette 1.x warns once at import that it prefers httpx2 for its test client.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.mark.parametrize(
    ("problems", "counts", "status", "body"),
    [
        ({}, {}, 200, {"status": "ok"}),
        (
            {"database": None, "recordings": None},
            {},
            200,
            {"status": "ok", "database": "ok", "recordings": "ok"},
        ),
        # A backlog means the centre was away and the seat kept working: still healthy.
        (
            {"database": None},
            {"sync_backlog": 812, "sync_parked": 3},
            200,
            {"status": "ok", "database": "ok", "sync_backlog": 812, "sync_parked": 3},
        ),
        (
            {"database": "unable to open database file", "recordings": None},
            {"storage_parked": 2},
            503,
            {
                "status": "down",
                "database": "unable to open database file",
                "recordings": "ok",
                "storage_parked": 2,
            },
        ),
        (
            {"recordings": "/data/recordings: No space left on device"},
            {},
            503,
            {"status": "down", "recordings": "/data/recordings: No space left on device"},
        ),
    ],
)
def test_verdict(
    problems: dict[str, str | None], counts: dict[str, int], status: int, body: dict[str, object]
) -> None:
    assert verdict(problems, counts) == (status, body)


def test_a_directory_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    assert probe_directory(tmp_path / "recordings") is None
    assert list((tmp_path / "recordings").iterdir()) == []


def test_a_recordings_path_that_is_a_file_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "recordings"
    blocker.write_text("not a directory")
    problem = probe_directory(blocker)
    assert problem is not None
    assert str(blocker) in problem


def test_healthz_is_503_naming_the_database_and_directory_that_fail(tmp_path: Path) -> None:
    good = create_engine(f"sqlite:///{tmp_path / 'seat.db'}")
    context = SeatContext(bus=SeatBus(), seat="seat-3", engine=good, recordings_dir=tmp_path / "rec")
    client = TestClient(make_seat_app(context), base_url="http://127.0.0.1")
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {
        "seat": "seat-3",
        "status": "ok",
        "database": "ok",
        "recordings": "ok",
        "clients": 0,
    }

    (tmp_path / "gone").write_text("a file where the database's directory should be")
    bad = create_engine(f"sqlite:///{tmp_path / 'gone' / 'seat.db'}")
    (tmp_path / "rec-file").write_text("")
    context = SeatContext(bus=SeatBus(), seat="seat-3", engine=bad, recordings_dir=tmp_path / "rec-file")
    answer = TestClient(make_seat_app(context), base_url="http://127.0.0.1").get("/healthz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "down"
    assert body["database"] != "ok"
    assert body["recordings"] != "ok"
    assert probe_database(bad) is not None
    good.dispose()
    bad.dispose()
