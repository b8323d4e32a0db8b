"""Team mode: a seat's outbox, replayed into the central PostgreSQL and recording store.

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
many entries name it, with the same repository functions a seat uses locally
(:func:`storage.repository.upsert_call`, :func:`~storage.repository.save_note`,
:meth:`storage.recordings.RecordingStore.save`). Those are idempotent by call
UUID (recordings by their path) and never move a call backwards, so a batch
sent twice (the central commit succeeded, then the seat died before deleting
its entries) changes nothing: nothing is lost and nothing doubled. Entries are
deleted only after the central transaction committed; an entry added while a
batch was in flight stays and is sent again.

``customer_id`` is a local row id: seat A's customer 7 is not seat B's nor the
centre's, and upstream it would link the call to whichever central customer
has id 7 (or break the foreign key). It is sent as NULL; the centre finds a
call's customer by ``number_e164``, which is what the number search uses.

Recordings are copied to ``[central] recordings_dir`` at the same relative path
(``recordings/YYYY/MM/DD/<uuid>.<ext>``) via a temporary file and a rename, then
read back and checked against the SHA-256 of the local file; a mismatch is
copied again. Only after that is the central row written and a
``recording_uploads`` row stored locally: :func:`purge_allowed` lets
``cti-agent purge`` delete the local file only then, and re-hashes the central
copy first (a corrupt one is re-queued and the local file kept).

Failures. Anything a retry can fix (the central server or the mount is
unreachable) raises :class:`SyncError` and leaves the entries in place: the
loop backs off and tries again, while the seat goes on writing locally. What a
retry cannot fix (the local file is gone or does not match its own checksum)
parks that entry (``parked``) with the reason; the rest of the outbox goes on.
Everything here is blocking: call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid as uuid_module
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TypeVar

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, String, cast, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.errors import ConfigError, StorageError
from agent.events import Absence, Call, Direction, Disposition, EndReason, RecordingFacts
from storage.db import alembic_config, current_revision, head_revision, safe_url, storage_errors
from storage.models import CallRecord, OutboxEntry, Recording, RecordingUpload, SyncState, utcnow
from storage.recordings import PART_SUFFIX, RecordingStore, sha256_of
from storage.repository import save_note, upsert_call

logger = logging.getLogger(__name__)

CALL = "call"
RECORDING = "recording"
#: ``sync_state`` names.
ENABLED = "enabled"
LAST_SUCCESS = "last_success_at"
LAST_ATTEMPT = "last_attempt_at"
LAST_ERROR = "last_error"
LAST_ERROR_AT = "last_error_at"
#: How many times a copy is made before the store is declared faulty (a transient error).
COPY_TRIES = 3
#: Any 64-bit number, the same on every seat: seats upgrading the central schema take turns.
_SCHEMA_LOCK = 0x63746953796E63

Copier = Callable[[Path, Path], object]
_E = TypeVar("_E")


class SyncError(StorageError):
    """A batch could not be sent; a retry may succeed. ``kind``: ``database`` or ``recording_store``."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Park(Exception):
    """This entry cannot be sent until a person looks at it."""


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

    @property
    def pending(self) -> int:
        """Rows waiting to be sent (parked ones not counted)."""
        return self.pending_calls + self.pending_recordings


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one :meth:`CentralSync.run_batch` did.

    ``entries``: outbox entries consumed; ``calls`` / ``recordings``: rows sent;
    ``parked``: entries parked now; ``remaining``: rows still waiting after it;
    ``full``: the batch was full, so more are probably waiting.
    """

    entries: int
    calls: int
    recordings: int
    parked: int
    remaining: int
    full: bool


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
    logger.info("team mode on: %d stored call(s) and recording(s) queued for the central database", queued)
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
    )


def parked_entries(session: Session, limit: int = 20) -> list[OutboxEntry]:
    """The parked entries, oldest first (for ``sync --status``)."""
    query = select(OutboxEntry).where(OutboxEntry.parked.is_(True)).order_by(OutboxEntry.id).limit(limit)
    return list(session.scalars(query))


def central_path(root: Path, path_or_uri: str) -> Path:
    """Where a recording stored locally at ``path_or_uri`` (relative) lives in the central store.

    :raises ValueError: the path is absolute or climbs out of the store (``..``).
    """
    relative = PurePosixPath(path_or_uri)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"not a relative recording path: {path_or_uri!r}")
    return root.joinpath(*relative.parts)


def is_verified_upstream(session: Session, row: Recording) -> bool:
    """Whether this recording's file, as it is now, was copied upstream and verified by SHA-256."""
    upload = session.get(RecordingUpload, row.id)
    if upload is None or upload.path != row.path_or_uri:
        return False
    return row.sha256 is None or upload.sha256 == row.sha256


