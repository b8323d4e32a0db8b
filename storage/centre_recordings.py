"""The centre's ``recordings`` rows for what seats upload into its recording store (:mod:`storage.blobstore`).

A row uploaded through the seat API has the store key as ``path_or_uri`` (``YYYY/MM/DD/<uuid>.<ext>``,
:func:`storage.blobstore.recording_key`); rows from the older direct-database team mode keep a
relative path under the old recordings directory (``recordings/YYYY/MM/DD/<uuid>.<ext>``), which
:func:`is_store_key` tells apart. There is one row per call and key, so a replayed upload updates
the row it wrote before. Functions take a ``Session``; the caller owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Engine, and_, delete, or_, select
from sqlalchemy.orm import Session

from storage.blobstore import RecordingBlobStore, key_date, purge_before, validate_key
from storage.models import CallRecord, Recording

logger = logging.getLogger(__name__)

#: Rows deleted per statement by :func:`delete_rows` (bounded ``IN`` lists).
DELETE_BATCH = 500


@dataclass(frozen=True, slots=True)
class UploadedRecording:
    """What a seat said about a recording it uploaded, and what the store verified (sha256, bytes)."""

    call_uuid: str
    key: str
    codec: str
    sample_rate: int
    channels: int
    seconds: float
    bytes: int
    sha256: str
    status: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallOwner:
    """The facts of a call the recordings API needs: whose seat it is and when it started."""

    uuid: str
    seat: str
    started_at: datetime


def is_store_key(path_or_uri: str) -> bool:
    """Whether a row's ``path_or_uri`` is a key of the recording store (else a legacy file path)."""
    try:
        validate_key(path_or_uri)
    except ValueError:
        return False
    return key_date(path_or_uri) is not None


def call_owner(session: Session, call_uuid: str) -> CallOwner | None:
    """The call's seat and start, or None when the centre has no such call (yet)."""
    row = session.execute(
        select(CallRecord.uuid, CallRecord.seat, CallRecord.started_at).where(CallRecord.uuid == call_uuid)
    ).one_or_none()
    return None if row is None else CallOwner(row.uuid, row.seat, row.started_at)


def held_recording(session: Session, call_uuid: str) -> Recording | None:
    """The call's newest row that points into the recording store, or None."""
    rows = session.scalars(
        select(Recording).where(Recording.call_uuid == call_uuid).order_by(Recording.id.desc())
    )
    return next((row for row in rows if is_store_key(row.path_or_uri)), None)


def save_uploaded(session: Session, upload: UploadedRecording) -> tuple[Recording, bool]:
    """Insert or update the row of ``upload`` (one per call and key); returns it and whether it is new."""
    row = session.scalars(
        select(Recording).where(Recording.call_uuid == upload.call_uuid, Recording.path_or_uri == upload.key)
    ).first()
    created = row is None
    if row is None:
        row = Recording(call_uuid=upload.call_uuid, path_or_uri=upload.key, status=upload.status)
        session.add(row)
    row.codec = upload.codec
    row.sample_rate = upload.sample_rate
    row.channels = upload.channels
    row.seconds = upload.seconds
    row.bytes = upload.bytes
    row.sha256 = upload.sha256
    row.status = upload.status
    row.flags = ",".join(upload.flags) or None
    session.flush()
    return row, created


def rows_for_keys(session: Session, keys: Iterable[str]) -> list[Recording]:
    """The rows whose ``path_or_uri`` is one of ``keys``."""
    wanted = list(dict.fromkeys(keys))
    out: list[Recording] = []
    for start in range(0, len(wanted), DELETE_BATCH):
        part = wanted[start : start + DELETE_BATCH]
        out.extend(session.scalars(select(Recording).where(Recording.path_or_uri.in_(part))))
    return out


