"""The console's search on SQLite: every filter, role scoping, pages and totals, masking, export, playback."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from console_factories import (
    ADMIN,
    CALLS,
    LEAD_NORTH,
    MANAGER,
    PASSWORD,
    REP_ALICE,
    SECRET,
    T0,
    log_in,
    seed,
    write_wav,
)
from console_factories import audit_rows as all_audit_rows
from openpyxl import load_workbook
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import Principal, create_user
from agent.centre.charts import waveform_peaks
from agent.centre.search import (
    QueryError,
    SearchQuery,
    export_rows,
    mask_number,
    recording_filename,
    search,
    spreadsheet_text,
    to_csv,
    to_xlsx,
)
from agent.centre.views.recordings import range_start
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Recording

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def recordings(engine: Engine, tmp_path: Path) -> dict[str, int]:
    return seed(engine, tmp_path)


def found(engine: Engine, who: Principal = MANAGER, **params: str) -> set[str]:
    query = SearchQuery.from_params(params | {"per_page": "200"}, UTC)
    with Session(engine) as session:
        return {row.uuid for row in search(session, query, who, masked=False).rows}


# -- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, set(CALLS)),
        ({"number": "5678"}, {"c-a1", "c-b1", "c-c1"}),
        ({"number": "*5678"}, {"c-a1", "c-b1", "c-c1"}),
        ({"number": "1234"}, {"c-a1", "c-b1", "c-c1", "c-d1"}),
        ({"number": "138*"}, {"c-a1", "c-d1"}),
        ({"number": "138????5678"}, {"c-a1"}),
        ({"number": "138-1234-5678"}, {"c-a1"}),
        ({"number": "*9999"}, {"c-d1"}),
        ({"number": "78"}, {"c-a1", "c-b1", "c-c1"}),
        ({"number": "*8"}, {"c-a1", "c-b1", "c-c1"}),
        ({"number": "??9*"}, {"c-a2"}),
        ({"number": "?9*"}, set()),
        ({"notes": "100%"}, {"c-b1"}),
        ({"notes": "quote"}, {"c-a1"}),
        ({"notes": "报价"}, {"c-a1"}),
        ({"notes": "_"}, set()),
        ({"talk_min": "100"}, {"c-a1", "c-c1"}),
        ({"talk_max": "50"}, {"c-a2", "c-b1", "c-c2", "c-d1"}),
        ({"talk_min": "30", "talk_max": "120"}, {"c-a1", "c-b1", "c-d1"}),
        ({"recording": "yes"}, {"c-a1", "c-b1", "c-c1"}),
        ({"recording": "no"}, {"c-a2", "c-c2", "c-d1"}),
        ({"direction": "out"}, {"c-a2", "c-c1"}),
        ({"disposition": "missed"}, {"c-a2", "c-c2"}),
        ({"from": "2026-03-02", "to": "2026-03-03"}, {"c-a1", "c-a2", "c-b1"}),
        ({"from": "2026-03-02 10:00"}, {"c-a2", "c-b1", "c-c1", "c-c2"}),
        ({"rep": "alice"}, {"c-a1", "c-a2"}),
        ({"team": "south"}, {"c-c1", "c-c2", "c-d1"}),
        ({"seat": "s3"}, {"c-c1", "c-c2"}),
        ({"line": "L2"}, {"c-c1", "c-c2"}),
        ({"team": "north", "direction": "in", "recording": "yes", "number": "5678"}, {"c-a1", "c-b1"}),
    ],
)
def test_each_filter_narrows_to_exactly_the_matching_calls(
    engine: Engine, recordings: dict[str, int], params: dict[str, str], expected: set[str]
) -> None:
    assert found(engine, **params) == expected


def test_role_scoping(engine: Engine, recordings: dict[str, int]) -> None:
    assert found(engine, MANAGER) == set(CALLS)
    assert found(engine, LEAD_NORTH) == {"c-a1", "c-a2", "c-b1"}
    assert found(engine, REP_ALICE) == {"c-a1", "c-a2"}
    assert found(engine, ADMIN) == set()
    # A filter cannot widen the scope.
    assert found(engine, LEAD_NORTH, team="south") == set()
    assert found(engine, REP_ALICE, rep="bob") == set()
    assert found(engine, Principal(9, "x", "rep", "north", None, "en")) == set()
    assert found(engine, Principal(9, "x", "lead", None, None, "en")) == set()


def test_pages_totals_and_stable_order(engine: Engine, recordings: dict[str, int]) -> None:
    with Session(engine) as session:
        seen = []
        for page in (1, 2, 3):
            query = SearchQuery.from_params({"per_page": "25", "page": str(page)}, UTC)
            result = search(session, replace_per_page(query, 2), MANAGER, masked=False)
            assert result.total_calls == 6
            assert result.total_talk_seconds == pytest.approx(120 + 30 + 600 + 45)
            assert result.pages == 3
            seen.extend(row.uuid for row in result.rows)
        assert seen == ["c-c2", "c-c1", "c-b1", "c-a2", "c-a1", "c-d1"]
        by_talk = search(
            session,
            SearchQuery.from_params({"sort": "talk_seconds", "order": "asc"}, UTC),
            LEAD_NORTH,
            masked=False,
        )
        assert [row.uuid for row in by_talk.rows] == ["c-b1", "c-a1", "c-a2"]  # no talk time: last
        assert by_talk.total_talk_seconds == pytest.approx(150)


def replace_per_page(query: SearchQuery, per_page: int) -> SearchQuery:
    from dataclasses import replace

    return replace(query, per_page=per_page)


def test_a_search_round_trips_through_its_query_string() -> None:
    params = {
        "from": "2026-03-02 08:00",
        "to": "2026-03-03 00:00",
        "number": "138*5678",
        "rep": "alice",
        "direction": "in",
        "disposition": "answered",
        "talk_min": "10",
        "talk_max": "90.5",
        "recording": "yes",
        "notes": "quote",
        "sort": "talk_seconds",
        "order": "asc",
        "page": "3",
        "per_page": "100",
        "team": "north",
        "seat": "s1",
        "line": "L1",
    }
    query = SearchQuery.from_params(params, UTC)
    assert query.to_params(UTC) == params
    assert SearchQuery.from_params(query.to_params(UTC), UTC) == query
    assert SearchQuery().to_params(UTC) == {}


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"talk_min": "-1"},
        {"talk_max": "nan"},
        {"direction": "sideways"},
        {"sort": "password_hash"},
        {"page": "1; DROP TABLE calls"},
        {"per_page": "1000000"},
        {"number": "abc"},
        {"recording": "maybe"},
    ],
)
def test_malformed_parameters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        SearchQuery.from_params(params, UTC)


# -- masking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+8613812345678", "+86138****5678"),
        ("022-1234 5678", "022-**** 5678"),
        ("12345678", "****5678"),
        ("95555", "***55"),
        ("", ""),
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked


def test_masked_rows_exports_and_file_names(engine: Engine, recordings: dict[str, int]) -> None:
    with Session(engine) as session:
        query = SearchQuery.from_params({"number": "5678"}, UTC)
        rows = search(session, query, MANAGER, masked=True).rows
        assert {row.number for row in rows} == {"138****5678", "022-**** 5678", "150****5678"}
        exported = export_rows(session, query, MANAGER, masked=True)
        text = to_csv(exported, UTC)
        assert "13812345678" not in text
        assert "138****5678" in text
        records = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
        assert {r["uuid"] for r in records} == {"c-a1", "c-b1", "c-c1"}
        sheet = load_workbook(io.BytesIO(to_xlsx(exported, UTC))).active
        cells = [str(c.value) for row in sheet.iter_rows() for c in row]
        assert "138****5678" in cells
        assert not any("12345678" in c for c in cells)
        call = session.get(CallRecord, 1)
        recording = session.scalar(select(Recording).where(Recording.call_uuid == "c-a1"))
        assert call is not None
        assert recording is not None
        assert (
            recording_filename(call, recording, UTC, masked=True) == "20260302-090000_138xxxx5678_alice.wav"
        )
        assert (
            recording_filename(call, recording, UTC, masked=False) == "20260302-090000_13812345678_alice.wav"
        )


def test_spreadsheet_formulas_are_neutralised_but_numbers_kept() -> None:
    assert spreadsheet_text('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert spreadsheet_text("@SUM(A1)") == "'@SUM(A1)"
    assert spreadsheet_text("-1+cmd|' /C calc'!A0") == "'-1+cmd|' /C calc'!A0"
    assert spreadsheet_text("+86 138****5678") == "+86 138****5678"
    assert spreadsheet_text(12.5) == 12.5


# -- the app: pages, playback, audit ------------------------------------------------------


@pytest.fixture
def app_client(engine: Engine, recordings: dict[str, int], tmp_path: Path) -> TestClient:
    with Session(engine) as session, session.begin():
        create_user(session, "boss", PASSWORD, role="manager")
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "alice", PASSWORD, role="rep", rep="alice")
        create_user(session, "carol", PASSWORD, role="rep", rep="carol")
    settings = ConsoleSettings(secret=SECRET, recordings_dir=tmp_path, mask_roles=frozenset({"rep"}))
    return TestClient(make_console_app(engine, settings), base_url="http://127.0.0.1")


def audit_rows(engine: Engine) -> list[tuple[str | None, str, str | None]]:
    return [row for row in all_audit_rows(engine) if not row[1].startswith("login")]


def test_search_page_masks_for_reps_and_not_for_managers(app_client: TestClient) -> None:
    log_in(app_client, "alice")
    page = app_client.get("/calls", params={"number": "5678"})
    assert page.status_code == 200
    assert "138****5678" in page.text
    assert "13812345678" not in page.text
    assert 'data-uuid="c-b1"' not in page.text  # bob's call: not alice's
    call_page = app_client.get("/calls/c-a1")
    assert "138****5678" in call_page.text
    assert "13812345678" not in call_page.text
    log_in(app_client, "boss")
    page = app_client.get("/calls", params={"number": "5678"})
    assert "13812345678" in page.text
    assert page.text.count("data-uuid=") == 3


def test_audio_is_served_in_ranges_with_its_mime_type_and_each_play_is_audited_once(
    app_client: TestClient, engine: Engine, recordings: dict[str, int], tmp_path: Path
) -> None:
    log_in(app_client, "nina")
    rid = recordings["c-a1"]
    size = (tmp_path / "recordings/2026/03/02/c-a1.wav").stat().st_size
    first = app_client.get(f"/recordings/{rid}/audio", headers={"Range": "bytes=0-"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    assert first.headers["content-type"] == "audio/wav"
    assert first.headers["accept-ranges"] == "bytes"
    assert first.headers["content-disposition"].startswith("inline")
    middle = app_client.get(f"/recordings/{rid}/audio", headers={"Range": "bytes=100-199"})
    assert middle.status_code == 206
    assert len(middle.content) == 100
    assert middle.headers["content-range"] == f"bytes 100-199/{size}"
    assert middle.content == first.content[100:200]
    beyond = app_client.get(f"/recordings/{rid}/audio", headers={"Range": f"bytes={size + 10}-"})
    assert beyond.status_code == 416
    whole = app_client.get(f"/recordings/{rid}/audio")
    assert whole.status_code == 200
    assert whole.content == first.content
    assert audit_rows(engine) == [("nina", "play", f"recording:{rid}")] * 2
    download = app_client.get(f"/recordings/{rid}/download")
    assert download.status_code == 200
    assert 'filename="20260302-090000_13812345678_alice.wav"' in download.headers["content-disposition"]
    assert audit_rows(engine)[-1] == ("nina", "download", f"recording:{rid}")


def test_a_rep_is_denied_another_teams_recording_on_the_audio_url(
    app_client: TestClient, engine: Engine, recordings: dict[str, int]
) -> None:
    log_in(app_client, "alice")
    theirs = recordings["c-c1"]
    for kind in ("audio", "download", "waveform.svg"):
        assert app_client.get(f"/recordings/{theirs}/{kind}").status_code == 403
    assert app_client.get("/calls/c-c1").status_code == 404
    assert app_client.get("/recordings/999/audio").status_code == 404
    assert ("alice", "play_denied", f"recording:{theirs}") in audit_rows(engine)
    own = app_client.get(f"/recordings/{recordings['c-a1']}/download")
    assert own.status_code == 200
    assert 'filename="20260302-090000_138xxxx5678_alice.wav"' in own.headers["content-disposition"]
    app_client.cookies.clear()
    assert app_client.get(f"/recordings/{recordings['c-a1']}/audio").status_code == 401


def test_recording_paths_never_come_from_the_url_nor_leave_the_recordings_directory(
    app_client: TestClient, engine: Engine, tmp_path: Path
) -> None:
    secret = tmp_path.parent / f"{tmp_path.name}-outside.wav"
    write_wav(secret)
    with Session(engine) as session, session.begin():
        bad = [
            Recording(call_uuid="c-a2", path_or_uri=f"../{secret.name}", codec="wav", status="complete"),
            Recording(call_uuid="c-a2", path_or_uri=str(secret), codec="wav", status="complete"),
        ]
        session.add_all(bad)
        session.flush()
        ids = [r.id for r in bad]
    log_in(app_client, "boss")
    for rid in ids:
        assert app_client.get(f"/recordings/{rid}/audio").status_code == 404
    for url in (
        "/recordings/..%2F..%2Fetc%2Fpasswd/audio",
        "/recordings/1%2F..%2F..%2Fetc%2Fpasswd/audio",
        "/recordings/-1/audio",
        "/recordings/1/../../../etc/passwd",
    ):
        assert app_client.get(url).status_code == 404, url
    secret.unlink()


def test_export_is_audited_and_masked(app_client: TestClient, engine: Engine) -> None:
    log_in(app_client, "alice")
    response = app_client.get("/calls/export.csv", params={"number": "5678"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "138****5678" in response.text
    assert "13812345678" not in response.text
    xlsx = app_client.get("/calls/export.xlsx")
    assert xlsx.content[:2] == b"PK"
    actions = [(who, action) for who, action, _ in audit_rows(engine)]
    assert actions == [("alice", "export_csv"), ("alice", "export_xlsx")]


def test_audit_page_is_for_managers(
    app_client: TestClient, engine: Engine, recordings: dict[str, int]
) -> None:
    log_in(app_client, "nina")
    app_client.get(f"/recordings/{recordings['c-b1']}/audio")
    assert app_client.get("/audit").status_code == 403
    log_in(app_client, "boss")
    page = app_client.get("/audit", params={"user": "nina", "action": "play"})
    assert page.status_code == 200
    assert page.text.count('<td class="action" data-action="play">') == 1
    assert f"recording:{recordings['c-b1']}" in page.text


def test_statistics_and_wallboard_pages(app_client: TestClient) -> None:
    log_in(app_client, "nina")
    day = app_client.get("/stats/day", params={"date": "2026-03-02"})
    assert day.status_code == 200
    assert "<svg" in day.text
    assert "alice" in day.text
    assert "carol" not in day.text
    month = app_client.get("/stats/month", params={"month": "2026-03"})
    assert month.status_code == 200
    assert "bob" in month.text
    assert "dave" not in month.text
    assert app_client.get("/stats/day", params={"date": "March"}).status_code == 400
    board = app_client.get("/wallboard")
    assert board.status_code == 200
    assert 'id="wallboard"' in board.text


def per_step_slots(page: str, rep: str) -> list[tuple[str, str]]:
    """(slot, calls) rows of ``rep``'s per-hour or per-half-hour table on the day statistics page."""
    block = re.search(rf"<summary>{rep}: .*?</details>", page, re.S)
    assert block is not None
    return re.findall(r'<td class="slot">([0-9:]+)</td><td>(\d+)</td>', block.group(0))


