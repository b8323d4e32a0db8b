"""Team mode: a seat's outbox, replayed to the centre (its database and recording store).

A seat always writes locally first (SQLite). With ``[central] url`` set, every
change to ``calls`` (the tracker's snapshots, the rep's notes and follow-ups)
and to ``recordings`` is queued in the local ``outbox`` table and replayed
upstream by :class:`CentralSync`, which the agent's sync loop
(:mod:`agent.seat.sync`) runs in a worker thread.

Why a transactional outbox and not a watermark on ``calls.updated_at``:

- ``updated_at`` comes from the writer's clock and is taken before the write
  lock: a writer that read the clock first can commit after a later one, so a
  reader that moved its watermark past the later row never sees the earlier
  one; a clock stepped back by NTP hides rows the same way. ``recordings``
  has no ``updated_at`` at all.
- The outbox rows are written by SQLite triggers (migration ``0003_outbox``)
  inside the very transaction that changes the call or recording, whatever
  code path made the change (storage observer, recorder, seat-page notes,
  spool replay, a future one). A change is either committed with its outbox
  row or not at all; SQLite has one writer at a time, so outbox ids are in
  commit order.
- The triggers fire only while ``sync_state`` holds ``enabled``; a
  single-machine seat never fills an outbox. :func:`enable` sets it and, in
  the same transaction, queues every call and recording already stored, so a
  seat joining team mode uploads its history.

Replay. Entries are read oldest first, a batch at a time. An entry names a
row, not a change: the row's *current* state is sent, once per batch however
many entries name it. The centre stores it idempotently by call UUID (a
recording by its call and SHA-256) and never moves a call backwards, so a
batch sent twice (the centre stored it, then the seat died before deleting its
entries) changes nothing: nothing is lost and nothing doubled. Entries are
deleted only after the centre answered; an entry added while a batch was in
flight stays and is sent again.

``customer_id`` is a local row id: seat A's customer 7 is not seat B's nor the
centre's, and upstream it would link the call to whichever central customer
has id 7. It is sent as NULL; the centre finds a call's customer by
``number_e164``, which is what the number search uses.

The parts. This module keeps the queue (the ``outbox`` table, its state, the
purge guard) and runs a batch as a short pipeline: read the oldest entries,
group them by row, make sure the centre takes this seat, send the calls, send
the recordings, note the outcome. How rows and files travel is a
:class:`~storage.central.Transport`: the centre's seat API over HTTP
(:mod:`agent.seat.transport`); a row becomes a :class:`Call` or
:class:`RecordingFacts` by the models' own ``to_call`` / ``to_facts``.

A recording is sent with the SHA-256 of the local file (checked first, see
:mod:`storage.transfer`), and the centre hashes what it receives while it
streams into its store and keeps nothing that does not match. Only after the
centre confirmed that SHA-256 is a ``recording_uploads`` row stored locally:
:func:`purge_allowed` lets ``cti-agent purge`` delete the local file only
then, and asks the centre again first (a missing or different copy is
re-queued and the local file kept).

Failures: park, don't block (see :mod:`storage.faults`). Anything a retry can
fix (the centre, its database or its store unreachable, a 5xx, a body damaged
on the way, a credential the centre refuses) raises :class:`SyncError` and
leaves the entries in place: the loop backs off and tries again, while the
seat goes on writing locally; the error carries the backlog, so the metrics
stay true during an outage. What no retry can fix (the local file is gone or
does not match its own checksum) parks that entry (``parked``) at once with
the reason. A row the centre refuses for what it is (a NUL byte in a name, a
constraint) is refused alone (the centre answers per row, so it takes no
other row down with it), tried again in the next batches and parked after
``PARK_AFTER`` refusals (``rejections``). The rest of the outbox goes on
either way; :func:`retry_parked` queues parked entries again after a fix.
Everything here is blocking: call it from a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, String, cast, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.errors import ConfigError, StorageError
from agent.events import Call, RecordingFacts
from storage.central import CallRow, Transport, with_sha
from storage.db import safe_url, storage_errors
from storage.faults import PARK_AFTER, Rejected, SyncError
from storage.models import (
    CallRecord,
    DispositionRecord,
    OutboxEntry,
    Recording,
    RecordingUpload,
    SyncState,
    utcnow,
)
from storage.recordings import PART_SUFFIX, RecordingStore
from storage.transfer import SourceUnusable, checked_source
from storage.worklist import DispositionIn

logger = logging.getLogger(__name__)

CALL = "call"
RECORDING = "recording"
#: A rep's disposition of a call to a lead (``ref`` = its uuid; see :mod:`storage.worklist`).
DISPOSITION = "disposition"
#: ``sync_state`` names.
ENABLED = "enabled"
LAST_SUCCESS = "last_success_at"
LAST_ATTEMPT = "last_attempt_at"
LAST_ERROR = "last_error"
LAST_ERROR_AT = "last_error_at"


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """The outbox as ``cti-agent sync --status`` shows it.

    ``pending_calls`` / ``pending_recordings`` count rows waiting to be sent (a
    row changed five times is one), not outbox entries; parked entries apart.
    """

    enabled: bool
    pending_calls: int
    pending_recordings: int
    parked: int
    oldest_pending_at: datetime | None
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    pending_dispositions: int = 0

    @property
    def pending(self) -> int:
        """Rows waiting to be sent (parked ones not counted)."""
        return self.pending_calls + self.pending_recordings + self.pending_dispositions


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one :meth:`CentralSync.run_batch` did.

    ``entries``: outbox entries consumed; ``calls`` / ``recordings``: rows sent;
    ``parked``: entries parked now; ``remaining``: rows still waiting after it;
    ``full``: the batch was full, so more are probably waiting;
    ``parked_total``: entries parked in all after it (None: not counted).
    """

    entries: int
    calls: int
    recordings: int
    parked: int
    remaining: int
    full: bool
    parked_total: int | None = None