def store_rows_before(
    session: Session, cutoff: datetime | None, team_cutoffs: Mapping[str, datetime] | None = None
) -> list[tuple[int, str, int]]:
    """``(id, key, bytes)`` of every store row past its retention, oldest call first.

    A call of a team in ``team_cutoffs`` is past it when it started before its team's cutoff;
    any other call (no team, or one not listed) before ``cutoff``, or never when that is None.
    """
    teams = dict(team_cutoffs or {})
    conditions: list[ColumnElement[bool]] = [
        and_(CallRecord.team == team, CallRecord.started_at < team_cutoff)
        for team, team_cutoff in teams.items()
    ]
    if cutoff is not None:
        others: ColumnElement[bool] = CallRecord.started_at < cutoff
        if teams:
            others = and_(or_(CallRecord.team.is_(None), CallRecord.team.not_in(list(teams))), others)
        conditions.append(others)
    if not conditions:
        return []
    rows = session.execute(
        select(Recording.id, Recording.path_or_uri, Recording.bytes)
        .join(CallRecord, CallRecord.uuid == Recording.call_uuid)
        .where(or_(*conditions))
        .order_by(CallRecord.started_at, Recording.id)
    )
    return [(row.id, row.path_or_uri, row.bytes or 0) for row in rows if is_store_key(row.path_or_uri)]


def delete_rows(session: Session, ids: Sequence[int]) -> int:
    """Delete these ``recordings`` rows; returns how many there were."""
    removed = 0
    for start in range(0, len(ids), DELETE_BATCH):
        result = session.execute(delete(Recording).where(Recording.id.in_(ids[start : start + DELETE_BATCH])))
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


@dataclass(frozen=True, slots=True)
class PurgeSummary:
    """What :func:`purge_recordings` deleted (or, in a dry run, would delete)."""

    rows: int
    objects: int
    bytes: int
    unfinished: int = 0


def purge_recordings(
    engine: Engine,
    store: RecordingBlobStore,
    cutoff: datetime | None,
    *,
    team_cutoffs: Mapping[str, datetime] | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PurgeSummary:
    """Delete the store's recordings past their retention, object first, then row.

    A recording is past it when its call started before its team's cutoff (``team_cutoffs``), or
    before ``cutoff`` for a team not listed (None: those are kept; see :func:`store_rows_before`).

    Rows and objects go in batches of :data:`DELETE_BATCH`, each batch its own transaction, so an
    interrupted purge keeps its progress and the next run finishes it (deleting a missing object
    is no error). Then objects that no row named (an upload whose row was never written), whose
    team is therefore unknown, go too when filed under a day before the earliest of all cutoffs
    (UTC; never when ``cutoff`` is None), with any row naming them, and uploads a crash left
    unfinished. Legacy rows (files under the old recordings directory) are left to
    ``cti-agent purge``. The caller writes the audit row. ``progress`` is told
    ``(recordings deleted, recordings to delete)`` after each batch.

    :raises BlobStoreError: the store failed; what was deleted before stays deleted.
    """
    with Session(engine) as session:
        rows = store_rows_before(session, cutoff, team_cutoffs)
    # An orphan's team is unknown: it goes only once every team's retention has passed.
    orphan_cutoff = min([cutoff, *(team_cutoffs or {}).values()]) if cutoff is not None else None
    cutoff_day = orphan_cutoff.astimezone(UTC).date() if orphan_cutoff is not None else None
    if dry_run:
        named = {key for _, key, _ in rows}
        orphans = (
            [
                key
                for key in store.iter_keys()
                if (day := key_date(key)) is not None and day < cutoff_day and key not in named
            ]
            if cutoff_day is not None
            else []
        )
        return PurgeSummary(rows=len(rows), objects=len(rows) + len(orphans), bytes=sum(b for *_, b in rows))
    removed = freed = objects = 0
    for start in range(0, len(rows), DELETE_BATCH):
        part = rows[start : start + DELETE_BATCH]
        for _, key, size in part:
            store.delete(key)
            objects += 1
            freed += size
        with Session(engine) as session, session.begin():
            removed += delete_rows(session, [row_id for row_id, _, _ in part])
        if progress is not None:
            progress(objects, len(rows))
    leftovers = purge_before(store, cutoff_day) if cutoff_day is not None else []
    if leftovers:
        logger.info(
            "recording store: deleted %d object(s) filed before %s that no row named",
            len(leftovers),
            cutoff_day,
        )
        with Session(engine) as session, session.begin():
            removed += delete_rows(session, [row.id for row in rows_for_keys(session, leftovers)])
    unfinished = store.abort_incomplete()
    return PurgeSummary(rows=removed, objects=objects + len(leftovers), bytes=freed, unfinished=unfinished)


__all__ = [
    "CallOwner",
    "PurgeSummary",
    "UploadedRecording",
    "call_owner",
    "delete_rows",
    "held_recording",
    "is_store_key",
    "purge_recordings",
    "rows_for_keys",
    "save_uploaded",
    "store_rows_before",
]
