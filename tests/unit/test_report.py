"""``cti-agent report``: grouping by half-hour, hour, day, rep and team in a zone, formats, the command."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.commands.report import report
from agent.config import DailyTarget
from agent.events import Call, Direction, Disposition
from storage.db import make_engine, upgrade
from storage.kpis import Kpis, kpis
from storage.report import (
    COLUMNS,
    TARGET_COLUMNS,
    Report,
    ReportRow,
    call_report,
    days_worked,
    format_report,
    local_zone,
    parse_when,
    start_of_day,
    zone_name,
)
from storage.repository import upsert_call
from storage.teams import set_team_targets

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def call(
    uuid: str,
    started: datetime,
    *,
    rep: str = "alice",
    team: str = "north",
    direction: Direction = Direction.IN,
    disposition: Disposition = Disposition.ANSWERED,
    talk: float = 90.0,
    ended: bool = True,
) -> Call:
    answered = disposition is Disposition.ANSWERED
    ring = 6.0
    return Call(
        uuid=uuid,
        seat="seat-1",
        device_id="sim",
        line="L1",
        rep=rep,
        team=team,
        direction=direction,
        started_at=started,
        number_raw="13812345678",
        answered_at=started + timedelta(seconds=ring) if answered else None,
        ended_at=started + timedelta(seconds=ring + (talk if answered else 0)) if ended else None,
        ring_seconds=ring,
        talk_seconds=talk if answered and ended else None,
        disposition=disposition if ended else None,
    )


# Monday 2 March 2026 in Shanghai (UTC+8): 09:10, 09:50, 10:05, 23:30 (that is 15:30 UTC) ...
DAY = datetime(2026, 3, 2, tzinfo=SHANGHAI)
CALLS = [
    call("a1", DAY + timedelta(hours=9, minutes=10), talk=30.0),
    call("a2", DAY + timedelta(hours=9, minutes=50), disposition=Disposition.MISSED),
    call("a3", DAY + timedelta(hours=10, minutes=5), talk=600.0, direction=Direction.OUT),
    call("b1", DAY + timedelta(hours=9, minutes=15), rep="bob", talk=60.0),
    call("b2", DAY + timedelta(hours=23, minutes=30), rep="bob", disposition=Disposition.ABANDONED),
    call("c1", DAY + timedelta(hours=11), rep="carol", team="south", talk=59.9),
    # ... the next day in Shanghai, still 2 March in UTC (16:30 UTC)
    call("c2", DAY + timedelta(days=1, minutes=30), rep="carol", team="south", talk=120.0),
    # not counted: still in progress; before the window
    call("x1", DAY + timedelta(hours=10), ended=False),
    call("x2", DAY - timedelta(minutes=1)),
]


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    with Session(eng) as session, session.begin():
        for c in CALLS:
            upsert_call(session, c)
    yield eng
    eng.dispose()


def IO(inbound: int, outbound: int = 0, connected: int = 0) -> dict[str, int]:
    """A row's direction figures: calls in, calls out, outbound calls connected."""
    return {"inbound": inbound, "outbound": outbound, "outbound_connected": connected}


def run(
    engine: Engine, by: str, start: datetime, end: datetime, zone: ZoneInfo = SHANGHAI, **kw: object
) -> Report:
    with Session(engine) as session:
        return call_report(session, by=by, start=start, end=end, zone=zone, **kw)  # type: ignore[arg-type]


def test_by_rep(engine: Engine) -> None:
    result = run(engine, "rep", DAY, DAY + timedelta(days=2), effective_seconds=60.0)
    assert result.rows == [
        ReportRow("alice", calls=3, answered=2, missed=1, talk_seconds=630.0, effective=1, **IO(2, 1, 1)),
        ReportRow("bob", calls=2, answered=1, missed=0, talk_seconds=60.0, effective=1, **IO(2)),
        ReportRow("carol", calls=2, answered=2, missed=0, talk_seconds=179.9, effective=1, **IO(2)),
    ]
    assert result.rows[0].avg_talk_seconds == 315.0
    assert result.total == ReportRow(
        "total", calls=7, answered=5, missed=1, talk_seconds=869.9, effective=3, **IO(6, 1, 1)
    )