# -- the local side: enabling, status, the purge guard ----------------------------------------


def _state(session: Session, name: str) -> str | None:
    row = session.get(SyncState, name)
    return row.value if row is not None else None


def _set_state(session: Session, name: str, value: str | None, now: datetime) -> None:
    row = session.get(SyncState, name)
    if row is None:
        session.add(SyncState(name=name, value=value, updated_at=now))
    else:
        row.value = value
        row.updated_at = now
    session.flush()


def is_enabled(session: Session) -> bool:
    """Whether the outbox triggers are on (the seat has joined team mode)."""
    return _state(session, ENABLED) is not None


def enable(session: Session, now: datetime | None = None) -> int:
    """Turn the outbox on and queue every stored call and recording; returns how many were queued.

    A no-op (returning 0) when already on. Calls are queued before
    recordings, each in the order they were first stored.
    """
    if is_enabled(session):
        return 0
    now = now or utcnow()
    before = session.scalar(select(func.count(OutboxEntry.id))) or 0
    session.execute(
        insert(OutboxEntry).from_select(
            ["kind", "ref"], select(literal(CALL), CallRecord.uuid).order_by(CallRecord.id)
        )
    )
    session.execute(
        insert(OutboxEntry).from_select(
            ["kind", "ref"], select(literal(RECORDING), cast(Recording.id, String)).order_by(Recording.id)
        )
    )
    _set_state(session, ENABLED, now.isoformat(), now)
    queued = (session.scalar(select(func.count(OutboxEntry.id))) or 0) - before
    logger.info("team mode on: %d stored call(s) and recording(s) queued for the centre", queued)
    return queued


def disable(session: Session) -> None:
    """Turn the outbox off and forget what it held (the seat leaves team mode)."""
    session.execute(delete(SyncState).where(SyncState.name == ENABLED))
    session.execute(delete(OutboxEntry))


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def status(session: Session) -> SyncStatus:
    """The backlog and the last outcomes of the sync."""
    counts = dict(
        session.execute(
            select(OutboxEntry.kind, func.count(func.distinct(OutboxEntry.ref)))
            .where(OutboxEntry.parked.is_(False))
            .group_by(OutboxEntry.kind)
        ).all()
    )
    parked = session.scalar(select(func.count(OutboxEntry.id)).where(OutboxEntry.parked.is_(True))) or 0
    oldest = session.scalar(select(func.min(OutboxEntry.created_at)).where(OutboxEntry.parked.is_(False)))
    return SyncStatus(
        enabled=is_enabled(session),
        pending_calls=int(counts.get(CALL, 0)),
        pending_recordings=int(counts.get(RECORDING, 0)),
        parked=int(parked),
        oldest_pending_at=oldest,
        last_success_at=_parse_time(_state(session, LAST_SUCCESS)),
        last_attempt_at=_parse_time(_state(session, LAST_ATTEMPT)),
        last_error=_state(session, LAST_ERROR),
        last_error_at=_parse_time(_state(session, LAST_ERROR_AT)),
        pending_dispositions=int(counts.get(DISPOSITION, 0)),
    )


