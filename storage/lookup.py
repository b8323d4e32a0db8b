"""The centre's answer to a seat's customer lookup: the card of a number and its last calls, scoped.

What a seat may see (see :class:`LookupScope`): the calls of its own team (and always its own
seat's), and the customers owned by a rep of its team or by nobody (the pool, which any rep may
claim). A seat without a team sees its own seat's calls and the pool only. Each part is one
query on an indexed number column: ``customer_phones.number_e164`` (unique) for the customer,
``calls.number_e164`` for the calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from storage.models import CallRecord, CustomerPhone, CustomerRecord, Recording, Rep, Team
from storage.repository import PLAYABLE_RECORDING_STATUSES

#: How many of a number's calls a lookup answers, newest first.
LAST_CALLS = 5

#: A customer's status as the lookup reports it: owned by a rep, or in the pool (no owner).
OWNED, POOL = "owned", "pool"


@dataclass(frozen=True, slots=True)
class LookupScope:
    """Whose calls and customers a lookup may show: a seat's name and team (None: it has none)."""

    seat: str
    team: str | None


@dataclass(frozen=True, slots=True)
class CardCustomer:
    """The customer behind a number, as a seat's card shows them."""

    id: int
    name: str
    company: str | None
    owner_rep: str | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready fields."""
        return {
            "id": self.id,
            "name": self.name,
            "company": self.company,
            "owner_rep": self.owner_rep,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class CardCall:
    """One of a number's last calls from any seat in the scope (``GET /api/v1/lookup``'s ``calls``)."""

    uuid: str
    started_at: datetime
    direction: str
    seat: str
    rep: str
    talk_seconds: float | None
    disposition: str | None
    notes: str | None
    has_recording: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready fields (``started_at`` as ISO 8601)."""
        return {
            "uuid": self.uuid,
            "started_at": self.started_at.isoformat(),
            "direction": self.direction,
            "seat": self.seat,
            "rep": self.rep,
            "talk_seconds": self.talk_seconds,
            "disposition": self.disposition,
            "notes": self.notes,
            "has_recording": self.has_recording,
        }


def customer_for_number(session: Session, number_e164: str, scope: LookupScope) -> CardCustomer | None:
    """The customer owning ``number_e164`` if the scope may see them, else None.

    One query: the number's phone row (unique index), its customer, and the owner's team
    through ``reps``/``teams``. An owner the centre has no rep row for is in no team, so their
    customer is shown to no seat until the rep is added (a guessed team could be the wrong one).
    """
    # An empty owner is no owner (the pool), as the status below calls it.
    visible: ColumnElement[bool] = or_(CustomerRecord.owner_rep.is_(None), CustomerRecord.owner_rep == "")
    if scope.team is not None:
        visible = or_(visible, Team.name == scope.team)
    row = session.execute(
        select(CustomerRecord.id, CustomerRecord.name, CustomerRecord.company, CustomerRecord.owner_rep)
        .join(CustomerPhone, CustomerPhone.customer_id == CustomerRecord.id)
        .outerjoin(Rep, Rep.name == CustomerRecord.owner_rep)
        .outerjoin(Team, Team.id == Rep.team_id)
        .where(CustomerPhone.number_e164 == number_e164, visible)
        .limit(1)
    ).first()
    if row is None:
        return None
    return CardCustomer(
        id=row.id,
        name=row.name,
        company=row.company,
        owner_rep=row.owner_rep or None,
        status=OWNED if row.owner_rep else POOL,
    )


def last_calls(
    session: Session, number_e164: str, scope: LookupScope, limit: int = LAST_CALLS
) -> list[CardCall]:
    """The number's last ``limit`` calls the scope may see, newest first (one query on the number's index)."""
    mine: ColumnElement[bool] = CallRecord.seat == scope.seat
    if scope.team is not None:
        mine = or_(mine, CallRecord.team == scope.team)
    # A correlated EXISTS keeps the card one query: the seat only needs to
    # know whether a play link is worth showing, not the recording itself.
    recorded = (
        select(Recording.id)
        .where(
            Recording.call_uuid == CallRecord.uuid,
            Recording.status.in_(PLAYABLE_RECORDING_STATUSES),
        )
        .exists()
    )
    rows = session.execute(
        select(
            CallRecord.uuid,
            CallRecord.started_at,
            CallRecord.direction,
            CallRecord.seat,
            CallRecord.rep,
            CallRecord.talk_seconds,
            CallRecord.disposition,
            CallRecord.notes,
            recorded.label("has_recording"),
        )
        .where(CallRecord.number_e164 == number_e164, mine)
        .order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
        .limit(limit)
    ).all()
    return [
        CardCall(
            uuid=r.uuid,
            started_at=r.started_at,
            direction=r.direction,
            seat=r.seat,
            rep=r.rep,
            talk_seconds=r.talk_seconds,
            disposition=r.disposition,
            notes=r.notes,
            has_recording=bool(r.has_recording),
        )
        for r in rows
    ]


__all__ = [
    "LAST_CALLS",
    "OWNED",
    "POOL",
    "CardCall",
    "CardCustomer",
    "LookupScope",
    "customer_for_number",
    "last_calls",
]
