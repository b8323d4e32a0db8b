"""The coverage page (打透) in real headless Chromium, in English and Chinese: pick a list, read, export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium
from console_factories import PASSWORD
from coverage_factories import seed_coverage
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.web.serve import make_server
from storage.db import make_engine, upgrade
from storage.models import AuditEntry

pytestmark = pytest.mark.browser


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'central.db'}")
    upgrade(engine)
    seed_coverage(engine)
    with Session(engine) as session, session.begin():
        create_user(session, "nina", PASSWORD, role="lead", team="north")
    server = make_server(
        make_console_app(engine, ConsoleSettings(secret=b"v" * 32, recordings_dir=tmp_path)), "127.0.0.1", 0
    )
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    yield f"http://127.0.0.1:{server.port}", engine
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    engine.dispose()


@pytest.mark.parametrize(
    ("locale", "title", "warning"), [("en-US", "Lead coverage", "recalled"), ("zh-CN", "数据打透", "收回")]
)
async def test_a_team_lead_picks_a_list_reads_their_reps_and_exports(
    console: tuple[str, Any], locale: str, title: str, warning: str
) -> None:
    base, engine = console
    async with chromium() as browser:
        context = await browser.new_context(locale=locale, accept_downloads=True)
        page = await context.new_page()
        await page.goto(f"{base}/leads/coverage")
        await page.fill("#login", "nina")
        await page.fill("#password", PASSWORD)
        await page.click("#submit")
        await page.wait_for_url(f"{base}/leads/coverage")
        assert title in await page.inner_text("h1")
        await page.select_option("#coverage-list", "spring")
        await page.fill("input[name=days]", "365")
        await page.click("#coverage-show")
        await page.wait_for_selector("#coverage tbody tr[data-rep=amy]")
        reps = await page.eval_on_selector_all("#coverage tbody tr", "rows => rows.map(r => r.dataset.rep)")
        assert reps == ["amy", "bob"]
        assert await page.inner_text("#coverage tr[data-rep=amy] td.passed") == "1"
        assert await page.is_visible("#coverage-chart svg")
        assert warning in await page.inner_text("#coverage-warnings")
        async with page.expect_download() as info:
            await page.click("#coverage-csv")
        download = await info.value
        saved = Path(await download.path())
        assert saved.read_text(encoding="utf-8-sig").splitlines()[1].startswith("amy,north,3,2,1")
        await context.close()
    with Session(engine) as session:
        assert session.scalars(
            select(AuditEntry.action).where(AuditEntry.action.like("coverage_%"))
        ).all() == ["coverage_export_csv"]
