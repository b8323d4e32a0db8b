"""Two centre processes on one PostgreSQL serve one floor: a listener on one hears a seat polling the other.

The seat (a real agent, recording simulated calls) syncs to and polls centre B only; a lead logs in
to centre A. The listen request and the audio cross between the processes over PostgreSQL
LISTEN/NOTIFY; the call rows are the same on both (one database); the listen is audited once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from test_centre_process import start_centre, stop
from test_listen import PASSWORD, first_audio, log_in
from test_listen_reversed import seat_agent

from agent.centre.auth import create_user
from storage.db import make_engine, upgrade
from storage.models import AuditEntry, CallRecord
from storage.seats import add_seat


def centre_config(root: Path, url: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "centre.toml"
    config.write_text(f'[agent]\ndata_dir = "{root}"\n\n[storage]\nurl = "{url}"\n', encoding="utf-8")
    return config


@pytest.fixture
async def two_centres(pg_database_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    engine = make_engine(pg_database_url)
    upgrade(engine)  # once, before either process starts
    with Session(engine) as session, session.begin():
        token = add_seat(session, "seat-9", "north")[1]
        create_user(session, "nina", PASSWORD, role="lead", team="north")
    a, url_a = start_centre(tmp_path / "a", "--config", str(centre_config(tmp_path / "a", pg_database_url)))
    b, url_b = start_centre(tmp_path / "b", "--config", str(centre_config(tmp_path / "b", pg_database_url)))
    agent = seat_agent(tmp_path, url_b, token)
    stop_agent = asyncio.Event()
    run = asyncio.create_task(agent.run(stop_agent))
    try:
        await asyncio.wait_for(agent.started.wait(), 20)
        call = None
        deadline = time.monotonic() + 30
        while call is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            with Session(engine) as session:
                call = session.scalar(
                    select(CallRecord.uuid).where(
                        CallRecord.ended_at.is_(None), CallRecord.answered_at.is_not(None)
                    )
                )
        assert call is not None, "no call in progress reached the centre"
        yield {"a": url_a, "b": url_b, "call": call, "engine": engine}
    finally:
        stop_agent.set()
        await asyncio.wait_for(run, 40)
        assert stop(a) == 0
        assert stop(b) == 0
        engine.dispose()


async def test_a_listener_on_one_centre_hears_a_seat_on_the_other(two_centres: dict[str, Any]) -> None:
    call = two_centres["call"]
    async with httpx.AsyncClient(base_url=two_centres["a"], timeout=10) as nina:
        await log_in(nina, "nina")
        page = await nina.get("/live")
        assert call in page.text
        assert 'class="listen"' in page.text  # the seat polls B; A knows it is dialled in
        status, delay, body = await first_audio(nina, f"/live/{call}/audio")
    assert status == 200
    assert delay < 1.0
    samples = np.frombuffer(body[: len(body) - len(body) % 2], dtype="<i2")
    assert len(samples) >= 4000
    assert np.abs(samples).max() > 0
    with Session(two_centres["engine"]) as session:
        audit = [(e.user_login, e.action) for e in session.scalars(select(AuditEntry))]
        channels = session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"))
        assert channels.scalar_one() == 2  # one listening connection per centre process
    assert audit.count(("nina", "listen")) == 1
