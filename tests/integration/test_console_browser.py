"""The supervisor console in real headless Chromium: log in, search, play, denial, audit, masking, CSRF.

Debian's ``chromium`` driven by Playwright's Python package (never ``playwright
install``; ``tests/system-deps.sh`` installs the browser). The console is served
by uvicorn in the test's event loop over a SQLite file seeded with the calls of
``test_console_pg``.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from browser import chromium
from console_factories import PASSWORD, seed
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.web.serve import make_server
from storage.db import make_engine, upgrade
from storage.models import AuditEntry, CallRecord, Recording, User

pytestmark = pytest.mark.browser


class Console:
    def __init__(self, engine: Engine, base: str, recordings: dict[str, int]) -> None:
        self.engine = engine
        self.base = base
        self.recordings = recordings

    def audit(self, *actions: str) -> list[tuple[str | None, str, str | None]]:
        with Session(self.engine) as session:
            return [
                (e.user_login, e.action, e.target)
                for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
                if e.action in actions
            ]


@pytest.fixture
async def console(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Console]:
    """The console on a free port of 127.0.0.1 (``indirect``: another listen address, e.g. 0.0.0.0)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'central.db'}")
    upgrade(engine)
    recordings = seed(engine, tmp_path)
    # c-a1's recording as FLAC: the player must get audio/flac and play it.
    flac = "recordings/2026/03/02/c-a1.flac"
    t = np.arange(3 * 8000) / 8000
    sf.write(tmp_path / flac, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, format="FLAC", subtype="PCM_16")
    with Session(engine) as session, session.begin():
        session.execute(
            update(Recording).where(Recording.id == recordings["c-a1"]).values(path_or_uri=flac, codec="flac")
        )
        create_user(session, "alice", PASSWORD, role="rep", rep="alice", team="north")
        create_user(session, "nina", PASSWORD, role="lead", team="north")
    settings = ConsoleSettings(
        secret=b"b" * 32, recordings_dir=tmp_path, mask_roles=frozenset({"rep"}), wallboard_interval=0.3
    )
    server = make_server(make_console_app(engine, settings), getattr(request, "param", "127.0.0.1"), 0)
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    yield Console(engine, f"http://127.0.0.1:{server.port}", recordings)
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    engine.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as browser:
        yield browser


async def logged_in(browser: Any, console: Console, login: str) -> Any:
    context = await browser.new_context(locale="en-US", accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{console.base}/calls")
    assert page.url.startswith(f"{console.base}/login?next=")
    await page.fill("#login", login)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_url(f"{console.base}/calls")
    return page


async def test_lead_searches_by_a_fragment_plays_a_recording_and_the_play_is_audited(
    browser: Any, console: Console
) -> None:
    page = await logged_in(browser, console, "nina")
    await page.fill("#number", "5678")
    await page.click("#search-submit")
    await page.wait_for_selector("#results")
    assert page.url.endswith("/calls?number=5678") or "number=5678" in page.url
    uuids = await page.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.uuid)")
    assert sorted(uuids) == ["c-a1", "c-b1"]  # carol's c-c1 matches too but is another team's
    assert await page.inner_text("#total-calls") == "2"
    numbers = await page.locator("#results td.number").all_inner_texts()
    assert "13812345678" in numbers  # leads are not masked here

    # The search's address reproduces it (shareable).
    shared = await page.get_attribute("#share", "href")
    again = await page.context.new_page()
    await again.goto(f"{console.base}{shared}")
    assert await again.inner_text("#total-calls") == "2"

    await page.click('#results tr[data-uuid="c-a1"] td a')
    await page.wait_for_selector("audio.main-player")
    state = await page.evaluate(
        """async () => {
            const audio = document.querySelector("audio.main-player");
            await audio.play();
            const start = performance.now();
            while (audio.currentTime < 0.3 && performance.now() - start < 8000) {
                await new Promise(r => setTimeout(r, 50));
            }
            const error = audio.error && audio.error.code;
            return {duration: audio.duration, time: audio.currentTime, error: error};
        }"""
    )
    assert state["error"] is None
    assert state["duration"] == pytest.approx(3.0, abs=0.1)
    assert state["time"] >= 0.3
    # Speed control and keyboard: "]" raises the speed.
    await page.keyboard.press("]")
    assert await page.evaluate("document.querySelector('audio.main-player').playbackRate") == 1.25
    rid = console.recordings["c-a1"]
    assert ("nina", "play", f"recording:{rid}") in console.audit("play")
    mime = await page.evaluate(
        "async url => (await fetch(url, {headers: {Range: 'bytes=0-99'}})).headers.get('content-type')",
        f"/recordings/{rid}/audio",
    )
    assert mime == "audio/flac"
    await page.context.close()


