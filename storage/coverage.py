"""Coverage (打透) of lead lists: per rep of a list and per list and team, what was dialed, reached, left.

A lead counts as dialed by the rep holding it when that rep made an outbound call to one of its
customer's numbers since it was handed to them (``calls.number_e164`` against
``customer_phones``; the centre's calls carry no customer id of their own). Per rep of a list
(:func:`coverage`, :func:`coverage_report`):

- ``assigned``: leads of the list the rep holds; ``dialed``: of those, dialed at least once;
  ``reached``: of those, one such call answered; ``attempts``: those calls; ``untouched``: held
  longer than ``untouched_days`` without a single one; ``closed``: taken off the worklist by a
  final disposition;
- ``dispositions``: the rep's dispositions of the list's leads they hold, by code (one per call
  result; a result kept as a conflict is not the holder's and is not counted);
- ``passed_undialed`` (过数据): leads of the list that left the rep (recalled, moved, handed to
  someone else) while the rep had never dialed them since receiving them, from the transfer log.
  A rep who holds nothing of the list any more still has a row when they passed leads undialed.

:func:`coverage_by_list` is the same count per list and team over the whole floor in one query,
for the centre's metrics. Every function here reads only; the caller owns the session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from storage.leads import get_list
from storage.models import (
    CallRecord,
    CustomerPhone,
    CustomerRecord,
    DispositionRecord,
    Lead,
    LeadList,
    Rep,
    Team,
    Transfer,
    UTCDateTime,
    utcnow,
)

__all__ = [
    "PASSING_ACTIONS",
    "Coverage",
    "CoverageReport",
    "ListCoverage",
    "PassedUndialed",
    "coverage",
    "coverage_by_list",
    "coverage_report",
    "list_names",
    "total_of",
]

#: Transfer-log actions by which a lead leaves the rep who held it.
PASSING_ACTIONS: tuple[str, ...] = ("recall", "move", "to_rep")
#: The most 过数据 warnings a report lists (the counts are always complete).
WARNINGS_SHOWN = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Coverage:
    """One rep's leads of a list (or a total of several reps, ``rep`` empty): see the module docstring."""

    rep: str
    assigned: int
    dialed: int
    reached: int
    attempts: int
    untouched: int
    team: str | None = None
    closed: int = 0
    passed_undialed: int = 0
    dispositions: Mapping[str, int] = field(default_factory=dict)

    @property
    def attempts_per_lead(self) -> float | None:
        """Calls made per lead held (None when none is held)."""
        return self.attempts / self.assigned if self.assigned else None

    @property
    def dialed_share(self) -> float | None:
        """The share of held leads dialed at least once, 0..1 (None when none is held)."""
        return self.dialed / self.assigned if self.assigned else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``leads coverage --json`` prints (the first six keys are the original ones)."""
        per_lead = self.attempts_per_lead
        return {
            "rep": self.rep,
            "assigned": self.assigned,
            "dialed": self.dialed,
            "reached": self.reached,
            "attempts": self.attempts,
            "untouched": self.untouched,
            "team": self.team,
            "attempts_per_lead": round(per_lead, 2) if per_lead is not None else None,
            "closed": self.closed,
            "passed_undialed": self.passed_undialed,
            "dispositions": dict(sorted(self.dispositions.items())),
        }


@dataclass(frozen=True, slots=True)
class PassedUndialed:
    """One 过数据 warning: a lead that left ``from_rep`` (by ``action``) without a single dial of theirs."""

    at: datetime
    action: str
    customer_id: int | None
    customer_name: str | None
    from_rep: str
    from_team: str | None
    to_rep: str | None
    to_team: str | None
    actor: str
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """The warning as JSON (time ISO 8601)."""
        return {
            "at": self.at.isoformat(),
            "action": self.action,
            "customer_id": self.customer_id,
            "customer_name": self.customer_name,
            "from_rep": self.from_rep,
            "from_team": self.from_team,
            "to_rep": self.to_rep,
            "to_team": self.to_team,
            "actor": self.actor,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """A list's coverage as the console shows it: per rep, their total, the latest 过数据 warnings."""

    list_name: str
    premium: bool
    team: str | None
    untouched_days: float
    as_of: datetime
    rows: list[Coverage]
    total: Coverage
    warnings: list[PassedUndialed]

    @property
    def codes(self) -> list[str]:
        """Every disposition code counted for some rep, sorted."""
        return sorted({code for row in self.rows for code in row.dispositions})


@dataclass(frozen=True, slots=True)
class ListCoverage:
    """A list's leads handed to one team (``team`` empty: to none yet), as the metrics export them."""

    list_name: str
    team: str
    assigned: int
    dialed: int
    reached: int
    attempts: int
    untouched: int
    passed_undialed: int


def list_names(session: Session) -> list[str]:
    """Every lead list's name, in name order."""
    return list(session.scalars(select(LeadList.name).order_by(LeadList.name)))


