"""Queries and writes on the schema in :mod:`storage.models`.

Every function takes a :class:`~sqlalchemy.orm.Session`; the caller owns the
transaction (``with Session(engine).begin() as session: ...``). Call writes are
keyed by the call's UUID and safe to repeat: replays and retries never
duplicate a row or undo a later state.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agent.events import Call, Customer
from agent.numbers import DEFAULT_REGION, clean, to_e164
from storage.models import CallRecord, CustomerPhone, CustomerRecord, utcnow

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
    if dialect == "sqlite":
        _upsert_on_conflict(session, values, sqlite.insert)
    elif dialect == "postgresql":
        _upsert_on_conflict(session, values, postgresql.insert)
    else:
        _upsert_select_then_write(session, values)


def _known_customer(customer_id: int | None) -> ScalarSelect[int] | None:
    if customer_id is None:
        return None
    # A scalar subquery: NULL when no such customer, so the foreign key never fails.
    return select(CustomerRecord.id).where(CustomerRecord.id == customer_id).scalar_subquery()


def _upsert_on_conflict(
    session: Session, values: dict[str, Any], insert: Callable[[type[CallRecord]], Any]
) -> None:
    now = utcnow()
    row = dict(values, customer_id=_known_customer(values["customer_id"]), created_at=now, updated_at=now)
    stmt = insert(CallRecord).values(row)
    excluded = stmt.excluded
    changes = {column: excluded[column] for column in SNAPSHOT_COLUMNS if column != "uuid"}
    changes["updated_at"] = excluded.updated_at
    stmt = stmt.on_conflict_do_update(
        index_elements=[CallRecord.uuid],
        set_=changes,
        where=_may_replace(excluded.answered_at, excluded.ended_at),
    )
    session.execute(stmt)


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