def test_day_statistics_per_half_hour(app_client: TestClient, engine: Engine) -> None:
    late = T0 + timedelta(minutes=40)  # 09:40 UTC, the console's zone here
    with Session(engine) as session, session.begin():
        session.add(
            CallRecord(
                uuid="c-a3",
                seat="s1",
                device_id="d",
                line="L1",
                rep="alice",
                team="north",
                direction="in",
                started_at=late,
                ended_at=late + timedelta(seconds=70),
                answered_at=late,
                talk_seconds=60.0,
                disposition="answered",
            )
        )
    log_in(app_client, "nina")
    hourly = app_client.get("/stats/day", params={"date": "2026-03-02"})
    assert hourly.status_code == 200
    assert per_step_slots(hourly.text, "alice") == [("09:00", "2"), ("10:00", "1")]
    assert hourly.text.count('class="bar"') == 2 * 24  # alice and bob, a bar per hour
    halves = app_client.get("/stats/day", params={"date": "2026-03-02", "step": "half-hour"})
    assert halves.status_code == 200
    assert per_step_slots(halves.text, "alice") == [("09:00", "1"), ("09:30", "1"), ("10:00", "1")]
    assert per_step_slots(halves.text, "bob") == [("11:00", "1")]
    assert halves.text.count('class="bar"') == 2 * 48
    assert "Calls per half-hour" in halves.text
    assert '<option value="half-hour" selected>' in halves.text
    # The next day keeps the lead's team and the step.
    assert 'href="?date=2026-03-03&amp;team=north&amp;step=half-hour"' in halves.text
    assert app_client.get("/stats/day", params={"date": "2026-03-02", "step": "minute"}).status_code == 400


def test_range_start_and_waveform(tmp_path: Path) -> None:
    assert range_start("bytes=0-") == 0
    assert range_start("bytes=500-999, 0-1") == 500
    assert range_start("bytes=-500") is None
    assert range_start(None) is None
    path = tmp_path / "x.wav"
    write_wav(path, seconds=1.0)
    peaks = waveform_peaks(path, points=50)
    assert len(peaks) == 50
    assert max(peaks) == pytest.approx(0.3, abs=0.01)
