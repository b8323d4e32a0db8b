"""The coverage page (打透) over a TestClient: who sees what, the table, chart, 过数据, exports and audit."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from console_factories import PASSWORD, audit_rows, log_in
from coverage_factories import seed_coverage
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.centre.views.coverage import coverage_page
from storage.db import make_engine, upgrade

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PAGE = "/leads/coverage?list=spring&days=365"


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    seed_coverage(eng)
    with Session(eng) as session, session.begin():
        create_user(session, "boss", PASSWORD, role="manager")
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "lone", PASSWORD, role="lead", team="east")
        create_user(session, "amyrep", PASSWORD, role="rep", rep="amy", team="north")
        create_user(session, "root", PASSWORD, role="admin")
    yield eng
    eng.dispose()


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> TestClient:
    app = make_console_app(engine, ConsoleSettings(secret=b"c" * 32, recordings_dir=tmp_path))
    return TestClient(app, base_url="http://127.0.0.1")


def reps_of(page: str) -> dict[str, list[str]]:
    body = page.split('id="coverage"', 1)[1].split("</tbody>", 1)[0]
    return {
        rep: [
            re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)
        ]
        for rep, cells in re.findall(r'<tr data-rep="([^"]+)"[^>]*>(.*?)</tr>', body, re.S)
    }


def test_a_manager_sees_every_rep_the_total_the_chart_and_the_warnings(client: TestClient) -> None:
    log_in(client, "boss")
    page = client.get(PAGE)
    assert page.status_code == 200
    rows = reps_of(page.text)
    assert list(rows) == ["amy", "bob", "cai"]
    # rep, team, assigned, dialed, reached, calls, per lead, untouched, closed, passed, deal, no_answer
    assert rows["amy"] == ["amy", "north", "3", "2", "1", "3", "1.00", "0", "1", "1", "1", "2"]
    assert rows["cai"][9] == "1"
    total = page.text.split('id="coverage-total"', 1)[1].split("</tr>")[0]
    assert ">5<" in total
    assert '<svg class="chart grouped"' in page.text
    assert "<script" not in page.text.split("<main>", 1)[1]
    warned = re.findall(r'<tr data-from="([^"]+)">', page.text)
    assert warned == ["amy", "cai"]
    assert "客户5" in page.text
    assert 'id="nav-leads-coverage"' in page.text


def test_a_team_lead_sees_their_team_only(client: TestClient) -> None:
    log_in(client, "nina")
    page = client.get(PAGE + "&team=south")  # a lead's team is their own, whatever they ask
    assert list(reps_of(page.text)) == ["amy", "bob"]
    assert re.findall(r'<tr data-from="([^"]+)">', page.text) == ["amy"]


def test_a_lead_of_another_team_sees_nobody_of_north(client: TestClient) -> None:
    log_in(client, "lone")
    page = client.get(PAGE)
    assert page.status_code == 200
    assert reps_of(page.text) == {}


@pytest.mark.parametrize("login", ["amyrep", "root"])
def test_reps_and_admins_are_refused(client: TestClient, login: str) -> None:
    log_in(client, login)
    assert client.get(PAGE).status_code == 403
    assert client.get("/leads/coverage/export.csv?list=spring").status_code == 403


def test_the_page_without_a_list_offers_the_lists(client: TestClient) -> None:
    log_in(client, "boss")
    page = client.get("/leads/coverage")
    assert page.status_code == 200
    assert '<option value="spring"' in page.text
    assert 'id="coverage"' not in page.text


def test_bad_parameters_are_refused(client: TestClient) -> None:
    log_in(client, "boss")
    assert client.get("/leads/coverage?list=spring&days=abc").status_code == 400
    assert client.get("/leads/coverage?list=spring&days=-1").status_code == 400
    assert client.get("/leads/coverage?list=nosuch").status_code == 404


def test_the_page_in_chinese(client: TestClient) -> None:
    log_in(client, "boss")
    page = client.get(PAGE + "&lang=zh-CN")
    assert "数据打透" in page.text
    assert "过数据" in page.text
    assert "收回" in page.text  # the recall warning's action


def test_exports_are_audited_and_carry_the_rows(client: TestClient, engine: Engine) -> None:
    log_in(client, "nina")
    csv = client.get("/leads/coverage/export.csv?list=spring&days=365")
    assert csv.status_code == 200
    assert csv.headers["content-disposition"].startswith('attachment; filename="coverage-')
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[:3] == ["rep", "team", "assigned"]
    assert lines[1].startswith("amy,north,3,2,1,3,1.0,0,1,1")
    assert lines[-1].startswith("total,,4,")
    xlsx = client.get("/leads/coverage/export.xlsx?list=spring&days=365")
    assert xlsx.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[1][:3] == ["amy", "north", 3]
    assert audit_rows(engine, "coverage_export_csv", "coverage_export_xlsx") == [
        ("nina", "coverage_export_csv", "list:spring"),
        ("nina", "coverage_export_xlsx", "list:spring"),
    ]
    assert client.get("/leads/coverage/export.csv?list=nosuch").status_code == 404
    assert client.get("/leads/coverage/export.csv").status_code == 400


def test_the_view_is_behind_requires() -> None:
    assert coverage_page.roles == frozenset({"lead", "manager"})  # type: ignore[attr-defined]
