"""What went wrong with a row on its way to a database: a fault a retry may fix, or a refusal.

Park, don't block: a transient fault (the server is down, a lock, a full
disk) is retried with back-off and the queue waits for it; a row refused for
what it *is* (a constraint, an encoding such as a NUL byte PostgreSQL cannot
store, a value the schema cannot take) is tried a bounded number of times
(:data:`PARK_AFTER`: the classification could be wrong), then set aside with
its reason, and the queue behind it flows on.

:func:`is_permanent` decides by the exception and what caused it. The DBAPI
classes are recognised by their PEP 249 names, so SQLite's, psycopg's and
SQLAlchemy's wrappers of them all count, without importing a driver. What it
does not know is transient: retried, never parked, so nothing is set aside by
mistake (a missing table, i.e. a schema not migrated yet, is one of those).
"""

from __future__ import annotations

from agent.errors import StorageError

#: Tries of a row refused for a permanent reason before it is parked.
PARK_AFTER = 3

#: PEP 249 exception names: the database refused the row itself.
_PERMANENT_NAMES = frozenset({"IntegrityError", "DataError"})
#: PEP 249 exception names: the connection, a lock, the server: try again later.
_TRANSIENT_NAMES = frozenset({"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"})


class SyncError(StorageError):
    """A batch could not be sent; a retry may succeed. ``kind``: ``centre``, ``credential``.

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
    """A row that cannot be written as it is: a retry gives the same answer until a person fixes it.

    ``final``: no retry can help at all (a missing local file, no store
    configured): park at once instead of after :data:`PARK_AFTER` tries.
    """

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


def _verdict(exc: BaseException) -> bool | None:
    """True: permanent; False: transient; None: this link of the chain does not say."""
    if isinstance(exc, Rejected):
        return True
    if isinstance(exc, SyncError):
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _TRANSIENT_NAMES:
        return False
    if names & _PERMANENT_NAMES:
        return True
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return False
    if isinstance(exc, ValueError | TypeError):
        # A value no column can take (a naive datetime, a NUL in text, an unknown enum);
        # UnicodeError is a ValueError too.
        return True
    return None


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` refuses the row itself (park it after a few tries) rather than a passing fault.

    Walks ``exc``, its ``orig`` (SQLAlchemy's wrapped DBAPI error) and its
    ``__cause__`` chain; the first link that says decides. Unknown: transient.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
        orig = getattr(link, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            verdict = _verdict(orig)
            if verdict is not None:
                return verdict
        link = link.__cause__ or link.__context__
    return False


def reason_of(exc: BaseException | str) -> str:
    """A one-line reason to store beside a parked row (its first line, bounded: no SQL echoed)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:2000]


__all__ = ["PARK_AFTER", "Rejected", "SyncError", "is_permanent", "reason_of"]
