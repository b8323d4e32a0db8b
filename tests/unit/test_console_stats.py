"""The console's statistics and wallboard views called directly: KPIs, targets, ranking, sorting, scope.

The calls of ``console_factories`` (2 March 2026, UTC): north's alice took c-a1 (answered,
120 s) and dialled c-a2 (not answered); bob took c-b1 (answered, 30 s); south's carol and
dave are another team.
"""

from __future__ import annotations

import html as htmllib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from console_factories import PASSWORD, console_context, make_request, seed, session_cookie
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.centre import i18n
from agent.centre.context import ConsoleContext
from agent.centre.views import stats
from agent.config import DailyTarget, TargetsSection
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Rep
from storage.teams import set_team_targets

DAY = "date=2026-03-02"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    seed(engine, tmp_path)
    from agent.centre.auth import create_user

    with Session(engine) as session, session.begin():
        create_user(session, "boss", PASSWORD, role="manager")
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "alice", PASSWORD, role="rep", rep="alice", team="north")
        session.scalars(select(Rep).where(Rep.name == "alice")).one().display_name = "Alice Wang 王爱丽"
    yield engine
    engine.dispose()


def context(engine: Engine, tmp_path: Path, **settings: Any) -> ConsoleContext:
    settings.setdefault(
        "targets", TargetsSection(calls=4, talk_seconds=100, teams={"north": DailyTarget(calls=2)})
    )
    return console_context(engine, tmp_path, **settings)


def text_of(response: object) -> str:
    body = getattr(response, "body", b"")
    assert isinstance(body, bytes)
    return body.decode("utf-8")


def rows_of(page: str) -> list[dict[str, Any]]:
    """The ranking table's rows: rep id, then each cell's text."""
    body = (
        page.split('<table class="calls kpis" id="ranking"', 1)[1].split("<tbody>", 1)[1].split("</tbody>")[0]
    )
    out = []
    for rep, cells in re.findall(r'<tr data-rep="([^"]+)"[^>]*>(.*?)</tr>', body, re.S):
        texts = [
            " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)
        ]
        out.append({"rep": rep, "cells": texts})
    return out


async def day_page(ctx: ConsoleContext, login: str, query: str = DAY) -> str:
    response = await stats.stats_day(
        ctx, make_request("/stats/day", query, cookie=session_cookie(ctx, login))
    )
    assert response.status_code == 200
    return text_of(response)


