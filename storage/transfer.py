"""Recording files on their way to the central store: where they go, verified copies, checked sources.

Everything here is plain file work with SHA-256 checks, independent of how the
row describing the file travels (see :mod:`storage.central`). Blocking: call
it from a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid as uuid_module
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from storage.recordings import sha256_of

logger = logging.getLogger(__name__)

#: How many times a copy is made before the store is declared faulty (a transient error).
COPY_TRIES = 3

Copier = Callable[[Path, Path], object]


class SourceUnusable(ValueError):
    """The local file cannot be sent as it is (missing, unreadable, or not matching its own checksum)."""


def central_path(root: Path, path_or_uri: str) -> Path:
    """Where a recording stored locally at ``path_or_uri`` (relative) lives in the central store.

    :raises ValueError: the path is absolute or climbs out of the store (``..``).
    """
    relative = PurePosixPath(path_or_uri)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"not a relative recording path: {path_or_uri!r}")
    return root.joinpath(*relative.parts)


def checked_source(source: Path, sha256: str | None) -> tuple[str, int]:
    """The SHA-256 and size of the local file ``source``, which must match ``sha256`` when known.

    :raises SourceUnusable: the file is missing, cannot be read, or has another SHA-256.
    """
    if not source.is_file():
        raise SourceUnusable(f"the local file {source} is missing")
    try:
        digest = sha256_of(source)
        size = source.stat().st_size
    except OSError as exc:
        raise SourceUnusable(f"the local file {source} cannot be read: {exc}") from None
    if sha256 is not None and digest != sha256:
        raise SourceUnusable(f"the local file {source} does not match its SHA-256 {sha256}")
    return digest, size


def intact(copy: Path, sha256: str) -> bool:
    """Whether ``copy`` exists and has this SHA-256.

    :raises OSError: it exists but cannot be read.
    """
    return copy.is_file() and sha256_of(copy) == sha256


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_verified(source: Path, dest: Path, sha256: str, *, copy: Copier = shutil.copyfile) -> bool:
    """Make ``dest`` a copy of ``source`` whose SHA-256, read back from ``dest``, is ``sha256``.

    A ``dest`` that already matches is kept (a batch replayed after a crash);
    a wrong one is replaced. Each copy goes to a temporary name in the same
    directory and is renamed, so a reader never sees half a file. Returns True
    when a copy was made.

    :raises OSError: the store cannot be written, or ``COPY_TRIES`` copies in a
        row did not match (a faulty store: retried later, never accepted).
    """
    if intact(dest, sha256):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, COPY_TRIES + 1):
        tmp = dest.with_name(f".{dest.name}.{uuid_module.uuid4().hex[:12]}.tmp")
        try:
            copy(source, tmp)
            _fsync_file(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        # Some network file systems cannot fsync a directory; the file itself is synced.
        with contextlib.suppress(OSError):
            _fsync_file(dest.parent)
        got = sha256_of(dest)
        if got == sha256:
            return True
        logger.warning(
            "copy %d of %s to %s has SHA-256 %s, not %s; copying again", attempt, source, dest, got, sha256
        )
        dest.unlink(missing_ok=True)
    raise OSError(f"{dest}: {COPY_TRIES} copies in a row did not match SHA-256 {sha256}")


__all__ = [
    "COPY_TRIES",
    "Copier",
    "SourceUnusable",
    "central_path",
    "checked_source",
    "copy_verified",
    "intact",
]
