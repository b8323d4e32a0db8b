"""The seat page in real headless Chromium: the card pops with the right customer, notes stick, XSS is text.

Debian's ``chromium`` driven by Playwright's Python package (never ``playwright
install``; ``tests/system-deps.sh`` installs the browser). The agent runs in
process with a device the test feeds, and its customers were imported with the
same code as ``cti-agent import-customers``.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, chromium
from playwright.async_api import async_playwright
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session
from test_screenpop import Feeder

from agent.config import load_config
from agent.events import Absence, CallerId, OffHook, OnHook, Ring
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.seat.web.login import HASH_FILE_NAME, SeatLogin, write_password
from agent.web.guard import allowed_hosts
from agent.web.serve import make_server
from storage.customers import import_customers, read_rows
from storage.db import make_engine, upgrade
from storage.models import Recording
from storage.repository import get_call

pytestmark = pytest.mark.browser


XSS_NAME = '<img src=x onerror="window.__xss=1">'
XSS_CID = "<script>window.__xss=2</script>"


def seed_customers(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{data_dir / 'cti-agent.db'}")
    upgrade(engine)
    source = data_dir / "leads.csv"
    with source.open("w", encoding="gbk", newline="") as out:
        csv.writer(out).writerows(
            [
                ["姓名", "手机", "公司", "负责人", "标签"],
                ["张伟", "+86 138 1234 5678", "天津贸易", "rep01", "VIP，天津"],
                [XSS_NAME, "139 0000 1111", "<b>Evil</b> Ltd", "rep02", "<i>x</i>"],
            ]
        )
    _, rows = read_rows(source)
    with Session(engine) as session, session.begin():
        report = import_customers(session, rows)
    assert report.imported == 2
    engine.dispose()


@pytest.fixture
async def agent(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Agent]:
    """The agent with the seat page on a free port; ``indirect`` parameters add ``[web]`` keys."""
    Feeder.queue = asyncio.Queue()
    seed_customers(tmp_path)
    pm = make_plugin_manager(load_entrypoints=False)
    registry = DeviceRegistry.from_plugins(pm)
    registry.add(Feeder, "test")
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "seat-7", "rep": "rep01", "data_dir": str(tmp_path)},
            "web": {"listen": "127.0.0.1:0", **getattr(request, "param", {})},
            "metrics": {"enabled": False},
            "devices": [{"id": "dev", "type": "feeder"}],
            "lines": [{"id": "L1", "device": "dev"}],
            "targets": {"calls": 80},
        },
    )
    running = Agent(config, pm, devices=registry, registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    await asyncio.wait_for(running.started.wait(), 15)
    yield running
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def page(agent: Agent) -> AsyncIterator[Any]:
    async with chromium() as browser:
        context = await browser.new_context(locale="en-US")
        page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        page.dialogs = dialogs
        await page.goto(f"http://127.0.0.1:{agent.web_port}/")
        await page.wait_for_selector('#connection[data-state="live"]')
        yield page


def at() -> datetime:
    return datetime.now(UTC)


def feed(*events: Any) -> None:
    for event in events:
        Feeder.queue.put_nowait(event)


async def card_for(page: Any, number: str, customer: str = "known") -> None:
    """Wait for the card of ``number`` as the page writes it (national format: ``138 1234 5678``)."""
    await page.wait_for_function(
        """([number, customer]) => {
            const card = document.getElementById("card");
            return !card.hidden && document.getElementById("card-number").textContent === number
                && card.getAttribute("data-customer") === customer;
        }""",
        arg=[number, customer],
        timeout=10_000,
    )


async def test_card_pops_with_the_customer_and_the_note_shows_on_the_next_call(page: Any) -> None:
    feed(Ring(device_id="dev", line="1", at=at()))
    feed(CallerId(device_id="dev", line="1", at=at(), number="13812345678"))
    await card_for(page, "138 1234 5678")
    assert await page.inner_text("#card-name") == "张伟"
    assert await page.inner_text("#card-company") == "天津贸易"
    assert await page.inner_text("#card-owner") == "rep01"
    await page.wait_for_selector("#card-tags .tag")  # tags come with the card's details from the database
    assert await page.locator("#card-tags .tag").all_inner_texts() == ["VIP", "天津"]
    assert await page.is_hidden("#card-conflict")
    assert await page.is_visible("#card-no-history")

    # Keyboard only: Alt+N to the note box, type, tab to the date, save with Enter on the button.
    await page.keyboard.press("Alt+n")
    await page.keyboard.type("wants a quote for 200 units")
    await page.fill("#note-follow-up", "2030-01-15")
    await page.focus("#note-save")
    await page.keyboard.press("Enter")
    await page.wait_for_selector('#note-status[data-state="saved"]')

    feed(OffHook(device_id="dev", line="1", at=at()), OnHook(device_id="dev", line="1", at=at()))
    await page.wait_for_selector('#card[data-uuid] #card-status:has-text("Answered")')
    first_uuid = await page.get_attribute("#card", "data-uuid")

    feed(CallerId(device_id="dev", line="1", at=at(), number="+86 138 1234 5678"))
    await page.wait_for_function(
        "uuid => document.getElementById('card').getAttribute('data-uuid') !== uuid", arg=first_uuid
    )
    await page.wait_for_selector("#card-history tbody tr")
    row = page.locator("#card-history tbody tr").first
    assert "wants a quote for 200 units" in await row.locator(".history-notes").inner_text()
    assert "2030-01-15" in await row.locator(".history-notes").inner_text()
    assert await row.locator(".history-outcome").inner_text() == "Answered"
    assert await page.input_value("#note-text") == ""  # the new call starts with an empty note
    feed(OnHook(device_id="dev", line="1", at=at()))


async def test_caller_text_is_shown_as_text(page: Any) -> None:
    feed(CallerId(device_id="dev", line="1", at=at(), number="13900001111", name=XSS_CID))
    await card_for(page, "139 0000 1111")
    assert (await page.inner_text("#card-name")).startswith(XSS_NAME)
    assert XSS_CID in await page.inner_text("#card-name")
    assert await page.inner_text("#card-company") == "<b>Evil</b> Ltd"
    await page.wait_for_selector("#card-tags .tag")
    assert await page.locator("#card-tags .tag").all_inner_texts() == ["<i>x</i>"]
    assert await page.locator("#card img, #calls img, #card b, #card i").count() == 0
    # Owned by another rep: flagged on the card.
    assert await page.is_visible("#card-conflict")
    assert "rep02" in await page.inner_text("#card-conflict")
    await page.wait_for_timeout(200)
    assert await page.evaluate("window.__xss") is None
    assert page.dialogs == []
    feed(OnHook(device_id="dev", line="1", at=at()))


async def test_withheld_and_unknown_numbers(page: Any) -> None:
    feed(CallerId(device_id="dev", line="1", at=at(), absence=Absence.PRIVATE))
    await card_for(page, "Withheld", customer="none")
    feed(OnHook(device_id="dev", line="1", at=at()))
    await page.wait_for_selector('#card-status:has-text("Missed"), #card-status:has-text("Unknown")')
    feed(CallerId(device_id="dev", line="1", at=at(), number="13700002222"))
    await card_for(page, "137 0000 2222", customer="unknown")
    assert await page.is_visible("#card-unknown")
    feed(OnHook(device_id="dev", line="1", at=at()))


async def test_chinese_page(agent: Agent) -> None:
    async with chromium() as browser:
        page = await browser.new_page(locale="zh-CN")
        await page.goto(f"http://127.0.0.1:{agent.web_port}/")
        assert await page.inner_text("#today-heading") == "今日"
        await page.wait_for_selector("#today-counts .count")
        counts = await page.locator("#today-counts .count").first.inner_text()
        assert "通话数" in counts
        assert "/ 80" in counts


async def test_rep_state_from_the_page_and_from_calls(page: Any) -> None:
    await page.wait_for_selector('#rep-state[data-state="available"]')
    await page.select_option("#rep-pause-reason", "training")
    await page.click("#rep-pause")
    await page.wait_for_selector('#rep-state[data-state="paused"]')
    assert await page.inner_text("#rep-state-now") == "Paused · Training"
    feed(
        CallerId(device_id="dev", line="1", at=at(), number="13812345678"),
        OffHook(device_id="dev", line="1", at=at()),
    )
    await page.wait_for_selector('#rep-state[data-state="on_call"]')
    assert await page.is_disabled("#rep-pause")
    feed(OnHook(device_id="dev", line="1", at=at()))
    await page.wait_for_selector('#rep-state[data-state="wrap_up"]')
    await page.click("#rep-available")
    await page.wait_for_selector('#rep-state[data-state="available"]')


CONSOLE_URL = "http://127.0.0.1:8340"


async def call_stored(agent: Agent, uuid: str) -> None:
    """Wait until the storage observer has written the ended call (a recording row needs it)."""
    assert agent.engine is not None
    engine = agent.engine

    def ended() -> bool:
        with Session(engine) as session:
            row = get_call(session, uuid)
            return row is not None and row.ended_at is not None

    for _ in range(200):
        if await asyncio.to_thread(ended):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {uuid} was not stored")


async def recorded_call_then_another(agent: Agent, page: Any) -> str:
    """An answered call given a recording row, then a second call from the same number; the first's uuid."""
    feed(CallerId(device_id="dev", line="1", at=at(), number="13812345678"))
    await card_for(page, "138 1234 5678")
    feed(OffHook(device_id="dev", line="1", at=at()), OnHook(device_id="dev", line="1", at=at()))
    await page.wait_for_selector('#card[data-uuid] #card-status:has-text("Answered")')
    first_uuid = await page.get_attribute("#card", "data-uuid")
    assert first_uuid is not None
    await call_stored(agent, first_uuid)
    assert agent.engine is not None
    with Session(agent.engine) as session, session.begin():
        session.add(Recording(call_uuid=first_uuid, path_or_uri="recordings/x.flac", status="complete"))

    feed(CallerId(device_id="dev", line="1", at=at(), number="13812345678"))
    await page.wait_for_function(
        "uuid => document.getElementById('card').getAttribute('data-uuid') !== uuid", arg=first_uuid
    )
    return first_uuid


