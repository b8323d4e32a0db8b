"""Leads on the centre: reps, lead lists, handing leads to teams and reps, the transfer log.

A floor's lead data (数据) arrives as lists; the manager gives leads of a list to a team, the
team lead gives them on to reps. Each customer is a lead of one list at most, and the rep
holding a lead is its customer's owner (``customers.owner_rep``), so one number has one owner
across the floor. Every hand-over writes one :class:`storage.models.Transfer` per customer.

Races: two team leads (or a team lead and a seat's claim) may reach for the same lead at once.
Every hand-over is a conditional ``UPDATE ... WHERE rep IS NULL ... RETURNING`` on the leads and
a conditional update of their customers' owners, so each lead goes to exactly one rep; the loser
gets fewer leads (and takes more from what is still free) or, for one lead, a :class:`LeadTaken`
naming who has it. On PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``, so two
hand-overs at once take different leads instead of waiting on each other.

Coverage (打透), what the holders made of a list's leads, is :mod:`storage.coverage`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from agent.errors import StorageError
from storage.models import (
    CustomerRecord,
    Lead,
    LeadList,
    Rep,
    Team,
    Transfer,
    utcnow,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LeadError",
    "LeadTaken",
    "RepRecord",
    "add_leads",
    "add_rep",
    "assign_to_rep",
    "assign_to_team",
    "claim_lead",
    "get_list",
    "list_reps",
    "open_list",
    "rep_record",
    "require_team",
    "transfers_of",
]


class LeadError(StorageError):
    """A lead command that cannot be done: an unknown rep, team or list, too few leads."""


class LeadTaken(LeadError):
    """The lead is another rep's (someone took it first)."""

    def __init__(self, lead_id: int, owner: str | None) -> None:
        super().__init__(f"lead {lead_id} is already {owner!r}'s" if owner else f"lead {lead_id} is taken")
        self.lead_id = lead_id
        self.owner = owner


@dataclass(frozen=True, slots=True)
class RepRecord:
    """A rep as ``reps list`` shows them."""

    name: str
    display_name: str | None
    team: str | None
    active: bool


# -- reps ----------------------------------------------------------------------------------


def _team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
        logger.info("team %s created", name)
    return team


def require_team(session: Session, name: str) -> None:
    """Check that the centre knows team ``name``.

    :raises LeadError: it does not.
    """
    if session.scalar(select(Team.id).where(Team.name == name)) is None:
        raise LeadError(f"the centre knows no team {name!r} (reps add REP --team {name} makes it)")


def add_rep(session: Session, name: str, team: str | None, display_name: str | None = None) -> RepRecord:
    """Add rep ``name`` to ``team`` (created when new); an existing rep moves to ``team``.

    :raises LeadError: the name is empty.
    """
    name = name.strip()
    if not name:
        raise LeadError("a rep needs a name")
    team_row = _team(session, team.strip()) if team and team.strip() else None
    rep = session.scalar(select(Rep).where(Rep.name == name))
    if rep is None:
        rep = Rep(name=name)
        session.add(rep)
    rep.team_id = team_row.id if team_row is not None else None
    if display_name is not None:
        rep.display_name = display_name.strip() or None
    rep.active = True
    session.flush()
    return RepRecord(rep.name, rep.display_name, team_row.name if team_row else None, True)


def list_reps(session: Session) -> list[RepRecord]:
    """Every rep the centre knows, by name."""
    query = select(Rep.name, Rep.display_name, Team.name, Rep.active).outerjoin(Team, Rep.team_id == Team.id)
    return [RepRecord(*row) for row in session.execute(query.order_by(Rep.name))]


def rep_record(session: Session, name: str) -> RepRecord:
    """Rep ``name``.

    :raises LeadError: the centre does not know them, or they are disabled.
    """
    row = session.execute(
        select(Rep.name, Rep.display_name, Team.name, Rep.active)
        .outerjoin(Team, Rep.team_id == Team.id)
        .where(Rep.name == name)
    ).first()
    if row is None:
        raise LeadError(
            f"the centre knows no rep {name!r} (add them with: cti-agent reps add {name} --team TEAM)"
        )
    record = RepRecord(*row)
    if not record.active:
        raise LeadError(f"rep {name!r} is disabled")
    return record


# -- lists -----------------------------------------------------------------------------------


def open_list(session: Session, name: str, *, premium: bool = False, actor: str | None = None) -> LeadList:
    """The list ``name``, made now when new (``premium`` then sets it; an existing list keeps its own).

    :raises LeadError: the name is empty, or an existing list's premium flag differs.
    """
    name = name.strip()
    if not name:
        raise LeadError("a lead list needs a name")
    found = session.scalar(select(LeadList).where(LeadList.name == name))
    if found is None:
        found = LeadList(name=name, premium=premium, created_by=actor)
        session.add(found)
        session.flush()
    elif premium and not found.premium:
        raise LeadError(
            f"list {name!r} exists and is not premium; import premium leads into a list of their own"
        )
    return found