def test_by_team_with_filters_and_threshold(engine: Engine) -> None:
    window = (DAY, DAY + timedelta(days=2))
    assert run(engine, "team", *window, effective_seconds=30.0).rows == [
        ReportRow("north", calls=5, answered=3, missed=1, talk_seconds=690.0, effective=3, **IO(4, 1, 1)),
        ReportRow("south", calls=2, answered=2, missed=0, talk_seconds=179.9, effective=2, **IO(2)),
    ]
    assert run(engine, "team", *window, rep="bob").rows == [
        ReportRow("north", calls=2, answered=1, missed=0, talk_seconds=60.0, effective=1, **IO(2))
    ]
    assert run(engine, "rep", *window, team="south").rows[0].key == "carol"
    assert run(engine, "rep", *window, team="nobody").rows == []


def test_by_hour_in_the_floor_time_zone(engine: Engine) -> None:
    result = run(engine, "hour", DAY + timedelta(hours=9), DAY + timedelta(hours=12), effective_seconds=60.0)
    assert result.zone == "Asia/Shanghai"
    assert result.rows == [
        ReportRow(
            "2026-03-02T09:00+08:00", calls=3, answered=2, missed=1, talk_seconds=90.0, effective=1, **IO(3)
        ),
        ReportRow(
            "2026-03-02T10:00+08:00",
            calls=1,
            answered=1,
            missed=0,
            talk_seconds=600.0,
            effective=1,
            **IO(0, 1, 1),
        ),
        ReportRow(
            "2026-03-02T11:00+08:00", calls=1, answered=1, missed=0, talk_seconds=59.9, effective=0, **IO(1)
        ),
    ]


def test_by_hour_lists_empty_hours_and_respects_the_window_edges(engine: Engine) -> None:
    # 09:15 to 09:50: a1 (09:10) is before, a2 (09:50) is at the excluded end; only b1.
    result = run(engine, "hour", DAY + timedelta(hours=9, minutes=15), DAY + timedelta(hours=9, minutes=50))
    assert [(r.key, r.calls) for r in result.rows] == [("2026-03-02T09:00+08:00", 1)]
    result = run(engine, "hour", DAY + timedelta(hours=12), DAY + timedelta(hours=15))
    assert [(r.key, r.calls) for r in result.rows] == [
        ("2026-03-02T12:00+08:00", 0),
        ("2026-03-02T13:00+08:00", 0),
        ("2026-03-02T14:00+08:00", 0),
    ]


def test_by_half_hour_in_the_floor_time_zone(engine: Engine) -> None:
    result = run(
        engine, "half-hour", DAY + timedelta(hours=9), DAY + timedelta(hours=11), effective_seconds=60.0
    )
    assert result.rows == [
        # a1 at 09:10 and b1 at 09:15; a2 at 09:50 was missed; a3 at 10:05.
        ReportRow(
            "2026-03-02T09:00+08:00", calls=2, answered=2, missed=0, talk_seconds=90.0, effective=1, **IO(2)
        ),
        ReportRow(
            "2026-03-02T09:30+08:00", calls=1, answered=0, missed=1, talk_seconds=0.0, effective=0, **IO(1)
        ),
        ReportRow(
            "2026-03-02T10:00+08:00",
            calls=1,
            answered=1,
            missed=0,
            talk_seconds=600.0,
            effective=1,
            **IO(0, 1, 1),
        ),
        ReportRow("2026-03-02T10:30+08:00"),
    ]
    # A window from 09:15 starts with the half-hour it falls in.
    late = run(
        engine, "half-hour", DAY + timedelta(hours=9, minutes=15), DAY + timedelta(hours=9, minutes=31)
    )
    assert [(r.key, r.calls) for r in late.rows] == [
        ("2026-03-02T09:00+08:00", 1),
        ("2026-03-02T09:30+08:00", 0),
    ]