def purge_allowed(session: Session, row: Recording, central_root: Path | None) -> bool:
    """Whether ``cti-agent purge`` may delete this local recording in team mode.

    Only a recording verified upstream (:func:`is_verified_upstream`) whose
    central copy, read again now, still has the verified SHA-256. A central
    copy that is missing or corrupt is re-queued for upload (the sync copies
    it again) and the local file is kept; so is every file when the central
    store cannot be read.
    """
    if not is_verified_upstream(session, row):
        return False
    if central_root is None:
        return False
    upload = session.get(RecordingUpload, row.id)
    assert upload is not None  # checked by is_verified_upstream
    try:
        copy = central_path(central_root, upload.path)
        intact = copy.is_file() and sha256_of(copy) == upload.sha256
    except (OSError, ValueError) as exc:
        logger.warning("recording %d: the central copy cannot be checked (%s); kept", row.id, exc)
        return False
    if not intact:
        logger.warning("recording %d: the central copy %s is missing or corrupt; queued again", row.id, copy)
        session.delete(upload)
        session.add(OutboxEntry(kind=RECORDING, ref=str(row.id)))
        session.flush()
    return intact


# -- copying recordings ------------------------------------------------------------------------


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_verified(source: Path, dest: Path, sha256: str, *, copy: Copier = shutil.copyfile) -> bool:
    """Make ``dest`` a copy of ``source`` whose SHA-256, read back from ``dest``, is ``sha256``.

    A ``dest`` that already matches is kept (a batch replayed after a crash);
    a wrong one is replaced. Each copy goes to a temporary name in the same
    directory and is renamed, so a reader never sees half a file. Returns True
    when a copy was made.

    :raises OSError: the store cannot be written, or ``COPY_TRIES`` copies in a
        row did not match (a faulty store: retried later, never accepted).
    """
    if dest.is_file() and sha256_of(dest) == sha256:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, COPY_TRIES + 1):
        tmp = dest.with_name(f".{dest.name}.{uuid_module.uuid4().hex[:12]}.tmp")
        try:
            copy(source, tmp)
            _fsync_file(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        # Some network file systems cannot fsync a directory; the file itself is synced.
        with contextlib.suppress(OSError):
            _fsync_file(dest.parent)
        got = sha256_of(dest)
        if got == sha256:
            return True
        logger.warning(
            "copy %d of %s to %s has SHA-256 %s, not %s; copying again", attempt, source, dest, got, sha256
        )
        dest.unlink(missing_ok=True)
    raise OSError(f"{dest}: {COPY_TRIES} copies in a row did not match SHA-256 {sha256}")


# -- the replay --------------------------------------------------------------------------------


def _enum(kind: Callable[[str], _E], value: str | None) -> _E | None:
    return kind(value) if value is not None else None


def call_of(record: CallRecord) -> Call:
    """The row as a :class:`Call` snapshot to send upstream, without the local ``customer_id``.

    :raises ValueError: a stored enum value this version does not know.
    """
    return Call(
        uuid=record.uuid,
        seat=record.seat,
        device_id=record.device_id,
        line=record.line,
        rep=record.rep,
        team=record.team,
        direction=Direction(record.direction),
        started_at=record.started_at,
        number_raw=record.number_raw,
        number_e164=record.number_e164,
        cid_name=record.cid_name,
        absence=_enum(Absence, record.absence),
        answered_at=record.answered_at,
        ended_at=record.ended_at,
        ring_seconds=record.ring_seconds,
        talk_seconds=record.talk_seconds,
        disposition=_enum(Disposition, record.disposition),
        end_reason=_enum(EndReason, record.end_reason),
        rings=record.rings,
        waiting=record.waiting,
        customer_id=None,
    )


@dataclass(slots=True)
class _CallRow:
    call: Call
    notes: str | None
    follow_up_at: datetime | None


class CentralSync:
    """Replays a seat's outbox into the central database and recording store, a batch at a time.

    :param local: the seat's SQLite engine (migrated).
    :param central: the central PostgreSQL engine; its schema is migrated on
        first contact when behind (seats take turns under an advisory lock).
    :param data_dir: the seat's data directory (local recordings are relative to it).
    :param recordings_dir: the central recording store; None parks every recording.
    :param copy: how a file is copied (a test injects a faulty one).
    """

    def __init__(
        self,
        local: Engine,
        central: Engine,
        *,
        data_dir: Path,
        recordings_dir: Path | None,
        batch_size: int = 200,
        clock: Callable[[], datetime] = utcnow,
        copy: Copier = shutil.copyfile,
    ) -> None:
        if local.dialect.name != "sqlite":
            raise ConfigError(
                f"team mode needs a local SQLite database (its triggers fill the outbox), "
                f"not {safe_url(local.url)}"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.local = local
        self.central = central
        self.local_store = RecordingStore(data_dir, local)
        self.central_store = RecordingStore(recordings_dir, central) if recordings_dir is not None else None
        self.recordings_dir = recordings_dir
        self.batch_size = batch_size
        self.clock = clock
        self.copy = copy
        self._local_sessions = sessionmaker(local)
        self._central_sessions = sessionmaker(central)
        self._schema_ready = False
        self._idle = False

    def close(self) -> None:
        """Close the central engine's connections (the local engine belongs to the caller)."""
        self.central.dispose()

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
                .values(parked=True, last_error=reason[:2000], attempts=OutboxEntry.attempts + 1)
            )

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

    # -- the central side ----------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Migrate the central database to this version's head if it is behind (once per process).

        A central schema newer than this seat knows is left alone: newer
        revisions only add, and the seat's writes still fit.
        """
        if self._schema_ready:
            return
        with storage_errors(self.central, "checking the central schema"):
            revision = current_revision(self.central)
            if revision != head_revision():
                script = ScriptDirectory.from_config(alembic_config())
                try:
                    known = revision is None or script.get_revision(revision) is not None
                except CommandError:
                    known = False
                if known:
                    with self.central.begin() as connection:
                        if connection.dialect.name == "postgresql":
                            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                        command.upgrade(alembic_config(connection), "head")
                    logger.info("central database %s migrated to head", safe_url(self.central.url))
                else:
                    logger.warning("central database is at %s, newer than this seat knows", revision)
        self._schema_ready = True

    def run_batch(self) -> BatchResult:
        """Send the oldest pending entries (up to ``batch_size``); see the module docstring.

        :raises SyncError: the central database or recording store failed; the
            entries not yet sent stay queued.
        """
        with storage_errors(self.local, "reading the outbox"), Session(self.local) as session:
            entries = list(
                session.execute(
                    select(OutboxEntry.id, OutboxEntry.kind, OutboxEntry.ref)
                    .where(OutboxEntry.parked.is_(False))
                    .order_by(OutboxEntry.id)
                    .limit(self.batch_size)
                ).all()
            )
        if not entries:
            if not self._idle:
                # Written once when the outbox drains, not on every idle poll.
                self._note(**{LAST_SUCCESS: self.clock().isoformat(), LAST_ERROR: None})
                self._idle = True
            return BatchResult(0, 0, 0, 0, 0, False)
        self._idle = False
        groups: dict[tuple[str, str], list[int]] = {}
        for entry_id, kind, ref in entries:
            groups.setdefault((kind, ref), []).append(entry_id)
        all_ids = [entry_id for entry_id, _, _ in entries]
        self._note(**{LAST_ATTEMPT: self.clock().isoformat()})
        try:
            self.ensure_schema()
        except StorageError as exc:
            self._failed(all_ids[:1], str(exc))
            raise SyncError(str(exc), "database") from exc
        sent_calls = self._send_calls(groups)
        sent_recordings = 0
        parked = 0
        for (kind, ref), ids in groups.items():
            if kind == CALL:
                continue
            if kind != RECORDING:
                self._park(ids, f"unknown outbox kind {kind!r}")
                parked += len(ids)
                continue
            try:
                sent_recordings += self._send_recording(ref, ids)
            except _Park as exc:
                logger.error("recording %s cannot be uploaded: %s (parked)", ref, exc)
                self._park(ids, str(exc))
                parked += len(ids)
        self._note(**{LAST_SUCCESS: self.clock().isoformat(), LAST_ERROR: None})
        remaining = self.status().pending
        logger.debug(
            "sync: %d entries, %d call(s), %d recording(s) sent, %d left",
            len(entries),
            sent_calls,
            sent_recordings,
            remaining,
        )
        return BatchResult(
            entries=len(entries),
            calls=sent_calls,
            recordings=sent_recordings,
            parked=parked,
            remaining=remaining,
            full=len(entries) >= self.batch_size,
        )

    def _send_calls(self, groups: dict[tuple[str, str], list[int]]) -> int:
        uuids = [ref for kind, ref in groups if kind == CALL]
        if not uuids:
            return 0
        ids = [entry_id for (kind, _), group in groups.items() if kind == CALL for entry_id in group]
        rows: list[_CallRow] = []
        bad: dict[str, str] = {}
        with storage_errors(self.local, "reading calls to send"), Session(self.local) as session:
            for record in session.scalars(select(CallRecord).where(CallRecord.uuid.in_(uuids))):
                try:
                    rows.append(_CallRow(call_of(record), record.notes, record.follow_up_at))
                except ValueError as exc:
                    bad[record.uuid] = str(exc)
        for uuid, reason in bad.items():
            logger.error("call %s cannot be sent: %s (parked)", uuid, reason)
            self._park(groups[(CALL, uuid)], reason)
        # Entries of calls no longer stored locally have nothing to send: they are simply done.
        try:
            upstream: Session
            with (
                storage_errors(self.central, f"sending {len(rows)} call(s)"),
                self._central_sessions.begin() as upstream,
            ):
                for row in rows:
                    upsert_call(upstream, row.call)
                    save_note(upstream, row.call.uuid, row.notes, row.follow_up_at)
        except StorageError as exc:
            self._failed(ids[:1], str(exc))
            raise SyncError(str(exc), "database") from exc
        sent = {row.call.uuid for row in rows}
        self._done(
            [i for (kind, ref), group in groups.items() if kind == CALL and ref not in bad for i in group]
        )
        return len(sent)

    def _send_recording(self, ref: str, ids: list[int]) -> int:
        with storage_errors(self.local, f"reading recording {ref}"), Session(self.local) as session:
            row = session.get(Recording, int(ref)) if ref.isdigit() else None
            found = _recording_facts(session, row) if row is not None else None
        if found is None:
            # Deleted locally before it was sent (only possible outside team mode's purge guard).
            self._done(ids)
            return 0
        facts, call = found
        path = facts.path
        if path.endswith(PART_SUFFIX):
            # Not finished yet: its final update queues it again.
            self._done(ids)
            return 0
        if self.recordings_dir is None or self.central_store is None:
            raise _Park("no [central] recordings_dir is configured")
        source = self.local_store.resolve(path)
        try:
            dest = central_path(self.recordings_dir, path)
        except ValueError as exc:
            raise _Park(str(exc)) from None
        if not source.is_file():
            raise _Park(f"the local file {source} is missing")
        try:
            digest = sha256_of(source)
            size = source.stat().st_size
        except OSError as exc:
            raise _Park(f"the local file {source} cannot be read: {exc}") from None
        if facts.sha256 is not None and digest != facts.sha256:
            raise _Park(f"the local file {source} does not match its SHA-256 {facts.sha256}")
        try:
            copied = copy_verified(source, dest, digest, copy=self.copy)
        except OSError as exc:
            message = f"copying {source} to the central store failed: {exc}"
            self._failed(ids[:1], message)
            raise SyncError(message, "recording_store") from exc
        try:
            self.central_store.save(_with_sha(facts, digest), call)
        except StorageError as exc:
            self._failed(ids[:1], str(exc))
            raise SyncError(str(exc), "database") from exc
        upload = RecordingUpload(
            recording_id=int(ref), path=path, sha256=digest, bytes=size, verified_at=self.clock()
        )
        self._done(ids, upload)
        logger.info(
            "recording %s %s the central store, SHA-256 verified",
            ref,
            "copied to" if copied else "already in",
        )
        return 1


def _recording_facts(session: Session, row: Recording) -> tuple[RecordingFacts, Call | None]:
    record = session.scalars(select(CallRecord).where(CallRecord.uuid == row.call_uuid)).one_or_none()
    facts = RecordingFacts(
        call_uuid=row.call_uuid,
        path=row.path_or_uri,
        codec=row.codec or "",
        sample_rate=row.sample_rate or 0,
        channels=row.channels or 0,
        seconds=row.seconds or 0.0,
        bytes=row.bytes or 0,
        sha256=row.sha256,
        status=row.status,
        flags=tuple(f for f in (row.flags or "").split(",") if f),
    )
    return facts, call_of(record) if record is not None else None


def _with_sha(facts: RecordingFacts, digest: str) -> RecordingFacts:
    return RecordingFacts(
        call_uuid=facts.call_uuid,
        path=facts.path,
        codec=facts.codec,
        sample_rate=facts.sample_rate,
        channels=facts.channels,
        seconds=facts.seconds,
        bytes=facts.bytes,
        sha256=digest,
        status=facts.status,
        flags=facts.flags,
    )


__all__ = [
    "CALL",
    "RECORDING",
    "BatchResult",
    "CentralSync",
    "SyncError",
    "SyncStatus",
    "call_of",
    "central_path",
    "copy_verified",
    "disable",
    "enable",
    "is_enabled",
    "is_verified_upstream",
    "parked_entries",
    "purge_allowed",
    "status",
]
