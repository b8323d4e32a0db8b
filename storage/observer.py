"""The storage observer: writes each call event and rep-state change to the database, one transaction each.

Park, don't block (see :mod:`storage.faults`): a write the database refuses
for what the call *is* (a NUL byte in a caller-ID name that PostgreSQL cannot
store, a constraint) raises :class:`~storage.faults.Rejected`; the runtime
tries it a bounded number of times and then hands it to :meth:`StorageObserver.park`,
which keeps it in :class:`ParkedCalls`, a JSON-lines file in the data
directory, so the calls behind it are written and nothing is lost. Any other
failure raises a plain :class:`~agent.errors.StorageError` and is retried
until it succeeds. ``cti-agent sync --retry-parked`` writes the parked calls
again after a fix; a later snapshot of a parked call that is written clears it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid as uuid_module
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent.errors import StorageError
from agent.events import Call, CallEvent, Message, RepStateChange
from storage.db import storage_errors
from storage.faults import PARK_AFTER, Rejected, is_permanent, reason_of
from storage.repository import record_rep_state, upsert_call

try:  # POSIX: the agent and ``sync --retry-parked`` take turns on the file.
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer at a time is the operator's job
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: The file of parked calls, in the data directory.
PARKED_NAME = "parked-calls.jsonl"


@dataclass(frozen=True, slots=True)
class ParkedCall:
    """A call event the database refused, why, and since when."""

    event: CallEvent
    reason: str
    parked_at: datetime

    def to_dict(self) -> dict[str, object]:
        """The JSON line."""
        return {"event": self.event.to_dict(), "reason": self.reason, "parked_at": self.parked_at.isoformat()}


class ParkedCalls:
    """Parked calls in a JSON-lines file, the latest snapshot per call; survives restarts.

    Every change rewrites the file under a temporary name and renames it, so a
    crash leaves the old file or the new one, never half of one. A line that
    cannot be read is kept as it is (never dropped). Blocking: call it from a
    worker thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[tuple[int, int], int] | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        with self.path.with_name(self.path.name + ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self) -> tuple[list[ParkedCall], list[str]]:
        """The readable entries and the unreadable lines (kept verbatim)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []
        entries: list[ParkedCall] = []
        unreadable: list[str] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                entries.append(
                    ParkedCall(
                        CallEvent.from_dict(data["event"]),
                        str(data["reason"]),
                        datetime.fromisoformat(data["parked_at"]),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("%s:%d: unreadable parked call kept as it is: %s", self.path, number, exc)
                unreadable.append(line)
        return entries, unreadable

    def _write(self, entries: list[ParkedCall], unreadable: list[str]) -> None:
        lines = [json.dumps(e.to_dict(), ensure_ascii=False) for e in entries] + unreadable
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(f".{self.path.name}.{uuid_module.uuid4().hex[:12]}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self) -> list[ParkedCall]:
        """The parked calls, oldest first."""
        return self._read()[0]

    def count(self) -> int:
        """How many calls are parked (re-read only when the file changed: cheap enough for a scrape)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return 0
        except OSError:
            return self._cache[1] if self._cache else 0
        key = (stat.st_mtime_ns, stat.st_size)
        if self._cache is None or self._cache[0] != key:
            try:
                entries, unreadable = self._read()
            except OSError:
                return self._cache[1] if self._cache else 0
            self._cache = (key, len(entries) + len(unreadable))
        return self._cache[1]

    def uuids(self) -> set[str]:
        """The UUIDs of the parked calls."""
        return {e.event.call.uuid for e in self.load()}

    def add(self, event: CallEvent, reason: str, now: datetime) -> None:
        """Park ``event``, replacing an earlier parked snapshot of the same call.

        :raises OSError: the file cannot be written (then nothing is parked: the caller retries).
        """
        with self._locked():
            entries, unreadable = self._read()
            uuid = event.call.uuid
            earlier = next((e for e in entries if e.event.call.uuid == uuid), None)
            entries = [e for e in entries if e.event.call.uuid != uuid]
            entries.append(ParkedCall(event, reason, earlier.parked_at if earlier else now))
            self._write(entries, unreadable)

    def remove(self, uuids: set[str]) -> int:
        """Forget the parked calls with these UUIDs (written after all); returns how many."""
        with self._locked():
            entries, unreadable = self._read()
            kept = [e for e in entries if e.event.call.uuid not in uuids]
            if len(kept) != len(entries):
                self._write(kept, unreadable)
        return len(entries) - len(kept)