def get_list(session: Session, name: str) -> LeadList:
    """The list ``name``.

    :raises LeadError: there is none.
    """
    found = session.scalar(select(LeadList).where(LeadList.name == name))
    if found is None:
        raise LeadError(f"no lead list {name!r}")
    return found


def add_leads(
    session: Session, lead_list: LeadList, customer_ids: Sequence[int], *, actor: str, team: str | None = None
) -> int:
    """Put newly imported customers on ``lead_list`` (given to ``team`` when set); returns how many.

    A customer imported with an owner (an owner column, ``--owner``) is a lead held by that rep
    from the start, so the lead's holder and the customer's owner stay one and the same.
    """
    if not customer_ids:
        return 0
    now = utcnow()
    owners = dict(
        session.execute(
            select(CustomerRecord.id, CustomerRecord.owner_rep).where(
                CustomerRecord.id.in_(list(customer_ids))
            )
        )
        .tuples()
        .all()
    )
    session.execute(
        insert(Lead),
        [
            {
                "list_id": lead_list.id,
                "customer_id": cid,
                "team": team,
                "team_at": now if team else None,
                "rep": owners.get(cid),
                "rep_at": now if owners.get(cid) else None,
            }
            for cid in customer_ids
        ],
    )
    for owner in sorted({o for o in owners.values() if o}):
        _log(
            session,
            [(cid, None, None) for cid in customer_ids if owners.get(cid) == owner],
            actor=actor,
            action="import",
            list_id=lead_list.id,
            to_team=team,
            to_rep=owner,
            reason="owner at import",
            at=now,
        )
    _log(
        session,
        [(cid, None, None) for cid in customer_ids if not owners.get(cid)],
        actor=actor,
        action="import",
        list_id=lead_list.id,
        to_team=team,
        to_rep=None,
        reason=None,
        at=now,
    )
    return len(customer_ids)


def _log(
    session: Session,
    moved: Iterable[tuple[int, str | None, str | None]],
    *,
    actor: str,
    action: str,
    list_id: int,
    to_team: str | None,
    to_rep: str | None,
    reason: str | None,
    at: datetime,
) -> None:
    """One transfer row per (customer, from team, from rep)."""
    rows = [
        {
            "at": at,
            "actor": actor,
            "action": action,
            "customer_id": cid,
            "list_id": list_id,
            "from_team": from_team,
            "from_rep": from_rep,
            "to_team": to_team,
            "to_rep": to_rep,
            "reason": reason,
        }
        for cid, from_team, from_rep in moved
    ]
    if rows:
        session.execute(insert(Transfer), rows)


# -- handing leads over -----------------------------------------------------------------------


def _free(session: Session, query: Select[Any], count: int) -> list[int]:
    """Up to ``count`` candidate lead ids; rows another transaction holds are skipped on PostgreSQL."""
    locked = query.limit(count)
    if session.get_bind().dialect.name == "postgresql":
        locked = locked.with_for_update(of=Lead, skip_locked=True)
    return list(session.scalars(locked))


def assign_to_team(
    session: Session, list_name: str, team: str, count: int, *, actor: str, reason: str | None = None
) -> int:
    """Give ``count`` leads of the list that no team has yet to ``team`` (oldest first).

    All or nothing: fewer free leads than ``count`` is an error saying how many there are.

    :raises LeadError: an unknown list or team, a count below 1, too few free leads.
    """
    if count < 1:
        raise LeadError("the count must be at least 1")
    lead_list = get_list(session, list_name)
    require_team(session, team)
    condition = Lead.team.is_(None)
    now = utcnow()
    taken: list[int] = []
    while len(taken) < count:
        ids = _free(
            session,
            select(Lead.id)
            .join(CustomerRecord, CustomerRecord.id == Lead.customer_id)
            .where(
                Lead.list_id == lead_list.id,
                Lead.rep.is_(None),
                CustomerRecord.owner_rep.is_(None),
                condition,
            )
            .order_by(Lead.id),
            count - len(taken),
        )
        if not ids:
            break
        got = session.scalars(
            update(Lead)
            .where(Lead.id.in_(ids), Lead.team.is_(None), Lead.rep.is_(None))
            .values(team=team, team_at=now)
            .returning(Lead.customer_id)
        ).all()
        taken.extend(got)
    if len(taken) < count:
        raise LeadError(
            f"list {list_name!r} has {len(taken)} lead(s) no team has yet, not {count}; nothing was assigned"
        )
    _log(
        session,
        [(cid, None, None) for cid in taken],
        actor=actor,
        action="to_team",
        list_id=lead_list.id,
        to_team=team,
        to_rep=None,
        reason=reason,
        at=now,
    )
    return len(taken)


