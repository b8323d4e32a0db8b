"""What went wrong with a row on its way to a database: a fault a retry may fix, or a refusal.

Park, don't block: a transient fault (the server is down, a lock, a full
disk) is retried with back-off and the queue waits for it; a row refused for
what it *is* (a constraint, an encoding, a value the schema cannot take) is
set aside with its reason, and the queue behind it flows on.
"""

from __future__ import annotations

from agent.errors import StorageError


class SyncError(StorageError):
    """A batch could not be sent; a retry may succeed. ``kind``: ``database`` or ``recording_store``.

    ``pending`` / ``parked``: the local backlog when the batch failed (None when
    it could not be read), so the metrics stay true during an outage.
    """

    def __init__(
        self, message: str, kind: str, *, pending: int | None = None, parked: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.pending = pending
        self.parked = parked


class Rejected(StorageError):
    """This row cannot be written as it is: a retry gives the same answer until a person fixes something."""


__all__ = ["Rejected", "SyncError"]
