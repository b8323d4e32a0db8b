"""The rep's worklist on the centre, and the dispositions that move it on.

A rep's worklist is the leads they hold (:mod:`storage.leads`) that are still open, in the order
a rep should call them: follow-ups due (oldest due first), then leads never dialed (in the order
they were handed over), then the rest to try again (longest untried first). A disposition (the
codes the floor configures, ``[[centre.dispositions]]``) says what a call came to: a final one
(deal, not interested, wrong number) closes the lead, a follow-up one sets when to call again,
any other leaves it to come up again.

Dispositions are made on the seat, which may be offline for a day; the centre keeps every one it
is sent, once (by its UUID), whatever became of the lead meanwhile. One that arrives for a lead
now held by someone else (moved while the seat was offline) is kept with ``conflict`` saying so
and logged, and does not touch the lead: it is not handed back silently. One older than the
lead's last disposition is kept and does not roll the lead back. Each lead is changed by one
conditional ``UPDATE`` (holder and time in its ``WHERE``), so two seats racing cannot interleave.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from storage.dnc import add_numbers, listed
from storage.models import CustomerPhone, CustomerRecord, DispositionRecord, Lead, LeadList, Rep, utcnow

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_AHEAD",
    "DispositionIn",
    "DispositionOutcome",
    "Rule",
    "WorkItem",
    "add_local_disposition",
    "dispositions_of",
    "local_dispositions_since",
    "pending_dispositions",
    "record_dispositions",
    "rep_active",
    "worklist",
]

#: The furthest ahead a follow-up may be set.
MAX_AHEAD = timedelta(days=400)
#: The longest note a disposition keeps.
MAX_NOTE = 10_000
Reason = Literal["follow_up", "new", "retry"]
Status = Literal["accepted", "duplicate", "conflict", "rejected"]


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One lead on a rep's worklist: who to call, on which numbers, and why now."""

    lead_id: int
    customer_id: int
    name: str | None
    company: str | None
    numbers: tuple[str, ...]
    list_name: str
    premium: bool
    reason: Reason
    due_at: datetime | None
    last_code: str | None
    last_at: datetime | None
    assigned_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The item as ``GET /api/v1/worklist`` sends it (times ISO 8601)."""
        return {
            "lead_id": self.lead_id,
            "customer_id": self.customer_id,
            "name": self.name,
            "company": self.company,
            "numbers": list(self.numbers),
            "list": self.list_name,
            "premium": self.premium,
            "reason": self.reason,
            "due_at": _iso(self.due_at),
            "last_code": self.last_code,
            "last_at": _iso(self.last_at),
            "assigned_at": _iso(self.assigned_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def rep_active(session: Session, rep: str) -> bool:
    """Whether ``rep`` may be given work: not disabled (a rep the centre has no row for is active)."""
    active = session.scalar(select(Rep.active).where(Rep.name == rep))
    return active is None or bool(active)


def worklist(session: Session, rep: str, *, until: datetime, limit: int = 200) -> list[WorkItem]:
    """``rep``'s open leads in calling order; follow-ups only once due by ``until`` (end of their day).

    Empty for a disabled rep: their leads stay theirs until handed over, but nobody works them.
    """
    if not rep_active(session, rep):
        return []
    due_first = case((Lead.next_at.is_not(None), 0), (Lead.last_at.is_(None), 1), else_=2)
    rows = session.execute(
        select(
            Lead.id,
            Lead.customer_id,
            CustomerRecord.name,
            CustomerRecord.company,
            LeadList.name,
            LeadList.premium,
            Lead.next_at,
            Lead.last_code,
            Lead.last_at,
            Lead.rep_at,
        )
        .join(CustomerRecord, CustomerRecord.id == Lead.customer_id)
        .join(LeadList, LeadList.id == Lead.list_id)
        .where(
            Lead.rep == rep,
            Lead.closed_at.is_(None),
            or_(Lead.next_at.is_(None), Lead.next_at <= until),
        )
        .order_by(due_first, Lead.next_at, Lead.last_at, Lead.rep_at, Lead.id)
        .limit(limit)
    ).all()
    numbers: dict[int, list[str]] = {}
    if rows:
        for customer_id, e164 in session.execute(
            select(CustomerPhone.customer_id, CustomerPhone.number_e164)
            .where(CustomerPhone.customer_id.in_({row[1] for row in rows}))
            .order_by(CustomerPhone.customer_id, CustomerPhone.id)
        ):
            numbers.setdefault(customer_id, []).append(e164)
    # Numbers on the do-not-call list are left out, and a lead with no number left with them.
    barred = {entry.number_e164 for entry in listed(session, [n for ns in numbers.values() for n in ns])}
    items: list[WorkItem] = []
    for lead_id, customer_id, name, company, list_name, premium, next_at, code, last_at, rep_at in rows:
        reason: Reason = "follow_up" if next_at is not None else "new" if last_at is None else "retry"
        callable_numbers = [n for n in numbers.get(customer_id, ()) if n not in barred]
        if barred and not callable_numbers and numbers.get(customer_id):
            continue
        items.append(
            WorkItem(
                lead_id,
                customer_id,
                name,
                company,
                tuple(callable_numbers),
                list_name,
                bool(premium),
                reason,
                next_at,
                code,
                last_at,
                rep_at,
            )
        )
    return items


@dataclass(frozen=True, slots=True)
class Rule:
    """What a disposition code does to its lead (from ``[[centre.dispositions]]``)."""

    final: bool = False
    follow_up: bool = False
    do_not_call: bool = False


@dataclass(frozen=True, slots=True)
class DispositionIn:
    """A disposition as a seat sends it (``POST /api/v1/dispositions``)."""

    uuid: str
    code: str
    at: datetime
    lead_id: int | None = None
    customer_id: int | None = None
    note: str | None = None
    follow_up_at: datetime | None = None
    call_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class DispositionOutcome:
    """What the centre made of one disposition.

    ``accepted``: stored (and applied to its lead when it is the lead's latest); ``duplicate``:
    stored before; ``conflict``: stored, but the lead is someone else's now (``reason`` says
    whose), so the lead is untouched; ``rejected``: not stored (``reason`` says why; sending it
    again will not help).
    """

    uuid: str
    status: Status
    reason: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The entry of ``POST /api/v1/dispositions``'s answer."""
        return {"uuid": self.uuid, "status": self.status, "reason": self.reason}