def total_of(rows: Iterable[Coverage]) -> Coverage:
    """The sum of ``rows`` (``rep`` empty, dispositions added by code)."""
    rows = list(rows)
    codes: dict[str, int] = {}
    for row in rows:
        for code, n in row.dispositions.items():
            codes[code] = codes.get(code, 0) + n
    return Coverage(
        rep="",
        assigned=sum(r.assigned for r in rows),
        dialed=sum(r.dialed for r in rows),
        reached=sum(r.reached for r in rows),
        attempts=sum(r.attempts for r in rows),
        untouched=sum(r.untouched for r in rows),
        closed=sum(r.closed for r in rows),
        passed_undialed=sum(r.passed_undialed for r in rows),
        dispositions=codes,
    )


# -- the queries ------------------------------------------------------------------------------


def _team_reps(team: str) -> Select[Any]:
    """The names of the reps of ``team`` now."""
    return select(Rep.name).join(Team, Team.id == Rep.team_id).where(Team.name == team)


def _per_lead(where: Sequence[ColumnElement[bool]]) -> Any:
    """One row per held lead matching ``where``: its holder, list, team, when handed, calls and answers.

    The holder's outbound calls to the lead's numbers since ``rep_at``; a lead without a number
    has no row (it cannot be dialed).
    """
    answered = CallRecord.disposition == "answered"
    return (
        select(
            Lead.id.label("lead"),
            Lead.list_id.label("list_id"),
            Lead.team.label("team"),
            Lead.rep.label("rep"),
            Lead.rep_at.label("rep_at"),
            Lead.closed_at.label("closed_at"),
            func.count(CallRecord.id).label("attempts"),
            func.coalesce(func.sum(case((answered, 1), else_=0)), 0).label("reached"),
        )
        .select_from(Lead)
        .join(CustomerPhone, CustomerPhone.customer_id == Lead.customer_id)
        .outerjoin(
            CallRecord,
            and_(
                CallRecord.number_e164 == CustomerPhone.number_e164,
                CallRecord.direction == "out",
                CallRecord.rep == Lead.rep,
                CallRecord.started_at >= Lead.rep_at,
            ),
        )
        .where(Lead.rep.is_not(None), *where)
        .group_by(Lead.id, Lead.list_id, Lead.team, Lead.rep, Lead.rep_at, Lead.closed_at)
        .subquery()
    )


def _sums(per_lead: Any, stale: datetime) -> list[Any]:
    """Leads, dialed, reached, attempts, untouched and closed over a :func:`_per_lead` subquery."""
    return [
        func.count(),
        func.sum(case((per_lead.c.attempts > 0, 1), else_=0)),
        func.sum(case((per_lead.c.reached > 0, 1), else_=0)),
        func.sum(per_lead.c.attempts),
        func.sum(case((and_(per_lead.c.attempts == 0, per_lead.c.rep_at < stale), 1), else_=0)),
        func.sum(case((per_lead.c.closed_at.is_not(None), 1), else_=0)),
    ]


