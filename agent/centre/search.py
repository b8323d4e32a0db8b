"""Searching calls for the console: filters, role scoping, sorting, pages, totals, masking and export.

A :class:`SearchQuery` round-trips through a URL's query string
(:meth:`SearchQuery.from_params` / :meth:`SearchQuery.to_params`), so a search
is saved or shared by copying its address. :func:`search` runs it as one SQL
query for the page and one for the totals, on SQLite and PostgreSQL alike,
always narrowed to what the user's role may see (:func:`scope_clause`):

- ``rep``: the calls whose ``calls.rep`` is the user's rep;
- ``lead``: the calls of the user's team;
- ``manager``: every call;
- ``admin``: none (admins manage users and settings; seeing calls is a manager's job).

The number filter takes digits and the wildcards ``*`` (any run) and ``?``
(one digit). Plain digits match anywhere in the number (``5678`` finds
``+8613812345678``); with a wildcard the pattern is anchored at both ends of the
number: the raw number as the line gave it, or the E.164 form after the floor's
country code (``138*`` starts with 138, ``*5678`` ends with 5678, ``138????5678``
is eleven digits). It is matched against ``number_e164`` and ``number_raw``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, false, func, literal_column, or_, select, true
from sqlalchemy.orm import Session

from agent.centre.auth import Principal
from storage.models import CallRecord, Recording
from storage.report import parse_when
from storage.sheets import ExportOutcome, escape_text, iter_sheet
from storage.sheets import headers as sheet_headers

DIRECTIONS: tuple[str, ...] = ("in", "out")
DISPOSITIONS: tuple[str, ...] = ("answered", "missed", "abandoned", "unknown")
SORTS: dict[str, Any] = {
    "started_at": CallRecord.started_at,
    "talk_seconds": CallRecord.talk_seconds,
    "rep": CallRecord.rep,
    "team": CallRecord.team,
    "number": CallRecord.number_e164,
}
PER_PAGE_CHOICES: tuple[int, ...] = (25, 50, 100, 200)
#: The most rows one export writes (a larger result must be narrowed first).
EXPORT_LIMIT = 100_000
EXPORT_COLUMNS: tuple[str, ...] = (
    "uuid",
    "started_at",
    "seat",
    "line",
    "rep",
    "team",
    "direction",
    "number",
    "cid_name",
    "disposition",
    "ring_seconds",
    "talk_seconds",
    "has_recording",
    "notes",
)

_NUMBER_CHARS = re.compile(r"[^0-9*?]")


class QueryError(ValueError):
    """A search parameter that cannot be understood (shown to the user beside the form)."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One search: every filter is optional; times are tz-aware."""

    start: datetime | None = None
    end: datetime | None = None
    rep: str | None = None
    team: str | None = None
    seat: str | None = None
    line: str | None = None
    number: str | None = None
    direction: str | None = None
    disposition: str | None = None
    talk_min: float | None = None
    talk_max: float | None = None
    has_recording: bool | None = None
    notes: str | None = None
    sort: str = "started_at"
    descending: bool = True
    page: int = 1
    per_page: int = 50
    #: The floor's country calling code: a wildcard pattern is the national number after it.
    country_code: str = "86"

    @classmethod
    def from_params(cls, params: Mapping[str, str], zone: tzinfo, *, country_code: str = "86") -> SearchQuery:  # noqa: C901 - one step per search field, in the order the form lists them
        """Read a query string (``from``, ``to``, ``rep``, ... ``page``); empty values mean no filter.

        :raises QueryError: a value is malformed (a date, a number, an unknown choice).
        """

        def text(name: str) -> str | None:
            value = params.get(name, "").strip()
            return value or None

        def when(name: str) -> datetime | None:
            value = text(name)
            if value is None:
                return None
            try:
                return parse_when(value.replace("T", " "), zone)
            except ValueError as exc:
                raise QueryError(f"{name}: {exc}") from None

        def seconds(name: str) -> float | None:
            value = text(name)
            if value is None:
                return None
            try:
                number = float(value)
            except ValueError:
                raise QueryError(f"{name}: {value!r} is not a number of seconds") from None
            if not math.isfinite(number) or number < 0:
                raise QueryError(f"{name}: {value!r} is not a number of seconds")
            return number

        def choice(name: str, choices: Iterable[str]) -> str | None:
            value = text(name)
            if value is not None and value not in choices:
                raise QueryError(f"{name}: {value!r} is not one of {', '.join(choices)}")
            return value

        def integer(name: str, default: int) -> int:
            value = text(name)
            if value is None:
                return default
            if not value.isascii() or not value.isdigit():
                raise QueryError(f"{name}: {value!r} is not a whole number")
            return int(value)

        recording = choice("recording", ("yes", "no"))
        number = text("number")
        if number is not None:
            number = _NUMBER_CHARS.sub("", number)
            if not number.strip("*?"):
                raise QueryError("number: give at least one digit")
        per_page = integer("per_page", 50)
        if per_page not in PER_PAGE_CHOICES:
            raise QueryError(f"per_page: one of {', '.join(map(str, PER_PAGE_CHOICES))}")
        return cls(
            start=when("from"),
            end=when("to"),
            rep=text("rep"),
            team=text("team"),
            seat=text("seat"),
            line=text("line"),
            number=number,
            direction=choice("direction", DIRECTIONS),
            disposition=choice("disposition", DISPOSITIONS),
            talk_min=seconds("talk_min"),
            talk_max=seconds("talk_max"),
            has_recording=None if recording is None else recording == "yes",
            notes=text("notes"),
            sort=choice("sort", SORTS) or "started_at",
            descending=(choice("order", ("asc", "desc")) or "desc") == "desc",
            page=max(integer("page", 1), 1),
            per_page=per_page,
            country_code=country_code,
        )

    def to_params(self, zone: tzinfo, **changes: Any) -> dict[str, str]:
        """The query string that reproduces this search (defaults left out), with ``changes`` applied."""
        query = replace(self, **changes)
        out: dict[str, str] = {}
        if query.start is not None:
            out["from"] = query.start.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        if query.end is not None:
            out["to"] = query.end.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        for name in ("rep", "team", "seat", "line", "number", "direction", "disposition", "notes"):
            value = getattr(query, name)
            if value:
                out[name] = value
        for name in ("talk_min", "talk_max"):
            value = getattr(query, name)
            if value is not None:
                out[name] = f"{value:g}"
        if query.has_recording is not None:
            out["recording"] = "yes" if query.has_recording else "no"
        if query.sort != "started_at":
            out["sort"] = query.sort
        if not query.descending:
            out["order"] = "asc"
        if query.page != 1:
            out["page"] = str(query.page)
        if query.per_page != 50:
            out["per_page"] = str(query.per_page)
        return out


