"""The floor's day so far, per rep, from the calls every seat sent the centre (for its metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from storage.models import CallRecord, Seat


@dataclass(frozen=True, slots=True)
class RepDay:
    """One rep's ended calls in a window, by direction and disposition."""

    rep: str
    team: str
    direction: str
    disposition: str
    calls: int
    talk_seconds: float
    effective: int


@dataclass(frozen=True, slots=True)
class SeatState:
    """What a seat last told the centre."""

    name: str
    team: str | None
    active: bool
    last_seen_at: datetime | None
    backlog: int | None


def rep_days(session: Session, start: datetime, end: datetime, effective_seconds: float) -> list[RepDay]:
    """Ended calls started in ``[start, end)`` grouped by rep, team, direction and disposition."""
    talk = func.coalesce(CallRecord.talk_seconds, 0.0)
    answered = CallRecord.disposition == "answered"
    query = (
        select(
            CallRecord.rep,
            CallRecord.team,
            CallRecord.direction,
            CallRecord.disposition,
            func.count(),
            func.sum(case((answered, talk), else_=0.0)),
            func.sum(case((and_(answered, talk >= effective_seconds), 1), else_=0)),
        )
        .where(CallRecord.ended_at.is_not(None), CallRecord.started_at >= start, CallRecord.started_at < end)
        .group_by(CallRecord.rep, CallRecord.team, CallRecord.direction, CallRecord.disposition)
    )
    return [
        RepDay(
            rep=rep,
            team=team,
            direction=direction,
            disposition=disposition or "unknown",
            calls=int(calls),
            talk_seconds=float(talk_sum or 0.0),
            effective=int(effective or 0),
        )
        for rep, team, direction, disposition, calls, talk_sum, effective in session.execute(query)
    ]


def seat_states(session: Session) -> list[SeatState]:
    """Every seat the centre knows, with its last call-in and backlog."""
    return [
        SeatState(row.name, row.team, row.revoked_at is None, row.last_seen_at, row.backlog)
        for row in session.scalars(select(Seat).order_by(Seat.name))
    ]