def one_day(zone: ZoneInfo, day: datetime, calls_at: list[datetime], by: str = "half-hour") -> Report:
    """A report of ``day`` (a local date) in ``zone`` over calls started at the given times."""
    eng = make_engine("sqlite://")
    upgrade(eng)
    try:
        with Session(eng) as session, session.begin():
            for n, moment in enumerate(calls_at):
                upsert_call(session, call(f"z{n}", moment))
        start = start_of_day(day.date(), zone)
        return run(eng, by, start, start_of_day(day.date() + timedelta(days=1), zone), zone=zone)
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    ("zone_name_", "offset", "utc_times", "busy"),
    [
        # India, +05:30: a local half-hour starts at :00 or :30 UTC, but local 09:00 is 03:30 UTC.
        (
            "Asia/Kolkata",
            "+05:30",
            [(3, 29), (3, 30), (4, 0), (4, 15), (4, 29)],
            [("08:30", 1), ("09:00", 1), ("09:30", 3)],
        ),
        # Nepal, +05:45: local half-hours start at :15 and :45 UTC.
        (
            "Asia/Kathmandu",
            "+05:45",
            [(3, 14), (3, 15), (3, 44), (3, 45)],
            [("08:30", 1), ("09:00", 2), ("09:30", 1)],
        ),
    ],
)
def test_half_hours_in_zones_with_odd_offsets(
    zone_name_: str, offset: str, utc_times: list[tuple[int, int]], busy: list[tuple[str, int]]
) -> None:
    zone = ZoneInfo(zone_name_)
    moments = [datetime(2026, 3, 2, h, m, tzinfo=UTC) for h, m in utc_times]
    result = one_day(zone, datetime(2026, 3, 2), moments)
    assert len(result.rows) == 48
    assert result.rows[0].key == f"2026-03-02T00:00{offset}"
    assert result.rows[-1].key == f"2026-03-02T23:30{offset}"
    assert [(r.key[11:16], r.calls) for r in result.rows if r.calls] == busy
    assert all(r.key.endswith(offset) for r in result.rows)


def test_half_hours_across_daylight_saving_changes() -> None:
    # New York, 1 November 2026: 01:00-02:00 twice, 50 half-hours; each 01:30 is its own row.
    fall = one_day(
        NEW_YORK,
        datetime(2026, 11, 1),
        [datetime(2026, 11, 1, 5, 40, tzinfo=UTC), datetime(2026, 11, 1, 6, 40, tzinfo=UTC)],
    )
    assert len(fall.rows) == 50
    assert [(r.key, r.calls) for r in fall.rows if r.calls] == [
        ("2026-11-01T01:30-04:00", 1),
        ("2026-11-01T01:30-05:00", 1),
    ]
    # New York, 8 March 2026: 02:00-03:00 does not happen, 46 half-hours.
    spring = one_day(NEW_YORK, datetime(2026, 3, 8), [datetime(2026, 3, 8, 7, 0, tzinfo=UTC)])
    keys = [r.key[11:] for r in spring.rows]
    assert len(keys) == 46
    assert keys[3:6] == ["01:30-05:00", "03:00-04:00", "03:30-04:00"]
    assert [(r.key, r.calls) for r in spring.rows if r.calls] == [("2026-03-08T03:00-04:00", 1)]
    # Lord Howe Island moves its clocks by half an hour: 02:00-02:30 is skipped on 4 October 2026.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    howe = one_day(lord_howe, datetime(2026, 10, 4), [datetime(2026, 10, 3, 15, 29, tzinfo=UTC)])
    keys = [r.key[11:] for r in howe.rows]
    assert len(keys) == 47
    assert keys[2:5] == ["01:00+10:30", "01:30+10:30", "02:30+11:00"]
    assert [(r.key[11:], r.calls) for r in howe.rows if r.calls] == [("01:30+10:30", 1)]


