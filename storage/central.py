"""How a seat's outbox reaches the centre: the :class:`Transport` contract and its SQL implementation.

:class:`storage.outbox.CentralSync` decides *what* to send and keeps the local
books; a transport only carries rows and files upstream. Two exist: the seat
API over HTTP (:class:`agent.seat.transport.HttpTransport`, the centre's way)
and :class:`SqlTransport`, which writes straight into a central PostgreSQL
with the same per-entry ingest the centre uses (:mod:`storage.ingest`) and
copies recordings into a shared directory (the older direct-database team mode).

Calls are answered per row (:class:`~storage.ingest.Outcome`): a row the centre
refuses is refused alone and the rest of the batch is stored. A transport
reports a fault a retry may fix as :class:`~storage.faults.SyncError` and a
recording it can never take as :class:`~storage.faults.Rejected`. Everything
here is blocking: call it from a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent.errors import StorageError
from agent.events import Call, RecordingFacts
from storage.db import alembic_config, current_revision, head_revision, safe_url, storage_errors
from storage.faults import Rejected, SyncError, is_permanent, reason_of
from storage.ingest import Incoming, Outcome, ingest_calls
from storage.recordings import RecordingStore
from storage.transfer import Copier, central_path, copy_verified, intact

logger = logging.getLogger(__name__)

#: Any 64-bit number, the same on every seat: seats upgrading the central schema take turns.
_SCHEMA_LOCK = 0x63746953796E63


@dataclass(frozen=True, slots=True)
class CallRow:
    """A call as it travels upstream: the snapshot (without the local customer id) and the rep's note."""

    call: Call
    notes: str | None
    follow_up_at: datetime | None


class Transport(Protocol):
    """What carries the outbox upstream (the SQL transport below; later the seat API over HTTP)."""

    def ensure_ready(self) -> None:
        """Make the centre able to take rows (e.g. migrate its schema); cheap after the first success.

        :raises SyncError: the centre cannot be reached.
        """

    def send_calls(self, rows: Sequence[CallRow], backlog: int | None) -> list[Outcome]:
        """Store these calls and notes upstream; one outcome per row, in order; idempotent by call UUID.

        ``backlog``: how many outbox entries wait behind this batch (the centre shows it per seat).

        :raises SyncError: a fault a retry may fix; nothing was stored.
        """

    def send_recording(self, facts: RecordingFacts, call: Call | None, source: Path) -> bool:
        """Store the file ``source`` (its SHA-256 in ``facts``, verified) and its row upstream.

        Returns True when the file was copied, False when the centre already had it.

        :raises SyncError: a fault a retry may fix.
        :raises Rejected: the centre cannot take this recording (e.g. no store configured).
        """

    def has_copy(self, call_uuid: str, path: str, sha256: str) -> bool:
        """Whether the centre holds this recording now with exactly this SHA-256 (asked again, not cached).

        ``cti-agent purge`` deletes a local file only when this is True.

        :raises SyncError: the centre (or its store) cannot be asked now.
        """

    def close(self) -> None:
        """Release connections."""


class SqlTransport:
    """Writes into the central database directly and copies recordings into ``recordings_dir``.

    :param central: the central PostgreSQL engine; its schema is migrated on
        first contact when behind (seats take turns under an advisory lock).
    :param recordings_dir: the central recording store; None refuses every recording.
    :param copy: how a file is copied (a test injects a faulty one).
    """

    def __init__(
        self, central: Engine, recordings_dir: Path | None, *, copy: Copier = shutil.copyfile
    ) -> None:
        self.central = central
        self.recordings_dir = recordings_dir
        self.store = RecordingStore(recordings_dir, central) if recordings_dir is not None else None
        self.copy = copy
        self._sessions = sessionmaker(central)
        self._schema_ready = False

    def close(self) -> None:
        """Close the central engine's connections."""
        self.central.dispose()

    def ensure_ready(self) -> None:
        """Migrate the central database to this version's head if it is behind (once per process).

        A central schema newer than this seat knows is left alone: newer
        revisions only add, and the seat's writes still fit.
        """
        if self._schema_ready:
            return
        try:
            self._migrate()
        except StorageError as exc:
            raise SyncError(str(exc), "database") from exc
        self._schema_ready = True

    def _migrate(self) -> None:
        with storage_errors(self.central, "checking the central schema"):
            revision = current_revision(self.central)
            if revision == head_revision():
                return
            script = ScriptDirectory.from_config(alembic_config())
            try:
                known = revision is None or script.get_revision(revision) is not None
            except CommandError:
                known = False
            if not known:
                logger.warning("central database is at %s, newer than this seat knows", revision)
                return
            with self.central.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                command.upgrade(alembic_config(connection), "head")
            logger.info("central database %s migrated to head", safe_url(self.central.url))

    def send_calls(self, rows: Sequence[CallRow], backlog: int | None) -> list[Outcome]:
        """Write the calls and their notes in one central transaction, each row in its own savepoint."""
        if not rows:
            return []
        try:
            upstream: Session
            with (
                storage_errors(self.central, f"sending {len(rows)} call(s)"),
                self._sessions.begin() as upstream,
            ):
                return ingest_calls(
                    upstream, [Incoming(row.call, row.notes, row.follow_up_at) for row in rows]
                )
        except StorageError as exc:
            raise SyncError(str(exc), "database") from exc

    def has_copy(self, call_uuid: str, path: str, sha256: str) -> bool:
        """Whether the shared directory's copy of ``path`` is whole (its SHA-256 read again)."""
        if self.recordings_dir is None:
            return False
        try:
            return intact(central_path(self.recordings_dir, path), sha256)
        except ValueError:
            return False
        except OSError as exc:
            raise SyncError(f"the central copy of {path} cannot be read: {exc}", "recording_store") from exc

    def send_recording(self, facts: RecordingFacts, call: Call | None, source: Path) -> bool:
        """Copy the file (verified by SHA-256), then write its central row."""
        if self.recordings_dir is None or self.store is None:
            raise Rejected("no [central] recordings_dir is configured", final=True)
        if facts.sha256 is None:
            raise Rejected(f"recording {facts.path} has no SHA-256 to verify its copy by", final=True)
        try:
            dest = central_path(self.recordings_dir, facts.path)
        except ValueError as exc:
            raise Rejected(str(exc), final=True) from None
        try:
            copied = copy_verified(source, dest, facts.sha256, copy=self.copy)
        except OSError as exc:
            raise SyncError(
                f"copying {source} to the central store failed: {exc}", "recording_store"
            ) from exc
        try:
            self.store.save(facts, call)
        except StorageError as exc:
            raise _refusal_or_fault(exc) from exc
        return copied


def _refusal_or_fault(exc: StorageError) -> StorageError:
    """The central database's error as :class:`Rejected` (the row itself) or :class:`SyncError`."""
    if is_permanent(exc):
        return Rejected(reason_of(exc))
    return SyncError(str(exc), "database")


def with_sha(facts: RecordingFacts, digest: str) -> RecordingFacts:
    """``facts`` with the SHA-256 the file was verified by."""
    return dataclasses.replace(facts, sha256=digest)


__all__ = ["CallRow", "Outcome", "SqlTransport", "Transport", "with_sha"]
