"""Call history from the database, grouped by half-hour, hour, day, rep or team (``cti-agent report``).

Prometheus keeps weeks and loses what a seat counted between its last scrape and
a restart; the database keeps every call for years. These are the figures of
record, computed the same way as the live metrics:

- a call is counted once it has ended (``ended_at`` set), in the bucket of its
  *start* (a call from 09:58 to 10:03 belongs to 09:00-10:00);
- ``answered``/``missed`` are the dispositions; ``talk_seconds`` is the talk time
  of answered calls; ``effective`` counts answered calls whose talk time reached
  the threshold (``[metrics] effective_call_seconds``), like
  ``cti_effective_calls_total``.

Half-hours, hours and days are those of a time zone given by the caller (the
floor's zone, ``Asia/Shanghai`` in China). The queries are plain SQL that SQLite
and PostgreSQL run alike: rep and team are grouped by the database; half-hours,
hours and days are grouped here in Python, because SQLite has no time zones and
an hour of a zone is not always an hour of UTC (zones with half-hour or
45-minute offsets, days of 23 or 25 hours when daylight saving time changes).
A half-hour is ``:00``-``:30`` or ``:30``-``:00`` on the zone's clock, keyed by
its local start with the offset (``2026-03-02T09:30+08:00``), like an hour.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from storage.kpis import Kpis, Progress, percent_text, ratio, team_total
from storage.models import CallRecord
from storage.sheets import csv_text, headers

Grouping = Literal["half-hour", "hour", "day", "rep", "team"]
GROUPINGS: tuple[Grouping, ...] = ("half-hour", "hour", "day", "rep", "team")
#: The groupings by time shorter than a day, with the length of their buckets.
CLOCK_STEPS: dict[str, timedelta] = {"half-hour": timedelta(minutes=30), "hour": timedelta(hours=1)}
FORMATS: tuple[str, ...] = ("table", "csv", "json")

#: Columns of a report, in output order (``key`` is the half-hour, hour, day, rep or team).
COLUMNS: tuple[str, ...] = (
    "key",
    "calls",
    "answered",
    "missed",
    "talk_seconds",
    "effective",
    "avg_talk_seconds",
    # Appended, so a script that reads the columns above by position keeps working.
    "inbound",
    "outbound",
    "outbound_connected",
    "connect_rate",
)


@dataclass(frozen=True, slots=True)
class ReportRow:
    """The figures of one half-hour, hour, day, rep or team."""

    key: str
    calls: int = 0
    answered: int = 0
    missed: int = 0
    talk_seconds: float = 0.0
    effective: int = 0
    inbound: int = 0
    outbound: int = 0
    #: Outbound calls the far end answered (the connects of 接通率).
    outbound_connected: int = 0

    @property
    def avg_talk_seconds(self) -> float | None:
        """Average talk time of the answered calls; None when none was answered."""
        return self.talk_seconds / self.answered if self.answered else None

    @property
    def connect_rate(self) -> float | None:
        """接通率: the share of outbound calls that connected (0..1); None without outbound calls."""
        return self.outbound_connected / self.outbound if self.outbound else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every column (seconds rounded to milliseconds)."""
        average = self.avg_talk_seconds
        return {
            "key": self.key,
            "calls": self.calls,
            "answered": self.answered,
            "missed": self.missed,
            "talk_seconds": round(self.talk_seconds, 3),
            "effective": self.effective,
            "avg_talk_seconds": None if average is None else round(average, 3),
            "inbound": self.inbound,
            "outbound": self.outbound,
            "outbound_connected": self.outbound_connected,
            "connect_rate": None if self.connect_rate is None else round(self.connect_rate, 4),
        }


@dataclass(frozen=True, slots=True)
class Report:
    """A report: its rows in order, the window ``[start, end)`` and the zone of its clock buckets and days."""

    by: Grouping
    start: datetime
    end: datetime
    zone: str
    rows: list[ReportRow]

    @property
    def total(self) -> ReportRow:
        """All rows added up."""
        return ReportRow(
            key="total",
            calls=sum(r.calls for r in self.rows),
            answered=sum(r.answered for r in self.rows),
            missed=sum(r.missed for r in self.rows),
            talk_seconds=sum(r.talk_seconds for r in self.rows),
            effective=sum(r.effective for r in self.rows),
            inbound=sum(r.inbound for r in self.rows),
            outbound=sum(r.outbound for r in self.rows),
            outbound_connected=sum(r.outbound_connected for r in self.rows),
        )