async def test_day_page_shows_each_kpi_against_its_target(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        set_team_targets(session, "north", effective_calls=1)  # the team's own, in the database
    ctx = context(engine, tmp_path)
    page = await day_page(ctx, "nina")
    rows = rows_of(page)
    assert [r["rep"] for r in rows] == ["alice", "bob"]  # ranked by talk time
    alice, bob = (r["cells"] for r in rows)
    # rank, name, calls/target, in, out, connects, connect rate, talk/target, avg, effective/target, missed
    assert alice[:2] == ["1", "Alice Wang 王爱丽 alice"]  # the display name, the rep id beside it
    assert alice[2:11] == ["2 / 2 100%", "1", "1", "0", "0.0%", "2:00 / 1:40 120%", "2:00", "1 / 1 100%", "1"]
    assert bob[:2] == ["2", "bob"]  # no display name: the rep id
    assert bob[2:11] == ["1 / 2 50%", "1", "0", "0", "", "0:30 / 1:40 30%", "0:30", "0 / 1 0%", "0"]
    # The team's total against the sum of its reps' targets.
    footer = page.split("<tfoot>", 1)[1]
    assert '3<span class="of"> / 4</span>' in footer
    # What the connect rate is, the threshold of an effective call, and what the ranking is by.
    assert "Connect rate (接通率) = connects ÷ calls out" in page
    assert "at least 60 s" in page
    assert re.search(r'id="ranked-by">Ranked by <b>Talk time</b>', page)
    assert page.count("<progress") == 3 * 3  # alice, bob and the total: a bar per target


async def test_day_page_in_chinese(engine: Engine, tmp_path: Path) -> None:
    ctx = context(engine, tmp_path)
    page = await day_page(ctx, "nina", DAY + "&lang=zh-CN")
    assert "接通率 = 接通数 ÷ 呼出数" in page
    for heading in ("通时", "有效通话", "平均通时", "接通数"):
        assert f">{heading}</a>" in page
    assert "排名依据： <b>通时</b>" in page


async def test_day_page_sorts_by_any_column_and_keeps_the_rank(engine: Engine, tmp_path: Path) -> None:
    ctx = context(engine, tmp_path)
    page = await day_page(ctx, "nina", DAY + "&sort=name&order=desc")
    rows = rows_of(page)
    assert [r["rep"] for r in rows] == ["bob", "alice"]  # "bob" after "Alice Wang"
    assert [r["cells"][0] for r in rows] == ["2", "1"]  # ranks are the ranking's
    # The header of the column shown sorted says so and links to the other order, the page's date kept.
    assert re.search(
        r'data-column="name" aria-sort="descending"><a href="\?date=2026-03-02&amp;sort=name&amp;order=asc"',
        page,
    )
    assert (
        'data-column="talk" aria-sort="none"><a href="?date=2026-03-02&amp;sort=talk&amp;order=desc"' in page
    )
    assert 'data-column="rank" aria-sort="none" title="Rank"><a href="?date=2026-03-02">' in page
    by_missed = rows_of(await day_page(ctx, "nina", DAY + "&sort=missed"))
    assert [r["rep"] for r in by_missed] == ["alice", "bob"]  # high to low first
    unknown = rows_of(await day_page(ctx, "nina", DAY + "&sort=mood&order=sideways"))
    assert [r["rep"] for r in unknown] == ["alice", "bob"]


async def test_the_rank_key_is_a_setting_and_shown(engine: Engine, tmp_path: Path) -> None:
    ctx = context(engine, tmp_path, rank_by="calls")
    with Session(engine) as session, session.begin():
        started = datetime(2026, 3, 2, 15, tzinfo=UTC)
        for n in range(3):  # bob dials three more, unanswered
            session.add(
                CallRecord(
                    uuid=f"b-x{n}", seat="s2", device_id="d", line="L1", rep="bob", team="north",
                    direction="out", started_at=started, ended_at=started + timedelta(seconds=20),
                    disposition="missed",
                )
            )  # fmt: skip
    page = await day_page(ctx, "nina")
    assert [r["rep"] for r in rows_of(page)] == ["bob", "alice"]
    assert re.search(r'id="ranked-by">Ranked by <b>Calls</b>', page)


async def test_a_rep_sees_their_own_row_unless_the_team_ranking_is_shared(
    engine: Engine, tmp_path: Path
) -> None:
    alone = context(engine, tmp_path)
    rows = rows_of(await day_page(alone, "alice"))
    assert [r["rep"] for r in rows] == ["alice"]
    shared = context(engine, tmp_path, reps_see_team_ranking=True)
    page = await day_page(shared, "alice")
    assert [r["rep"] for r in rows_of(page)] == ["alice", "bob"]
    assert '<tr data-rep="alice" class="mine">' in page
    # Their colleagues' totals, not their hours.
    assert re.findall(r"<summary>([^:]+):", page) == ["Alice Wang 王爱丽"]
    assert "carol" not in page  # never another team
    month = text_of(
        await stats.stats_month(
            shared, make_request("/stats/month", "month=2026-03", cookie=session_cookie(shared, "alice"))
        )
    )
    assert [r["rep"] for r in rows_of(month)] == ["alice", "bob"]
    # The wallboard is scoped the same way.
    request = make_request("/wallboard")
    assert stats.stats_scope(shared, request, _principal(shared, "alice")) == stats.Scope("north", None)
    assert stats.stats_scope(alone, request, _principal(alone, "alice")) == stats.Scope(None, "alice")
    assert stats.stats_scope(alone, request, _principal(alone, "nina")) == stats.Scope("north", None)
    asked = make_request("/wallboard", "team=south")
    assert stats.stats_scope(alone, asked, _principal(alone, "boss")) == stats.Scope("south", None)
    assert stats.stats_scope(alone, asked, _principal(alone, "nina")) == stats.Scope("north", None)


def _principal(ctx: ConsoleContext, login: str) -> Any:
    from agent.centre.auth import principal_of
    from storage.models import User

    with Session(ctx.engine) as session:
        return principal_of(session, session.scalars(select(User).where(User.login == login)).one())


async def test_month_page_counts_targets_for_the_days_worked(engine: Engine, tmp_path: Path) -> None:
    ctx = context(engine, tmp_path)
    with Session(engine) as session, session.begin():
        started = datetime(2026, 3, 5, 10, tzinfo=UTC)  # alice works a second day
        session.add(
            CallRecord(
                uuid="a-5", seat="s1", device_id="d", line="L1", rep="alice", team="north", direction="out",
                started_at=started, answered_at=started, ended_at=started + timedelta(seconds=90),
                talk_seconds=90.0, disposition="answered",
            )
        )  # fmt: skip
    response = await stats.stats_month(
        ctx, make_request("/stats/month", "month=2026-03", cookie=session_cookie(ctx, "nina"))
    )
    page = text_of(response)
    alice, bob = (r["cells"] for r in rows_of(page))
    # rank, name, days, calls/target (2 a day), in, out, connects, rate, talk/target, avg, effective, missed,
    # days on target (every target set met: 2 calls and 100 s on 2 March; on 5 March 1 call)
    assert alice[2:13] == [
        "2", "3 / 4 75%", "1", "2", "1", "50.0%", "3:30 / 3:20 105%", "1:45", "2", "1", "1",
    ]  # fmt: skip
    assert bob[2:4] == ["1", "1 / 2 50%"]
    assert "a target counts once for each day the rep worked" in page


async def test_wallboard_figures_rank_name_target_bars_and_time_on_the_call(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = context(engine, tmp_path)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                CallRecord(
                    uuid="w-1", seat="s1", device_id="d", line="L1", rep="alice", team="north",
                    direction="out",
                    started_at=now - timedelta(minutes=9), answered_at=now - timedelta(minutes=8),
                    ended_at=now - timedelta(minutes=6), talk_seconds=120.0, disposition="answered",
                ),
                # alice is talking for 95 s now; bob's line rings (he has ended no call today).
                CallRecord(
                    uuid="w-2", seat="s1", device_id="d", line="L1", rep="alice", team="north",
                    direction="in", started_at=now - timedelta(seconds=100),
                    answered_at=now - timedelta(seconds=95),
                ),
                CallRecord(
                    uuid="w-3", seat="s2", device_id="d", line="L1", rep="bob", team="north", direction="in",
                    started_at=now - timedelta(seconds=7),
                ),
            ]
        )  # fmt: skip
    figures = await stats.wallboard_figures(ctx, _principal(ctx, "nina"), stats.Scope("north", None))
    alice, bob = figures["rows"]
    assert (alice["rank"], alice["rep"], alice["name"]) == (1, "alice", "Alice Wang 王爱丽")
    assert alice["calls_bar"] == {"text": "1", "target": "2", "share": 0.5, "percent": 50, "met": False}
    assert alice["talk_bar"] == {"text": "2:00", "target": "1:40", "share": 1.0, "percent": 120, "met": True}
    assert alice["effective_bar"]["target"] is None  # no effective-call target set
    assert (alice["outbound"], alice["connects"], alice["connect_rate"]) == (1, 1, "100.0%")
    assert alice["on_call"] == 1
    assert 95 <= alice["on_call_seconds"] <= 97
    assert not alice["ringing"]
    assert (bob["rank"], bob["calls"], bob["on_call"], bob["ringing"]) == (2, 0, 1, True)
    assert figures["total"]["calls_bar"]["target"] == "4"
    assert json.dumps(figures)  # one JSON for the page and the event stream


