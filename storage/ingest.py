"""The centre's side of a seat's sync: a batch of calls written one entry at a time, none blocking another.

Each entry is written in its own savepoint with the same repository functions a seat uses
locally (:func:`storage.repository.upsert_call`, :func:`~storage.repository.save_note`), so the
centre's rows follow the same rules: idempotent by UUID, a call only moves forward, a replayed
batch changes nothing. An entry the database refuses (a value it cannot store, a constraint) is
rolled back alone and answered ``rejected`` with the reason; the rest of the batch is stored.
What a retry can fix (the connection, a lock) fails the whole batch instead, so the seat tries
again later.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError, StatementError
from sqlalchemy.orm import Session

from agent.events import Call
from storage.models import CallRecord
from storage.repository import SNAPSHOT_COLUMNS, save_note, upsert_call

logger = logging.getLogger(__name__)

#: Errors that say "this row can never be stored as it is", not "try again later".
PERMANENT_ERRORS: tuple[type[Exception], ...] = (DataError, IntegrityError, ProgrammingError, ValueError)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One call a seat sent, with the rep's note and follow-up as the seat has them now."""

    call: Call
    notes: str | None
    follow_up_at: datetime | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one entry."""

    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


def _same(row: CallRecord | None, item: Incoming) -> bool:
    if row is None:
        return False
    for column in SNAPSHOT_COLUMNS:
        if column == "customer_id":
            continue  # a seat's local id; the centre keeps its own
        ours = getattr(row, column)
        theirs = getattr(item.call, column)
        theirs = theirs.value if isinstance(theirs, enum.Enum) else theirs
        if ours != theirs:
            return False
    return row.notes == item.notes and row.follow_up_at == item.follow_up_at


def _is_behind(row: CallRecord | None, call: Call) -> bool:
    """Whether the stored row is further on than this snapshot (so the snapshot changes nothing)."""
    if row is None:
        return False
    if row.ended_at is not None and call.ended_at is None:
        return True
    return row.answered_at is not None and call.answered_at is None and call.ended_at is None


def ingest_calls(session: Session, items: Sequence[Incoming]) -> list[Outcome]:
    """Write a seat's batch; one outcome per item, in order. The caller commits.

    :raises sqlalchemy.exc.OperationalError: (and other transient errors) the batch could not be
        written at all; nothing of it is kept once the caller rolls back.
    """
    outcomes: list[Outcome] = []
    for item in items:
        try:
            with session.begin_nested():
                row = session.scalar(select(CallRecord).where(CallRecord.uuid == item.call.uuid))
                unchanged = _same(row, item) or (_is_behind(row, item.call) and _notes_same(row, item))
                if row is not None and unchanged:
                    outcomes.append(Outcome("duplicate"))
                    continue
                upsert_call(session, _without_local_customer(item.call))
                if item.notes is not None or item.follow_up_at is not None or row is not None:
                    save_note(session, item.call.uuid, item.notes, item.follow_up_at)
            outcomes.append(Outcome("accepted"))
        except PERMANENT_ERRORS as exc:
            reason = _reason(exc)
            logger.warning("call %s from seat %s rejected: %s", item.call.uuid, item.call.seat, reason)
            outcomes.append(Outcome("rejected", reason))
        except StatementError as exc:
            if isinstance(exc.orig, PERMANENT_ERRORS):
                outcomes.append(Outcome("rejected", _reason(exc)))
            else:
                raise
    return outcomes


def _notes_same(row: CallRecord | None, item: Incoming) -> bool:
    return row is not None and row.notes == item.notes and row.follow_up_at == item.follow_up_at


def _without_local_customer(call: Call) -> Call:
    if call.customer_id is None:
        return call
    return replace(call, customer_id=None)


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:500]
