"""The console's SQL beyond the call search (:mod:`agent.centre.search`).

Sessions, a call's recordings, the audit log, statistics per rep and the wallboard's live counts.

Every function takes a :class:`~sqlalchemy.orm.Session` and returns plain values
or detached rows; the views run them through
:meth:`agent.centre.context.ConsoleContext.read` (or ``write``), never SQL of their own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from agent.centre.auth import Principal, authenticate, password_fingerprint, principal_of
from storage.models import AuditEntry, CallRecord, Recording, User
from storage.report import Report, ReportRow, call_report, start_of_day
from storage.teams import RepInfo, StoredTargets, rep_directory, team_targets

#: Audit rows per page.
AUDIT_PAGE = 100
#: Actions the system writes by itself (a seat's rep-state changes): hidden unless asked for.
AUTOMATIC_ACTIONS: tuple[str, ...] = ("rep_state",)
#: Every action the code writes, each with an ``audit.action.<code>`` string in both locales.
AUDIT_ACTIONS: tuple[str, ...] = (
    "login", "login_failed", "logout", "play", "play_denied", "download", "download_denied",
    "export_csv", "export_xlsx", "listen", "listen_denied", "lead_claim", "rep_state",
    "recordings.purge", "user_add", "user_disable", "user_enable", "user_password", "user_update",
    "lead_import", "lead_rejects_download", "lead_changes_download",
)  # fmt: skip


def detail_fields(detail: str | None) -> list[tuple[str, str]] | None:
    """An audit row's detail as (field, value) pairs when it is a JSON object, else None (shown as text).

    Nested values are shown as compact JSON; the template escapes every part.
    """
    if not detail or not detail.lstrip().startswith("{"):
        return None
    try:
        parsed = json.loads(detail)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return [
        (str(k), v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in parsed.items()
    ]


# -- sessions and users -----------------------------------------------------------------


def session_principal(session: Session, user_id: int, fingerprint: str) -> Principal | None:
    """The user of a session, None when they are gone, disabled or changed their password since."""
    user = session.get(User, user_id)
    if user is None or user.disabled or password_fingerprint(user.password_hash) != fingerprint:
        return None
    return principal_of(session, user)


def check_login(session: Session, login: str, password: str) -> tuple[int, str] | None:
    """The user id and password fingerprint for a right log-in and password, else None."""
    user = authenticate(session, login, password)
    return None if user is None else (user.id, password_fingerprint(user.password_hash))


def set_language(session: Session, user_id: int, language: str) -> None:
    """Store a user's page language (``auto`` lets the browser decide)."""
    user = session.get(User, user_id)
    if user is not None:
        user.language = language


# -- one call ---------------------------------------------------------------------------


def call_recordings(session: Session, call_uuid: str) -> list[Recording]:
    """A call's recordings in the order they were made (detached)."""
    rows = list(
        session.scalars(select(Recording).where(Recording.call_uuid == call_uuid).order_by(Recording.id))
    )
    session.expunge_all()
    return rows


