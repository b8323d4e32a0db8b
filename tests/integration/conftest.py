"""Integration fixtures: a throwaway PostgreSQL server for the test session, a fresh database per test.

``CTI_TEST_PG_URL`` (a SQLAlchemy URL to a server where the user may create
databases) replaces the throwaway server. Without it the server binaries must be
installed: PostgreSQL tests fail, never skip, when they are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rgw_fixture import rgw  # noqa: F401  (the session's real S3 store, Ceph RGW)
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.pool import NullPool

from storage.db import make_engine

PG_MISSING = "PostgreSQL server binaries not found: run `make test` (it installs postgresql)"


def _pg_bindir() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name  # /usr/lib/postgresql/<version>/bin/initdb
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates = [
        p
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(p).parent / "pg_ctl").is_file() and version(p)
    ]
    if not candidates:
        return None
    return Path(max(candidates, key=version)).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], *, as_postgres: bool) -> subprocess.CompletedProcess[str]:
    if as_postgres:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a PostgreSQL server for this test session (superuser ``postgres``, trust auth)."""
    external = os.environ.get("CTI_TEST_PG_URL")
    if external:
        yield external
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail(PG_MISSING)
    # initdb refuses to run as root: the cluster belongs to the postgres user then.
    as_postgres = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="cti-pg-"))
    workdir.chmod(0o755)
    if as_postgres:
        shutil.chown(workdir, "postgres", "postgres")
    data = workdir / "data"
    log = workdir / "pg.log"
    port = _free_port()
    started = False
    try:
        init = _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            as_postgres=as_postgres,
        )
        if init.returncode != 0:
            pytest.fail(f"initdb failed ({init.returncode}): {init.stderr or init.stdout}")
        options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            as_postgres=as_postgres,
        )
        if start.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"pg_ctl start failed ({start.returncode}): {start.stderr}\n{server_log}")
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], as_postgres=as_postgres
            )
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_database_url(pg_url: str) -> Iterator[str]:
    """URL of a new, empty database on the session's server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def pg_engine(pg_database_url: str) -> Iterator[Engine]:
    """An engine (from :func:`storage.db.make_engine`) on a fresh, not yet migrated database."""
    engine = make_engine(pg_database_url)
    try:
        yield engine
    finally:
        engine.dispose()