def assign_to_rep(
    session: Session, list_name: str, rep: str, count: int, *, actor: str, reason: str | None = None
) -> int:
    """Give ``count`` leads of the list to ``rep``: their team's free leads first, then ones no team has.

    The rep becomes each lead's customer's owner. All or nothing, as :func:`assign_to_team`.

    :raises LeadError: an unknown or disabled rep, an unknown list, a count below 1, too few free leads.
    """
    if count < 1:
        raise LeadError("the count must be at least 1")
    who = rep_record(session, rep)
    lead_list = get_list(session, list_name)
    team_ok = Lead.team.is_(None) if who.team is None else ((Lead.team == who.team) | Lead.team.is_(None))
    now = utcnow()
    taken: list[tuple[int, str | None]] = []
    while len(taken) < count:
        ids = _free(
            session,
            select(Lead.id)
            .join(CustomerRecord, CustomerRecord.id == Lead.customer_id)
            .where(
                Lead.list_id == lead_list.id, Lead.rep.is_(None), CustomerRecord.owner_rep.is_(None), team_ok
            )
            .order_by(Lead.team.is_(None), Lead.id),
            count - len(taken),
        )
        if not ids:
            break
        before = {
            lead_id: lead_team
            for lead_id, lead_team in session.execute(select(Lead.id, Lead.team).where(Lead.id.in_(ids)))
        }
        got = session.execute(
            update(Lead)
            .where(Lead.id.in_(ids), Lead.rep.is_(None))
            .values(
                rep=rep,
                rep_at=now,
                team=func.coalesce(Lead.team, who.team),
                team_at=func.coalesce(Lead.team_at, now),
            )
            .returning(Lead.id, Lead.customer_id)
        ).all()
        owned = session.execute(
            update(CustomerRecord)
            .where(CustomerRecord.id.in_([cid for _, cid in got]), CustomerRecord.owner_rep.is_(None))
            .values(owner_rep=rep, updated_at=now)
        )
        if owned.rowcount != len(got):  # type: ignore[attr-defined]
            # A customer got an owner between the read and this update (a seat's claim): start again.
            raise LeadError("another hand-over took some of these leads at the same moment; run it again")
        taken.extend((cid, before.get(lead_id)) for lead_id, cid in got)
    if len(taken) < count:
        raise LeadError(
            f"list {list_name!r} has {len(taken)} free lead(s) for rep {rep!r}, not {count}; "
            "nothing was assigned"
        )
    _log(
        session,
        [(cid, from_team, None) for cid, from_team in taken],
        actor=actor,
        action="to_rep",
        list_id=lead_list.id,
        to_team=who.team,
        to_rep=rep,
        reason=reason,
        at=now,
    )
    return len(taken)


def claim_lead(session: Session, lead_id: int, rep: str, *, actor: str) -> None:
    """``rep`` takes one lead (a click in a worklist, a claim from a pop); exactly one of two at once wins.

    Claiming a lead one already holds is no error.

    :raises LeadTaken: someone else holds it (their name said).
    :raises LeadError: no such lead, an unknown or disabled rep.
    """
    who = rep_record(session, rep)
    row = session.execute(
        select(Lead.customer_id, Lead.list_id, Lead.team, Lead.rep).where(Lead.id == lead_id)
    ).first()
    if row is None:
        raise LeadError(f"no lead {lead_id}")
    customer_id, list_id, team, holder = row
    if holder == rep:
        return
    now = utcnow()
    got = session.execute(
        update(Lead)
        .where(Lead.id == lead_id, Lead.rep.is_(None))
        .values(
            rep=rep,
            rep_at=now,
            team=func.coalesce(Lead.team, who.team),
            team_at=func.coalesce(Lead.team_at, now),
        )
        .returning(Lead.id)
    ).first()
    if got is None:
        raise LeadTaken(
            lead_id,
            session.scalar(
                select(Lead.rep).where(Lead.id == lead_id).execution_options(populate_existing=True)
            ),
        )
    owned = session.execute(
        update(CustomerRecord)
        .where(CustomerRecord.id == customer_id, CustomerRecord.owner_rep.is_(None))
        .values(owner_rep=rep, updated_at=now)
    )
    if owned.rowcount != 1:  # type: ignore[attr-defined]
        owner = session.scalar(select(CustomerRecord.owner_rep).where(CustomerRecord.id == customer_id))
        raise LeadTaken(lead_id, owner)
    _log(
        session,
        [(customer_id, team, None)],
        actor=actor,
        action="to_rep",
        list_id=list_id,
        to_team=who.team or team,
        to_rep=rep,
        reason="claimed",
        at=now,
    )


def transfers_of(session: Session, customer_id: int) -> list[Transfer]:
    """Every move of a customer, oldest first."""
    return list(
        session.scalars(select(Transfer).where(Transfer.customer_id == customer_id).order_by(Transfer.id))
    )