async def test_rep_is_masked_everywhere_and_denied_another_teams_recording(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    page = await logged_in(browser, console, "alice")
    await page.goto(f"{console.base}/calls?number=5678")
    assert await page.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.uuid)") == [
        "c-a1"
    ]
    assert await page.locator("#results td.number").all_inner_texts() == ["138****5678"]
    assert "13812345678" not in await page.content()
    await page.goto(f"{console.base}/calls/c-a1")
    assert await page.inner_text("#call-number") == "138****5678"

    async with page.expect_download() as info:
        await page.click("a.download")
    download = await info.value
    assert download.suggested_filename == "20260302-090000_138xxxx5678_alice.flac"

    await page.goto(f"{console.base}/calls")
    async with page.expect_download() as info:
        await page.click("#export-csv")
    exported = tmp_path / "export.csv"
    await (await info.value).save_as(exported)
    text = exported.read_text(encoding="utf-8-sig")
    assert "13812345678" not in text
    assert [row["number"] for row in csv.DictReader(text.splitlines())] == ["139 **** 1111", "138****5678"]

    theirs = console.recordings["c-c1"]
    response = await page.goto(f"{console.base}/recordings/{theirs}/audio")
    assert response.status == 403
    status = await page.evaluate("async url => (await fetch(url)).status", f"/recordings/{theirs}/download")
    assert status == 403
    assert ("alice", "play_denied", f"recording:{theirs}") in console.audit("play_denied")
    assert not any(target == f"recording:{theirs}" for _, _, target in console.audit("play", "download"))
    await page.context.close()


async def test_cross_site_requests_and_path_traversal_are_refused(browser: Any, console: Console) -> None:
    page = await logged_in(browser, console, "nina")
    rid = console.recordings["c-a1"]
    # A page on another site: a form posting to the console and an audio element pointing at it.
    attack = f"""<!doctype html><html><body>
        <form id="f" method="post" action="{console.base}/language">
          <input name="language" value="zh-CN"><input name="next" value="/calls"></form>
        <audio id="a" src="{console.base}/recordings/{rid}/audio" preload="auto"></audio>
        </body></html>"""
    attacker = make_server(
        Starlette(routes=[Route("/", lambda request: HTMLResponse(attack))]), "127.0.0.1", 0
    )
    attacker_task = asyncio.create_task(attacker.serve())
    await attacker.wait_started()
    evil = await page.context.new_page()
    # "localhost" is another site than "127.0.0.1" to the browser: SameSite and Sec-Fetch-Site apply.
    await evil.goto(f"http://localhost:{attacker.port}/")
    await evil.wait_for_function(
        "() => document.getElementById('a').error !== null || document.getElementById('a').readyState > 0"
    )
    assert await evil.evaluate(
        "document.getElementById('a').error && document.getElementById('a').error.code"
    )
    async with evil.expect_response(lambda r: r.url.endswith("/language")) as posted:
        await evil.evaluate("document.getElementById('f').submit()")
    assert (await posted.value).status == 403
    with Session(console.engine) as session:
        assert session.scalar(select(User.language).where(User.login == "nina")) == "auto"
    assert console.audit("play") == []
    attacker.should_exit = True
    await asyncio.wait_for(attacker_task, 10)

    for path in (
        "/recordings/..%2F..%2Fetc%2Fpasswd/audio",
        f"/recordings/{rid}/..%2F..%2F..%2Fetc%2Fpasswd",
        "/recordings/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2F..%2F..%2Fetc%2Fpasswd",
    ):
        response = await page.goto(f"{console.base}{path}")
        assert response.status == 404, path
        assert "root:" not in await page.content()
    # The console itself still works for the real user, with its CSRF token.
    await page.goto(f"{console.base}/calls")
    # Already on /calls: wait for the navigation the form post causes, not just for the URL.
    async with page.expect_navigation(url=f"{console.base}/calls"):
        await page.select_option("select.autosubmit", "zh-CN")
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await page.context.close()


