"""The manager's lead upload in real headless Chromium, in English and in Chinese.

A GBK CSV with Chinese headers and a broken row is chosen in the file input, its preview shows
the detected mapping, one column's mapping is changed, the import runs and the reject file is
downloaded: in the browser's language, audited.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium
from console_factories import PASSWORD
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.web.serve import make_server
from storage.db import make_engine, upgrade
from storage.models import AuditEntry, CustomerRecord, Lead

pytestmark = pytest.mark.browser

ROWS = [
    ["客户名称", "联系人", "手机号码", "备注"],
    ["华为", "王伟", "138 0000 0001", "老客户"],
    ["中兴", "李娜", "+86 138-0000-0002", "vip"],
    ["小米", "张三", "电话待补", ""],  # broken: no valid number
]


class Console:
    def __init__(self, engine: Engine, base: str) -> None:
        self.engine = engine
        self.base = base


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    engine = make_engine(f"sqlite:///{tmp_path / 'central.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        create_user(session, "boss", PASSWORD, role="manager")
    settings = ConsoleSettings(secret=b"w" * 32, recordings_dir=tmp_path)
    server = make_server(make_console_app(engine, settings), "127.0.0.1", 0)
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    yield Console(engine, f"http://127.0.0.1:{server.port}")
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    engine.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as browser:
        yield browser


@pytest.mark.parametrize(
    ("locale", "texts"),
    [
        (
            "en-US",
            {"title": "Check the columns", "ignore": "(ignore)", "row": "row", "reason": "not a valid"},
        ),
        ("zh-CN", {"title": "核对各列", "ignore": "（忽略）", "row": "行号", "reason": "不是有效的电话号码"}),
    ],
)
async def test_a_manager_uploads_a_gbk_sheet_remaps_a_column_imports_and_downloads_the_rejects(
    browser: Any, console: Console, tmp_path: Path, locale: str, texts: dict[str, str]
) -> None:
    sheet = tmp_path / "客户名单.csv"
    out = io.StringIO(newline="")
    csv.writer(out).writerows(ROWS)
    sheet.write_bytes(out.getvalue().encode("gbk"))

    context = await browser.new_context(locale=locale, accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{console.base}/leads/import")
    await page.fill("#login", "boss")
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_url(f"{console.base}/leads/import")
    await page.set_input_files("#upload-file", str(sheet))
    await page.click("#upload-submit")
    await page.wait_for_selector("#preview")
    assert await page.inner_text("h1") == texts["title"]
    assert "客户名单.csv" in await page.inner_text("#upload-name")
    detected = [await page.input_value(f"#col-{i}") for i in range(4)]
    assert detected == ["company", "name", "phone", "notes"]  # a B2B sheet, Chinese headers
    assert await page.inner_text('#col-0 option[value="ignore"]') == texts["ignore"]
    assert "电话待补" in await page.inner_text('#preview tr[data-row="4"]')
    assert await page.inner_text('#preview tr[data-row="2"] td:nth-child(3)') == "王伟"  # GBK read right

    await page.select_option("#col-3", "tags")  # 备注 holds tags in this floor's sheets
    await page.fill("#list-name", "春季")
    await page.click("#import-submit")
    await page.wait_for_selector("#result")
    assert await page.inner_text("#result-imported") == "2"
    assert await page.inner_text("#result-rejected") == "1"

    async with page.expect_download() as info:
        await page.click("#download-rejects")
    download = await info.value
    assert download.suggested_filename == "客户名单.rejects.csv"
    saved = tmp_path / f"rejects-{locale}.csv"
    await download.save_as(saved)
    lines = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert lines[0][:3] == [texts["row"], lines[0][1], "客户名称"]
    assert lines[1][0] == "4"
    assert texts["reason"] in lines[1][1]
    await context.close()

    with Session(console.engine) as session:
        tags = dict(session.execute(select(CustomerRecord.company, CustomerRecord.tags)).all())
        leads = session.scalars(select(Lead.id)).all()
        actions = [
            (e.user_login, e.action, e.target)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.action.startswith("lead_")
        ]
    assert tags == {"华为": "老客户", "中兴": "vip"}
    assert len(leads) == 2
    assert actions == [("boss", "lead_import", "list:春季"), ("boss", "lead_rejects_download", "list:春季")]
