"""Queries and writes on the schema in :mod:`storage.models`.

Every function takes a :class:`~sqlalchemy.orm.Session`; the caller owns the
transaction (``with Session(engine).begin() as session: ...``). Call writes are
keyed by the call's UUID and safe to repeat: replays and retries never
duplicate a row or undo a later state.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agent.events import Call, Customer, Disposition, EndReason, RepStateChange
from agent.numbers import DEFAULT_REGION, clean, to_e164
from storage.models import AuditEntry, CallRecord, CustomerPhone, CustomerRecord, Recording, utcnow

logger = logging.getLogger(__name__)

#: Columns of ``calls`` that a :class:`agent.events.Call` snapshot sets (all but the rep's note).
SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "uuid",
    "seat",
    "device_id",
    "line",
    "rep",
    "team",
    "direction",
    "number_e164",
    "number_raw",
    "cid_name",
    "absence",
    "customer_id",
    "started_at",
    "answered_at",
    "ended_at",
    "ring_seconds",
    "talk_seconds",
    "disposition",
    "end_reason",
    "rings",
    "waiting",
)


def _snapshot_values(call: Call) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in SNAPSHOT_COLUMNS:
        value = getattr(call, column)
        values[column] = value.value if isinstance(value, enum.Enum) else value
    return values


def _may_replace(
    incoming_answered: ColumnElement[Any], incoming_ended: ColumnElement[Any]
) -> ColumnElement[bool]:
    """Whether a snapshot with these times may overwrite the stored row (a SQL condition).

    A call only moves forward (started -> answered -> ended). A snapshot behind
    the stored row is a replay or a late retry and is dropped: an unanswered
    snapshot never overwrites an answered row, an unended one never an ended row.
    Snapshots at the same stage or further replace it (same stage: last wins).
    """
    not_ended = CallRecord.ended_at.is_(None)
    return or_(
        incoming_ended.is_not(None),
        and_(not_ended, or_(incoming_answered.is_not(None), CallRecord.answered_at.is_(None))),
    )


def upsert_call(session: Session, call: Call) -> None:
    """Insert the call, or update its row from this snapshot; idempotent by ``call.uuid``.

    Every snapshot column is written (enums as their values); ``notes`` and
    ``follow_up_at`` are never touched. A snapshot that is behind the stored row
    (not ended while the row is ended, not answered while the row is answered)
    changes nothing, so replays and out-of-order retries never lose the end.
    ``customer_id`` is kept only when it names a row of ``customers`` (a CRM
    plugin's id is not one of ours); otherwise it is stored as NULL.

    SQLite and PostgreSQL use one ``INSERT ... ON CONFLICT (uuid) DO UPDATE``,
    which is atomic even against a concurrent writer of the same call. Other
    databases read then write; two writers racing to insert the same new call
    there make one of them fail with an integrity error, and its retry updates.
    """
    values = _snapshot_values(call)
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        _upsert_on_conflict(session, values, dialect)
    else:
        _upsert_select_then_write(session, values)


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (uuid) DO UPDATE`` for ``dialect``, built once with bind parameters.

    Building it per call (``insert().values(row)``, ``stmt.excluded``, the condition) was
    90 % of an upsert's 3.6 ms, all of it holding the GIL. ``customer_id`` goes through a
    scalar subquery: NULL when no such customer (a CRM plugin's id is not one of ours), so
    the foreign key never fails.
    """
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    table = cast(Table, CallRecord.__table__)
    columns = table.c
    # Bind names differ from the column names: SQLAlchemy keeps those for its own VALUES binds.
    values: dict[str, Any] = {
        column: bindparam(f"p_{column}", type_=columns[column].type) for column in SNAPSHOT_COLUMNS
    }
    values["customer_id"] = (
        select(CustomerRecord.id)
        .where(CustomerRecord.id == bindparam("p_customer_id", type_=columns["customer_id"].type))
        .scalar_subquery()
    )
    values["created_at"] = values["updated_at"] = bindparam("p_now", type_=columns["created_at"].type)
    stmt = insert(table).values(values)
    excluded = stmt.excluded
    changes = {column: excluded[column] for column in SNAPSHOT_COLUMNS if column != "uuid"}
    changes["updated_at"] = excluded.updated_at
    return stmt.on_conflict_do_update(
        index_elements=[columns.uuid],
        set_=changes,
        where=_may_replace(excluded.answered_at, excluded.ended_at),
    )


def _upsert_on_conflict(session: Session, values: dict[str, Any], dialect: str) -> None:
    params = {f"p_{column}": value for column, value in values.items()}
    params["p_now"] = utcnow()
    # Through the session's connection: a Core statement needs none of the ORM's execution path.
    session.connection().execute(_upsert_statement(dialect), params)


def _upsert_select_then_write(session: Session, values: dict[str, Any]) -> None:
    """The portable upsert: lock the row if it exists, then insert or update it."""
    if values["customer_id"] is not None and session.get(CustomerRecord, values["customer_id"]) is None:
        values = dict(values, customer_id=None)
    record = session.scalars(
        select(CallRecord).where(CallRecord.uuid == values["uuid"]).with_for_update()
    ).one_or_none()
    if record is None:
        session.add(CallRecord(**values))
        session.flush()
        return
    behind = (record.ended_at is not None and values["ended_at"] is None) or (
        record.answered_at is not None and values["answered_at"] is None and values["ended_at"] is None
    )
    if behind:
        logger.debug("call %s: dropped a snapshot behind the stored row", values["uuid"])
        return
    for column, value in values.items():
        setattr(record, column, value)
    record.updated_at = utcnow()
    session.flush()


def get_call(session: Session, uuid: str) -> CallRecord | None:
    """The stored call with this UUID, or None."""
    return session.scalars(select(CallRecord).where(CallRecord.uuid == uuid)).one_or_none()


def recent_calls(
    session: Session, *, limit: int = 50, seat: str | None = None, rep: str | None = None
) -> list[CallRecord]:
    """The newest calls first (by ``started_at``), optionally of one seat and/or one rep."""
    query = select(CallRecord)
    if seat is not None:
        query = query.where(CallRecord.seat == seat)
    if rep is not None:
        query = query.where(CallRecord.rep == rep)
    query = query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc()).limit(limit)
    return list(session.scalars(query))