def scope_clause(who: Principal) -> ColumnElement[bool]:
    """The calls ``who`` may see (see the module docstring); a rep or lead without one sees none."""
    if who.role == "manager":
        return true()
    if who.role == "lead" and who.team:
        return CallRecord.team == who.team
    if who.role == "rep" and who.rep:
        return CallRecord.rep == who.rep
    return false()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: The shortest literal run a trigram index (pg_trgm) can look up; shorter ones make it read the whole index.
TRIGRAM = 3


def number_clause(pattern: str, country_code: str = "86") -> ColumnElement[bool]:
    """The number filter (see the module docstring) for a pattern of digits, ``*`` and ``?``."""
    e164: Any = CallRecord.number_e164
    raw: Any = CallRecord.number_raw
    if max(len(run) for run in re.split(r"[*?]", pattern)) < TRIGRAM:
        # ``|| ''`` keeps a trigram index out of a pattern it cannot narrow (a scan is cheaper).
        e164, raw = e164.concat(""), raw.concat("")
    if "*" not in pattern and "?" not in pattern:
        like = f"%{pattern}%"
        return or_(e164.like(like), raw.like(like))
    body = pattern.replace("*", "%").replace("?", "_")
    # The E.164 form starts with + and the country code, which the user did not type.
    return or_(e164.like(f"+{country_code}{body}"), raw.like(body))


def filter_clauses(query: SearchQuery) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a search's filters (scoping not included)."""
    where: list[ColumnElement[bool]] = []
    if query.start is not None:
        where.append(CallRecord.started_at >= query.start)
    if query.end is not None:
        where.append(CallRecord.started_at < query.end)
    for name in ("rep", "team", "seat", "line", "direction", "disposition"):
        value = getattr(query, name)
        if value is not None:
            where.append(getattr(CallRecord, name) == value)
    if query.number:
        where.append(number_clause(query.number, query.country_code))
    talk = func.coalesce(CallRecord.talk_seconds, 0.0)
    if query.talk_min is not None:
        where.append(talk >= query.talk_min)
    if query.talk_max is not None:
        where.append(talk <= query.talk_max)
    if query.has_recording is not None:
        has = exists().where(Recording.call_uuid == CallRecord.uuid)
        where.append(has if query.has_recording else ~has)
    if query.notes:
        where.append(CallRecord.notes.ilike(f"%{_like_escape(query.notes)}%", escape="\\"))
    return where