def parked_entries(session: Session, limit: int = 20) -> list[OutboxEntry]:
    """The parked entries, oldest first (for ``sync --status``)."""
    query = select(OutboxEntry).where(OutboxEntry.parked.is_(True)).order_by(OutboxEntry.id).limit(limit)
    return list(session.scalars(query))


def retry_parked(session: Session) -> int:
    """Queue every parked entry again (after a fix); returns how many were parked.

    Their refusal counts start again, so a row still refused is parked again
    after ``PARK_AFTER`` tries, holding nothing up meanwhile.
    """
    result = session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.parked.is_(True))
        .values(parked=False, parked_at=None, rejections=0)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        logger.info("%d parked outbox entr(ies) queued again", count)
    return count


def is_verified_upstream(session: Session, row: Recording) -> bool:
    """Whether this recording's file, as it is now, was uploaded and its SHA-256 confirmed by the centre."""
    upload = session.get(RecordingUpload, row.id)
    if upload is None or upload.path != row.path_or_uri:
        return False
    return row.sha256 is None or upload.sha256 == row.sha256


def purge_allowed(session: Session, row: Recording, transport: Transport | None) -> bool:
    """Whether ``cti-agent purge`` may delete this local recording in team mode.

    Only a recording verified upstream (:func:`is_verified_upstream`) that the
    centre, asked again now (:meth:`Transport.has_copy`), still holds with the
    verified SHA-256. A centre's copy that is missing or different is re-queued
    for upload (the sync sends it again) and the local file is kept; so is
    every file when the centre cannot be asked.
    """
    if not is_verified_upstream(session, row):
        return False
    if transport is None:
        return False
    upload = session.get(RecordingUpload, row.id)
    assert upload is not None  # checked by is_verified_upstream
    try:
        whole = transport.has_copy(row.call_uuid, upload.path, upload.sha256)
    except SyncError as exc:
        logger.warning("recording %d: the centre's copy cannot be checked (%s); kept", row.id, exc)
        return False
    if not whole:
        logger.warning("recording %d: the centre's copy is missing or different; queued again", row.id)
        session.delete(upload)
        session.add(OutboxEntry(kind=RECORDING, ref=str(row.id)))
        session.flush()
    return whole


def call_of(record: CallRecord) -> Call:
    """The row as a :class:`Call` snapshot to send upstream, without the local ``customer_id``.

    ``customer_id`` is a local row id, meaningless upstream (see the module docstring).

    :raises ValueError: a stored enum value this version does not know.
    """
    return record.to_call(with_customer=False)


# -- the replay --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """The entries one batch consumes, grouped by the row they name (oldest first)."""

    rows: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: list[tuple[int, str, str]]) -> _Batch:
        batch = cls()
        for entry_id, kind, ref in entries:
            batch.rows.setdefault((kind, ref), []).append(entry_id)
        return batch

    def refs(self, kind: str) -> list[str]:
        return [ref for k, ref in self.rows if k == kind]

    def ids(self, kind: str | None = None) -> list[int]:
        return [i for (k, _), ids in self.rows.items() if kind is None or k == kind for i in ids]

    def other(self) -> dict[tuple[str, str], list[int]]:
        return {key: ids for key, ids in self.rows.items() if key[0] not in (CALL, RECORDING, DISPOSITION)}