# -- the audit log ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The audit page's filters: exact user and action, a fragment of the target, a range of days."""

    user: str = ""
    action: str = ""
    target: str = ""
    start: date | None = None
    end: date | None = None
    #: Show the :data:`AUTOMATIC_ACTIONS` too (always when one of them is the action asked for).
    automatic: bool = False

    def clauses(self, zone: tzinfo) -> list[ColumnElement[bool]]:
        """The WHERE conditions (days in ``zone``, ``end`` included)."""
        where: list[ColumnElement[bool]] = []
        if self.user:
            where.append(AuditEntry.user_login == self.user)
        if self.action:
            where.append(AuditEntry.action == self.action)
        elif not self.automatic:
            where.append(AuditEntry.action.not_in(AUTOMATIC_ACTIONS))
        if self.target:
            where.append(AuditEntry.target.contains(self.target, autoescape=True))
        if self.start is not None:
            where.append(AuditEntry.at >= start_of_day(self.start, zone))
        if self.end is not None:
            where.append(AuditEntry.at < start_of_day(self.end + timedelta(days=1), zone))
        return where


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of audit rows (newest first), how many match, and every action the log knows."""

    rows: list[AuditEntry]
    total: int
    actions: list[str]

    @property
    def pages(self) -> int:
        """How many pages the matching rows fill (at least one)."""
        return max(math.ceil(self.total / AUDIT_PAGE), 1)


def audit_page(session: Session, filters: AuditFilter, zone: tzinfo, page: int) -> AuditPage:
    """Page ``page`` (from 1) of the audit rows matching ``filters``."""
    where = filters.clauses(zone)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    rows = list(
        session.scalars(
            select(AuditEntry)
            .where(*where)
            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .limit(AUDIT_PAGE)
            .offset((page - 1) * AUDIT_PAGE)
        )
    )
    actions = list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
    session.expunge_all()
    return AuditPage(rows, int(total), actions)


# -- statistics -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PerRep:
    """Per-rep totals over a window, each rep's breakdown by hour, half-hour or day, their names and teams.

    :param directory: each rep's display name and team (:func:`storage.teams.rep_directory`).
    :param stored_targets: the teams' targets kept in the database (:func:`storage.teams.team_targets`).
    """

    by_rep: Report
    breakdown: dict[str, list[ReportRow]]
    directory: dict[str, RepInfo]
    stored_targets: dict[str, StoredTargets]


def per_rep(
    session: Session,
    by: str,
    start: datetime,
    end: datetime,
    *,
    zone: tzinfo,
    effective_seconds: float,
    team: str | None,
    rep: str | None,
) -> PerRep:
    """The statistics pages' figures: :func:`storage.report.call_report` by rep, then per rep ``by``."""
    by_rep = call_report(
        session,
        by="rep",
        start=start,
        end=end,
        zone=zone,
        effective_seconds=effective_seconds,
        team=team,
        rep=rep,
    )
    breakdown = {
        row.key: call_report(
            session,
            by=by,  # type: ignore[arg-type]
            start=start,
            end=end,
            zone=zone,
            effective_seconds=effective_seconds,
            team=team,
            rep=row.key,
        ).rows
        for row in by_rep.rows
    }
    return PerRep(
        by_rep, breakdown, rep_directory(session, list(breakdown), start, end), team_targets(session)
    )


@dataclass(frozen=True, slots=True)
class OnCall:
    """A rep's calls in progress: how many, since when the longest has been talking (or ringing)."""

    calls: int
    since: datetime
    answered: bool


@dataclass(frozen=True, slots=True)
class Wallboard:
    """Today's per-rep report, the calls each rep is on now, their names, teams and stored targets."""

    report: Report
    on_call: dict[str, OnCall]
    directory: dict[str, RepInfo]
    stored_targets: dict[str, StoredTargets]


def wallboard(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    zone: tzinfo,
    effective_seconds: float,
    team: str | None,
    rep: str | None,
) -> Wallboard:
    """The wallboard's figures from ``start`` to ``end``: the report by rep and the calls in progress.

    ``team``/``rep`` narrow both (the view's scope decides them). A rep on a call who has
    ended none yet today is listed too, with zeros.
    """
    report = call_report(
        session,
        by="rep",
        start=start,
        end=end,
        zone=zone,
        effective_seconds=effective_seconds,
        team=team,
        rep=rep,
    )
    live_where = [CallRecord.ended_at.is_(None), CallRecord.started_at >= start, CallRecord.started_at < end]
    if team is not None:
        live_where.append(CallRecord.team == team)
    if rep is not None:
        live_where.append(CallRecord.rep == rep)
    on_call: dict[str, OnCall] = {}
    for name, started_at, answered_at in session.execute(
        select(CallRecord.rep, CallRecord.started_at, CallRecord.answered_at)
        .where(*live_where)
        .order_by(CallRecord.rep, CallRecord.started_at)
    ):
        held = on_call.get(name)
        if held is None:
            on_call[name] = OnCall(1, answered_at or started_at, answered_at is not None)
        else:
            # The first call in progress is the one timed (call waiting brings a second).
            on_call[name] = OnCall(held.calls + 1, held.since, held.answered)
    known = {row.key for row in report.rows}
    rows = [*report.rows, *(ReportRow(name) for name in sorted(on_call) if name not in known)]
    report = Report(by=report.by, start=report.start, end=report.end, zone=report.zone, rows=rows)
    names = [r.key for r in rows]
    return Wallboard(report, on_call, rep_directory(session, names, start, end), team_targets(session))