@dataclass(frozen=True, slots=True)
class CallRow:
    """One call of a result, its number already masked when the user's role says so."""

    uuid: str
    started_at: datetime
    seat: str
    line: str
    rep: str
    team: str
    direction: str
    number: str
    cid_name: str
    disposition: str
    ring_seconds: float | None
    talk_seconds: float | None
    notes: str
    recording_id: int | None
    #: The customer the seat matched the call to (links the row to the customer's history).
    customer_id: int | None = None

    def export_values(self, zone: tzinfo) -> list[Any]:
        """The :data:`EXPORT_COLUMNS` values, times in ``zone``."""
        data = asdict(self)
        data["started_at"] = self.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        data["has_recording"] = "yes" if self.recording_id is not None else "no"
        return ["" if data[name] is None else data[name] for name in EXPORT_COLUMNS]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A page of a search and the totals of the whole result."""

    query: SearchQuery
    rows: list[CallRow]
    total_calls: int
    total_talk_seconds: float
    pages: int = field(default=1)


def mask_number(number: str) -> str:
    """The number with four digits before its last four hidden: ``13812345678`` → ``138****5678``.

    Numbers of fewer than eight digits keep only their last two; separators and
    a leading ``+`` stay where they are.
    """
    positions = [n for n, char in enumerate(number) if char.isdigit()]
    count = len(positions)
    hidden = set(positions[count - 8 : count - 4]) if count >= 8 else set(positions[: max(count - 2, 0)])
    return "".join("*" if n in hidden else char for n, char in enumerate(number))


def display_number(e164: str | None, raw: str | None) -> str:
    """What a call's number shows as: the raw form the line gave, else the E.164 form, else empty."""
    return raw or e164 or ""


def _first_recording() -> Any:
    return (
        select(func.min(Recording.id))
        .where(Recording.call_uuid == CallRecord.uuid)
        .correlate(CallRecord)
        .scalar_subquery()
    )


def _select_rows(query: SearchQuery, who: Principal) -> Select[Any]:
    return select(CallRecord, _first_recording().label("recording_id")).where(
        scope_clause(who), *filter_clauses(query)
    )


def _row(call: CallRecord, recording_id: int | None, masked: bool) -> CallRow:
    number = display_number(call.number_e164, call.number_raw)
    return CallRow(
        uuid=call.uuid,
        started_at=call.started_at,
        seat=call.seat,
        line=call.line,
        rep=call.rep,
        team=call.team,
        direction=call.direction,
        number=mask_number(number) if masked else number,
        cid_name=call.cid_name or "",
        disposition=call.disposition or "",
        ring_seconds=call.ring_seconds,
        talk_seconds=call.talk_seconds,
        notes=call.notes or "",
        recording_id=recording_id,
        customer_id=call.customer_id,
    )


def _ordered(statement: Select[Any], query: SearchQuery, dialect: str) -> Select[Any]:
    column: Any = SORTS[query.sort]
    if dialect == "sqlite" and (query.number or query.notes):
        # A LIKE filter matches few rows scattered in time: walking the started_at index
        # for them costs a random read per call (seconds on a million calls), while a
        # scan and a top-N sort does not. SQLite's unary + keeps the index out of ORDER BY;
        # a date range in WHERE still uses it.
        column = literal_column(f"+{CallRecord.__tablename__}.{column.key}")
    # NULLs last both ways: PostgreSQL would put them first when descending, SQLite last.
    primary = (column.desc() if query.descending else column.asc()).nulls_last()
    # The id breaks ties, so a page boundary never shows a call twice or skips one.
    tie = CallRecord.id.desc() if query.descending else CallRecord.id.asc()
    return statement.order_by(primary, tie)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def search(session: Session, query: SearchQuery, who: Principal, *, masked: bool) -> SearchResult:
    """One page of the calls matching ``query`` that ``who`` may see, and the result's totals.

    :param masked: hide the middle digits of every number (:func:`mask_number`).
    """
    where = [scope_clause(who), *filter_clauses(query)]
    total_calls, total_talk = session.execute(
        select(func.count(), func.coalesce(func.sum(CallRecord.talk_seconds), 0.0))
        .select_from(CallRecord)
        .where(*where)
    ).one()
    pages = max(math.ceil(int(total_calls) / query.per_page), 1)
    statement = (
        _ordered(_select_rows(query, who), query, _dialect(session))
        .limit(query.per_page)
        .offset((min(query.page, pages) - 1) * query.per_page)
    )
    rows = [_row(call, recording_id, masked) for call, recording_id in session.execute(statement)]
    return SearchResult(
        query=query,
        rows=rows,
        total_calls=int(total_calls),
        total_talk_seconds=float(total_talk or 0.0),
        pages=pages,
    )