def test_days_follow_the_zone_not_utc(engine: Engine) -> None:
    window = (datetime(2026, 3, 1, 16, tzinfo=UTC), datetime(2026, 3, 3, 16, tzinfo=UTC))
    shanghai = run(engine, "day", *window, zone=SHANGHAI)
    assert [(r.key, r.calls) for r in shanghai.rows] == [("2026-03-02", 6), ("2026-03-03", 1)]
    utc = run(engine, "day", *window, zone=ZoneInfo("UTC"))
    # In UTC the window spans three dates, and every call is on 2 March (c2 at 16:30 UTC too).
    assert [(r.key, r.calls) for r in utc.rows] == [("2026-03-01", 0), ("2026-03-02", 7), ("2026-03-03", 0)]
    assert shanghai.total == utc.total


def test_groupings_agree_on_the_totals(engine: Engine) -> None:
    window = (DAY - timedelta(days=1), DAY + timedelta(days=3))
    totals = {
        by: run(engine, by, *window, effective_seconds=45.0).total
        for by in ("half-hour", "hour", "day", "rep", "team")
    }
    assert len(set(totals.values())) == 1
    assert totals["rep"].calls == 8  # x2 too, the day before; never x1 (not ended)


def test_a_night_when_the_clocks_go_back() -> None:
    # New York, 1 November 2026: 01:00-02:00 happens twice (EDT, then EST); the day has 25 hours.
    eng = make_engine("sqlite://")
    upgrade(eng)
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    with Session(eng) as session, session.begin():
        upsert_call(session, call("n1", first))
        upsert_call(session, call("n2", second))
    day_start = start_of_day(datetime(2026, 11, 1).date(), NEW_YORK)
    day_end = start_of_day(datetime(2026, 11, 2).date(), NEW_YORK)
    assert day_end.astimezone(UTC) - day_start.astimezone(UTC) == timedelta(hours=25)
    hours = run(eng, "hour", day_start, day_end, zone=NEW_YORK)
    assert len(hours.rows) == 25
    busy = [(r.key, r.calls) for r in hours.rows if r.calls]
    assert busy == [("2026-11-01T01:00-04:00", 1), ("2026-11-01T01:00-05:00", 1)]
    days = run(eng, "day", day_start, day_end, zone=NEW_YORK)
    assert [(r.key, r.calls) for r in days.rows] == [("2026-11-01", 2)]
    eng.dispose()


def test_window_must_be_aware_and_not_empty(engine: Engine) -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        run(engine, "rep", datetime(2026, 3, 2), datetime(2026, 3, 3))
    with pytest.raises(ValueError, match="empty"):
        run(engine, "rep", DAY, DAY)
    with pytest.raises(ValueError, match="cannot group"):
        run(engine, "week", DAY, DAY + timedelta(days=1))


def test_formats(engine: Engine) -> None:
    result = run(engine, "rep", DAY, DAY + timedelta(days=2), effective_seconds=60.0)
    table = format_report(result, "table")
    lines = table.splitlines()
    assert lines[0].startswith("calls by rep, 2026-03-02T00:00:00+08:00")
    assert lines[1].split() == [
        "REP", "CALLS", "ANSWERED", "MISSED", "TALK", "EFFECTIVE", "AVG", "TALK",
        "IN", "OUT", "CONNECT", "RATE",
    ]  # fmt: skip
    assert lines[3].split() == ["alice", "3", "2", "1", "0:10:30", "1", "0:05:15", "2", "1", "100%"]
    assert lines[-1].split() == ["total", "7", "5", "1", "0:14:30", "3", "0:02:54", "6", "1", "100%"]
    rows = list(csv.DictReader(io.StringIO(format_report(result, "csv"))))
    assert rows[2] == {
        "rep": "carol",
        "calls": "2",
        "answered": "2",
        "missed": "0",
        "talk_seconds": "179.9",
        "effective": "1",
        "avg_talk_seconds": "89.95",
        "inbound": "2",
        "outbound": "0",
        "outbound_connected": "0",
        "connect_rate": "",  # no outbound call: no rate, not 0 %
    }
    document = json.loads(format_report(result, "json"))
    assert document["timezone"] == "Asia/Shanghai"
    assert document["total"]["calls"] == 7
    assert document["rows"][1]["avg_talk_seconds"] == 60.0
    empty = run(engine, "rep", DAY + timedelta(days=5), DAY + timedelta(days=6))
    assert json.loads(format_report(empty, "json"))["rows"] == []
    assert "-" in format_report(empty, "table").splitlines()[-1]  # no average of nothing
    with pytest.raises(ValueError, match="unknown format"):
        format_report(result, "xml")