def seat_calls_since(session: Session, *, seat: str, since: datetime, limit: int = 200) -> list[CallRecord]:
    """The seat's calls started at or after ``since``: the newest ``limit`` of them, oldest first."""
    query = (
        select(CallRecord)
        .where(CallRecord.seat == seat, CallRecord.started_at >= since)
        .order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
        .limit(limit)
    )
    return list(reversed(session.scalars(query).all()))


def find_customer(
    session: Session, number_e164: str | None, number_raw: str, *, region: str = DEFAULT_REGION
) -> Customer | None:
    """The customer who owns a number, or None.

    Tried in order: the E.164 forms (``number_e164`` and ``number_raw``
    normalised in ``region``, so a modem's national ``13812345678`` or
    ``022 1234 5678`` finds ``+8613812345678`` / ``+862212345678``), then the
    raw form as stored beside the number (for numbers the numbering plan does
    not know, such as extensions). The returned customer has ``source="sql"``.
    """
    e164s = {n for n in (number_e164, to_e164(number_raw, region)) if n}
    phone: CustomerPhone | None = None
    if e164s:
        phone = session.scalars(
            select(CustomerPhone).where(CustomerPhone.number_e164.in_(e164s)).order_by(CustomerPhone.id)
        ).first()
    if phone is None and number_raw:
        raws = {r for r in (number_raw, number_raw.strip(), clean(number_raw)) if r}
        phone = session.scalars(
            select(CustomerPhone).where(CustomerPhone.number_raw.in_(raws)).order_by(CustomerPhone.id)
        ).first()
    if phone is None:
        return None
    customer = phone.customer
    return Customer(
        id=customer.id,
        name=customer.name,
        company=customer.company,
        owner_rep=customer.owner_rep,
        source="sql",
    )


