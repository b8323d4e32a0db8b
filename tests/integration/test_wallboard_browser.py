"""The wallboard on a TV: headless Chromium at 1920x1080, in English and Chinese, in kiosk mode.

A floor of twelve reps (display names in Latin and Chinese script, some long) with
targets from the config and from the database, some reps on a call now. The page
must fit the screen sideways (the page and every row and cell: scrollWidth never
above clientWidth), show display names, ranks, a bar toward each target and the
time on the current call, hide the navigation in kiosk mode, and come back by
itself when the centre restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import chromium
from console_factories import PASSWORD
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.config import DailyTarget, TargetsSection
from agent.web.serve import make_server
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Rep
from storage.teams import set_team_targets

pytestmark = pytest.mark.browser

#: rep id -> display name (None: the rep id is shown), team.
FLOOR: dict[str, tuple[str | None, str]] = {
    "r01": ("Alexandra Konstantinidou", "north"),
    "r02": ("张伟", "north"),
    "r03": ("欧阳娜娜", "north"),
    "r04": ("Bartholomew Okonkwo-Smith", "north"),
    "r05": ("李晓明", "north"),
    "r06": ("Maria Fernanda Silva", "north"),
    "r07": ("司马相如", "north"),
    "r08": (None, "north"),
    "r09": ("Zhang Wei (Vincent)", "north"),
    "r10": ("王小二", "north"),
    "r11": ("Priyanka Raghunathan", "north"),
    "r12": ("陈静", "north"),
}


def seed_floor(engine: Engine) -> None:
    """Today's calls for the floor: rep n made n*9 calls out and took n*2 in; r02, r05, r11 are on a call."""
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        for login, (display, team) in FLOOR.items():
            create_user(session, login, PASSWORD, role="rep", rep=login, team=team)
            rep = session.scalars(select(Rep).where(Rep.name == login)).one()
            rep.display_name = display
        # The team's own targets, in the database; the config sets the floor's talk time.
        set_team_targets(session, "north", calls=120, effective_calls=40)
        for n, login in enumerate(FLOOR, start=1):
            for k in range(n * 11):
                outbound = k % 11 >= 2
                answered = k % 3 != 0
                talk = 30.0 + 25 * (k % 9) if answered else None
                # Spread over the last few hours, never before today's midnight (UTC here).
                started = max(now - timedelta(minutes=3 + k * 2), now.replace(hour=0, minute=0, second=1))
                session.add(
                    CallRecord(
                        uuid=f"{login}-{k}", seat=f"s-{login}", device_id="d", line="L1", rep=login,
                        team="north", direction="out" if outbound else "in", started_at=started,
                        answered_at=started if answered else None,
                        ended_at=started + timedelta(seconds=(talk or 0) + 5),
                        talk_seconds=talk, disposition="answered" if answered else "missed",
                    )
                )  # fmt: skip
        for login, seconds, answered in (("r02", 754, True), ("r05", 65, True), ("r11", 12, False)):
            started = now - timedelta(seconds=seconds)
            session.add(
                CallRecord(
                    uuid=f"{login}-live", seat=f"s-{login}", device_id="d", line="L1", rep=login,
                    team="north", direction="out", started_at=started,
                    answered_at=started if answered else None,
                )
            )  # fmt: skip