def test_csv_through_the_sheet_writer() -> None:
    day = datetime(2026, 3, 2, tzinfo=SHANGHAI)
    result = Report(
        by="rep",
        start=day,
        end=day + timedelta(days=1),
        zone="Asia/Shanghai",
        rows=[
            ReportRow(
                '=HYPERLINK("http://x")', calls=2, answered=1, missed=1, talk_seconds=30.5, effective=0
            ),
            ReportRow("-bob", calls=1, answered=0, missed=1),
        ],
    )
    rows = list(csv.reader(io.StringIO(format_report(result, "csv"))))
    assert rows[0][0] == "rep"
    assert rows[1] == ['\'=HYPERLINK("http://x")', "2", "1", "1", "30.5", "0", "30.5", "0", "0", "0", ""]
    assert rows[2] == ["'-bob", "1", "0", "1", "0.0", "0", "", "0", "0", "0", ""]  # no average of nothing
    chinese = list(csv.reader(io.StringIO(format_report(result, "csv", "zh-CN"))))
    assert chinese[0] == [
        "业务员", "通话数", "接通", "未接", "通话秒数", "有效通话", "平均通话秒数",
        "呼入", "呼出", "呼出接通", "接通率",
    ]  # fmt: skip
    assert chinese[1:] == rows[1:]
    assert not format_report(result, "csv").startswith("\ufeff")  # a terminal, not Excel
    with pytest.raises(ValueError, match="unknown language"):
        format_report(result, "csv", "fr")


