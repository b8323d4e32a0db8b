"""Live listen-in end to end: a real agent recording simulated calls, the console proxying its audio.

The agent runs the simulator (one line, long outbound calls with synthetic
speech), records them, and serves its seat page on 127.0.0.1 with a listen
token. The console is served over the agent's own database (single-machine
mode) with that seat configured. Over HTTP: a lead of the call's team hears
PCM within a second, a rep and a lead of another team are refused (audited),
and the seat refuses a wrong or missing token. In headless Chromium: the live
page lists the call and its Listen button plays it through the Web Audio API.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from browser import chromium
from console_factories import PASSWORD
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.config import load_config
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from agent.web.serve import make_server
from storage.db import make_engine
from storage.models import AuditEntry, CallRecord

pytestmark = pytest.mark.slow

TOKEN = "floor-listen-token-0123456789abcdef"
SEAT = "seat-l"


class Floor:
    def __init__(self, engine: Engine, seat: str, console: str, call_uuid: str) -> None:
        self.engine = engine
        self.seat = seat
        self.console = console
        self.call_uuid = call_uuid

    def audit(self, *actions: str) -> list[tuple[str | None, str, str | None, str | None]]:
        with Session(self.engine) as session:
            return [
                (e.user_login, e.action, e.target, e.remote_addr)
                for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
                if e.action in actions
            ]


def agent_config(tmp_path: Path) -> tuple[Any, Any]:
    overrides: dict[str, Any] = {
        "agent": {"seat": SEAT, "rep": "rep01", "team": "north", "data_dir": str(tmp_path)},
        "web": {"listen": "127.0.0.1:0", "listen_token": TOKEN},
        "metrics": {"enabled": False},
        "recording": {"enabled": True},
        "devices": [
            {
                "id": "sim",
                "type": "simulator",
                "lines": 1,
                "rate": 120,
                "seed": 11,
                "speed": 1.0,
                "inbound_ratio": 0.0,
                "answer_rate": 1.0,
                "talk_median": 60.0,
                "talk_sigma": 0.0,
            }
        ],
    }
    pm = make_plugin_manager(load_entrypoints=False)
    return load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides), pm


@pytest.fixture
async def floor(tmp_path: Path) -> AsyncIterator[Floor]:
    config, pm = agent_config(tmp_path)
    agent = Agent(config, pm)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.started.wait(), 20)
    engine = make_engine(f"sqlite:///{tmp_path / 'cti-agent.db'}")
    with Session(engine) as session, session.begin():
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "sam", PASSWORD, role="lead", team="south")
        create_user(session, "alice", PASSWORD, role="rep", rep="rep01", team="north")
        create_user(session, "mia", PASSWORD, role="manager")

    def in_progress() -> str | None:
        with Session(engine) as session:
            return session.scalar(
                select(CallRecord.uuid).where(CallRecord.ended_at.is_(None)).order_by(CallRecord.id.desc())
            )

    call_uuid = None
    async with asyncio.timeout(20):
        while call_uuid is None:
            await asyncio.sleep(0.1)
            call_uuid = in_progress()
    seat = f"http://127.0.0.1:{agent.web_port}"
    settings = ConsoleSettings(
        secret=b"l" * 32,
        recordings_dir=tmp_path,
        mask_roles=frozenset({"rep"}),
        seats={SEAT: seat},
        listen_token=TOKEN,
    )
    server = make_server(make_console_app(engine, settings), "127.0.0.1", 0)
    serve = asyncio.create_task(server.serve())
    await server.wait_started()
    try:
        yield Floor(engine, seat, f"http://127.0.0.1:{server.port}", call_uuid)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serve, 10)
        stop.set()
        await asyncio.wait_for(run, 30)
        engine.dispose()


async def log_in(client: httpx.AsyncClient, login: str) -> None:
    form = await client.get("/login")
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match
    done = await client.post(
        "/login", data={"csrf": match.group(1), "login": login, "password": PASSWORD, "next": "/live"}
    )
    assert done.status_code == 303, done.text


async def first_audio(client: httpx.AsyncClient, url: str, want: int = 8000) -> tuple[int, float, bytes]:
    """Status, seconds to the first byte, and ``want`` bytes of the stream."""
    asked = time.monotonic()
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            return response.status_code, 0.0, b""
        assert response.headers["content-type"] == "audio/L16;rate=8000;channels=1"
        body = b""
        first = None
        async for chunk in response.aiter_raw():
            first = first or time.monotonic() - asked
            body += chunk
            if len(body) >= want:
                break
    assert first is not None
    return 200, first, body


async def test_a_lead_listens_live_others_are_refused_and_every_listen_is_audited(floor: Floor) -> None:
    audio_url = f"/live/{floor.call_uuid}/audio"
    async with httpx.AsyncClient(base_url=floor.console, timeout=10) as nina:
        await log_in(nina, "nina")
        page = await nina.get("/live")
        assert page.status_code == 200
        assert floor.call_uuid in page.text
        assert 'class="listen"' in page.text
        status, delay, body = await first_audio(nina, audio_url)
        assert status == 200
        assert delay < 1.0
        samples = np.frombuffer(body[: len(body) - len(body) % 2], dtype="<i2")
        assert len(samples) >= 4000
        assert np.abs(samples).max() > 0  # synthetic speech, not silence

    async with httpx.AsyncClient(base_url=floor.console, timeout=10) as mia:
        await log_in(mia, "mia")
        status, delay, _ = await first_audio(mia, audio_url, want=1600)
        assert status == 200
        assert delay < 1.0

    for login in ("sam", "alice"):
        async with httpx.AsyncClient(base_url=floor.console, timeout=10) as other:
            await log_in(other, login)
            assert (await other.get(audio_url)).status_code == 403
            if login == "alice":
                assert (await other.get("/live")).status_code == 403
    async with httpx.AsyncClient(base_url=floor.console, timeout=10) as anonymous:
        assert (await anonymous.get(audio_url)).status_code == 401

    target = f"call:{floor.call_uuid}"
    assert [(who, action, where) for who, action, where, _ in floor.audit("listen", "listen_denied")] == [
        ("nina", "listen", target),
        ("mia", "listen", target),
        ("sam", "listen_denied", target),
        ("alice", "listen_denied", target),
    ]
    assert all(addr == "127.0.0.1" for *_, addr in floor.audit("listen", "listen_denied"))

    # The seat itself: only the console's token opens the stream.
    async with httpx.AsyncClient(base_url=floor.seat, timeout=10) as seat:
        listen = f"/listen/{floor.call_uuid}"
        assert (await seat.get(listen)).status_code == 401
        assert (
            await seat.get(listen, headers={"Authorization": "Bearer wrong-token-wrong-token"})
        ).status_code == 401
        assert (
            await seat.get("/listen/no-such-call", headers={"Authorization": f"Bearer {TOKEN}"})
        ).status_code == 404
        seat.headers["Authorization"] = f"Bearer {TOKEN}"
        status, delay, _ = await first_audio(seat, listen, want=1600)
        assert status == 200
        assert delay < 1.0


@pytest.mark.browser
async def test_the_live_page_plays_a_call_in_chromium(floor: Floor) -> None:
    async with chromium() as browser:
        context = await browser.new_context(locale="en-US")
        page = await context.new_page()
        await page.goto(f"{floor.console}/login?next=/live")
        await page.fill("#login", "nina")
        await page.fill("#password", PASSWORD)
        await page.click("#submit")
        await page.wait_for_url(f"{floor.console}/live")
        row = page.locator(f'tr[data-uuid="{floor.call_uuid}"]')
        await row.wait_for()
        clicked = time.monotonic()
        await row.locator("button.listen").click()
        status = page.locator('#listen-status[data-state="playing"]')
        await status.wait_for(timeout=5000)
        assert time.monotonic() - clicked < 2.0
        assert await status.text_content() == "Listening live"
        first = float(await page.eval_on_selector("#listen-status", "e => e.dataset.currentTime || '0'"))
        await page.wait_for_timeout(1200)
        later = float(await page.eval_on_selector("#listen-status", "e => e.dataset.currentTime"))
        assert later > first + 0.5  # the AudioContext's clock runs: audio is playing
        scheduled = int(await page.eval_on_selector("#listen-status", "e => e.dataset.scheduled"))
        assert scheduled > 10
        await row.locator("button.listen").click()  # stop
        await page.locator('#listen-status[data-state="idle"]').wait_for()
    assert [(who, action) for who, action, *_ in floor.audit("listen")] == [("nina", "listen")]