class CentralSync:
    """Replays a seat's outbox to the centre, a batch at a time.

    :param local: the seat's SQLite engine (migrated).
    :param transport: what carries the rows upstream (the seat API over HTTP,
        :class:`agent.seat.transport.HttpTransport`); closed by :meth:`close`.
    :param data_dir: the seat's data directory (local recordings are relative to it).
    :param batch_size: outbox entries read per batch.
    :param clock: the time written into the local books (a test injects its own).
    """

    def __init__(
        self,
        local: Engine,
        *,
        transport: Transport,
        data_dir: Path,
        batch_size: int = 200,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if local.dialect.name != "sqlite":
            raise ConfigError(
                f"team mode needs a local SQLite database (its triggers fill the outbox), "
                f"not {safe_url(local.url)}"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.local = local
        self.transport: Transport = transport
        self.local_store = RecordingStore(data_dir, local)
        self.batch_size = batch_size
        self.clock = clock
        self._local_sessions = sessionmaker(local)
        self._idle = False

    def close(self) -> None:
        """Release the transport's connections (the local engine belongs to the caller)."""
        self.transport.close()

    def ensure_schema(self) -> None:
        """Make sure the centre takes rows from this seat (its credential is checked once).

        :raises SyncError: the centre cannot be reached, or refuses the credential.
        """
        self.transport.ensure_ready()

    # -- local bookkeeping ---------------------------------------------------------------

    def enable(self) -> int:
        """Turn the local outbox on (see :func:`enable`); returns how many stored rows were queued."""
        session: Session
        with storage_errors(self.local, "enabling the outbox"), self._local_sessions.begin() as session:
            return enable(session, self.clock())

    def status(self) -> SyncStatus:
        """The local backlog (see :func:`status`)."""
        with storage_errors(self.local, "reading the outbox"), Session(self.local) as session:
            return status(session)

    def _note(self, **states: str | None) -> None:
        now = self.clock()
        session: Session
        with (
            storage_errors(self.local, "recording the sync's state"),
            self._local_sessions.begin() as session,
        ):
            for name, value in states.items():
                _set_state(session, name, value, now)

    def _done(self, ids: list[int], upload: RecordingUpload | None = None) -> None:
        session: Session
        with (
            storage_errors(self.local, "clearing sent outbox entries"),
            self._local_sessions.begin() as session,
        ):
            if upload is not None:
                session.merge(upload)
            session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(ids)))

    def _park(self, ids: list[int], reason: str) -> None:
        session: Session
        with storage_errors(self.local, "parking outbox entries"), self._local_sessions.begin() as session:
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(ids))
                .values(
                    parked=True,
                    parked_at=self.clock(),
                    last_error=reason[:2000],
                    attempts=OutboxEntry.attempts + 1,
                )
            )

    def _reject(self, ids: list[int], reason: str) -> int:
        """Count one more refusal of these entries' row; park them at ``PARK_AFTER``; returns how many."""
        session: Session
        with storage_errors(self.local, "counting a refusal"), self._local_sessions.begin() as session:
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(ids))
                .values(
                    rejections=OutboxEntry.rejections + 1,
                    attempts=OutboxEntry.attempts + 1,
                    last_error=reason[:2000],
                )
            )
            worn = list(
                session.scalars(
                    select(OutboxEntry.id).where(
                        OutboxEntry.id.in_(ids), OutboxEntry.rejections >= PARK_AFTER
                    )
                )
            )
            if worn:
                session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id.in_(worn))
                    .values(parked=True, parked_at=self.clock())
                )
        return len(worn)

    def _failed(self, ids: list[int], error: str) -> None:
        # Best effort: the local database may be what failed.
        now = self.clock()
        try:
            session: Session
            with self._local_sessions.begin() as session:
                session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id.in_(ids))
                    .values(attempts=OutboxEntry.attempts + 1, last_error=error[:2000])
                )
                _set_state(session, LAST_ERROR, error[:2000], now)
                _set_state(session, LAST_ERROR_AT, now.isoformat(), now)
        except Exception:
            logger.exception("could not record the sync error locally")

    @contextmanager
    def _attempt(self, ids: list[int]) -> Iterator[None]:
        """A step that may fail for a reason a retry can fix: noted on the first entry, then raised."""
        try:
            yield
        except SyncError as exc:
            self._failed(ids[:1], str(exc))
            try:
                state = self.status()
            except StorageError:
                logger.warning("the local backlog cannot be read either")
            else:
                exc.pending, exc.parked = state.pending, state.parked
            raise

    # -- the pipeline --------------------------------------------------------------------

    def run_batch(self) -> BatchResult:
        """Send the oldest pending entries (up to ``batch_size``); see the module docstring.

        :raises SyncError: the centre or its recording store failed; the
            entries not yet sent stay queued.
        """
        batch = self._read_batch()
        if not batch.rows:
            return self._drained()
        self._idle = False
        self._note(**{LAST_ATTEMPT: self.clock().isoformat()})
        with self._attempt(batch.ids()[:1]):
            self.transport.ensure_ready()
        parked = self._park_unknown(batch)
        calls, rejected = self._send_calls(batch)
        rejected += self._send_dispositions(batch)
        recordings, refused = self._send_recordings(batch)
        self._note(**{LAST_SUCCESS: self.clock().isoformat(), LAST_ERROR: None})
        state = self.status()
        remaining = state.pending
        logger.debug(
            "sync: %d entries, %d call(s), %d recording(s) sent, %d left",
            len(batch.ids()),
            calls,
            recordings,
            remaining,
        )
        return BatchResult(
            entries=len(batch.ids()),
            calls=calls,
            recordings=recordings,
            parked=parked + rejected + refused,
            remaining=remaining,
            full=len(batch.ids()) >= self.batch_size,
            parked_total=state.parked,
        )

    def _read_batch(self) -> _Batch:
        with storage_errors(self.local, "reading the outbox"), Session(self.local) as session:
            entries = session.execute(
                select(OutboxEntry.id, OutboxEntry.kind, OutboxEntry.ref)
                .where(OutboxEntry.parked.is_(False))
                .order_by(OutboxEntry.id)
                .limit(self.batch_size)
            ).all()
        return _Batch.of([(entry_id, kind, ref) for entry_id, kind, ref in entries])

    def _drained(self) -> BatchResult:
        if not self._idle:
            # Written once when the outbox drains, not on every idle poll.
            self._note(**{LAST_SUCCESS: self.clock().isoformat(), LAST_ERROR: None})
            self._idle = True
        return BatchResult(0, 0, 0, 0, 0, False, parked_total=self.status().parked)

    def _park_unknown(self, batch: _Batch) -> int:
        parked = 0
        for (kind, _), ids in batch.other().items():
            self._park(ids, f"unknown outbox kind {kind!r}")
            parked += len(ids)
        return parked

    def _send_calls(self, batch: _Batch) -> tuple[int, int]:
        """Send the batch's calls, answered per call; returns (calls sent, entries parked).

        A call the centre refuses is counted against that call alone (parked after
        ``PARK_AFTER`` refusals); the others are done.
        """
        uuids = batch.refs(CALL)
        if not uuids:
            return 0, 0
        rows: list[CallRow] = []
        bad: dict[str, str] = {}
        with storage_errors(self.local, "reading calls to send"), Session(self.local) as session:
            for record in session.scalars(select(CallRecord).where(CallRecord.uuid.in_(uuids))):
                try:
                    rows.append(CallRow(call_of(record), record.notes, record.follow_up_at))
                except ValueError as exc:
                    bad[record.uuid] = str(exc)
            backlog = max(0, status(session).pending - len(batch.ids()))
        parked = 0
        for uuid, reason in bad.items():
            logger.error("call %s cannot be sent: %s (parked)", uuid, reason)
            self._park(batch.rows[(CALL, uuid)], reason)
            parked += len(batch.rows[(CALL, uuid)])
        with self._attempt(batch.ids(CALL)):
            outcomes = self.transport.send_calls(rows, backlog)
        if len(outcomes) != len(rows):
            raise SyncError(f"the centre answered {len(outcomes)} of {len(rows)} calls", "centre")
        sent_rows = {row.call.uuid for row in rows}
        # Entries of calls no longer stored locally have nothing to send: they are simply done.
        done = [
            i for ref in uuids if ref not in bad and ref not in sent_rows for i in batch.rows[(CALL, ref)]
        ]
        sent = 0
        for row, outcome in zip(rows, outcomes, strict=True):
            ids = batch.rows[(CALL, row.call.uuid)]
            if outcome.status == "rejected":
                parked += self._refused(ids, row.call.uuid, Rejected(outcome.reason or "refused"))
            else:
                done.extend(ids)
                sent += 1
        if done:
            self._done(done)
        return sent, parked

    def _send_dispositions(self, batch: _Batch) -> int:
        """Send the batch's dispositions, answered per entry; returns the entries parked.

        The centre's answer is noted in the local row (``received_at``, and ``conflict`` when the
        lead had moved on), so the seat page can say so; a refused one is counted like a call.
        """
        uuids = batch.refs(DISPOSITION)
        if not uuids:
            return 0
        with storage_errors(self.local, "reading dispositions to send"), Session(self.local) as session:
            rows = [
                DispositionIn(
                    uuid=r.uuid,
                    code=r.code,
                    at=r.at,
                    lead_id=r.lead_id,
                    customer_id=r.customer_id,
                    note=r.note,
                    follow_up_at=r.follow_up_at,
                    call_uuid=r.call_uuid,
                )
                for r in session.scalars(select(DispositionRecord).where(DispositionRecord.uuid.in_(uuids)))
            ]
        with self._attempt(batch.ids(DISPOSITION)):
            outcomes = self.transport.send_dispositions(rows)
        if len(outcomes) != len(rows):
            raise SyncError(f"the centre answered {len(outcomes)} of {len(rows)} dispositions", "centre")
        sent = {row.uuid for row in rows}
        done = [i for ref in uuids if ref not in sent for i in batch.rows[(DISPOSITION, ref)]]
        parked = 0
        answered: dict[str, str | None] = {}
        for row, outcome in zip(rows, outcomes, strict=True):
            ids = batch.rows[(DISPOSITION, row.uuid)]
            if outcome.status == "rejected":
                parked += self._refused(ids, row.uuid, Rejected(outcome.reason or "refused"))
            else:
                done.extend(ids)
                answered[row.uuid] = outcome.reason if outcome.status == "conflict" else None
        now = self.clock()
        with (
            storage_errors(self.local, "noting the centre's answer"),
            Session(self.local) as session,
            session.begin(),
        ):
            for uuid, conflict in answered.items():
                session.execute(
                    update(DispositionRecord)
                    .where(DispositionRecord.uuid == uuid)
                    .values(received_at=now, conflict=conflict)
                )
        if done:
            self._done(done)
        return parked

    def _refused(self, ids: list[int], ref: str, exc: Rejected) -> int:
        """Park at once (``final``) or count one more refusal; returns how many entries were parked."""
        if exc.final:
            self._park(ids, str(exc))
            parked = len(ids)
        else:
            parked = self._reject(ids, str(exc))
        if parked:
            logger.error("the centre refuses %s: %s (parked)", ref, exc)
        else:
            logger.warning("the centre refused %s: %s (tried again later)", ref, exc)
        return parked

    def _send_recordings(self, batch: _Batch) -> tuple[int, int]:
        """Send the batch's recordings one by one; returns (recordings sent, entries parked)."""
        sent = parked = 0
        for ref in batch.refs(RECORDING):
            ids = batch.rows[(RECORDING, ref)]
            try:
                sent += self._send_recording(ref, ids)
            except SourceUnusable as exc:
                logger.error("recording %s cannot be uploaded: %s (parked)", ref, exc)
                self._park(ids, str(exc))
                parked += len(ids)
            except Rejected as exc:
                parked += self._refused(ids, f"recording {ref}", exc)
        return sent, parked

    def _send_recording(self, ref: str, ids: list[int]) -> int:
        found = self._read_recording(ref)
        if found is None or found[0].path.endswith(PART_SUFFIX):
            # Deleted locally before it was sent (only possible outside team mode's purge guard),
            # or not finished yet (its final update queues it again).
            self._done(ids)
            return 0
        facts, call = found
        source = self.local_store.resolve(facts.path)
        digest, size = checked_source(source, facts.sha256)
        with self._attempt(ids):
            copied = self.transport.send_recording(with_sha(facts, digest), call, source)
        upload = RecordingUpload(
            recording_id=int(ref), path=facts.path, sha256=digest, bytes=size, verified_at=self.clock()
        )
        self._done(ids, upload)
        logger.info(
            "recording %s %s the centre's store, SHA-256 verified",
            ref,
            "uploaded to" if copied else "already in",
        )
        return 1

    def _read_recording(self, ref: str) -> tuple[RecordingFacts, Call | None] | None:
        with storage_errors(self.local, f"reading recording {ref}"), Session(self.local) as session:
            row = session.get(Recording, int(ref)) if ref.isdigit() else None
            if row is None:
                return None
            record = session.scalars(select(CallRecord).where(CallRecord.uuid == row.call_uuid)).one_or_none()
            return row.to_facts(), call_of(record) if record is not None else None


__all__ = [
    "CALL",
    "RECORDING",
    "BatchResult",
    "CentralSync",
    "SyncError",
    "SyncStatus",
    "call_of",
    "disable",
    "enable",
    "is_enabled",
    "is_verified_upstream",
    "parked_entries",
    "purge_allowed",
    "retry_parked",
    "status",
]