def test_parse_when_and_zones(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_when("2026-03-02", SHANGHAI) == datetime(2026, 3, 2, tzinfo=SHANGHAI)
    assert parse_when("2026-03-02 09:30", SHANGHAI) == datetime(2026, 3, 2, 9, 30, tzinfo=SHANGHAI)
    assert parse_when("2026-03-02T01:30:00+00:00", SHANGHAI) == datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a date"):
        parse_when("yesterday", SHANGHAI)
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    assert zone_name(local_zone()) == "Asia/Shanghai"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert local_zone() is not None


# -- the command --------------------------------------------------------------------------


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    eng = make_engine(url)
    upgrade(eng)
    with Session(eng) as session, session.begin():
        for c in CALLS:
            upsert_call(session, c)
    eng.dispose()
    return url


def test_report_command_json(db_url: str) -> None:
    args = ["--by", "rep", "--from", "2026-03-02", "--to", "2026-03-04", "--tz", "Asia/Shanghai"]
    result = CliRunner().invoke(
        report, [*args, "--format", "json", "--url", db_url, "--effective-seconds", "60"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [r["key"] for r in document["rows"]] == ["alice", "bob", "carol"]
    assert document["total"]["effective"] == 3
    assert document["from"] == "2026-03-02T00:00:00+08:00"


def test_report_command_reads_url_and_threshold_from_config(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[storage]\nurl = "{db_url}"\n[metrics]\neffective_call_seconds = 100\n')
    result = CliRunner().invoke(
        report,
        ["--by", "hour", "--from", "2026-03-02 09:00", "--to", "2026-03-02 11:00", "--tz", "Asia/Shanghai"]
        + ["--format", "csv", "--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["hour"], r["calls"], r["effective"]) for r in rows] == [
        ("2026-03-02T09:00+08:00", "3", "0"),
        ("2026-03-02T10:00+08:00", "1", "1"),
    ]


def test_report_command_csv_in_chinese(db_url: str) -> None:
    args = ["--by", "hour", "--from", "2026-03-02 09:00", "--to", "2026-03-02 11:00", "--tz", "Asia/Shanghai"]
    result = CliRunner().invoke(report, [*args, "--format", "csv", "--lang", "zh-CN", "--url", db_url])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["小时"], r["通话数"]) for r in rows] == [
        ("2026-03-02T09:00+08:00", "3"),
        ("2026-03-02T10:00+08:00", "1"),
    ]
    wrong = CliRunner().invoke(report, [*args, "--format", "csv", "--lang", "fr", "--url", db_url])
    assert wrong.exit_code == 2


def test_report_command_by_half_hour(db_url: str) -> None:
    args = ["--by", "half-hour", "--from", "2026-03-02 09:00", "--to", "2026-03-02 10:30"]
    result = CliRunner().invoke(report, [*args, "--tz", "Asia/Shanghai", "--format", "csv", "--url", db_url])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["half-hour"], r["calls"], r["missed"]) for r in rows] == [
        ("2026-03-02T09:00+08:00", "2", "0"),
        ("2026-03-02T09:30+08:00", "1", "1"),
        ("2026-03-02T10:00+08:00", "1", "0"),
    ]
    table = CliRunner().invoke(report, [*args, "--tz", "Asia/Shanghai", "--url", db_url])
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[1].startswith("HALF-HOUR")
    too_long = CliRunner().invoke(report, ["--by", "half-hour", "--from", "2010-01-01", "--url", db_url])
    assert too_long.exit_code == 2
    assert "more than ten years" in too_long.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tz", "Mars/Olympus"], "unknown time zone"),
        (["--from", "2026-03-03", "--to", "2026-03-02"], "is not after"),
        (["--from", "someday"], "not a date"),
        (["--by", "week"], "week"),
    ],
)
def test_report_command_usage_errors(db_url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(report, [*args, "--url", db_url])
    assert result.exit_code == 2
    assert message in result.output


# -- against targets: the KPI columns -----------------------------------------------------


def test_days_worked_are_days_on_the_zones_calendar(engine: Engine) -> None:
    with Session(engine) as session:
        window = {"start": DAY, "end": DAY + timedelta(days=2)}
        assert days_worked(session, zone=SHANGHAI, **window) == {"alice": 1, "bob": 1, "carol": 2}
        # In UTC carol's two calls are on one day.
        assert days_worked(session, zone=ZoneInfo("UTC"), **window)["carol"] == 1
        assert days_worked(session, zone=SHANGHAI, team="south", **window) == {"carol": 2}


def kpis_by_rep(result: Report, quotas: dict[str, DailyTarget], days: dict[str, int]) -> dict[str, Kpis]:
    return {row.key: kpis(row, quotas.get(row.key), days=days.get(row.key, 1)) for row in result.rows}


def test_formats_against_targets(engine: Engine) -> None:
    result = run(engine, "rep", DAY, DAY + timedelta(days=2), effective_seconds=60.0)
    quotas = {
        "alice": DailyTarget(calls=4, talk_seconds=1200),
        "carol": DailyTarget(calls=1, effective_calls=1),
    }
    row_kpis = kpis_by_rep(result, quotas, {"carol": 2})
    lines = format_report(result, "table", kpis=row_kpis).splitlines()
    assert lines[1].split()[-4:] == ["CONNECTS", "CALLS/TARGET", "TALK/TARGET", "EFFECTIVE/TARGET"]
    # alice: 3 of 4 calls, 10:30 of 20:00 talk; bob: no targets; carol: two days' worth.
    assert lines[3].split()[10:] == ["1", "3/4", "75%", "0:10:30/0:20:00", "53%", "-"]
    assert lines[4].split()[10:] == ["0", "-", "-", "-"]
    assert lines[5].split()[10:] == ["0", "2/2", "100%", "-", "1/2", "50%"]
    # The total: everyone's figures against the sum of the targets that exist.
    assert lines[-1].split()[10:] == [
        "1",
        "7/6",
        "117%",
        "0:14:30/0:20:00",
        "72%",
        "3/2",
        "150%",
    ]  # 869.9 s: 72.49 %
    rows = list(csv.DictReader(io.StringIO(format_report(result, "csv", kpis=row_kpis))))
    assert list(rows[0])[-len(TARGET_COLUMNS) :] == list(TARGET_COLUMNS)
    assert {k: rows[0][k] for k in TARGET_COLUMNS} == {
        "days_worked": "1", "target_calls": "4", "calls_progress": "0.75", "target_talk_seconds": "1200",
        "talk_progress": "0.525", "target_effective": "", "effective_progress": "",
    }  # fmt: skip
    assert rows[1]["target_calls"] == ""  # bob has none
    assert rows[2]["days_worked"] == "2"
    chinese = next(csv.reader(io.StringIO(format_report(result, "csv", "zh-CN", kpis=row_kpis))))
    assert chinese[-7:] == [
        "出勤天数", "通话目标", "通话完成率", "通时目标秒数", "通时完成率", "有效通话目标", "有效通话完成率",
    ]  # fmt: skip
    document = json.loads(format_report(result, "json", kpis=row_kpis))
    assert document["rows"][0]["calls_progress"] == 0.75
    assert document["total"]["target_calls"] == 6
    # KPIs without a single target change nothing: the columns of a report without targets.
    plain = kpis_by_rep(result, {}, {})
    assert format_report(result, "table", kpis=plain) == format_report(result, "table")
    assert format_report(result, "csv", kpis=plain) == format_report(result, "csv")
    assert format_report(result, "json", kpis=plain) == format_report(result, "json")


def test_report_command_by_rep_against_the_configs_and_the_databases_targets(
    db_url: str, tmp_path: Path
) -> None:
    eng = make_engine(db_url)
    with Session(eng) as session, session.begin():
        set_team_targets(session, "south", calls=1, effective_calls=1)  # the team's own, in the database
    eng.dispose()
    config = tmp_path / "centre.toml"
    config.write_text(
        f'[storage]\nurl = "{db_url}"\n[targets]\ncalls = 4\ntalk_seconds = 1200\n'
        "[targets.teams.south]\ncalls = 50\n"
    )
    args = ["--by", "rep", "--from", "2026-03-02", "--to", "2026-03-04", "--tz", "Asia/Shanghai"]
    result = CliRunner().invoke(report, [*args, "--format", "json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    rows = {r["key"]: r for r in json.loads(result.output)["rows"]}
    assert (rows["alice"]["target_calls"], rows["alice"]["calls_progress"]) == (4, 0.75)
    assert rows["alice"]["target_talk_seconds"] == 1200
    # carol (south) worked two days: the database's 1 call a day (over the file's 50), twice.
    assert (rows["carol"]["days_worked"], rows["carol"]["target_calls"]) == (2, 2)
    assert (rows["carol"]["target_effective"], rows["carol"]["effective_progress"]) == (2, 0.5)
    # Without a config (started anywhere), the database's team targets still count.
    bare = CliRunner().invoke(report, [*args, "--format", "csv", "--url", db_url])
    assert bare.exit_code == 0, bare.output
    by_rep = {r["rep"]: r for r in csv.DictReader(io.StringIO(bare.output))}
    assert by_rep["carol"]["target_calls"] == "2"
    assert by_rep["alice"]["target_calls"] == ""
    # --no-targets: the plain columns, whatever is set.
    plain = CliRunner().invoke(report, [*args, "--format", "csv", "--no-targets", "--config", str(config)])
    assert plain.exit_code == 0, plain.output
    assert next(csv.reader(io.StringIO(plain.output))) == ["rep", *COLUMNS[1:]]


def test_report_command_by_day_for_one_rep_and_not_by_hour(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "centre.toml"
    config.write_text(f'[storage]\nurl = "{db_url}"\n[targets.reps.carol]\ncalls = 2\n')
    args = ["--from", "2026-03-02", "--to", "2026-03-04", "--tz", "Asia/Shanghai", "--config", str(config)]
    days = CliRunner().invoke(report, ["--by", "day", "--rep", "carol", *args])
    assert days.exit_code == 0, days.output
    lines = days.output.splitlines()
    assert lines[1].split()[-4:] == ["CONNECTS", "CALLS/TARGET", "TALK/TARGET", "EFFECTIVE/TARGET"]
    assert lines[3].split()[0] == "2026-03-02"
    assert lines[3].split()[10:] == ["0", "1/2", "50%", "-", "-"]
    assert lines[-1].split()[10:] == ["0", "2/4", "50%", "-", "-"]
    # A day's target is not an hour's, and a team's is not a rep's: no target columns there.
    for by in (["--by", "hour"], ["--by", "team"], ["--by", "day"]):
        plain = CliRunner().invoke(report, [*by, *args])
        assert plain.exit_code == 0, plain.output
        assert "TARGET" not in plain.output


@pytest.mark.parametrize("by", ["rep", "team", "day", "hour"])
def test_a_long_report_read_week_by_week_is_the_same_report(by: str) -> None:
    # Six weeks of a floor's calls (every 47 minutes, three reps), read at once and week by week.
    eng = make_engine("sqlite://")
    upgrade(eng)
    start = datetime(2026, 3, 2, 9, 10, tzinfo=SHANGHAI)
    reps = ("alice", "bob", "陈静")
    outcomes = (Disposition.ANSWERED, Disposition.MISSED, Disposition.ANSWERED, Disposition.ABANDONED)
    with Session(eng) as session, session.begin():
        for n in range(6 * 7 * 24 * 60 // 47):
            upsert_call(
                session,
                call(
                    f"c{n}",
                    start + timedelta(minutes=47 * n),
                    rep=reps[n % 3],
                    team="north" if n % 3 else "south",
                    direction=Direction.OUT if n % 5 else Direction.IN,
                    disposition=outcomes[n % 4],
                    talk=float(15 + n % 170),
                ),
            )
    end = start + timedelta(days=41, hours=3)
    told: list[int] = []
    whole = run(eng, by, start, end)
    weekly = run(eng, by, start, end, progress=told.append)
    eng.dispose()
    assert [r.to_dict() for r in weekly.rows] == [r.to_dict() for r in whole.rows]
    assert weekly.total.calls == whole.total.calls > 1000
    assert len(told) == 6  # told a week at a time ...
    assert sum(told) == 42  # ... of 41 days and 3 hours: 42 days
    if by == "rep":
        assert [r.key for r in weekly.rows] == ["alice", "bob", "陈静"]


def test_the_report_command_shows_its_progress_on_standard_error_for_a_long_window(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    eng = make_engine(url)
    upgrade(eng)
    with Session(eng) as session, session.begin():
        for n, c in enumerate(CALLS):
            upsert_call(session, c)
            upsert_call(session, call(f"late{n}", c.started_at + timedelta(days=20), rep=c.rep or "x"))
    eng.dispose()
    args = [
        "--by",
        "rep",
        "--from",
        "2026-03-01",
        "--to",
        "2026-04-01",
        "--tz",
        "Asia/Shanghai",
        "--url",
        url,
    ]
    result = CliRunner().invoke(report, args)
    assert result.exit_code == 0, result.output
    assert "reading calls: 31/31 days (100%) in " in result.stderr
    assert "reading calls" not in result.stdout  # standard output is the report alone
    short = CliRunner().invoke(report, [*args[:2], "--from", "2026-03-01", "--to", "2026-03-05", *args[6:]])
    assert short.exit_code == 0, short.output
    assert short.stderr == ""
