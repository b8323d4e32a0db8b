"""Listen-in with the seat calling out: a real seat dials in to a real centre process, no pull.

The seat's page stays on loopback with no listen token (the pull route is off); the centre has
no seat addresses. A lead logs in to the centre over HTTP and hears the seat's live call through
the relay, under a second behind; a lead of another team is refused; both are audited.
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
from sqlalchemy.orm import Session
from test_centre_process import cli, start_centre, stop
from test_crash_recovery import query
from test_listen import PASSWORD, first_audio, log_in

from agent.centre.auth import create_user
from agent.config import load_config
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from storage.db import make_engine


def seat_agent(tmp_path: Path, centre: str, token: str) -> Agent:
    token_file = tmp_path / "seat.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    overrides: dict[str, Any] = {
        "agent": {"seat": "seat-9", "rep": "rep01", "team": "north", "data_dir": str(tmp_path / "seat")},
        "web": {"listen": "127.0.0.1:0"},
        "metrics": {"enabled": False},
        "recording": {"enabled": True},
        "central": {"url": centre, "token_file": str(token_file), "interval": 0.2},
        "devices": [
            {
                "id": "sim", "type": "simulator", "lines": 1, "rate": 120, "seed": 11, "speed": 5.0,
                "inbound_ratio": 0.0, "answer_rate": 1.0, "talk_median": 150.0, "talk_sigma": 0.0,
            }
        ],
    }  # fmt: skip
    pm = make_plugin_manager(load_entrypoints=False)
    return Agent(load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides), pm)


@pytest.fixture
async def floor(tmp_path: Path) -> AsyncIterator[tuple[str, str, Path]]:
    centre_dir = tmp_path / "centre"
    process, address = start_centre(centre_dir)
    token = cli("seats", "add", "seat-9", "--team", "north", "--data-dir", str(centre_dir)).stdout.strip()
    engine = make_engine(f"sqlite:///{centre_dir / 'cti-agent.db'}")
    with Session(engine) as session, session.begin():
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "sam", PASSWORD, role="lead", team="south")
    engine.dispose()
    agent = seat_agent(tmp_path, address, token)
    stop_agent = asyncio.Event()
    run = asyncio.create_task(agent.run(stop_agent))
    try:
        await asyncio.wait_for(agent.started.wait(), 20)
        db = centre_dir / "cti-agent.db"
        deadline = time.monotonic() + 30
        live: list[tuple[Any, ...]] = []
        while not live and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            live = query(db, "SELECT uuid FROM calls WHERE ended_at IS NULL AND answered_at IS NOT NULL")
        assert live, "no call in progress reached the centre"
        yield address, live[0][0], db
    finally:
        stop_agent.set()
        await asyncio.wait_for(run, 40)
        assert stop(process) == 0


async def test_a_lead_hears_a_seat_that_dialled_in_and_another_team_is_refused(
    floor: tuple[str, str, Path],
) -> None:
    address, call_uuid, db = floor
    async with httpx.AsyncClient(base_url=address, timeout=10) as nina:
        await log_in(nina, "nina")
        page = await nina.get("/live")
        assert call_uuid in page.text
        assert 'class="listen"' in page.text  # listenable: the seat is dialled in
        status, delay, body = await first_audio(nina, f"/live/{call_uuid}/audio")
        assert status == 200
        assert delay < 1.0
        samples = np.frombuffer(body[: len(body) - len(body) % 2], dtype="<i2")
        assert len(samples) >= 4000
        assert np.abs(samples).max() > 0  # the call's synthetic speech, not silence
        # A second listen after the first ended works too (the seat polls again).
        again, delay, _ = await first_audio(nina, f"/live/{call_uuid}/audio", want=1600)
        assert again == 200
        assert delay < 1.0
    async with httpx.AsyncClient(base_url=address, timeout=10) as sam:
        await log_in(sam, "sam")
        assert (await sam.get(f"/live/{call_uuid}/audio")).status_code == 403
    audit = query(db, "SELECT user_login, action FROM audit_log WHERE action LIKE 'listen%' ORDER BY id")
    assert audit == [("nina", "listen"), ("nina", "listen"), ("sam", "listen_denied")]
