"""Storage: SQLAlchemy models, queries, Alembic migrations, the storage observer and the ``sql`` plugin.

One schema on SQLite (a seat's embedded database, WAL) and PostgreSQL (team
mode). Start with :func:`make_engine` and :func:`upgrade`; write calls with
:class:`StorageObserver`; look customers up with :class:`SqlStore`.
"""

from __future__ import annotations

from storage.db import current_revision, head_revision, make_engine, safe_url, storage_errors, upgrade
from storage.models import Base
from storage.observer import StorageObserver
from storage.plugin import SqlStore

__all__ = [
    "Base",
    "SqlStore",
    "StorageObserver",
    "current_revision",
    "head_revision",
    "make_engine",
    "safe_url",
    "storage_errors",
    "upgrade",
]