def _check(row: DispositionIn, rules: Mapping[str, Rule], now: datetime) -> str | None:
    rule = rules.get(row.code)
    if rule is None:
        return f"unknown disposition {row.code[:32]!r} (the floor's: {', '.join(rules)})"
    if rule.follow_up and row.follow_up_at is None:
        return f"{row.code} needs the time to call again (follow_up_at)"
    if row.follow_up_at is not None and row.follow_up_at > now + MAX_AHEAD:
        return f"follow_up_at is more than {MAX_AHEAD.days} days ahead"
    if row.note is not None and len(row.note) > MAX_NOTE:
        return f"note too long ({len(row.note)} characters; at most {MAX_NOTE})"
    return None


def record_dispositions(
    session: Session,
    rows: Sequence[DispositionIn],
    *,
    seat: str,
    rep: str,
    rules: Mapping[str, Rule],
    now: datetime | None = None,
) -> list[DispositionOutcome]:
    """Store the seat's dispositions (each once) and move their leads on; one outcome per row, in order."""
    moment = now or utcnow()
    return [_record(session, row, seat=seat, rep=rep, rules=rules, now=moment) for row in rows]


def _record(
    session: Session, row: DispositionIn, *, seat: str, rep: str, rules: Mapping[str, Rule], now: datetime
) -> DispositionOutcome:
    refused = _check(row, rules, now)
    if refused is not None:
        return DispositionOutcome(row.uuid, "rejected", refused)
    if session.scalar(select(DispositionRecord.id).where(DispositionRecord.uuid == row.uuid)) is not None:
        return DispositionOutcome(row.uuid, "duplicate")
    lead = None
    if row.lead_id is not None:
        lead = session.execute(select(Lead.customer_id, Lead.rep).where(Lead.id == row.lead_id)).first()
    conflict: str | None = None
    if row.lead_id is not None and lead is None:
        conflict = f"no lead {row.lead_id} at the centre"
    elif lead is not None and lead.rep != rep:
        conflict = f"lead {row.lead_id} is held by {lead.rep or 'nobody'} now, not {rep}"
    values = {
        "uuid": row.uuid,
        "seat": seat,
        "rep": rep,
        "lead_id": row.lead_id,
        "customer_id": lead.customer_id if lead is not None else row.customer_id,
        "code": row.code,
        "note": row.note,
        "follow_up_at": row.follow_up_at,
        "call_uuid": row.call_uuid,
        "at": row.at,
        "received_at": now,
        "conflict": conflict,
    }
    try:
        with session.begin_nested():
            session.execute(insert(DispositionRecord).values(values))
    except IntegrityError:
        # The same disposition from a second request in flight at once: stored by that one.
        return DispositionOutcome(row.uuid, "duplicate")
    if conflict is not None:
        logger.warning("disposition %s from seat %s kept, lead untouched: %s", row.uuid, seat, conflict)
        return DispositionOutcome(row.uuid, "conflict", conflict)
    rule = rules[row.code]
    if rule.do_not_call and values["customer_id"] is not None:
        phones = session.scalars(
            select(CustomerPhone.number_e164).where(CustomerPhone.customer_id == values["customer_id"])
        ).all()
        add_numbers(session, phones, source="disposition", added_by=rep, reason=row.note or row.code)
    if row.lead_id is not None:
        session.execute(
            update(Lead)
            .where(
                Lead.id == row.lead_id,
                Lead.rep == rep,
                or_(Lead.last_at.is_(None), Lead.last_at <= row.at),
            )
            .values(
                last_code=row.code,
                last_at=row.at,
                next_at=row.follow_up_at if not rule.final else None,
                closed_at=row.at if rule.final else None,
            )
        )
    return DispositionOutcome(row.uuid, "accepted")