class Centre:
    """The console served on a port of 127.0.0.1, restartable on the same port."""

    def __init__(self, engine: Engine, settings: ConsoleSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.port = 0
        self.server: Any = None
        self.task: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = make_server(make_console_app(self.engine, self.settings), "127.0.0.1", self.port)
        self.task = asyncio.create_task(self.server.serve())
        await self.server.wait_started()
        self.port = self.server.port

    async def stop(self) -> None:
        if self.task is not None:
            # As a centre's process stops: open event streams are cancelled after the graceful
            # timeout, and (the process being gone) their connections close.
            self.server.should_exit = True
            await asyncio.wait_for(self.task, 10)
            for connection in list(self.server.server_state.connections):
                connection.transport.close()
            self.task = None


@pytest.fixture
async def centre(tmp_path: Path) -> AsyncIterator[Centre]:
    engine = make_engine(f"sqlite:///{tmp_path / 'centre.db'}")
    upgrade(engine)
    seed_floor(engine)
    settings = ConsoleSettings(
        secret=b"w" * 32,
        recordings_dir=tmp_path,
        wallboard_interval=0.3,
        effective_seconds=60.0,
        targets=TargetsSection(talk_seconds=7200, teams={"north": DailyTarget(calls=100)}),
    )
    running = Centre(engine, settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        engine.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


async def tv(browser: Any, centre: Centre, locale: str, path: str = "/wallboard?kiosk=1") -> Any:
    """A 1920x1080 page logged in as the team lead, on ``path``."""
    context = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale=locale)
    page = await context.new_page()
    await page.goto(f"{centre.base}{path}")
    await page.fill("#login", "nina")
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_url(f"{centre.base}{path}")
    return page


#: Everything that could be wider than its box: the page, each row, each cell and heading.
OVERFLOW = """() => {
    const out = [];
    const root = document.documentElement;
    const wide = (name, el) => {
        if (el.scrollWidth > el.clientWidth) out.push([name, el.scrollWidth, el.clientWidth]);
    };
    wide("page", root);
    if (root.scrollHeight > root.clientHeight) out.push(["tall", root.scrollHeight, root.clientHeight]);
    const boxes = "#wallboard tr, #wallboard td, #wallboard th, .tile, .wb-head";
    for (const el of document.querySelectorAll(boxes)) {
        if (!el.closest("tr[hidden]")) wide(el.tagName + " " + el.textContent.trim(), el);
    }
    return out;
}"""


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("zh-CN", "zh-CN")])
async def test_kiosk_wallboard_fits_a_1080p_tv_without_navigation(
    browser: Any, centre: Centre, locale: str, lang: str
) -> None:
    page = await tv(browser, centre, locale)
    assert await page.get_attribute("html", "lang") == lang
    assert await page.locator("header.top").count() == 0  # no navigation, no log-out, no menus
    assert await page.locator("nav").count() == 0
    # An event arrives and the script rebuilds the rows.
    await page.wait_for_function("() => document.getElementById('wb-state').dataset.state === 'live'")
    await page.wait_for_function("() => document.querySelectorAll('#wb-rows tr').length === 12")
    rows = await page.eval_on_selector_all(
        "#wb-rows tr",
        """rows => rows.map(r => ({
            name: r.cells[0].textContent, rank: r.cells[0].dataset.rank, hidden: r.hidden,
            bars: r.querySelectorAll('progress').length, since: r.cells[7].textContent,
            dot: r.cells[8].textContent, height: r.getBoundingClientRect().height}))""",
    )
    # Ranked by talk time: the rep with the most calls first; display names, not rep ids.
    assert [r["rank"] for r in rows] == [str(n) for n in range(1, 13)]
    assert rows[0]["name"] == "陈静"
    assert rows[1]["name"] == "Priyanka Raghunathan"
    assert "r08" in [r["name"] for r in rows]  # no display name: the rep id
    assert not any(r["name"] in ("r01", "r02", "r12") for r in rows)
    # All twelve on one screen, each with a bar toward each of its three targets.
    assert not any(r["hidden"] for r in rows)
    assert all(r["bars"] == 3 for r in rows)
    assert all(r["height"] >= 1080 * 0.05 for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["张伟"]["dot"] == "\u25cf"
    minutes, seconds = by_name["张伟"]["since"].split(":")
    assert int(minutes) == 12  # on the call for 12:34, and ticking
    assert 30 <= int(seconds) <= 59
    assert by_name["陈静"]["dot"] == ""
    assert by_name["陈静"]["since"] == ""
    # Readable at three metres: the figures at least 32 px high on a 1080-line screen.
    sizes = await page.eval_on_selector_all(
        "#wb-rows td .v", "cells => cells.map(c => parseFloat(getComputedStyle(c).fontSize))"
    )
    assert min(sizes) >= 32
    assert await page.evaluate(OVERFLOW) == []
    await page.context.close()


async def test_wallboard_with_navigation_fits_too_and_pages_through_a_long_floor(
    browser: Any, centre: Centre
) -> None:
    # Eighteen more reps on the floor: more rows than fit at a readable height.
    now = datetime.now(UTC)
    with Session(centre.engine) as session, session.begin():
        for n in range(13, 31):
            session.add(
                CallRecord(
                    uuid=f"extra-{n}", seat="s", device_id="d", line="L1", rep=f"r{n}", team="north",
                    direction="out", started_at=now - timedelta(minutes=5),
                    answered_at=now - timedelta(minutes=5), ended_at=now - timedelta(minutes=4),
                    talk_seconds=60.0, disposition="answered",
                )
            )  # fmt: skip
    page = await tv(browser, centre, "en-US", "/wallboard")
    assert await page.locator("header.top nav").count() == 1  # not kiosk: the console's navigation
    await page.wait_for_function("() => document.querySelectorAll('#wb-rows tr').length === 30")
    shown = await page.eval_on_selector_all("#wb-rows tr", "rows => rows.filter(r => !r.hidden).length")
    assert 12 <= shown < 30
    assert (await page.inner_text("#wb-page")).startswith("Page 1/")
    assert await page.evaluate(OVERFLOW) == []
    await page.context.close()


async def test_wallboard_reconnects_by_itself_when_the_centre_restarts(browser: Any, centre: Centre) -> None:
    page = await tv(browser, centre, "en-US")
    await page.wait_for_function("() => document.getElementById('wb-state').dataset.state === 'live'")
    before = await page.inner_text("#wb-calls")
    await centre.stop()
    await page.wait_for_function(
        "() => document.getElementById('wb-state').dataset.state === 'reconnecting'", timeout=10_000
    )
    now = datetime.now(UTC)
    with Session(centre.engine) as session, session.begin():
        session.add(
            CallRecord(
                uuid="after-restart", seat="s", device_id="d", line="L1", rep="r01", team="north",
                direction="out", started_at=now - timedelta(minutes=1), ended_at=now, disposition="missed",
            )
        )  # fmt: skip
    await centre.start()  # the same port: the page's address still holds
    await page.wait_for_function(
        "expected => document.getElementById('wb-calls').textContent === expected",
        arg=str(int(before) + 1),
        timeout=40_000,
    )
    assert await page.get_attribute("#wb-state", "data-state") == "live"
    with contextlib.suppress(Exception):
        await page.context.close()
