"""The floor's do-not-call list (勿扰名单): numbers nobody on the floor may call, some until a date.

A number gets on the list by hand (``cti-agent dnc add``), from a file (``dnc import``), or from a
rep's disposition whose code is marked ``do_not_call`` (the customer asked). The worklist leaves
listed numbers out (and a lead whose every number is listed), the seat page asks before it dials
one, and an outbound call to one that happened anyway (dialed on the handset) is flagged after
the fact: an audit row ``dnc_dialed`` per call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from storage.models import AuditEntry, DoNotCall, utcnow

logger = logging.getLogger(__name__)

__all__ = ["DIALED_ACTION", "SOURCES", "Listed", "add_numbers", "flag_dialed", "listed", "remove_number"]

DIALED_ACTION = "dnc_dialed"
SOURCES = ("manual", "import", "disposition")


@dataclass(frozen=True, slots=True)
class Listed:
    """One number on the list."""

    number_e164: str
    reason: str | None
    source: str
    added_by: str | None
    added_at: datetime
    expires_at: datetime | None

    def to_dict(self) -> dict[str, str | None]:
        """The JSON ``dnc list --json`` prints."""
        return {
            "number": self.number_e164,
            "reason": self.reason,
            "source": self.source,
            "added_by": self.added_by,
            "added_at": self.added_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def _active(now: datetime) -> ColumnElement[bool]:
    return or_(DoNotCall.expires_at.is_(None), DoNotCall.expires_at > now)


def add_numbers(
    session: Session,
    numbers: Iterable[str],
    *,
    source: str,
    added_by: str | None,
    reason: str | None = None,
    expires_at: datetime | None = None,
) -> int:
    """Put E.164 numbers on the list; returns how many were new (one there gets the new reason and expiry)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    new = 0
    for number in dict.fromkeys(numbers):
        row = session.scalar(select(DoNotCall).where(DoNotCall.number_e164 == number))
        if row is None:
            session.add(
                DoNotCall(
                    number_e164=number, reason=reason, source=source, added_by=added_by, expires_at=expires_at
                )
            )
            new += 1
        else:
            row.reason, row.source, row.added_by, row.expires_at = reason, source, added_by, expires_at
            row.added_at = utcnow()
    session.flush()
    return new


def remove_number(session: Session, number: str) -> bool:
    """Take a number off the list; False when it was not on it."""
    result = session.execute(delete(DoNotCall).where(DoNotCall.number_e164 == number))
    return bool(getattr(result, "rowcount", 0))


def listed(
    session: Session, numbers: Iterable[str] | None = None, *, now: datetime | None = None
) -> list[Listed]:
    """The numbers on the list now (of ``numbers`` when given), by number."""
    query = select(DoNotCall).where(_active(now or utcnow())).order_by(DoNotCall.number_e164)
    if numbers is not None:
        query = query.where(DoNotCall.number_e164.in_(list(numbers)))
    return [
        Listed(r.number_e164, r.reason, r.source, r.added_by, r.added_at, r.expires_at)
        for r in session.scalars(query)
    ]


def flag_dialed(session: Session, calls: Iterable[tuple[str, str | None, str, str]], *, now: datetime) -> int:
    """Flag each outbound call ``(uuid, number_e164, rep, direction)`` to a listed number, once; how many."""
    outbound = {
        uuid: (number, rep) for uuid, number, rep, direction in calls if number and direction == "out"
    }
    if not outbound:
        return 0
    hit = {row.number_e164 for row in listed(session, {n for n, _ in outbound.values()}, now=now)}
    targets = {f"call:{uuid}": (number, rep) for uuid, (number, rep) in outbound.items() if number in hit}
    if not targets:
        return 0
    done = set(
        session.scalars(
            select(AuditEntry.target).where(
                AuditEntry.action == DIALED_ACTION, AuditEntry.target.in_(list(targets))
            )
        )
    )
    flagged = 0
    for target, (_, rep) in targets.items():
        if target in done:
            continue
        session.add(
            AuditEntry(
                at=now, user_login=rep, action=DIALED_ACTION, target=target, detail=json.dumps({"rep": rep})
            )
        )
        logger.warning("rep %s called a number on the do-not-call list (%s)", rep, target)
        flagged += 1
    session.flush()
    return flagged
