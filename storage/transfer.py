"""Recording files on their way to the centre: the local file checked before it is sent.

Plain file work with SHA-256 checks, independent of how the file travels (the
seat API, :mod:`agent.seat.transport`). Blocking: call it from a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from storage.recordings import sha256_of


class SourceUnusable(ValueError):
    """The local file cannot be sent as it is (missing, unreadable, or not matching its own checksum)."""


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


__all__ = ["SourceUnusable", "checked_source"]
