"""The storage observer: writes every call event to the database, one short transaction each."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent.events import Call, CallEvent, Message
from storage.db import storage_errors
from storage.repository import upsert_call

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
        """Write a :class:`CallEvent`'s call in a worker thread; ignore anything else."""
        if not isinstance(message, CallEvent):
            return
        await asyncio.to_thread(self.write, message.call)

    def write(self, call: Call) -> None:
        """Upsert one call snapshot in its own transaction (blocking; for worker threads)."""
        session: Session
        with storage_errors(self._engine, f"writing call {call.uuid}"), self._sessions.begin() as session:
            upsert_call(session, call)
        logger.debug("stored call %s (%s)", call.uuid, "ended" if call.ended else "in progress")