async def test_kiosk_wallboard_has_no_navigation(engine: Engine, tmp_path: Path) -> None:
    ctx = context(engine, tmp_path)
    cookie = session_cookie(ctx, "nina")
    kiosk = text_of(await stats.wallboard(ctx, make_request("/wallboard", "kiosk=1", cookie=cookie)))
    assert '<body class="wallboard kiosk">' in kiosk
    assert "<nav>" not in kiosk
    assert 'id="logout"' not in kiosk
    assert 'data-events="/wallboard/events"' in kiosk
    assert 'data-kiosk="1"' in kiosk
    plain = text_of(await stats.wallboard(ctx, make_request("/wallboard", cookie=cookie)))
    assert "<nav>" in plain
    boss = text_of(
        await stats.wallboard(
            ctx, make_request("/wallboard", "kiosk=1&team=south", cookie=session_cookie(ctx, "boss"))
        )
    )
    assert 'data-events="/wallboard/events?team=south"' in boss


# -- the console's strings ------------------------------------------------------------------


def test_console_locales_have_the_same_keys_and_every_key_used_exists() -> None:
    catalogs = {language: i18n.catalog(language) for language in i18n.LANGUAGES}
    assert set(catalogs["en"]) == set(catalogs["zh-CN"])
    assert all(value.strip() for catalog in catalogs.values() for value in catalog.values())
    templates = resources.files("agent.centre").joinpath("templates")
    used: set[str] = set()
    for name in templates.iterdir():
        used |= set(re.findall(r"""\bt\(["']([a-zA-Z0-9_.-]+)["']\)""", name.read_text(encoding="utf-8")))
    used |= set(stats.RANK_LABELS.values())
    assert {"kpi.connect_rate", "kpi.legend", "wallboard.reconnecting"} <= used
    assert used <= set(catalogs["en"]), used - set(catalogs["en"])