@pytest.mark.parametrize("agent", [{"console_url": CONSOLE_URL}], indirect=True)
async def test_an_earlier_recorded_call_links_to_the_console(agent: Agent, page: Any) -> None:
    first_uuid = await recorded_call_then_another(agent, page)
    link = page.locator("#card-history tbody tr .history-play")
    await link.first.wait_for()
    assert await link.count() == 1
    assert await link.get_attribute("href") == f"{CONSOLE_URL}/calls/{first_uuid}"
    assert await link.get_attribute("target") == "_blank"
    assert await link.get_attribute("rel") == "noopener"
    assert await link.inner_text() == "Play"
    feed(OnHook(device_id="dev", line="1", at=at()))


async def test_no_link_without_a_console(agent: Agent, page: Any) -> None:
    await recorded_call_then_another(agent, page)
    await page.wait_for_selector("#card-history tbody tr .history-talk")
    assert await page.locator("#card-history .history-play").count() == 0
    feed(OnHook(device_id="dev", line="1", at=at()))


# -- the rep's log-in over the network, the Host and cookie checks -------------------------

#: This machine's own non-loopback address: a browser here reaching it arrives on it.
LAN_ADDRESS = "192.0.2.2"
SEAT_PASSWORD = "seat password 1"


@pytest.fixture
async def networked_seat(tmp_path: Path) -> AsyncIterator[str]:
    """A seat page on 0.0.0.0 (a free port) with a rep password set and 3 calls parked; its port."""
    write_password(tmp_path / HASH_FILE_NAME, SEAT_PASSWORD)
    context = SeatContext(
        bus=SeatBus(),
        seat="seat-7",
        hosts=allowed_hosts("0.0.0.0", [LAN_ADDRESS]),
        login=SeatLogin(tmp_path / HASH_FILE_NAME),
        health=lambda: {"storage_parked": 3, "sync_parked": 0, "sync_backlog": 4},
    )
    server = make_server(make_seat_app(context), "0.0.0.0", 0)
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    yield str(server.port)
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_over_the_network_the_rep_logs_in_and_out(networked_seat: str) -> None:
    lan = f"http://{LAN_ADDRESS}:{networked_seat}"
    async with chromium() as browser:
        context = await browser.new_context(locale="en-US")
        page = await context.new_page()
        await page.goto(f"{lan}/")
        assert page.url == f"{lan}/login"
        assert "reached over the network" in await page.inner_text(".login-why")
        await page.fill("#password", "not the password")
        await page.click("#login-submit")
        await page.wait_for_selector("#login-message")
        assert await page.inner_text("#login-message") == "Wrong password."
        await page.fill("#password", SEAT_PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_url(f"{lan}/")
        await page.wait_for_selector('#connection[data-state="live"]')
        assert await page.is_visible("#logout")
        assert await page.is_visible("#parked")
        assert await page.inner_text("#parked-storage") == "3 call(s) parked: not stored in the database"
        assert await page.is_hidden("#parked-sync")
        # The session cookie is HttpOnly and SameSite=Strict: the page's script cannot read it.
        cookie = next(c for c in await context.cookies() if c["name"] == "cti_seat")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert "cti_seat" not in await page.evaluate("document.cookie")
        # A write without the page's token is refused even with the cookie.
        status = await page.evaluate(
            """() => fetch("/api/dial", {method: "POST", headers: {"Content-Type": "application/json"},
                body: JSON.stringify({line: "1", number: "10086"})}).then(r => r.status)"""
        )
        assert status == 403
        # A copy of the cookie in another browser works until the rep logs out, then never again.
        kept = await browser.new_context(locale="en-US")
        await kept.add_cookies([cookie])
        other = await kept.new_page()
        assert (await other.goto(f"{lan}/api/state")).status == 200
        await page.click("#logout")
        await page.wait_for_url(f"{lan}/login")
        assert (await other.goto(f"{lan}/api/state")).status == 401
        await page.goto(f"{lan}/")
        assert page.url == f"{lan}/login"
        await kept.close()


async def test_on_loopback_the_page_needs_no_log_in(networked_seat: str) -> None:
    local = f"http://127.0.0.1:{networked_seat}"
    async with chromium() as browser:
        page = await browser.new_page(locale="zh-CN")
        await page.goto(f"{local}/")
        assert page.url == f"{local}/"
        await page.wait_for_selector('#connection[data-state="live"]')
        assert await page.locator("#logout").count() == 0
        assert await page.inner_text("#parked-storage") == "3 通电话已搁置：未写入数据库"


async def test_wrong_passwords_are_throttled_and_an_unknown_host_is_refused(networked_seat: str) -> None:
    lan = f"http://{LAN_ADDRESS}:{networked_seat}"
    async with async_playwright() as p:
        # rebind.example resolves to the seat, as a DNS-rebinding page would make it.
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP rebind.example {LAN_ADDRESS}"],
        )
        try:
            page = await browser.new_page(locale="en-US")
            rebound = await page.goto(f"http://rebind.example:{networked_seat}/")
            assert rebound is not None
            assert rebound.status == 421
            statuses = []
            for _ in range(6):
                await page.goto(f"{lan}/login")
                await page.fill("#password", "not the password")
                async with page.expect_response(lambda r: r.request.method == "POST") as answer:
                    await page.click("#login-submit")
                statuses.append((await answer.value).status)
            assert statuses == [401, 401, 401, 401, 401, 429]
            assert (await answer.value).headers["retry-after"] == "1"
            assert "Too many wrong passwords" in await page.inner_text("#login-message")
        finally:
            await browser.close()
