"""The rep's worklist in real headless Chromium, on a real floor: ``cti-agent demo --seats 1``.

The centre and the seat are separate processes talking real HTTP on loopback. The seat page
shows rep01's leads from the centre; the rep dials the first (through the simulated line),
records a result with a note, and the next lead comes up; a call-back asks for its time. The
centre then holds the dispositions and the leads moved on. English and Chinese.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import chromium
from playwright.async_api import expect
from test_centre_sync import start_floor, wait_for
from test_crash_recovery import free_port, query

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLI = [sys.executable, "-m", "agent.cli"]


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A one-seat demo floor: the seat page's URL and the centre's data directory."""
    root = tmp_path / "floor"
    options = ("--seats", "1", "--speed", "30", "--rate", "2", "--seed", "11")
    demo, text = start_floor(root, free_port(), *options)
    try:
        page = re.search(r"seat-01:\s+(http://127\.0\.0\.1:\d+)/", text)
        assert page, text
        yield page.group(1), root / "centre"
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=90) == 0


async def _items(page: Any) -> list[str]:
    return list(await page.locator("#worklist-items .work-item .work-name").all_text_contents())


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("en-US", ("Worklist", "New", "Deal", "Yours")),
        ("zh-CN", ("今日待拨", "新数据", "成交", "您的客户")),
    ],
)
async def test_the_rep_works_the_list_a_result_at_a_time(
    floor: tuple[str, Path], locale: str, words: tuple[str, str, str, str]
) -> None:
    url, centre = floor
    title, new, deal, yours = words
    async with chromium() as browser:
        context = await browser.new_context(locale=locale)
        page = await context.new_page()
        lang = "?lang=zh-CN" if locale == "zh-CN" else "?lang=en"
        await page.goto(url + "/" + lang)
        await page.locator("#worklist-items .work-item").first.wait_for(timeout=20_000)
        assert await page.locator("#worklist-heading").text_content() == title
        names = await _items(page)
        assert names[0] == "王建国"  # rep01's leads, in the order they were handed over
        assert await page.locator(".work-item.current .work-reason").text_content() == new
        assert await page.locator("#disposition-code option").count() == 8

        # Dial the first lead through the simulated line, then record the result.
        await page.locator(".work-item.current button.dial").click()
        # The call pops with who owns the number across the floor: the rep's own lead.
        await expect(page.locator("#card-ownership")).to_have_text(yours, timeout=20_000)
        await page.select_option("#disposition-code", "deal")
        assert deal in (await page.locator("#disposition-code option:checked").text_content() or "")
        await page.fill("#disposition-note", "签了一年 <b>不是标签</b>")
        await page.click("#disposition-save")
        first = page.locator("#worklist-items .work-item .work-name").first
        await expect(first).not_to_have_text("王建国", timeout=10_000)
        assert (await _items(page))[0] == names[1]  # the next lead comes up

        # A call-back needs its time: the field appears and is required.
        await page.select_option("#disposition-code", "call_back")
        assert await page.locator("#disposition-follow-up").is_visible()
        await page.fill("#disposition-follow-up", "2099-01-05T10:30")
        await page.click("#disposition-save")
        # Further ahead than a follow-up may be: refused on the page, not parked later.
        await expect(page.locator("#disposition-status")).to_contain_text("400", timeout=10_000)
        soon = (datetime.now() + timedelta(days=3)).strftime("%Y-%m-%dT10:30")
        await page.fill("#disposition-follow-up", soon)
        await page.click("#disposition-save")
        await expect(first).not_to_have_text(names[1], timeout=10_000)
        await context.close()

    db = centre / "cti-agent.db"
    wait_for(lambda: len(query(db, "SELECT uuid FROM dispositions")) == 2, 30, "both results at the centre")
    rows = query(db, "SELECT d.code, d.note, d.rep, d.seat, d.conflict FROM dispositions d ORDER BY d.at")
    assert rows == [
        ("deal", "签了一年 <b>不是标签</b>", "rep01", "seat-01", None),
        ("call_back", None, "rep01", "seat-01", None),
    ]
    leads = query(
        db,
        "SELECT c.name, l.last_code, l.closed_at IS NOT NULL, l.next_at IS NOT NULL FROM leads l "
        "JOIN customers c ON c.id = l.customer_id WHERE l.last_code IS NOT NULL ORDER BY c.name",
    )
    assert sorted(leads) == sorted([("王建国", "deal", 1, 0), (names[1], "call_back", 0, 1)])