def save_note(session: Session, uuid: str, notes: str | None, follow_up_at: datetime | None) -> bool:
    """Set the rep's note and follow-up date on a call; True when the call exists.

    Only ``notes``, ``follow_up_at`` and ``updated_at`` change; later call
    snapshots never overwrite them. ``follow_up_at`` must be tz-aware.
    """
    result = session.execute(
        update(CallRecord)
        .where(CallRecord.uuid == uuid)
        .values(notes=notes, follow_up_at=follow_up_at, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0))


# -- the seat page: a customer's card and history, follow-ups, today's counts -------------------


def get_customer(session: Session, customer_id: int) -> CustomerRecord | None:
    """The customer with this id (with its phones), or None."""
    return session.get(CustomerRecord, customer_id)


@dataclass(frozen=True, slots=True)
class CustomerCard:
    """A customer as the seat page's card shows them.

    ``phones`` are the stored keys (E.164, ``;ext=N`` for an extension), in the
    order they were added; ``tags`` the comma-separated tags, split.
    """

    id: int
    name: str | None
    company: str | None
    owner_rep: str | None
    tags: tuple[str, ...]
    notes: str | None
    phones: tuple[str, ...]


def customer_card(session: Session, customer_id: int) -> CustomerCard | None:
    """The card of the customer with this id, or None."""
    record = get_customer(session, customer_id)
    if record is None:
        return None
    return CustomerCard(
        id=record.id,
        name=record.name,
        company=record.company,
        owner_rep=record.owner_rep,
        tags=tuple(tag for tag in (record.tags or "").split(",") if tag),
        notes=record.notes,
        phones=tuple(phone.number_e164 for phone in record.phones),
    )


@dataclass(frozen=True, slots=True)
class EarlierCall:
    """One of a customer's earlier calls on the card: what happened, its note, whether it can be played."""

    uuid: str
    started_at: datetime
    direction: str
    disposition: str | None
    talk_seconds: float | None
    rep: str
    notes: str | None
    follow_up_at: datetime | None
    has_recording: bool