def export_rows(session: Session, query: SearchQuery, who: Principal, *, masked: bool) -> list[CallRow]:
    """Every call of the result in the search's order, at most :data:`EXPORT_LIMIT` and one more.

    The one more tells the writer the result was cut (it says so in the file, never silently).
    """
    statement = _ordered(_select_rows(query, who), query, _dialect(session)).limit(EXPORT_LIMIT + 1)
    return [_row(call, recording_id, masked) for call, recording_id in session.execute(statement)]


def visible_call(session: Session, call_uuid: str, who: Principal) -> CallRecord | None:
    """The call if it exists and ``who`` may see it, else None (the two are not told apart)."""
    return session.scalar(select(CallRecord).where(CallRecord.uuid == call_uuid, scope_clause(who)))


def visible_recording(
    session: Session, recording_id: int, who: Principal
) -> tuple[Recording, CallRecord] | None:
    """The recording and its call if ``who`` may see that call, else None."""
    found = session.execute(
        select(Recording, CallRecord)
        .join(CallRecord, CallRecord.uuid == Recording.call_uuid)
        .where(Recording.id == recording_id, scope_clause(who))
    ).first()
    return None if found is None else (found[0], found[1])


def recording_exists(session: Session, recording_id: int) -> bool:
    """Whether a recording row exists at all (to tell 403 from 404 once the user is known)."""
    return session.get(Recording, recording_id) is not None


def safe_filename_part(text: str) -> str:
    """``text`` reduced to characters safe in a file name (a masked ``*`` becomes ``x``)."""
    return re.sub(r"[^0-9A-Za-z+._-]", "_", text.replace("*", "x")).strip("._") or "_"


def recording_filename(call: CallRecord, recording: Recording, zone: tzinfo, *, masked: bool) -> str:
    """``20260302-093000_138xxxx5678_rep01.flac``: the download's name, masked like the pages."""
    number = display_number(call.number_e164, call.number_raw) or "unknown"
    if masked:
        number = mask_number(number)
    ext = recording.path_or_uri.rsplit(".", 1)[-1].lower() if "." in recording.path_or_uri else "audio"
    stamp = call.started_at.astimezone(zone).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{safe_filename_part(number)}_{safe_filename_part(call.rep)}.{safe_filename_part(ext)}"


# -- exports: the call rows through the project's one spreadsheet writer (storage.sheets) ---------


def spreadsheet_text(value: Any) -> Any:
    """A cell value as the exports write it: text that would start a formula gets a leading quote.

    ``+86 138...`` stays as it is (a number, not a formula); ``=HYPERLINK(...)``, ``@SUM(...)``
    or ``-1+cmd`` in a caller name or a note do not. Non-text values pass unchanged.
    """
    return escape_text(value) if isinstance(value, str) else value


def _sheet(
    fmt: str,
    rows: Iterable[CallRow],
    zone: tzinfo,
    lang: str,
    limit: int | None,
    outcome: ExportOutcome | None,
) -> bytes:
    values = (row.export_values(zone) for row in rows)
    header = sheet_headers(EXPORT_COLUMNS, lang)
    chunks = iter_sheet(
        "csv" if fmt == "csv" else "xlsx",
        values,
        header=header,
        lang=lang,
        limit=limit,
        sheet_title="calls",
        outcome=outcome,
    )
    return b"".join(chunks)


def to_csv(
    rows: Iterable[CallRow],
    zone: tzinfo,
    *,
    lang: str = "en",
    limit: int | None = None,
    outcome: ExportOutcome | None = None,
) -> str:
    """The rows as CSV with a header line (UTF-8 BOM first, so Excel reads Chinese text right).

    With ``limit``, rows past it are left out and a last row says the export was cut there.
    """
    return _sheet("csv", rows, zone, lang, limit, outcome).decode("utf-8")


def to_xlsx(
    rows: Iterable[CallRow],
    zone: tzinfo,
    *,
    lang: str = "en",
    limit: int | None = None,
    outcome: ExportOutcome | None = None,
) -> bytes:
    """The rows as an .xlsx workbook (one sheet named ``calls``, a header row); numbers stay text cells."""
    return _sheet("xlsx", rows, zone, lang, limit, outcome)
