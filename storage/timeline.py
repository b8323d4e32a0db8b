"""One customer's history across the floor: who may see the customer, the customer list, and the timeline.

The timeline merges three sources, newest first: the calls from any seat to or from
any of the customer's numbers (``calls.number_e164`` against ``customer_phones``),
the dispositions recorded for the customer, and the transfer log (assignments,
moves, recalls). Paging is by keyset: a :class:`Cursor` is the last entry shown
(its time, kind and id), and the next page is everything strictly older in the
order ``(at, kind, id)`` descending, so a page never repeats or skips an entry
while new calls arrive.

Who may see what is given as a :class:`Viewer` (the console maps its roles onto
one), so this module needs nothing of the web app:

- ``everything``: every customer (a manager);
- ``team``: the customers owned by a rep of that team, or called by that team;
- ``rep``: the customers that rep owns, or has called.

Calls in a visible customer's timeline are all shown (that is the point of one
history); whether a call's recording may be played is the call scope's decision
(:attr:`CallEntry.in_scope`), which the recording routes check again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session

from storage.models import (
    CallRecord,
    CustomerPhone,
    CustomerRecord,
    DispositionRecord,
    Recording,
    Rep,
    Team,
    Transfer,
)

#: The kinds of entry, in the order they sort among entries of the same instant (higher first).
KINDS: tuple[str, ...] = ("transfer", "disposition", "call")
#: Entries on one page of the timeline, and customers on one page of the list.
PER_PAGE = 50
#: Longest search text taken from the list page.
MAX_SEARCH = 100


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose eyes a query is for: everything, or one team, or one rep (nothing when all are empty)."""

    everything: bool = False
    team: str | None = None
    rep: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a timeline: the last entry shown (``kind`` one of :data:`KINDS`)."""

    at: datetime
    kind: str
    id: int

    def encode(self) -> str:
        """The cursor as a query-string value (``before=``)."""
        return f"{self.at.astimezone(UTC).isoformat()}~{self.kind}~{self.id}"

    @classmethod
    def decode(cls, value: str | None) -> Cursor | None:
        """A cursor from :meth:`encode`'s text; None for no value or anything malformed."""
        if not value or len(value) > 100:
            return None
        parts = value.split("~")
        if len(parts) != 3 or parts[1] not in KINDS or not parts[2].isascii() or not parts[2].isdigit():
            return None
        try:
            at = datetime.fromisoformat(parts[0])
        except ValueError:
            return None
        if at.tzinfo is None:
            return None
        return cls(at, parts[1], int(parts[2]))

    def key(self) -> tuple[datetime, int, int]:
        """The sort key (newest first is this key descending)."""
        return (self.at, KINDS.index(self.kind), self.id)


@dataclass(frozen=True, slots=True)
class CallEntry:
    """A call in the timeline; ``in_scope``: the viewer may open it and play its recordings."""

    id: int
    at: datetime
    uuid: str
    rep: str
    team: str
    seat: str
    direction: str
    number_e164: str | None
    number_raw: str | None
    disposition: str | None
    talk_seconds: float | None
    notes: str | None
    recording_ids: tuple[int, ...]
    in_scope: bool
    kind: str = "call"


@dataclass(frozen=True, slots=True)
class DispositionEntry:
    """A disposition recorded for the customer."""

    id: int
    at: datetime
    rep: str | None
    code: str
    note: str | None
    follow_up_at: datetime | None
    call_uuid: str | None
    kind: str = "disposition"


@dataclass(frozen=True, slots=True)
class TransferEntry:
    """An assignment, move or recall of the customer."""

    id: int
    at: datetime
    actor: str
    action: str
    from_team: str | None
    from_rep: str | None
    to_team: str | None
    to_rep: str | None
    reason: str | None
    kind: str = "transfer"


Entry = CallEntry | DispositionEntry | TransferEntry


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """One page of a customer's history and the cursor of the next (None: this is the last)."""

    customer: CustomerRecord
    phones: list[CustomerPhone]
    entries: list[Entry]
    next_cursor: Cursor | None


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """A customer on the list page."""

    id: int
    name: str
    company: str | None
    owner_rep: str | None
    numbers: tuple[str, ...]