def local_zone() -> tzinfo:
    """The machine's time zone: ``$TZ``, else ``/etc/localtime``'s zone name, else its current offset.

    A named zone knows its daylight-saving rules; the offset fallback does not,
    so a report across a DST change on such a machine should name ``--tz``.
    """
    candidates: list[str] = []
    if os.environ.get("TZ"):
        candidates.append(os.environ["TZ"].lstrip(":"))
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else UTC


def zone_name(zone: tzinfo) -> str:
    """A zone's IANA name, or what it calls itself (``UTC``, ``+0800``)."""
    return getattr(zone, "key", None) or datetime.now(zone).strftime("%Z") or str(zone)


def _window(start: datetime, end: datetime) -> ColumnElement[bool]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the report window must be tz-aware")
    if end <= start:
        raise ValueError(f"the report window is empty: {start.isoformat()} is not before {end.isoformat()}")
    return and_(
        CallRecord.ended_at.is_not(None),
        CallRecord.started_at >= start,
        CallRecord.started_at < end,
    )


def _filters(team: str | None, rep: str | None) -> list[ColumnElement[bool]]:
    out = []
    if team is not None:
        out.append(CallRecord.team == team)
    if rep is not None:
        out.append(CallRecord.rep == rep)
    return out


def _grouped_by_owner(
    session: Session,
    column: Any,
    where: list[ColumnElement[bool]],
    effective_seconds: float,
) -> list[ReportRow]:
    answered = CallRecord.disposition == "answered"
    outbound = CallRecord.direction == "out"
    talk = func.coalesce(CallRecord.talk_seconds, 0.0)
    query = (
        select(
            column,
            func.count(),
            func.sum(case((answered, 1), else_=0)),
            func.sum(case((CallRecord.disposition == "missed", 1), else_=0)),
            func.sum(case((answered, talk), else_=0.0)),
            func.sum(case((and_(answered, talk >= effective_seconds), 1), else_=0)),
            func.sum(case((outbound, 1), else_=0)),
            func.sum(case((and_(outbound, answered), 1), else_=0)),
        )
        .where(*where)
        .group_by(column)
        .order_by(column)
    )
    rows = session.execute(query)
    return [
        ReportRow(
            key=str(key),
            calls=int(calls),
            answered=int(n_answered or 0),
            missed=int(n_missed or 0),
            talk_seconds=float(talk_sum or 0.0),
            effective=int(n_effective or 0),
            inbound=int(calls) - int(n_out or 0),
            outbound=int(n_out or 0),
            outbound_connected=int(n_out_connected or 0),
        )
        for key, calls, n_answered, n_missed, talk_sum, n_effective, n_out, n_out_connected in rows
    ]


def _bucket_start(by: Grouping, moment: datetime, zone: tzinfo) -> datetime:
    """The start of the half-hour or hour of ``moment`` on ``zone``'s clock.

    Rounded down on the local clock, not in UTC: in Asia/Kolkata (+05:30) the
    hour 09:00-10:00 starts at 03:30 UTC, in Asia/Kathmandu (+05:45) a half-hour
    at :15 or :45 UTC. ``replace`` keeps ``fold``, so the second 01:30 of a night
    when the clocks go back stays the second.
    """
    local = moment.astimezone(zone)
    minute = local.minute - local.minute % 30 if by == "half-hour" else 0
    return local.replace(minute=minute, second=0, microsecond=0)


def _time_keys(by: Grouping, start: datetime, end: datetime, zone: tzinfo) -> Iterator[str]:
    """Every half-hour, hour or day of the window, in order, as the keys :func:`_time_key` gives."""
    if by == "day":
        day = start.astimezone(zone).date()
        last = (end - timedelta(microseconds=1)).astimezone(zone).date()
        while day <= last:
            yield day.isoformat()
            day += timedelta(days=1)
        return
    step = CLOCK_STEPS[by]
    # Compared and stepped in UTC: Python compares two times of one zone by their wall clocks,
    # and a local half-hour or hour repeated or skipped by a DST change is still one bucket.
    bucket = _bucket_start(by, start, zone).astimezone(UTC)
    end = end.astimezone(UTC)
    while bucket < end:
        yield _time_key(by, bucket, zone)
        following = _bucket_start(by, bucket + step, zone).astimezone(UTC)
        # A zone whose offset changed by an odd amount (historic local mean times) can round a
        # step back into the same bucket; the next bucket then starts a step later.
        bucket = following if following > bucket else bucket + step