def call_now(uuid: str, rep: str, *, ended: bool) -> CallRecord:
    now = datetime.now(UTC)
    return CallRecord(
        uuid=uuid, seat="s1", device_id="d", line="L1", rep=rep, team="north", direction="out",
        number_e164="+8613700001111", number_raw="13700001111", started_at=now - timedelta(seconds=90),
        answered_at=now - timedelta(seconds=80), ended_at=now if ended else None,
        talk_seconds=80.0 if ended else None, disposition="answered" if ended else None,
    )  # fmt: skip


async def test_wallboard_is_live_over_server_sent_events(browser: Any, console: Console) -> None:
    with Session(console.engine) as session, session.begin():
        session.add(call_now("w-1", "alice", ended=True))
    page = await logged_in(browser, console, "nina")
    await page.goto(f"{console.base}/wallboard")
    assert await page.inner_text("#wb-calls") == "1"
    with Session(console.engine) as session, session.begin():
        session.add_all([call_now("w-2", "bob", ended=True), call_now("w-3", "alice", ended=False)])
    await page.wait_for_function(
        "() => document.getElementById('wb-calls').textContent === '2'", timeout=10_000
    )
    rows = await page.eval_on_selector_all(
        "#wb-rows tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))"
    )
    assert [row[0] for row in rows] == ["alice", "bob"]
    assert rows[0][-1] == "\u25cf"  # alice is on a call now
    assert rows[1][-1] == ""
    await page.context.close()


async def test_log_out_ends_the_session_server_side_and_a_kept_cookie_is_refused(
    browser: Any, console: Console
) -> None:
    page = await logged_in(browser, console, "nina")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "cti_console")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert "cti_console" not in await page.evaluate("document.cookie")
    # A second browser holding a copy of the cookie (a stolen copy, another window).
    kept = await browser.new_context(locale="en-US")
    await kept.add_cookies([session])
    other = await kept.new_page()
    await other.goto(f"{console.base}/calls")
    assert other.url == f"{console.base}/calls"
    await page.click("#logout")
    await page.wait_for_url(f"{console.base}/login")
    await other.goto(f"{console.base}/calls")
    assert other.url.startswith(f"{console.base}/login?next=")
    assert console.audit("logout") == [("nina", "logout", None)]
    await kept.close()


#: This machine's own non-loopback address: a browser here reaching it arrives from it.
LAN_ADDRESS = "192.0.2.2"


