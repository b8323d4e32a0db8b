"""The spool of calls the database could not take at shutdown, in space reserved before it is needed.

The runtime writes the spool when the database refuses writes at shutdown, and
the likeliest reason is a full disk: a spool written then, to the same disk,
would get no space (the issue found one left at 0 bytes, and the calls in it
never ended). So the space is taken at start, while there is some: a file of
:data:`RESERVE_BYTES` (``unwritten-calls.reserve``) allocated up front. At
shutdown the spool's lines overwrite that file's blocks, which needs no new
space, the file is cut to their length and renamed to the spool's name. A spool
larger than the reservation tries to grow; whatever does not fit is counted,
never half-written: only whole lines are kept.

Every write goes to a temporary name (the reservation is one) and is renamed,
so a crash mid-write leaves the old spool or the new one, never a torn file.

Blocking; the runtime calls it at start-up and in its shutdown, when nothing
else needs the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

SPOOL_NAME = "unwritten-calls.jsonl"
RESERVE_SUFFIX = ".reserve"
#: Space reserved for the spool: a spooled call is about 1 KB, so this holds about a thousand.
RESERVE_BYTES = 1 << 20


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _allocate(fd: int, size: int) -> None:
    """Give the open file ``size`` bytes of real blocks (not a sparse hole a later write must fill)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    # A file system without fallocate: write the zeros.
    block = b"\0" * 65536
    written = 0
    while written < size:
        written += os.write(fd, block[: size - written])


class Spool:
    """The spool file in ``directory`` and its reservation."""

    def __init__(self, directory: Path, *, reserve_bytes: int = RESERVE_BYTES) -> None:
        self.path = directory / SPOOL_NAME
        self.reserve_path = directory / (SPOOL_NAME + RESERVE_SUFFIX)
        self.reserve_bytes = reserve_bytes

    def reserve(self) -> bool:
        """Make sure the reservation exists at full size; False (logged) when the disk has no room.

        Built under a temporary name and renamed, so a reservation that exists is whole.
        """
        try:
            if self.reserve_path.stat().st_size >= self.reserve_bytes:
                return True
        except FileNotFoundError:
            pass
        tmp = self.reserve_path.with_name(self.reserve_path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _allocate(fd, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.reserve_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            logger.warning(
                "cannot reserve %d bytes for the shutdown spool in %s: %s",
                self.reserve_bytes,
                self.reserve_path.parent,
                exc.strerror or exc,
            )
            return False
        _fsync_dir(self.reserve_path.parent)
        return True

    def lines(self) -> list[str]:
        """The spooled lines (none when there is no spool)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def write(self, lines: list[str]) -> int:
        """Make ``lines`` the spool, in the reserved space when there is one; return how many did not fit.

        The lines that fit are kept whole (a line cut by a full disk is cut off
        entirely); 0 means every line is in the spool. The reservation is used
        up: :meth:`reserve` makes a new one at the next start.
        """
        if not lines:
            return 0
        reserved = self.reserve_path.exists()
        target = self.reserve_path if reserved else self.path.with_name(self.path.name + ".tmp")
        try:
            flags = os.O_WRONLY | (0 if reserved else os.O_CREAT | os.O_TRUNC)
            fd = os.open(target, flags, 0o600)
        except OSError as exc:
            logger.error("cannot open %s for the spool: %s", target, exc.strerror or exc)
            return len(lines)
        kept = 0
        length = 0
        try:
            for line in lines:
                data = (line.rstrip("\n") + "\n").encode("utf-8")
                if not self._write_all(fd, data, length):
                    break
                length += len(data)
                kept += 1
            os.ftruncate(fd, length)
            os.fsync(fd)
        except OSError as exc:
            logger.error("cannot finish the spool %s: %s", target, exc.strerror or exc)
            os.close(fd)
            return len(lines)
        os.close(fd)
        if kept == 0:
            if not reserved:
                target.unlink(missing_ok=True)
            return len(lines)
        try:
            os.replace(target, self.path)
        except OSError as exc:
            logger.error("cannot rename %s to %s: %s", target, self.path, exc.strerror or exc)
            return len(lines)
        _fsync_dir(self.path.parent)
        return len(lines) - kept

    @staticmethod
    def _write_all(fd: int, data: bytes, offset: int) -> bool:
        """Write ``data`` at ``offset``; False when the disk is full before all of it is written."""
        done = 0
        while done < len(data):
            try:
                done += os.pwrite(fd, data[done:], offset + done)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    return False
                raise
        return True

    def replace(self, lines: list[str]) -> bool:
        """Rewrite the spool as ``lines`` (what a replay could not write yet), or remove it when empty.

        Never the reservation: that is for the shutdown. When the new spool
        cannot be written whole, the old one stays as it was (its lines that were
        written meanwhile are written again next time: call writes are idempotent).
        """
        if not lines:
            self.path.unlink(missing_ok=True)
            return True
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                f.write("".join(line.rstrip("\n") + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            logger.error("cannot rewrite the spool %s (kept as it was): %s", self.path, exc.strerror or exc)
            return False
        _fsync_dir(self.path.parent)
        return True


__all__ = ["RESERVE_BYTES", "SPOOL_NAME", "Spool"]
