"""The storage observer: writes every call event and rep-state change to the database, each on its own."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent.events import Call, CallEvent, Message, RepStateChange
from storage.db import storage_errors
from storage.repository import record_rep_state, upsert_call

logger = logging.getLogger(__name__)


class StorageObserver:
    """An :class:`agent.seat.observers.Observer` that upserts each call snapshot by UUID.

    Line states are not stored. A database error raises
    :class:`agent.errors.StorageError`; the runtime retries the same message with
    back-off (``must_deliver``), which is safe because every write is an
    idempotent upsert that never moves a call backwards.
    """

    name = "storage"
    must_deliver = True

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine)

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
        """Upsert one call snapshot in its own transaction (blocking; for worker threads)."""
        session: Session
        with storage_errors(self._engine, f"writing call {call.uuid}"), self._sessions.begin() as session:
            upsert_call(session, call)
        logger.debug("stored call %s (%s)", call.uuid, "ended" if call.ended else "in progress")
