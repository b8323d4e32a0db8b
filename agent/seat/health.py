"""What the seat's ``/healthz`` checks: its database answers, its recordings directory takes a file.

The probes do I/O (call them from a worker thread); :func:`verdict` is pure. A sync backlog or
parked entries are reported but never make the seat unhealthy: they mean the centre or the
database was away and the seat kept working, which is what it is for, and a supervisor
(systemd, compose) restarting the seat for it would only lose the call in progress.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)


def probe_database(engine: Engine) -> str | None:
    """None when ``SELECT 1`` answers, else the first line of the error (short, no password)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return str(exc).splitlines()[0][:200]
    return None


def probe_directory(path: Path) -> str | None:
    """None when a small file can be created, written, synced and removed in ``path``, else why not.

    A full disk or a read-only remount shows here before the recorder loses a call to it.
    """
    probe = path / f".healthz-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("health probe %s could not be removed: %s", probe, exc)
    return None


def probe(engine: Engine | None, recordings_dir: Path | None) -> dict[str, str | None]:
    """Each configured part's problem (None: fine), logging the ones that fail (blocking)."""
    problems: dict[str, str | None] = {}
    if engine is not None:
        problems["database"] = probe_database(engine)
    if recordings_dir is not None:
        problems["recordings"] = probe_directory(recordings_dir)
    for part, problem in problems.items():
        if problem is not None:
            logger.warning("seat health: %s unavailable: %s", part, problem)
    return problems


def verdict(problems: Mapping[str, str | None], counts: Mapping[str, int]) -> tuple[int, dict[str, object]]:
    """The status code and JSON body of ``/healthz`` from the probes' answers and the runtime's counts.

    :param problems: per checked part (``database``, ``recordings``), None when it is fine;
        a part that is not configured is simply absent.
    :param counts: backlog and parked counts, copied into the body as they are.
    :returns: 200 and ``status: ok``, or 503 and ``status: down`` naming each failing part.
    """
    down = any(problem is not None for problem in problems.values())
    body: dict[str, object] = {"status": "down" if down else "ok"}
    body.update({part: problem or "ok" for part, problem in problems.items()})
    body.update(counts)
    return (503 if down else 200), body