def call_scope(viewer: Viewer) -> ColumnElement[bool]:
    """The calls the viewer may open (the console's call scope)."""
    if viewer.everything:
        return true()
    if viewer.team:
        return CallRecord.team == viewer.team
    if viewer.rep:
        return CallRecord.rep == viewer.rep
    return false()


def _called_by(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(
        select(CallRecord.id)
        .join(CustomerPhone, CustomerPhone.number_e164 == CallRecord.number_e164)
        .where(CustomerPhone.customer_id == CustomerRecord.id, clause)
        .correlate(CustomerRecord)
    )


def customer_scope(viewer: Viewer) -> ColumnElement[bool]:
    """The customers the viewer may see (see the module docstring)."""
    if viewer.everything:
        return true()
    if viewer.team:
        team_reps = select(Rep.name).join(Team, Team.id == Rep.team_id).where(Team.name == viewer.team)
        return or_(CustomerRecord.owner_rep.in_(team_reps), _called_by(CallRecord.team == viewer.team))
    if viewer.rep:
        return or_(CustomerRecord.owner_rep == viewer.rep, _called_by(CallRecord.rep == viewer.rep))
    return false()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_customers(
    session: Session, viewer: Viewer, text: str | None, *, page: int = 1, per_page: int = PER_PAGE
) -> tuple[list[CustomerRow], bool]:
    """The visible customers whose name, company or a number contains ``text``; and whether more follow.

    Digits in ``text`` (spaces and dashes dropped) are also matched against the stored numbers.
    """
    statement = select(CustomerRecord).where(customer_scope(viewer))
    text = (text or "").strip()[:MAX_SEARCH]
    if text:
        like = f"%{_like_escape(text)}%"
        matches: list[ColumnElement[bool]] = [
            CustomerRecord.name.like(like, escape="\\"),
            CustomerRecord.company.like(like, escape="\\"),
        ]
        digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
        if digits:
            number_like = f"%{digits}%"
            matches.append(
                exists(
                    select(CustomerPhone.id).where(
                        CustomerPhone.customer_id == CustomerRecord.id,
                        or_(
                            CustomerPhone.number_e164.like(number_like),
                            CustomerPhone.number_raw.like(number_like),
                        ),
                    )
                )
            )
        statement = statement.where(or_(*matches))
    page = max(page, 1)
    found = list(
        session.scalars(
            statement.order_by(CustomerRecord.name, CustomerRecord.id)
            .offset((page - 1) * per_page)
            .limit(per_page + 1)
        )
    )
    more = len(found) > per_page
    found = found[:per_page]
    phones: dict[int, list[str]] = {}
    if found:
        for phone in session.scalars(
            select(CustomerPhone)
            .where(CustomerPhone.customer_id.in_([c.id for c in found]))
            .order_by(CustomerPhone.id)
        ):
            phones.setdefault(phone.customer_id, []).append(phone.number_raw or phone.number_e164)
    rows = [CustomerRow(c.id, c.name, c.company, c.owner_rep, tuple(phones.get(c.id, ()))) for c in found]
    return rows, more


def visible_customer(session: Session, customer_id: int, viewer: Viewer) -> CustomerRecord | None:
    """The customer if it exists and the viewer may see it, else None (the two are not told apart)."""
    return session.scalar(
        select(CustomerRecord).where(CustomerRecord.id == customer_id, customer_scope(viewer))
    )


def _older(column: Any, id_column: Any, kind: str, cursor: Cursor | None) -> ColumnElement[bool]:
    """Entries of one kind strictly after ``cursor`` in newest-first order."""
    if cursor is None:
        return true()
    mine, theirs = KINDS.index(kind), KINDS.index(cursor.kind)
    clause: ColumnElement[bool]
    if mine < theirs:
        clause = column <= cursor.at
        return clause
    if mine > theirs:
        clause = column < cursor.at
        return clause
    return or_(column < cursor.at, and_(column == cursor.at, id_column < cursor.id))


def _calls(
    session: Session, customer_id: int, viewer: Viewer, cursor: Cursor | None, limit: int
) -> list[CallEntry]:
    numbers = select(CustomerPhone.number_e164).where(CustomerPhone.customer_id == customer_id)
    rows = session.execute(
        select(CallRecord, call_scope(viewer).label("in_scope"))
        .where(
            CallRecord.number_e164.in_(numbers),
            _older(CallRecord.started_at, CallRecord.id, "call", cursor),
        )
        .order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
        .limit(limit)
    ).all()
    recordings: dict[str, list[int]] = {}
    if rows:
        for call_uuid, recording_id in session.execute(
            select(Recording.call_uuid, Recording.id)
            .where(Recording.call_uuid.in_([row[0].uuid for row in rows]))
            .order_by(Recording.id)
        ):
            recordings.setdefault(call_uuid, []).append(recording_id)
    return [
        CallEntry(
            id=call.id,
            at=call.started_at,
            uuid=call.uuid,
            rep=call.rep,
            team=call.team,
            seat=call.seat,
            direction=call.direction,
            number_e164=call.number_e164,
            number_raw=call.number_raw,
            disposition=call.disposition,
            talk_seconds=call.talk_seconds,
            notes=call.notes,
            recording_ids=tuple(recordings.get(call.uuid, ())),
            in_scope=bool(in_scope),
        )
        for call, in_scope in rows
    ]


def _dispositions(
    session: Session, customer_id: int, cursor: Cursor | None, limit: int
) -> list[DispositionEntry]:
    found = session.scalars(
        select(DispositionRecord)
        .where(
            DispositionRecord.customer_id == customer_id,
            _older(DispositionRecord.at, DispositionRecord.id, "disposition", cursor),
        )
        .order_by(DispositionRecord.at.desc(), DispositionRecord.id.desc())
        .limit(limit)
    )
    return [DispositionEntry(d.id, d.at, d.rep, d.code, d.note, d.follow_up_at, d.call_uuid) for d in found]


def _transfers(session: Session, customer_id: int, cursor: Cursor | None, limit: int) -> list[TransferEntry]:
    found = session.scalars(
        select(Transfer)
        .where(Transfer.customer_id == customer_id, _older(Transfer.at, Transfer.id, "transfer", cursor))
        .order_by(Transfer.at.desc(), Transfer.id.desc())
        .limit(limit)
    )
    return [
        TransferEntry(t.id, t.at, t.actor, t.action, t.from_team, t.from_rep, t.to_team, t.to_rep, t.reason)
        for t in found
    ]


def entry_key(entry: Entry) -> tuple[datetime, int, int]:
    """An entry's place in the timeline (newest first is this key descending)."""
    return (entry.at, KINDS.index(entry.kind), entry.id)


def timeline(
    session: Session,
    customer_id: int,
    viewer: Viewer,
    *,
    before: Cursor | None = None,
    per_page: int = PER_PAGE,
) -> TimelinePage | None:
    """One page of the customer's history after ``before``, or None when the viewer may not see the customer.

    Each source is read newest first up to one more than a page, then the three are merged.
    """
    customer = visible_customer(session, customer_id, viewer)
    if customer is None:
        return None
    phones = list(
        session.scalars(
            select(CustomerPhone).where(CustomerPhone.customer_id == customer_id).order_by(CustomerPhone.id)
        )
    )
    limit = per_page + 1
    merged: list[Entry] = [
        *_calls(session, customer_id, viewer, before, limit),
        *_dispositions(session, customer_id, before, limit),
        *_transfers(session, customer_id, before, limit),
    ]
    merged.sort(key=entry_key, reverse=True)
    entries = merged[:per_page]
    next_cursor = None
    if len(merged) > per_page:
        last = entries[-1]
        next_cursor = Cursor(last.at, last.kind, last.id)
    return TimelinePage(customer, phones, entries, next_cursor)


def customer_of_number(session: Session, number_e164: str | None) -> int | None:
    """The id of the customer who holds ``number_e164``, if any (to link a call to its customer)."""
    if not number_e164:
        return None
    return session.scalar(select(CustomerPhone.customer_id).where(CustomerPhone.number_e164 == number_e164))