def dispositions_of(session: Session, customer_ids: Iterable[int]) -> list[DispositionRecord]:
    """Every disposition of these customers, oldest first (for their timeline)."""
    return list(
        session.scalars(
            select(DispositionRecord)
            .where(DispositionRecord.customer_id.in_(list(customer_ids)))
            .order_by(DispositionRecord.at, DispositionRecord.id)
        )
    )


# -- on the seat: dispositions written first locally, sent by the outbox ----------------------


def add_local_disposition(
    session: Session,
    *,
    seat: str,
    rep: str,
    code: str,
    at: datetime,
    lead_id: int | None = None,
    customer_id: int | None = None,
    note: str | None = None,
    follow_up_at: datetime | None = None,
    call_uuid: str | None = None,
) -> str:
    """Write a disposition on the seat (its outbox trigger queues it for the centre); returns its UUID."""
    new = str(uuid.uuid4())
    session.execute(
        insert(DispositionRecord).values(
            uuid=new,
            seat=seat,
            rep=rep,
            code=code,
            at=at,
            lead_id=lead_id,
            customer_id=customer_id,
            note=note,
            follow_up_at=follow_up_at,
            call_uuid=call_uuid,
        )
    )
    return new


#: How long a disposition the centre kept without changing its lead is shown on the seat.
CONFLICT_SHOWN = timedelta(days=1)


def local_dispositions_since(session: Session, since: datetime | None) -> list[DispositionRecord]:
    """The seat's dispositions the worklist of ``since`` does not know of yet.

    Those not yet at the centre, those made since ``since``, and for a day those the centre kept
    without changing the lead (``conflict``), newest first.
    """
    now = utcnow()
    recent: list[ColumnElement[bool]] = [DispositionRecord.received_at.is_(None)]
    if since is not None:
        recent.append(DispositionRecord.at >= since)
    recent.append(
        (DispositionRecord.conflict.is_not(None)) & (DispositionRecord.received_at >= now - CONFLICT_SHOWN)
    )
    return list(
        session.scalars(
            select(DispositionRecord).where(or_(*recent)).order_by(DispositionRecord.at.desc()).limit(500)
        )
    )


def pending_dispositions(session: Session) -> int:
    """Dispositions written on this seat and not yet answered by the centre."""
    return int(
        session.scalar(
            select(func.count(DispositionRecord.id)).where(DispositionRecord.received_at.is_(None))
        )
        or 0
    )
