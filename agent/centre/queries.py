"""The console's SQL beyond the call search (:mod:`agent.centre.search`).

Sessions, a call's recordings, the audit log, statistics per rep and the wallboard's live counts.

Every function takes a :class:`~sqlalchemy.orm.Session` and returns plain values
or detached rows; the views run them through
:meth:`agent.centre.context.ConsoleContext.read` (or ``write``), never SQL of their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from agent.centre.auth import Principal, authenticate, password_fingerprint, principal_of
from agent.centre.search import scope_clause
from storage.models import AuditEntry, CallRecord, Recording, User
from storage.report import Report, ReportRow, call_report, start_of_day

#: Audit rows per page.
AUDIT_PAGE = 100


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

    def clauses(self, zone: tzinfo) -> list[ColumnElement[bool]]:
        """The WHERE conditions (days in ``zone``, ``end`` included)."""
        where: list[ColumnElement[bool]] = []
        if self.user:
            where.append(AuditEntry.user_login == self.user)
        if self.action:
            where.append(AuditEntry.action == self.action)
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
    """Per-rep totals over a window, each rep's breakdown by hour, half-hour or day, and their teams."""

    by_rep: Report
    breakdown: dict[str, list[ReportRow]]
    teams: dict[str, str]


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
    return PerRep(by_rep, breakdown, rep_teams(session, list(breakdown), start, end))


@dataclass(frozen=True, slots=True)
class Wallboard:
    """Today's per-rep report, the calls each rep is on now, and their teams."""

    report: Report
    on_call: dict[str, int]
    teams: dict[str, str]


def wallboard(
    session: Session,
    who: Principal,
    start: datetime,
    end: datetime,
    *,
    zone: tzinfo,
    effective_seconds: float,
    team: str | None,
    rep: str | None,
) -> Wallboard:
    """The wallboard's figures from ``start`` to ``end``: the report by rep and the calls in progress."""
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
    live_where = [scope_clause(who), CallRecord.ended_at.is_(None), CallRecord.started_at >= start]
    if team:
        live_where.append(CallRecord.team == team)
    on_call = {
        str(name): int(count)
        for name, count in session.execute(
            select(CallRecord.rep, func.count()).where(*live_where).group_by(CallRecord.rep)
        ).all()
    }
    return Wallboard(report, on_call, rep_teams(session, [r.key for r in report.rows], start, end))


def rep_teams(session: Session, reps: Sequence[str], start: datetime, end: datetime) -> dict[str, str]:
    """The team each rep's calls in the window carry (for team targets)."""
    if not reps:
        return {}
    rows: Any = session.execute(
        select(CallRecord.rep, func.max(CallRecord.team))
        .where(CallRecord.rep.in_(reps), CallRecord.started_at >= start, CallRecord.started_at < end)
        .group_by(CallRecord.rep)
    )
    return {rep: team for rep, team in rows}
