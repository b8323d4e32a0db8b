"""Search: pg_trgm GIN indexes on calls.number_e164, calls.number_raw and calls.notes (PostgreSQL only).

Revision ID: 0004_search_indexes
Revises: 0003_outbox
Create Date: 2026-11-27 11:10:00

The console finds a call by any part of its number (the last four digits,
``*5678``, ``138*``, ``138????5678``) and by words of its notes. Those are
``LIKE '%...%'`` searches: a B-tree index only serves a fixed prefix, and a
reversed-number column only a fixed suffix, so neither serves an infix or a
notes search. A trigram GIN index serves all three kinds with one index per
column, and PostgreSQL uses it for ``LIKE`` and ``ILIKE`` as they are, so the
queries need no rewriting. Patterns with no literal run of three characters or
more cannot use it; ``agent/centre/search.py`` keeps those away from it.

PostgreSQL only. SQLite has no trigram index (its FTS5 tokenises words, not
digit runs inside a number), so on a seat's SQLite database these searches stay
full scans of ``calls``: fine for the one seat's calls a single machine holds,
which is why this revision does nothing there.

``pg_trgm`` ships with PostgreSQL (the contrib modules) and is a trusted
extension from PostgreSQL 13 on: the database's owner may create it. A role that
may not gets a :class:`agent.errors.StorageError` saying what to run instead of
the server's bare "permission denied".

Building the indexes reads the whole table and blocks writes to ``calls`` while
it runs (tens of seconds for a million calls); seats keep their calls in their
outbox meanwhile and send them afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.exc import DBAPIError

from agent.errors import StorageError

revision: str = "0004_search_indexes"
down_revision: str | Sequence[str] | None = "0003_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Frozen copy of storage.models.SEARCH_INDEXES with their columns (a test checks they agree).
_INDEXES: dict[str, str] = {
    "ix_calls_number_e164_trgm": "number_e164",
    "ix_calls_number_raw_trgm": "number_raw",
    "ix_calls_notes_trgm": "notes",
}

_FIX = "CREATE EXTENSION pg_trgm as a superuser, then run cti-agent db upgrade again"


def _ensure_pg_trgm(connection: sa.Connection) -> None:
    """Create pg_trgm unless it is there; a refusal becomes a StorageError that names the fix."""
    installed = connection.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first()
    if installed is not None:
        return
    # In a savepoint, so that the refusal can be reported instead of only aborting the transaction.
    savepoint = connection.begin_nested()
    try:
        connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError as exc:
        savepoint.rollback()
        user = connection.execute(sa.text("SELECT current_user")).scalar()
        lines = str(exc.orig or exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise StorageError(
            f"the call search indexes need the PostgreSQL extension pg_trgm, and the database "
            f"user {user!r} cannot create it ({reason}): {_FIX} (if the server says the extension "
            f"is not available, install the PostgreSQL contrib package first)"
        ) from exc
    savepoint.commit()


def upgrade() -> None:
    """On PostgreSQL, create pg_trgm and a GIN trigram index on each searched column."""
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    if context.is_offline_mode():
        # ``alembic upgrade --sql`` writes a script for a DBA, who runs it with the rights it needs.
        op.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    else:
        _ensure_pg_trgm(connection)
    for name, column in _INDEXES.items():
        op.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON calls USING gin ({column} gin_trgm_ops)"))


def downgrade() -> None:
    """Drop the indexes; the extension stays (a DBA may have created it, and other objects may use it)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _INDEXES:
        op.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