def _time_key(by: Grouping, moment: datetime, zone: tzinfo) -> str:
    if by == "day":
        return moment.astimezone(zone).date().isoformat()
    # The offset tells apart the two 01:00s of a night when the clocks go back.
    return _bucket_start(by, moment, zone).isoformat(timespec="minutes")


def _grouped_by_time(
    session: Session,
    by: Grouping,
    where: list[ColumnElement[bool]],
    start: datetime,
    end: datetime,
    zone: tzinfo,
    effective_seconds: float,
) -> list[ReportRow]:
    empty = [0, 0, 0, 0.0, 0, 0, 0]
    totals: dict[str, list[float]] = {key: list(empty) for key in _time_keys(by, start, end, zone)}
    query = (
        select(CallRecord.started_at, CallRecord.disposition, CallRecord.talk_seconds, CallRecord.direction)
        .where(*where)
        .execution_options(yield_per=2000)
    )
    for started_at, disposition, talk_seconds, direction in session.execute(query):
        # Every key of the window is already there; setdefault only guards against a bug there.
        bucket = totals.setdefault(_time_key(by, started_at, zone), list(empty))
        bucket[0] += 1
        outbound = direction == "out"
        bucket[5] += outbound
        if disposition == "answered":
            talk = talk_seconds or 0.0
            bucket[1] += 1
            bucket[3] += talk
            bucket[6] += outbound
            if talk >= effective_seconds:
                bucket[4] += 1
        elif disposition == "missed":
            bucket[2] += 1
    return [
        ReportRow(
            key=key,
            calls=int(calls),
            answered=int(answered),
            missed=int(missed),
            talk_seconds=float(talk),
            effective=int(effective),
            inbound=int(calls - out),
            outbound=int(out),
            outbound_connected=int(out_connected),
        )
        for key, (calls, answered, missed, talk, effective, out, out_connected) in totals.items()
    ]