def earlier_calls(
    session: Session,
    *,
    customer_id: int | None,
    number_e164: str | None,
    exclude_uuid: str | None = None,
    limit: int = 10,
) -> list[EarlierCall]:
    """The newest calls with the customer or the number (see :func:`calls_with`), newest first."""
    rows = calls_with(
        session, customer_id=customer_id, number_e164=number_e164, exclude_uuid=exclude_uuid, limit=limit
    )
    recorded = calls_with_recordings(session, [row.uuid for row in rows])
    return [
        EarlierCall(
            uuid=row.uuid,
            started_at=row.started_at,
            direction=row.direction,
            disposition=row.disposition,
            talk_seconds=row.talk_seconds,
            rep=row.rep,
            notes=row.notes,
            follow_up_at=row.follow_up_at,
            has_recording=row.uuid in recorded,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class CallNote:
    """The rep's note on a call and its follow-up date (tz-aware), either None when not set."""

    notes: str | None
    follow_up_at: datetime | None


def call_note(session: Session, uuid: str) -> CallNote | None:
    """The note on call ``uuid``, or None when the call is not in the database (yet)."""
    row = get_call(session, uuid)
    if row is None:
        return None
    return CallNote(notes=row.notes, follow_up_at=row.follow_up_at)


def calls_with(
    session: Session,
    *,
    customer_id: int | None = None,
    number_e164: str | None = None,
    exclude_uuid: str | None = None,
    limit: int = 10,
) -> list[CallRecord]:
    """The newest calls with a customer (by id) or a number (E.164), newest first.

    Either may be None; with both, a call matching either is returned (a call
    from a customer's other number, or from the number before it was imported).
    """
    conditions: list[ColumnElement[bool]] = []
    if customer_id is not None:
        conditions.append(CallRecord.customer_id == customer_id)
    if number_e164:
        conditions.append(CallRecord.number_e164 == number_e164)
    if not conditions:
        return []
    query = select(CallRecord).where(or_(*conditions))
    if exclude_uuid is not None:
        query = query.where(CallRecord.uuid != exclude_uuid)
    query = query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc()).limit(limit)
    return list(session.scalars(query))


#: Recording statuses that leave a file worth playing (``failed`` does not).
PLAYABLE_RECORDING_STATUSES: tuple[str, ...] = ("complete", "recovered", "partial")


def calls_with_recordings(session: Session, uuids: list[str]) -> set[str]:
    """Which of these calls have a playable recording (status complete, recovered or partial)."""
    if not uuids:
        return set()
    query = select(Recording.call_uuid).where(
        Recording.call_uuid.in_(uuids), Recording.status.in_(PLAYABLE_RECORDING_STATUSES)
    )
    return set(session.scalars(query.distinct()))


def recordings_past_retention(
    session: Session, *, default_cutoff: datetime | None, team_cutoffs: dict[str, datetime]
) -> list[Recording]:
    """Recordings made before their call's team's cutoff, oldest first.

    A team in ``team_cutoffs`` uses its own cutoff; any other team (and a
    recording whose call row is missing) uses ``default_cutoff``, or is kept
    when that is None.
    """
    conditions: list[ColumnElement[bool]] = [
        and_(CallRecord.team == team, Recording.created_at < cutoff) for team, cutoff in team_cutoffs.items()
    ]
    if default_cutoff is not None:
        older: ColumnElement[bool] = Recording.created_at < default_cutoff
        if team_cutoffs:
            unlisted = or_(CallRecord.team.is_(None), CallRecord.team.not_in(list(team_cutoffs)))
            older = and_(unlisted, older)
        conditions.append(older)
    if not conditions:
        return []
    query = (
        select(Recording)
        .outerjoin(CallRecord, CallRecord.uuid == Recording.call_uuid)
        .where(or_(*conditions))
        .order_by(Recording.created_at, Recording.id)
    )
    return list(session.scalars(query))


def due_follow_ups(session: Session, *, rep: str, until: datetime, limit: int = 50) -> list[CallRecord]:
    """Calls of ``rep`` whose follow-up is due by ``until`` and not yet done, the oldest due first.

    A follow-up is done once a later call with the same number was answered
    (the rep called back, or the customer called in and got through).
    """
    later = CallRecord.__table__.alias("later")
    done = (
        select(later.c.id)
        .where(
            later.c.number_e164 == CallRecord.number_e164,
            later.c.started_at > CallRecord.started_at,
            later.c.disposition == "answered",
        )
        .exists()
    )
    query = (
        select(CallRecord)
        .where(
            CallRecord.rep == rep,
            CallRecord.follow_up_at.is_not(None),
            CallRecord.follow_up_at <= until,
            ~done,
        )
        .order_by(CallRecord.follow_up_at, CallRecord.id)
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up due on the seat page: the call it was noted on and who to call back.

    ``name`` is the customer's name when the call is linked to one, else the
    caller-ID name (None when neither is known).
    """

    uuid: str
    follow_up_at: datetime
    number_raw: str | None
    number_e164: str | None
    name: str | None
    notes: str | None


def follow_ups_due(session: Session, *, rep: str, until: datetime, limit: int = 50) -> list[FollowUp]:
    """:func:`due_follow_ups` with the customer's name, for the seat page's list."""
    out: list[FollowUp] = []
    names: dict[int, str | None] = {}
    for call in due_follow_ups(session, rep=rep, until=until, limit=limit):
        name: str | None = None
        if call.customer_id is not None:
            if call.customer_id not in names:
                record = get_customer(session, call.customer_id)
                names[call.customer_id] = record.name if record is not None else None
            name = names[call.customer_id]
        assert call.follow_up_at is not None  # due_follow_ups selects only calls that have one
        out.append(
            FollowUp(
                uuid=call.uuid,
                follow_up_at=call.follow_up_at,
                number_raw=call.number_raw,
                number_e164=call.number_e164,
                name=name or call.cid_name,
                notes=call.notes,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class DayCounts:
    """A rep's calls in one day; an effective call is an answered one that talked long enough."""

    calls: int
    answered: int
    inbound: int
    outbound: int
    missed: int
    talk_seconds: float
    effective_calls: int


def day_counts(session: Session, *, rep: str, since: datetime, effective_seconds: float = 60.0) -> DayCounts:
    """A rep's calls since ``since`` (the start of their day).

    An effective call is an answered one that talked at least ``effective_seconds``.
    """
    talk = func.coalesce(CallRecord.talk_seconds, 0.0)
    row = session.execute(
        select(
            func.count(CallRecord.id),
            func.coalesce(func.sum(case((CallRecord.disposition == "answered", 1), else_=0)), 0),
            func.coalesce(func.sum(case((CallRecord.direction == "in", 1), else_=0)), 0),
            func.coalesce(func.sum(case((CallRecord.direction == "out", 1), else_=0)), 0),
            func.coalesce(func.sum(case((CallRecord.disposition == "missed", 1), else_=0)), 0),
            func.coalesce(func.sum(talk), 0.0),
            func.coalesce(
                func.sum(
                    case((and_(CallRecord.disposition == "answered", talk >= effective_seconds), 1), else_=0)
                ),
                0,
            ),
        ).where(CallRecord.rep == rep, CallRecord.started_at >= since)
    ).one()
    calls, answered, inbound, outbound, missed, talk_seconds, effective = row
    return DayCounts(
        calls=int(calls),
        answered=int(answered),
        inbound=int(inbound),
        outbound=int(outbound),
        missed=int(missed),
        talk_seconds=float(talk_seconds),
        effective_calls=int(effective),
    )


# -- the audit log ---------------------------------------------------------------------------


def add_audit(
    session: Session,
    action: str,
    *,
    user: str | None = None,
    target: str | None = None,
    detail: str | None = None,
    remote_addr: str | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add one ``audit_log`` row: the one writer every audited action goes through.

    :param action: what happened (``play``, ``export_csv``, ``lead_claim``, ...).
    :param user: the log-in (or rep) who did it; None for the system itself.
    :param target: what it was done to (``recording:12``, ``call:<uuid>``, ``customer:3``).
    :param detail: free text or JSON the action's readers understand.
    :param remote_addr: the client address when a request caused it.
    :param at: when; the row's default (now) when None.

    The caller owns the transaction; the row is added, not flushed.
    """
    entry = AuditEntry(user_login=user, action=action, target=target, detail=detail, remote_addr=remote_addr)
    if at is not None:
        entry.at = at
    session.add(entry)
    return entry


# -- lead ownership: claims, audited --------------------------------------------------------

CLAIM_ACTION = "lead_claim"


@dataclass(frozen=True, slots=True)
class ClaimStatus:
    """Whether ``rep`` may claim a customer now, and why not.

    ``reason``: ``"ok"``, ``"yours"`` (already the owner), ``"protected"`` (another
    rep's protection runs until ``protected_until``), ``"limit"`` (no claims left
    today) or ``"not_found"``.
    """

    reason: str
    owner_rep: str | None = None
    protected_until: datetime | None = None
    claims_left: int = 0

    @property
    def claimable(self) -> bool:
        """True when a claim would succeed."""
        return self.reason == "ok"


def _target(customer_id: int) -> str:
    return f"customer:{customer_id}"


def claim_status(
    session: Session,
    customer_id: int,
    rep: str,
    *,
    now: datetime,
    day_start: datetime,
    protection: timedelta,
    daily_limit: int,
) -> ClaimStatus:
    """Whether ``rep`` may claim the customer (see :class:`ClaimStatus`).

    A customer's protection starts when they were created (imported) or last
    claimed, whichever is later, and lasts ``protection``; an unowned customer
    is never protected. Claims today are counted from the audit log.
    """
    customer = session.get(CustomerRecord, customer_id)
    if customer is None:
        return ClaimStatus("not_found")
    used = session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.action == CLAIM_ACTION, AuditEntry.user_login == rep, AuditEntry.at >= day_start
        )
    )
    left = max(daily_limit - int(used or 0), 0)
    owner = customer.owner_rep
    if owner == rep:
        return ClaimStatus("yours", owner, claims_left=left)
    if owner:
        last_claim = session.scalar(
            select(func.max(AuditEntry.at)).where(
                AuditEntry.action == CLAIM_ACTION, AuditEntry.target == _target(customer_id)
            )
        )
        since = max(t for t in (customer.created_at, last_claim) if t is not None)
        until = since + protection
        if until > now:
            return ClaimStatus("protected", owner, protected_until=until, claims_left=left)
    if left <= 0:
        return ClaimStatus("limit", owner, claims_left=0)
    return ClaimStatus("ok", owner, claims_left=left)


def claim_customer(
    session: Session,
    customer_id: int,
    rep: str,
    *,
    now: datetime,
    day_start: datetime,
    protection: timedelta,
    daily_limit: int,
    remote_addr: str | None = None,
) -> ClaimStatus:
    """Make ``rep`` the customer's owner if :func:`claim_status` allows it; audited.

    The owner is changed with a compare-and-set on the owner seen, so of two
    reps claiming at once only one wins (the other gets ``"protected"``). An
    ``audit_log`` row (``lead_claim``, target ``customer:<id>``, detail
    ``from=<previous owner>``) records the change. Returns the status before
    the claim (``"ok"`` when it succeeded).
    """
    status = claim_status(
        session,
        customer_id,
        rep,
        now=now,
        day_start=day_start,
        protection=protection,
        daily_limit=daily_limit,
    )
    if not status.claimable:
        return status
    owner_is = (
        CustomerRecord.owner_rep.is_(None)
        if status.owner_rep is None
        else CustomerRecord.owner_rep == status.owner_rep
    )
    result = session.execute(
        update(CustomerRecord)
        .where(CustomerRecord.id == customer_id, owner_is)
        .values(owner_rep=rep, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    if not getattr(result, "rowcount", 0):
        return ClaimStatus("protected", None, claims_left=status.claims_left)
    add_audit(
        session,
        CLAIM_ACTION,
        user=rep,
        target=_target(customer_id),
        detail=f"from={status.owner_rep or ''}",
        remote_addr=remote_addr,
        at=now,
    )
    session.flush()
    return status


# -- rep state: stored in the audit log, summed for reports ---------------------------------

REP_STATE_ACTION = "rep_state"


def record_rep_state(session: Session, change: RepStateChange) -> None:
    """Store one rep-state change (an ``audit_log`` row: ``rep_state``, target = the new state).

    ``detail`` is JSON with the reason and the state left and its length, which
    :func:`rep_state_totals` sums.
    """
    add_audit(
        session,
        REP_STATE_ACTION,
        user=change.rep,
        target=change.state,
        detail=json.dumps(
            {
                "reason": change.reason,
                "previous": change.previous,
                "previous_reason": change.previous_reason,
                "previous_seconds": round(change.previous_seconds, 3),
            }
        ),
        at=change.since,
    )
    session.flush()


def rep_state_totals(session: Session, rep: str, *, since: datetime, until: datetime) -> dict[str, float]:
    """Seconds ``rep`` spent in each state between ``since`` and ``until`` (``paused:<reason>`` per reason).

    Built from the stored changes: each row closes the previous state; the time
    from the last change to ``until`` is counted in the state it started.
    """
    rows = session.execute(
        select(AuditEntry.at, AuditEntry.target, AuditEntry.detail)
        .where(
            AuditEntry.action == REP_STATE_ACTION,
            AuditEntry.user_login == rep,
            AuditEntry.at >= since,
            AuditEntry.at <= until,
        )
        .order_by(AuditEntry.at, AuditEntry.id)
    ).all()
    totals: dict[str, float] = {}

    def add(state: str, reason: str | None, seconds: float) -> None:
        key = f"{state}:{reason}" if state == "paused" and reason else state
        totals[key] = round(totals.get(key, 0.0) + max(seconds, 0.0), 3)

    last: tuple[datetime, str, str | None] | None = None
    for at, state, detail in rows:
        info = json.loads(detail or "{}")
        if last is None:
            # The state left by the first change started before ``since``: count only its part after.
            started = at - timedelta(seconds=float(info.get("previous_seconds", 0.0)))
            add(
                str(info.get("previous", "")),
                info.get("previous_reason"),
                (at - max(started, since)).total_seconds(),
            )
        else:
            add(last[1], last[2], (at - last[0]).total_seconds())
        last = (at, state or "", info.get("reason"))
    if last is not None:
        add(last[1], last[2], (until - last[0]).total_seconds())
    return totals


@dataclass(frozen=True, slots=True)
class ClosedCall:
    """A call row a previous run left open, as :func:`close_open_calls` ended it."""

    uuid: str
    ended_at: datetime
    disposition: str
    ring_seconds: float
    talk_seconds: float
    recording_seconds: float | None


def close_open_calls(
    session: Session,
    *,
    now: datetime,
    seat: str | None = None,
    run_started: datetime | None = None,
    audio_until: Mapping[str, datetime] | None = None,
) -> list[ClosedCall]:
    """End every call row that a run which died (kill -9, power cut) left in progress.

    Call it at start-up, before any device runs (then no call is really in
    progress), after the spool of the last run was written and the recordings
    it left were repaired (so their rows hold the real, decodable length).

    Each open row (``ended_at`` NULL; of ``seat`` only, when given) is ended
    with ``end_reason = 'agent_crash'`` and times from what is known: the call
    was alive at least until its row was last written by the run that died
    (``updated_at`` before ``run_started``: this run's recording recovery writes
    the row too) and, when it has a recording, for as long as the recording runs
    from the answer (or the start). ``audio_until`` (call UUID → when the dead run
    last wrote the call's recording, from :meth:`RecordingStore.recover`) replaces
    that guess where known: a recording holds pre-roll and may begin before the
    answer, so its length from the answer can overstate the talk time, while its
    last write is when the call was last seen alive. Never later than ``now``.
    Answered calls end ``answered`` with the talk time up to that end; the rest
    ``unknown`` (the line never said).
    The change goes through the same row, so team mode's outbox sends it on.
    """
    query = select(CallRecord).where(CallRecord.ended_at.is_(None))
    if seat is not None:
        query = query.where(CallRecord.seat == seat)
    closed: list[ClosedCall] = []
    for record in session.scalars(query.order_by(CallRecord.id).with_for_update()):
        seconds = session.scalar(
            select(func.max(Recording.seconds)).where(Recording.call_uuid == record.uuid)
        )
        anchor = record.answered_at or record.started_at
        ended_at = anchor
        if run_started is None or record.updated_at < run_started:
            ended_at = max(ended_at, record.updated_at)
        last_audio = (audio_until or {}).get(record.uuid)
        if last_audio is not None:
            ended_at = max(ended_at, last_audio)
        elif seconds is not None and seconds > 0:
            ended_at = max(ended_at, anchor + timedelta(seconds=seconds))
        ended_at = max(min(ended_at, now), record.answered_at or record.started_at)
        answered = record.answered_at is not None
        talk = (ended_at - record.answered_at).total_seconds() if record.answered_at is not None else 0.0
        ring = ((record.answered_at or ended_at) - record.started_at).total_seconds()
        record.ended_at = ended_at
        record.disposition = Disposition.ANSWERED.value if answered else Disposition.UNKNOWN.value
        record.end_reason = EndReason.AGENT_CRASH.value
        if record.ring_seconds is None or not answered:
            record.ring_seconds = round(max(0.0, ring), 3)
        record.talk_seconds = round(max(0.0, talk), 3)
        record.updated_at = now
        closed.append(
            ClosedCall(
                uuid=record.uuid,
                ended_at=ended_at,
                disposition=record.disposition,
                ring_seconds=record.ring_seconds,
                talk_seconds=record.talk_seconds,
                recording_seconds=seconds,
            )
        )
    session.flush()
    if closed:
        logger.warning("closed %d call(s) a previous run left in progress", len(closed))
    return closed
