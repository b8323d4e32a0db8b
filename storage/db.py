"""Engines and migrations: SQLite (WAL) on a seat, PostgreSQL in team mode, one Alembic history.

Everything that reaches the database through this module raises
:class:`agent.errors.StorageError` on failure, with a message that names the
database URL with its password hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from agent.errors import StorageError

logger = logging.getLogger(__name__)

#: The packaged Alembic directory (env.py, script.py.mako, versions/).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: How long a SQLite writer waits for another writer's lock before failing (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 10_000


def safe_url(url: str | URL) -> str:
    """``url`` as text with the password replaced by ``***`` (for logs and error messages)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Not parseable, so the password cannot be located: show only the scheme.
        return url.split("://", 1)[0] + "://<unparseable>" if "://" in url else "<unparseable URL>"


def _scrub(text: str, url: URL) -> str:
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def storage_error(url: str | URL, doing: str, exc: BaseException) -> StorageError:
    """A :class:`StorageError` saying what failed on which database, without the password."""
    parsed = url if isinstance(url, URL) else None
    if parsed is None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            parsed = None
    # The driver's own message (first line) is the useful part; SQLAlchemy appends SQL and a link.
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    message = f"{doing} failed on {safe_url(url)}: {reason}"
    if parsed is not None:
        message = _scrub(message, parsed)
    return StorageError(message)


@contextmanager
def storage_errors(engine: Engine, doing: str) -> Iterator[None]:
    """Turn SQLAlchemy and OS errors inside the block into :class:`StorageError`.

    ``doing`` says what was attempted (``"writing call 1234"``); it starts the message.
    """
    try:
        yield
    except StorageError:
        raise
    except (SQLAlchemyError, OSError) as exc:
        raise storage_error(engine.url, doing, exc) from exc


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        # A URI filename (``?uri=true``): ``file:/path?mode=...``; in-memory when it says so.
        if "mode=memory" in database or database.startswith("file::memory:"):
            return None
        return Path(database[len("file:") :].split("?", 1)[0])
    return Path(database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets the web console read while the agent writes; NORMAL is durable in WAL
        # except for the last transactions on power loss, which the outbox/retry covers.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``, set up for how the agent uses it.

    SQLite: the parent directory is created, and every connection gets WAL
    journaling, ``synchronous=NORMAL``, foreign keys on and a busy timeout.
    ``sqlite://`` (in memory) shares one connection across threads, so every
    session sees the same database. Other databases get ``pool_pre_ping`` so a
    central server's restart costs one retry, not a stream of errors.

    :raises StorageError: the URL is malformed, names a driver that is not
        installed, or the SQLite directory cannot be created.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"invalid database URL {safe_url(url)}: {exc}") from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            path = _sqlite_file(parsed)
            if path is None:
                engine = create_engine(
                    parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
                )
            else:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StorageError(
                        f"cannot create the directory of the database {safe_url(parsed)}: {exc}"
                    ) from exc
                engine = create_engine(parsed)
            event.listen(engine, "connect", _set_sqlite_pragmas)
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot use the database {safe_url(parsed)}: {exc}") from exc
    logger.debug("database engine for %s", safe_url(parsed))
    return engine


#: The PostgreSQL advisory lock that serialises schema upgrades ("cti-mig" in ASCII).
MIGRATION_LOCK_KEY = 0x6374692D6D6967


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """An Alembic config for the packaged migrations; no ``alembic.ini`` needed on disk.

    :param connection: a SQLAlchemy ``Connection`` that env.py migrates through.
    """
    config = AlembicConfig()
    # ConfigParser interpolates %; a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (the newest by default); safe to run on every start.

    :raises StorageError: the database cannot be reached or a migration failed.
    """
    with storage_errors(engine, f"upgrading the schema to {revision}"), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several centre processes (or a centre and `db upgrade`) start at once on one
            # database: without the lock two of them race to create the same tables and one
            # dies with a duplicate-table error. The transaction-scoped lock is released at
            # commit; the second process then finds the schema current and does nothing.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        command.upgrade(alembic_config(connection), revision)
    logger.info("database %s is at revision %s", safe_url(engine.url), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it has never been migrated.

    :raises StorageError: the database cannot be reached.
    """
    with storage_errors(engine, "reading the schema revision"), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision the packaged migrations know."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StorageError(f"no migrations found in {MIGRATIONS_DIR}")
    return head