@pytest.mark.parametrize("console", ["0.0.0.0"], indirect=True)
async def test_wrong_passwords_throttle_this_address_not_the_user_elsewhere(
    browser: Any, console: Console
) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    statuses = []
    for _ in range(6):
        await page.goto(f"{console.base}/login")
        await page.fill("#login", "nina")
        await page.fill("#password", "not her password")
        async with page.expect_response(lambda r: r.request.method == "POST") as answer:
            await page.click("#submit")
        statuses.append((await answer.value).status)
    # Five free failures (the console's default), then a growing delay answered 429.
    assert statuses == [401, 401, 401, 401, 401, 429]
    response = await answer.value
    assert int(response.headers["retry-after"]) >= 1
    assert "Too many failed attempts" in await page.inner_text("body")
    # The right password from another address is not delayed (the guesser cannot keep nina out).
    elsewhere = await browser.new_context(locale="en-US")
    page2 = await elsewhere.new_page()
    lan = console.base.replace("127.0.0.1", LAN_ADDRESS)
    await page2.goto(f"{lan}/login")
    await page2.fill("#login", "nina")
    await page2.fill("#password", PASSWORD)
    await page2.click("#submit")
    await page2.wait_for_url(f"{lan}/calls")
    assert console.audit("login_failed", "login") == [("nina", "login_failed", None)] * 5 + [
        ("nina", "login", None)
    ]
    await elsewhere.close()
    await context.close()


@pytest.mark.parametrize(
    ("locale", "message"),
    [("en-US", "The recording file is missing"), ("zh-CN", "录音文件缺失")],
)
async def test_a_missing_recording_says_so_where_the_player_would_be(
    browser: Any, console: Console, tmp_path: Path, locale: str, message: str
) -> None:
    (tmp_path / "recordings/2026/03/02/c-b1.wav").unlink()
    context = await browser.new_context(locale=locale)
    page = await context.new_page()
    await page.goto(f"{console.base}/login?next=/calls/c-b1")
    await page.fill("#login", "nina")
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_url(f"{console.base}/calls/c-b1")
    problem = page.locator("section.recording .recording-problem")
    assert await problem.get_attribute("data-reason") == "missing"
    assert await problem.is_visible()
    assert message in await problem.inner_text()
    assert await page.locator("audio").count() == 0
    await context.close()


@pytest.mark.parametrize(("locale", "title"), [("en-US", "Users"), ("zh-CN", "用户管理")])
async def test_an_admin_manages_users_and_no_other_role_reaches_the_page(
    browser: Any, console: Console, locale: str, title: str
) -> None:
    with Session(console.engine) as session, session.begin():
        create_user(session, "root", PASSWORD, role="admin")
        create_user(session, "boss", PASSWORD, role="manager")

    async def as_user(login: str) -> Any:
        context = await browser.new_context(locale=locale)
        page = await context.new_page()
        await page.goto(f"{console.base}/login?next=/users")
        await page.fill("#login", login)
        await page.fill("#password", PASSWORD)
        await page.click("#submit")
        await page.wait_for_load_state()
        return page

    for login in ("boss", "nina", "alice"):
        page = await as_user(login)
        response = await page.goto(f"{console.base}/users")
        assert response.status == 403, login
        assert await page.locator("#users").count() == 0
        await page.context.close()

    page = await as_user("root")
    assert await page.inner_text("h1") == title
    await page.fill("#new-login", "zoe")
    await page.select_option("#new-role", "rep")
    await page.fill("#new-password", "a long secret")
    async with page.expect_navigation():
        await page.click("#add-submit")
    # A rep without a rep name: refused by the CLI's rule, said on the page.
    assert await page.locator("#users-problem").count() == 1
    await page.fill("#new-login", "zoe")
    await page.select_option("#new-role", "rep")
    await page.fill("#new-rep", "zoe")
    await page.fill("#new-password", "a long secret")
    async with page.expect_navigation(url=f"{console.base}/users"):
        await page.click("#add-submit")
    row = page.locator('#users tr[data-login="zoe"]')
    assert await row.get_attribute("data-disabled") == "0"
    async with page.expect_navigation(url=f"{console.base}/users"):
        await row.locator("form.toggle button").click()
    assert await page.get_attribute('#users tr[data-login="zoe"]', "data-disabled") == "1"
    assert [a for _, a, _ in console.audit("user_add", "user_disable")] == ["user_add", "user_disable"]
    await page.context.close()