def _passed_undialed(where: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """The condition on ``transfers`` of a 过数据 row: a lead left its rep, who never dialed it.

    "Since receiving it": the rep's calls after the last transfer that gave them the customer
    (or any call before, when the log has none).
    """
    given = aliased(Transfer)
    received = (
        select(func.max(given.at))
        .where(
            given.customer_id == Transfer.customer_id,
            given.to_rep == Transfer.from_rep,
            given.at <= Transfer.at,
            given.id < Transfer.id,
        )
        .scalar_subquery()
    )
    dialed = exists().where(
        CustomerPhone.customer_id == Transfer.customer_id,
        CallRecord.number_e164 == CustomerPhone.number_e164,
        CallRecord.rep == Transfer.from_rep,
        CallRecord.direction == "out",
        CallRecord.started_at < Transfer.at,
        CallRecord.started_at >= func.coalesce(received, literal(_EPOCH, UTCDateTime())),
    )
    return and_(
        Transfer.from_rep.is_not(None),
        Transfer.action.in_(PASSING_ACTIONS),
        or_(Transfer.to_rep.is_(None), Transfer.to_rep != Transfer.from_rep),
        *where,
        ~dialed,
    )


def coverage(
    session: Session,
    list_name: str,
    *,
    untouched_days: float = 3.0,
    now: datetime | None = None,
    team: str | None = None,
) -> list[Coverage]:
    """Per rep holding (or having passed on undialed) leads of the list: a :class:`Coverage`, by rep name.

    :param team: only the reps of this team now (a team lead's view); None: every rep.
    :raises storage.leads.LeadError: no such list.
    """
    return coverage_report(session, list_name, untouched_days=untouched_days, now=now, team=team).rows


def coverage_report(
    session: Session,
    list_name: str,
    *,
    untouched_days: float = 3.0,
    now: datetime | None = None,
    team: str | None = None,
    warnings: int = WARNINGS_SHOWN,
) -> CoverageReport:
    """The list's :class:`CoverageReport`: per rep, the total, the ``warnings`` latest 过数据 moves.

    :raises storage.leads.LeadError: no such list.
    """
    lead_list = get_list(session, list_name)
    moment = now or utcnow()
    stale = moment - timedelta(days=untouched_days)
    lead_where: list[ColumnElement[bool]] = [Lead.list_id == lead_list.id]
    moved_where: list[ColumnElement[bool]] = [Transfer.list_id == lead_list.id]
    if team is not None:
        lead_where.append(Lead.rep.in_(_team_reps(team)))
        moved_where.append(or_(Transfer.from_team == team, Transfer.from_rep.in_(_team_reps(team))))

    per_lead = _per_lead(lead_where)
    held = {
        str(rep): [int(v or 0) for v in values]
        for rep, *values in session.execute(
            select(per_lead.c.rep, *_sums(per_lead, stale)).group_by(per_lead.c.rep)
        )
    }
    codes: dict[str, dict[str, int]] = {}
    for rep, code, n in session.execute(
        select(Lead.rep, DispositionRecord.code, func.count())
        .join(DispositionRecord, DispositionRecord.lead_id == Lead.id)
        .where(
            *lead_where,
            DispositionRecord.rep == Lead.rep,
            DispositionRecord.conflict.is_(None),
            DispositionRecord.at >= Lead.rep_at,
        )
        .group_by(Lead.rep, DispositionRecord.code)
    ):
        codes.setdefault(str(rep), {})[str(code)] = int(n)
    passed_where = _passed_undialed(moved_where)
    passed = {
        str(rep): int(n)
        for rep, n in session.execute(
            select(Transfer.from_rep, func.count(func.distinct(Transfer.customer_id)))
            .where(passed_where)
            .group_by(Transfer.from_rep)
        )
    }
    names = sorted(set(held) | set(passed))
    teams = dict(
        session.execute(
            select(Rep.name, Team.name).join(Team, Team.id == Rep.team_id).where(Rep.name.in_(names))
        ).all()
    )
    rows = []
    for rep in names:
        assigned, dialed, reached, attempts, untouched, closed = held.get(rep, [0] * 6)
        rows.append(
            Coverage(
                rep,
                assigned,
                dialed,
                reached,
                attempts,
                untouched,
                team=teams.get(rep),
                closed=closed,
                passed_undialed=passed.get(rep, 0),
                dispositions=codes.get(rep, {}),
            )
        )
    shown = [
        PassedUndialed(
            at=t.at,
            action=t.action,
            customer_id=t.customer_id,
            customer_name=name,
            from_rep=str(t.from_rep),
            from_team=t.from_team,
            to_rep=t.to_rep,
            to_team=t.to_team,
            actor=t.actor,
            reason=t.reason,
        )
        for t, name in session.execute(
            select(Transfer, CustomerRecord.name)
            .outerjoin(CustomerRecord, CustomerRecord.id == Transfer.customer_id)
            .where(passed_where)
            .order_by(Transfer.at.desc(), Transfer.id.desc())
            .limit(warnings)
        )
    ]
    return CoverageReport(
        list_name=lead_list.name,
        premium=bool(lead_list.premium),
        team=team,
        untouched_days=untouched_days,
        as_of=moment,
        rows=rows,
        total=total_of(rows),
        warnings=shown,
    )


def coverage_by_list(
    session: Session, *, untouched_days: float = 3.0, now: datetime | None = None
) -> list[ListCoverage]:
    """Every list's held leads per team the leads are handed to, in one aggregated query (and one for 过数据).

    A list with leads but none held yet has no row (nothing is assigned to anyone).
    """
    stale = (now or utcnow()) - timedelta(days=untouched_days)
    per_lead = _per_lead([])
    found: dict[tuple[str, str], list[int]] = {}
    for name, team, *values in session.execute(
        select(LeadList.name, per_lead.c.team, *_sums(per_lead, stale)[:5])
        .join(LeadList, LeadList.id == per_lead.c.list_id)
        .group_by(LeadList.name, per_lead.c.team)
    ):
        found[(str(name), team or "")] = [int(v or 0) for v in values]
    passed: dict[tuple[str, str], int] = {}
    for name, team, n in session.execute(
        select(LeadList.name, Transfer.from_team, func.count(func.distinct(Transfer.customer_id)))
        .join(LeadList, LeadList.id == Transfer.list_id)
        .where(_passed_undialed([]))
        .group_by(LeadList.name, Transfer.from_team)
    ):
        key = (str(name), team or "")
        passed[key] = passed.get(key, 0) + int(n)
    out = []
    for name, team in sorted(set(found) | set(passed)):
        assigned, dialed, reached, attempts, untouched = found.get((name, team), [0] * 5)
        out.append(
            ListCoverage(
                name, team, assigned, dialed, reached, attempts, untouched, passed.get((name, team), 0)
            )
        )
    return out