def _weeks(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into weeks (the last one shorter)."""
    pieces = []
    while start < end:
        following = min(start + timedelta(days=7), end)
        pieces.append((start, following))
        start = following
    return pieces


def _added(one: ReportRow, other: ReportRow) -> ReportRow:
    """Two rows of one key added up."""
    return ReportRow(
        key=one.key,
        calls=one.calls + other.calls,
        answered=one.answered + other.answered,
        missed=one.missed + other.missed,
        talk_seconds=one.talk_seconds + other.talk_seconds,
        effective=one.effective + other.effective,
        inbound=one.inbound + other.inbound,
        outbound=one.outbound + other.outbound,
        outbound_connected=one.outbound_connected + other.outbound_connected,
    )


def window_days(start: datetime, end: datetime) -> int:
    """The days (a part day counts) of ``[start, end)``: what :func:`call_report`'s progress counts to."""
    return max(math.ceil((end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(days=1)), 1)


def call_report(
    session: Session,
    *,
    by: Grouping,
    start: datetime,
    end: datetime,
    zone: tzinfo,
    effective_seconds: float = 60.0,
    team: str | None = None,
    rep: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """The ended calls that started in ``[start, end)``, grouped ``by`` half-hour, hour, day, rep or team.

    Half-hour, hour and day reports have a row for every half-hour, hour or day
    of the window (zeros included, so gaps show), each starting on the zone's
    clock (a window starting at 09:10 has a first row for 09:00 or 09:00-09:30
    that counts from 09:10); rep and team reports a row for each one that has
    calls, by name. ``team``/``rep`` narrow the calls counted.

    ``progress`` (given): told how many days of the window were read as they are read
    (:func:`window_days` in all). The calls are then read a week at a time and the weeks'
    figures added (every figure is a sum), so a report over a year shows its progress; the
    rows are the same as when read at once.

    :raises ValueError: ``start``/``end`` are naive or ``end`` is not after ``start``.
    """
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; one of {', '.join(GROUPINGS)}")
    if start.tzinfo is not None and end.tzinfo is not None:
        # Python compares and subtracts times of one zone by their wall clocks; UTC has no folds.
        start, end = start.astimezone(UTC), end.astimezone(UTC)
    pieces = _weeks(start, end) if progress is not None else [(start, end)]
    merged: dict[str, ReportRow] = {}
    read_days = 0
    for piece_start, piece_end in pieces:
        where = [_window(piece_start, piece_end), *_filters(team, rep)]
        if by in ("rep", "team"):
            column = CallRecord.rep if by == "rep" else CallRecord.team
            piece = _grouped_by_owner(session, column, where, effective_seconds)
        else:
            piece = _grouped_by_time(session, by, where, piece_start, piece_end, zone, effective_seconds)
        for row in piece:
            merged[row.key] = _added(merged[row.key], row) if row.key in merged else row
        if progress is not None:
            days = window_days(start, piece_end)
            progress(days - read_days)
            read_days = days
    if by in ("rep", "team"):
        # In Python's order (code points), which SQLite's and PostgreSQL's collations need not share.
        rows = [merged[key] for key in sorted(merged)]
    else:
        rows = [merged.get(key, ReportRow(key=key)) for key in _time_keys(by, start, end, zone)]
    return Report(
        by=by, start=start.astimezone(zone), end=end.astimezone(zone), zone=zone_name(zone), rows=rows
    )


def days_worked(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    zone: tzinfo,
    team: str | None = None,
    rep: str | None = None,
) -> dict[str, int]:
    """Each rep's days in ``[start, end)`` on ``zone``'s calendar with at least one ended call.

    What a daily quota is multiplied by over a window of several days (:func:`storage.kpis.kpis`).

    :raises ValueError: ``start``/``end`` are naive or ``end`` is not after ``start``.
    """
    where = [_window(start.astimezone(UTC), end.astimezone(UTC)), *_filters(team, rep)]
    days: dict[str, set[date]] = {}
    query = select(CallRecord.rep, CallRecord.started_at).where(*where).execution_options(yield_per=2000)
    for name, started_at in session.execute(query):
        days.setdefault(str(name), set()).add(started_at.astimezone(zone).date())
    return {name: len(dates) for name, dates in sorted(days.items())}


def parse_when(text: str, zone: tzinfo) -> datetime:
    """``2026-03-02``, ``2026-03-02 09:30`` or an ISO 8601 time; without an offset it is in ``zone``.

    :raises ValueError: not one of those forms.
    """
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2026-03-02) or a time (2026-03-02 09:30)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def start_of_day(day: date, zone: tzinfo) -> datetime:
    """Local midnight of ``day`` in ``zone`` (the first moment of the day where midnight is skipped)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=zone)
    # Round-trip through UTC: a nonexistent local time comes back as a real one.
    return moment.astimezone(UTC).astimezone(zone)


# -- output --------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


#: Columns a report against targets appends to :data:`COLUMNS` in CSV and JSON (see :func:`with_targets`):
#: the days the daily targets were multiplied by, and per kind the target and the share done (1 = met).
TARGET_COLUMNS: tuple[str, ...] = (
    "days_worked",
    "target_calls",
    "calls_progress",
    "target_talk_seconds",
    "talk_progress",
    "target_effective",
    "effective_progress",
)
#: Columns the table appends against targets (connects: the outbound calls answered).
TARGET_TABLE_COLUMNS: tuple[str, ...] = ("CONNECTS", "CALLS/TARGET", "TALK/TARGET", "EFFECTIVE/TARGET")


def with_targets(report: Report, kpis: Mapping[str, Kpis] | None) -> bool:
    """Whether the report is shown against targets: ``kpis`` (by row key) give some row a target."""
    return kpis is not None and any(kpis[row.key].has_targets for row in report.rows if row.key in kpis)


def _total_kpis(report: Report, kpis: Mapping[str, Kpis]) -> Kpis:
    return team_total("total", (kpis[row.key] for row in report.rows if row.key in kpis))


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 3)


def _share(progress: Progress) -> float | None:
    done = progress.ratio
    return None if done is None else round(float(done), 4)


def target_values(kpi: Kpis | None) -> dict[str, Any]:
    """The :data:`TARGET_COLUMNS` of one row (all None for a row without KPIs)."""
    if kpi is None:
        return dict.fromkeys(TARGET_COLUMNS)
    return {
        "days_worked": kpi.days,
        "target_calls": _number(kpi.calls.target),
        "calls_progress": _share(kpi.calls),
        "target_talk_seconds": _number(kpi.talk.target),
        "talk_progress": _share(kpi.talk),
        "target_effective": _number(kpi.effective.target),
        "effective_progress": _share(kpi.effective),
    }


def _against(progress: Progress, show: Callable[[float], str]) -> str:
    if progress.target is None:
        return "-"
    return f"{show(progress.value)}/{show(progress.target)} {progress.percent}%"


def _count(value: float) -> str:
    return str(int(value))


def format_table(report: Report, kpis: Mapping[str, Kpis] | None = None) -> str:
    """Aligned columns for a terminal, durations as h:mm:ss, and a total line.

    Against targets (:func:`with_targets`) the connects and each figure over its target
    (``42/80 53%``; ``-`` where there is none) are appended.
    """
    header: tuple[str, ...] = (
        report.by.upper(), "CALLS", "ANSWERED", "MISSED", "TALK", "EFFECTIVE", "AVG TALK", "IN", "OUT",
        "CONNECT RATE",
    )  # fmt: skip
    targets = with_targets(report, kpis)
    if targets:
        header = (*header, *TARGET_TABLE_COLUMNS)

    def cells(row: ReportRow, kpi: Kpis | None) -> tuple[str, ...]:
        rate = ratio(row.outbound_connected, row.outbound)
        line = (
            row.key,
            str(row.calls),
            str(row.answered),
            str(row.missed),
            _duration(row.talk_seconds),
            str(row.effective),
            _duration(row.avg_talk_seconds),
            str(row.inbound),
            str(row.outbound),
            "-" if rate is None else percent_text(rate, 0),
        )
        if not targets:
            return line
        if kpi is None:
            return (*line, str(row.outbound_connected), "-", "-", "-")
        return (
            *line,
            str(row.outbound_connected),
            _against(kpi.calls, _count),
            _against(kpi.talk, _duration),
            _against(kpi.effective, _count),
        )

    found = kpis or {}
    body = [cells(row, found.get(row.key)) for row in report.rows]
    total = cells(report.total, _total_kpis(report, found) if targets else None)
    widths = [max(len(line[n]) for line in [header, *body, total]) for n in range(len(header))]

    def render(line: Iterable[str]) -> str:
        parts = list(line)
        first = parts[0].ljust(widths[0])
        rest = [part.rjust(widths[n + 1]) for n, part in enumerate(parts[1:])]
        return "  ".join([first, *rest]).rstrip()

    title = (
        f"calls by {report.by}, {report.start.isoformat()} to {report.end.isoformat()} "
        f"(times in {report.zone})"
    )
    rule = "-" * len(render(header))
    lines = [title, render(header), rule, *(render(line) for line in body), rule, render(total)]
    return "\n".join(lines) + "\n"


def format_csv(report: Report, lang: str = "en", kpis: Mapping[str, Kpis] | None = None) -> str:
    """CSV with a header line (in ``lang``: ``en`` or ``zh-CN``); seconds as numbers; no total line.

    Against targets (:func:`with_targets`) the :data:`TARGET_COLUMNS` are appended, so a
    script reading the other columns by position keeps working.

    Written by :mod:`storage.sheets`: a rep or team named like a formula is escaped, the
    figures stay numbers. No byte order mark: the text goes to a terminal or a pipe.
    """
    targets = with_targets(report, kpis)
    keys = [*COLUMNS, *(TARGET_COLUMNS if targets else ())]
    header = headers([report.by if c == "key" else c for c in keys], lang)
    found = kpis or {}

    def values(row: ReportRow) -> list[Any]:
        cells = row.to_dict()
        if targets:
            cells.update(target_values(found.get(row.key)))
        return [cells[c] for c in keys]

    return csv_text((values(row) for row in report.rows), header=header, lang=lang)


def format_json(report: Report, kpis: Mapping[str, Kpis] | None = None) -> str:
    """One JSON document: the window, the zone, the rows and the total (against targets: their columns)."""
    targets = with_targets(report, kpis)
    found = kpis or {}

    def row_dict(row: ReportRow, kpi: Kpis | None) -> dict[str, Any]:
        out = row.to_dict()
        if targets:
            out.update(target_values(kpi))
        return out

    document = {
        "by": report.by,
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "timezone": report.zone,
        "rows": [row_dict(row, found.get(row.key)) for row in report.rows],
        "total": row_dict(report.total, _total_kpis(report, found) if targets else None),
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def format_report(report: Report, fmt: str, lang: str = "en", kpis: Mapping[str, Kpis] | None = None) -> str:
    """The report as ``table``, ``csv`` or ``json`` text (``lang``: the CSV's header language).

    ``kpis``: each row's KPIs by row key (:func:`storage.kpis.kpis`); where they carry
    targets the report is shown against them.
    """
    if fmt == "table":
        return format_table(report, kpis)
    if fmt == "csv":
        return format_csv(report, lang, kpis)
    if fmt == "json":
        return format_json(report, kpis)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


__all__ = [
    "CLOCK_STEPS",
    "COLUMNS",
    "FORMATS",
    "GROUPINGS",
    "TARGET_COLUMNS",
    "Report",
    "ReportRow",
    "call_report",
    "days_worked",
    "format_report",
    "local_zone",
    "parse_when",
    "start_of_day",
    "target_values",
    "with_targets",
    "zone_name",
]
