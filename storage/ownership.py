"""Who owns a number across the floor, and calls that cross another rep's customer (撞单).

Ownership is the centre's: a number belongs to at most one customer (a unique index on
``customer_phones``), a customer to at most one rep (``customers.owner_rep``, the holder of its
lead). What a rep's pop shows of a number is :class:`Ownership`: theirs, someone else's and still
protected (until a date), someone else's past protection (claimable, as a seat's claim rule has
it), or nobody's (the pool). Another team's customer stays hidden on the card; who owns it does
not, so a rep knows not to work it.

A call to or from a number another rep owns is not blocked (the call has happened); it is flagged
to both team leads: one ``audit_log`` row per call (action ``lead_collision``, target
``call:<uuid>``), which the console's collision list reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import AuditEntry, CustomerPhone, CustomerRecord, Lead, Rep, Team

logger = logging.getLogger(__name__)

__all__ = [
    "COLLISION_ACTION",
    "Collision",
    "Ownership",
    "collisions",
    "flag_collisions",
    "ownership_of",
]

COLLISION_ACTION = "lead_collision"
State = Literal["yours", "protected", "owned", "pool"]


@dataclass(frozen=True, slots=True)
class Ownership:
    """A number's owner as a rep's pop shows it, and whether that rep may claim its customer."""

    state: State
    owner_rep: str | None = None
    owner_team: str | None = None
    until: datetime | None = None
    may_claim: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the lookup's ``ownership``."""
        return {
            "state": self.state,
            "owner_rep": self.owner_rep,
            "owner_team": self.owner_team,
            "until": self.until.isoformat() if self.until is not None else None,
            "may_claim": self.may_claim,
        }


def ownership_of(
    session: Session, number_e164: str, rep: str | None, *, protection: timedelta, now: datetime
) -> Ownership | None:
    """Who owns ``number_e164`` as ``rep`` sees it; None when it is no customer's number.

    Protection runs from when the owner got the customer (the lead's hand-over, else the
    customer's creation) for ``protection``.
    """
    row = session.execute(
        select(CustomerRecord.owner_rep, CustomerRecord.created_at, Lead.rep_at, Team.name)
        .join(CustomerPhone, CustomerPhone.customer_id == CustomerRecord.id)
        .outerjoin(Lead, Lead.customer_id == CustomerRecord.id)
        .outerjoin(Rep, Rep.name == CustomerRecord.owner_rep)
        .outerjoin(Team, Team.id == Rep.team_id)
        .where(CustomerPhone.number_e164 == number_e164)
        .limit(1)
    ).first()
    if row is None:
        return None
    owner, created_at, held_since, team = row
    if not owner:
        return Ownership("pool", may_claim=rep is not None)
    if owner == rep:
        return Ownership("yours", owner, team)
    since = max(t for t in (created_at, held_since) if t is not None)
    until = since + protection
    if until > now:
        return Ownership("protected", owner, team, until)
    return Ownership("owned", owner, team, until, may_claim=rep is not None)


@dataclass(frozen=True, slots=True)
class Collision:
    """A call one rep made to (or took from) another rep's customer."""

    at: datetime
    call_uuid: str
    customer_id: int
    rep: str
    team: str | None
    owner_rep: str
    owner_team: str | None


def flag_collisions(
    session: Session, calls: Iterable[tuple[str, str | None, str, str | None, datetime]], *, now: datetime
) -> list[Collision]:
    """Flag each call ``(uuid, number_e164, rep, team, started_at)`` to another rep's customer, once.

    Returns the collisions newly flagged (a call sent again is not flagged twice).
    """
    by_number: dict[str, list[tuple[str, str, str | None, datetime]]] = {}
    for uuid, number, rep, team, started in calls:
        if number and rep:
            by_number.setdefault(number, []).append((uuid, rep, team, started))
    if not by_number:
        return []
    owners = session.execute(
        select(CustomerPhone.number_e164, CustomerRecord.id, CustomerRecord.owner_rep, Team.name)
        .join(CustomerRecord, CustomerRecord.id == CustomerPhone.customer_id)
        .outerjoin(Rep, Rep.name == CustomerRecord.owner_rep)
        .outerjoin(Team, Team.id == Rep.team_id)
        .where(
            CustomerPhone.number_e164.in_(list(by_number)), func.coalesce(CustomerRecord.owner_rep, "") != ""
        )
    ).all()
    found: list[Collision] = []
    for number, customer_id, owner, owner_team in owners:
        for uuid, rep, team, started in by_number[number]:
            if owner and rep != owner:
                found.append(Collision(started, uuid, customer_id, rep, team, owner, owner_team))
    if not found:
        return []
    targets = [f"call:{c.call_uuid}" for c in found]
    flagged = set(
        session.scalars(
            select(AuditEntry.target).where(
                AuditEntry.action == COLLISION_ACTION, AuditEntry.target.in_(targets)
            )
        )
    )
    new = [c for c in found if f"call:{c.call_uuid}" not in flagged]
    for c in new:
        session.add(
            AuditEntry(
                at=now,
                user_login=c.rep,
                action=COLLISION_ACTION,
                target=f"call:{c.call_uuid}",
                detail=json.dumps(
                    {
                        "customer_id": c.customer_id,
                        "rep": c.rep,
                        "team": c.team,
                        "owner_rep": c.owner_rep,
                        "owner_team": c.owner_team,
                        "started_at": c.at.isoformat(),
                    },
                    ensure_ascii=False,
                ),
            )
        )
        logger.info(
            "collision: rep %s called customer %d of rep %s (call %s)",
            c.rep,
            c.customer_id,
            c.owner_rep,
            c.call_uuid,
        )
    session.flush()
    return new


def collisions(
    session: Session, *, teams: set[str] | None, since: datetime, limit: int = 200
) -> list[Collision]:
    """Collisions flagged since ``since``, newest first; with ``teams``, those with one of them on a side."""
    rows = session.execute(
        select(AuditEntry.target, AuditEntry.detail)
        .where(AuditEntry.action == COLLISION_ACTION, AuditEntry.at >= since)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit * 4 if teams is not None else limit)
    ).all()
    out: list[Collision] = []
    for target, detail in rows:
        try:
            data = json.loads(detail or "{}")
            item = Collision(
                at=datetime.fromisoformat(data["started_at"]),
                call_uuid=str(target).removeprefix("call:"),
                customer_id=int(data["customer_id"]),
                rep=str(data["rep"]),
                team=data.get("team"),
                owner_rep=str(data["owner_rep"]),
                owner_team=data.get("owner_team"),
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("collision row %s unreadable; skipped", target)
            continue
        if teams is None or item.team in teams or item.owner_team in teams:
            out.append(item)
        if len(out) >= limit:
            break
    return out