class StorageObserver:
    """An :class:`agent.seat.observers.Observer` that upserts each call snapshot by UUID.

    Line states are not stored. A database error raises
    :class:`agent.errors.StorageError` (:class:`~storage.faults.Rejected` when
    it refuses the call itself); the runtime retries the same message with
    back-off (``must_deliver``), which is safe because every write is an
    idempotent upsert that never moves a call backwards, and parks a refused
    one after :meth:`tries_before_parking` tries (see the module docstring).

    :param parked: where parked calls are kept; None: nothing can be parked.
    """

    name = "storage"
    must_deliver = True

    def __init__(self, engine: Engine, *, parked: ParkedCalls | None = None) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine)
        self.parked = parked
        self._parked_uuids: set[str] | None = None

    async def notify(self, message: Message) -> None:
        """Write a :class:`CallEvent`'s call or a :class:`RepStateChange` in a worker thread."""
        if isinstance(message, CallEvent):
            await asyncio.to_thread(self.write, message.call)
        elif isinstance(message, RepStateChange):
            await asyncio.to_thread(self.write_rep_state, message)

    def write_rep_state(self, change: RepStateChange) -> None:
        """Store one rep-state change for reports (blocking; for worker threads)."""
        session: Session
        with storage_errors(self._engine, "writing a rep state"), self._sessions.begin() as session:
            record_rep_state(session, change)

    def write(self, call: Call) -> None:
        """Upsert one call snapshot in its own transaction (blocking; for worker threads).

        :raises Rejected: the database refuses this call for what it is.
        :raises StorageError: any other failure (retry later).
        """
        session: Session
        try:
            with (
                storage_errors(self._engine, f"writing call {call.uuid}"),
                self._sessions.begin() as session,
            ):
                upsert_call(session, call)
        except StorageError as exc:
            if is_permanent(exc):
                raise Rejected(str(exc)) from exc
            raise
        except ValueError as exc:
            raise Rejected(f"writing call {call.uuid} failed: {exc}") from exc
        logger.debug("stored call %s (%s)", call.uuid, "ended" if call.ended else "in progress")
        if self.parked is not None and call.uuid in self._known_parked():
            # A later snapshot went in: it carries everything the parked one had.
            self.parked.remove({call.uuid})
            self._known_parked().discard(call.uuid)
            logger.info("call %s, parked before, is written now", call.uuid)

    def _known_parked(self) -> set[str]:
        if self._parked_uuids is None:
            self._parked_uuids = self.parked.uuids() if self.parked is not None else set()
        return self._parked_uuids

    # -- the runtime's parking contract (agent.seat.runner) --------------------------------

    def tries_before_parking(self, message: Message) -> int:
        """How many refusals of ``message`` before it is parked: once its call is parked, the first."""
        if self.parked is None:
            return 0  # never
        if isinstance(message, CallEvent) and message.call.uuid in self._known_parked():
            return 1
        return PARK_AFTER

    def park(self, message: Message, reason: str, now: datetime) -> None:
        """Set ``message`` aside with ``reason`` (blocking).

        :raises OSError: it could not be kept (the runtime goes on retrying it).
        """
        if self.parked is None or not isinstance(message, CallEvent):
            raise OSError("no parked-calls file to keep it in")
        self.parked.add(message, reason_of(reason), now)
        self._known_parked().add(message.call.uuid)
        logger.error(
            "call %s parked in %s after the database refused it: %s",
            message.call.uuid,
            self.parked.path,
            reason,
        )

    def parked_count(self) -> int:
        """How many calls are parked now (0 without a parked-calls file)."""
        return self.parked.count() if self.parked is not None else 0


__all__ = ["PARKED_NAME", "ParkedCall", "ParkedCalls", "StorageObserver"]
