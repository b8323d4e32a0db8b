"""A rep's unsaved note in real headless Chromium: it survives a new call, a reload and a restart.

The agent runs in process with a device the test feeds, on a fixed loopback port so that the
browser's origin (and with it the note kept in its local storage) is the same after the agent
restarts; the browser context stays open across the restart, as a rep's browser does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from browser import chromium
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session
from test_crash_recovery import free_port
from test_screenpop import Feeder
from test_seat_page_browser import XSS_NAME, card_for, feed, seed_customers

from agent.config import load_config
from agent.events import CallerId, Dialed, OffHook, OnHook, Ring
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from storage.repository import call_note

pytestmark = pytest.mark.browser

DRAFT = "客户说周五再打，要200台的报价 <b>not bold</b>"


def at() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def running_agent(data_dir: Path, port: int) -> AsyncIterator[Agent]:
    Feeder.queue = asyncio.Queue()
    pm = make_plugin_manager(load_entrypoints=False)
    registry = DeviceRegistry.from_plugins(pm)
    registry.add(Feeder, "test")
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "seat-7", "rep": "rep01", "data_dir": str(data_dir)},
            "web": {"listen": f"127.0.0.1:{port}"},
            "metrics": {"enabled": False},
            "devices": [{"id": "dev", "type": "feeder"}],
            "lines": [{"id": "L1", "device": "dev"}],
        },
    )
    agent = Agent(config, pm, devices=registry, registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.started.wait(), 15)
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def open_page(context: Any, port: int) -> Any:
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.wait_for_selector('#connection[data-state="live"]')
    return page


async def card_is(page: Any, uuid: str) -> None:
    await page.wait_for_function(
        """uuid => {
            const card = document.getElementById("card");
            return !card.hidden && card.getAttribute("data-uuid") === uuid;
        }""",
        arg=uuid,
        timeout=10_000,
    )


@pytest.mark.parametrize(
    ("locale", "answered", "restored"),
    [("en-US", "Answered", "Unsaved note restored"), ("zh-CN", "已接听", "已恢复未保存的备注")],
)
async def test_a_draft_note_survives_a_new_call_a_reload_and_a_restart(
    tmp_path: Path, locale: str, answered: str, restored: str
) -> None:
    seed_customers(tmp_path)
    port = free_port()
    async with chromium() as browser:
        context = await browser.new_context(locale=locale)
        async with running_agent(tmp_path, port):
            page = await open_page(context, port)
            # The first call: answered, hung up; the rep writes the note in wrap-up and does not save.
            feed(Ring(device_id="dev", line="1", at=at()))
            feed(CallerId(device_id="dev", line="1", at=at(), number="13812345678"))
            await card_for(page, "138 1234 5678")
            first = await page.get_attribute("#card", "data-uuid")
            feed(OffHook(device_id="dev", line="1", at=at()), OnHook(device_id="dev", line="1", at=at()))
            await page.wait_for_selector(f'#card #card-status:has-text("{answered}")')
            await page.click("#note-text")
            await page.keyboard.type(DRAFT)

            # The next call rings: a banner, not a card swap; the words stay where they were.
            feed(Ring(device_id="dev", line="1", at=at()))
            feed(CallerId(device_id="dev", line="1", at=at(), number="13900001111"))
            await page.wait_for_selector("#incoming:not([hidden])")
            # The caller is a known customer whose name is markup: named, as text.
            await page.wait_for_function(
                "name => document.getElementById('incoming-text').textContent.includes(name)", arg=XSS_NAME
            )
            assert await page.evaluate("() => window.__xss") is None
            assert await page.get_attribute("#card", "data-uuid") == first
            assert await page.input_value("#note-text") == DRAFT
            # The rep opens the new call: its card, empty; the draft goes back with its call.
            await page.click("#incoming-open")
            await card_for(page, "139 0000 1111")
            second = await page.get_attribute("#card", "data-uuid")
            assert second != first
            assert await page.is_hidden("#incoming")
            assert await page.input_value("#note-text") == ""
            await page.click(f'#calls .call[data-uuid="{first}"]')
            await card_is(page, first)
            assert await page.input_value("#note-text") == DRAFT
            assert await page.get_attribute("#note-status", "data-state") == "draft"
            assert restored in await page.inner_text("#note-status")
            feed(OnHook(device_id="dev", line="1", at=at()))  # the second call goes unanswered

            # A reload: the card comes back with the unsaved note (no call is in progress).
            await page.reload()
            await page.wait_for_selector('#connection[data-state="live"]')
            await card_is(page, first)
            assert await page.input_value("#note-text") == DRAFT
            assert await page.inner_text("#card-name") == "张伟"  # the card's customer, from the database
            await page.close()

        # The agent restarts; the rep's browser was left open on the same address.
        async with running_agent(tmp_path, port) as agent:
            page = await open_page(context, port)
            await card_is(page, first)
            assert await page.input_value("#note-text") == DRAFT
            assert await page.locator("#calls .call").count() == 2  # today's calls, from the database
            # Saved at last: stored once, and the kept draft goes.
            await page.click("#note-save")
            await page.wait_for_selector('#note-status[data-state="saved"]')
            assert agent.engine is not None
            with Session(agent.engine) as session:
                note = call_note(session, first)
            assert note is not None
            assert note.notes == DRAFT
            assert (
                await page.evaluate(
                    "() => Object.keys(localStorage).filter(k => k.startsWith('cti-seat-draft:'))"
                )
                == []
            )
            await page.reload()
            await page.wait_for_selector('#connection[data-state="live"]')
            await page.wait_for_timeout(500)
            assert await page.is_hidden("#card")  # nothing left unsaved, nothing in progress
            await page.close()
        await context.close()


@pytest.mark.parametrize(
    ("locale", "inbound", "outbound", "ringing"),
    [("en-US", "Caller", "Called", "Ringing"), ("zh-CN", "来电", "去电", "振铃中")],
)
async def test_the_card_says_whether_the_call_came_in_or_went_out(
    tmp_path: Path, locale: str, inbound: str, outbound: str, ringing: str
) -> None:
    seed_customers(tmp_path)
    port = free_port()
    async with chromium() as browser, running_agent(tmp_path, port):
        context = await browser.new_context(locale=locale)
        page = await open_page(context, port)
        feed(OffHook(device_id="dev", line="1", at=at()))
        feed(Dialed(device_id="dev", line="1", at=at(), digits="13812345678", complete=True))
        await card_for(page, "138 1234 5678")
        assert await page.get_attribute("#card", "data-direction") == "out"
        assert await page.text_content("#card-heading") == outbound
        feed(OnHook(device_id="dev", line="1", at=at()))
        feed(Ring(device_id="dev", line="1", at=at()))
        feed(CallerId(device_id="dev", line="1", at=at(), number="13900001111"))
        await card_for(page, "139 0000 1111")
        assert await page.text_content("#card-heading") == inbound
        # The rep's own state stays what it was; the widget says the line rings.
        await page.wait_for_selector('#rep-state[data-line="ringing"]')
        assert await page.get_attribute("#rep-state", "data-state") != "on_call"
        assert await page.text_content("#rep-state-now") == ringing
        feed(OffHook(device_id="dev", line="1", at=at()))
        await page.wait_for_selector('#rep-state[data-state="on_call"][data-line=""]')
        feed(OnHook(device_id="dev", line="1", at=at()))
        await context.close()
