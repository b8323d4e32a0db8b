"""The recording store: where call recordings live on disk, how they survive crashes, and their rows.

Layout under the data directory::

    recordings/YYYY/MM/DD/<call-uuid>.<ext>            a finished recording (0600; directories 0700)
    recordings/YYYY/MM/DD/<call-uuid>.<ext>.part       being written (or left by a crash)
    recordings/YYYY/MM/DD/<call-uuid>.<ext>.call.json  the call it belongs to; removed once its row is written

The date is the call's start in UTC. ``recordings.path_or_uri`` holds the path
relative to the data directory (``recordings/2024/05/06/<uuid>.flac``), so a data
directory can move; :meth:`RecordingStore.resolve` turns it back into a path.

Crash safety: audio goes to the ``.part`` file as it arrives and is renamed
when the call ends; the ``.call.json`` sidecar is written to a temporary name
and renamed (:func:`write_atomically`), so it is whole or absent, never
truncated. A ``.call.json`` still present at start-up means its row was never
written: :meth:`RecordingStore.recover` repairs each ``.part`` into a playable
file and writes the row with status ``recovered`` and the real duration,
linked to the call described by the ``.call.json``. The repair re-encodes every
frame that can still be decoded: a FLAC left by SIGKILL has no sample count and
cannot be read in one go, and a read that meets its torn tail loses its whole
block, so the repair creeps up to the tail in smaller blocks and keeps what
``flac -d -F`` keeps; an Ogg loses its last page.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.errors import StorageError
from agent.events import Call, RecordingFacts
from storage.db import storage_errors
from storage.models import Recording
from storage.repository import add_audit, upsert_call

logger = logging.getLogger(__name__)

RECORDINGS_DIR = "recordings"
PART_SUFFIX = ".part"
META_SUFFIX = ".call.json"
#: Frames read at a time when repairing; a crashed FLAC must be read in blocks.
REPAIR_BLOCK = 8192
#: Block sizes of the repair's passes. A read that meets the torn tail loses its whole block,
#: so each pass replays the last one's good reads and creeps on in smaller blocks: the last,
#: one frame at a time, keeps every frame that decodes (what ``flac -d -F`` keeps).
REPAIR_PASSES = (REPAIR_BLOCK, 256, 1)
#: A repaired file longer than this is assumed corrupt past this point (a day of audio at 48 kHz).
REPAIR_MAX_FRAMES = 48_000 * 86_400


@dataclass(frozen=True, slots=True)
class Codec:
    """A soundfile format for one ``[recording] codec`` value."""

    name: str
    format: str
    subtype: str
    ext: str


CODECS: dict[str, Codec] = {
    "flac": Codec("flac", "FLAC", "PCM_16", "flac"),
    "opus": Codec("opus", "OGG", "OPUS", "opus"),
    "wav": Codec("wav", "WAV", "PCM_16", "wav"),
}
_BY_EXT = {codec.ext: codec for codec in CODECS.values()}
_PART_NAME = re.compile(r"^(?P<uuid>[^/]+)\.(?P<ext>[a-z0-9]+)\.part$")


@dataclass(frozen=True, slots=True)
class RecordingPaths:
    """The files of one recording."""

    final: Path
    part: Path
    meta: Path
    codec: Codec
    call_uuid: str


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Make ``data`` the content of ``path``: written to a temporary name, synced, renamed.

    A crash or a full disk leaves the old file or the new one, never a
    truncated one. The temporary file is removed when the write fails.

    :raises OSError: the file could not be written (the old one, if any, is untouched).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class RecordingStore:
    """Files under ``<data_dir>/recordings`` and their rows in ``engine`` (None: files only).

    Blocking; call from a worker or writer thread, never the event loop.
    """

    def __init__(self, data_dir: Path, engine: Engine | None = None) -> None:
        self.data_dir = data_dir
        self.root = data_dir / RECORDINGS_DIR
        self.engine = engine
        self._sessions = sessionmaker(engine) if engine is not None else None

    # -- paths ------------------------------------------------------------------------

    def paths(self, call_uuid: str, started_at: datetime, codec: str) -> RecordingPaths:
        """The files of the recording of call ``call_uuid`` that started at ``started_at``."""
        if "/" in call_uuid or call_uuid.startswith("."):
            raise ValueError(f"not a call uuid: {call_uuid!r}")
        spec = CODECS[codec]
        day = started_at.astimezone(UTC)
        folder = self.root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        final = folder / f"{call_uuid}.{spec.ext}"
        return RecordingPaths(
            final=final,
            part=final.with_name(final.name + PART_SUFFIX),
            meta=final.with_name(final.name + META_SUFFIX),
            codec=spec,
            call_uuid=call_uuid,
        )

    def relative(self, path: Path) -> str:
        """``path`` as stored in ``path_or_uri``: relative to the data directory, with ``/``."""
        return path.relative_to(self.data_dir).as_posix()

    def resolve(self, path_or_uri: str) -> Path:
        """The file of a ``path_or_uri`` (relative ones are under the data directory)."""
        path = Path(path_or_uri)
        return path if path.is_absolute() else self.data_dir / path

    # -- writing ----------------------------------------------------------------------

    def open_part(self, paths: RecordingPaths, call: Call, samplerate: int, channels: int) -> sf.SoundFile:
        """Create the ``.part`` file (0600) and the ``.call.json`` beside it; return it open for writing.

        :raises OSError: the file cannot be created (it already exists, disk full, ...).
        """
        folder = paths.part.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        meta = {"call": call.to_dict(), "samplerate": samplerate, "channels": channels}
        write_atomically(paths.meta, json.dumps(meta).encode("utf-8"))
        fd = os.open(paths.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            return sf.SoundFile(
                fd,
                "w",
                samplerate=samplerate,
                channels=channels,
                format=paths.codec.format,
                subtype=paths.codec.subtype,
                closefd=True,
            )
        except Exception:
            os.close(fd)
            raise

    def finish(self, paths: RecordingPaths) -> tuple[int, str]:
        """Make a closed ``.part`` the recording: fsync, rename, and return its size and SHA-256."""
        fd = os.open(paths.part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(paths.part, paths.final)
        _fsync_dir(paths.final.parent)
        return paths.final.stat().st_size, sha256_of(paths.final)

    def discard(self, paths: RecordingPaths) -> None:
        """Delete every file of a recording (a call below the minimum talk time)."""
        for path in (paths.part, paths.final, paths.meta):
            path.unlink(missing_ok=True)

    @staticmethod
    def readable_frames(path: Path) -> int:
        """How many frames of ``path`` can be read (a torn file: every frame up to the first bad spot)."""
        try:
            return _decodable(path).frames
        except (sf.LibsndfileError, RuntimeError):
            return 0

    def settle(self, paths: RecordingPaths) -> tuple[int, int, int] | None:
        """Make a ``.part`` that was closed after an error the final file, using no new disk space if it can.

        When the closed file reads back whole (as many frames as its header
        says) it is renamed as it is: after a full disk there is no room for a
        copy. Otherwise it is repaired (:meth:`repair`). Returns what
        :meth:`repair` returns.
        """
        try:
            with sf.SoundFile(paths.part) as f:
                declared, rate, channels = f.frames, f.samplerate, f.channels
            readable = _decodable(paths.part).frames
        except (sf.LibsndfileError, RuntimeError):
            readable, declared = -1, 0
        if readable > 0 and readable == declared:
            os.replace(paths.part, paths.final)
            _fsync_dir(paths.final.parent)
            return readable, rate, channels
        return self.repair(paths)

    def repair(self, paths: RecordingPaths) -> tuple[int, int, int] | None:
        """Re-encode every readable frame of the ``.part`` into the final file; remove the ``.part``.

        Returns ``(frames, samplerate, channels)``, or None when nothing could be
        read (the ``.part`` is then deleted too). Raises :class:`OSError` when the
        repaired file cannot be written (the ``.part`` is kept for a later try).
        """
        tmp = paths.final.with_name(paths.final.name + ".tmp")
        frames = 0
        try:
            plan = _decodable(paths.part)
            source = sf.SoundFile(paths.part)
        except (sf.LibsndfileError, RuntimeError) as exc:
            logger.warning("recording %s cannot be opened for repair: %s", paths.part, exc)
            paths.part.unlink(missing_ok=True)
            return None
        with source:
            rate, channels = source.samplerate, source.channels
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                out = sf.SoundFile(
                    fd,
                    "w",
                    samplerate=rate,
                    channels=channels,
                    format=paths.codec.format,
                    subtype=paths.codec.subtype,
                    closefd=True,
                )
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            try:
                with out:
                    for block in plan.blocks(source):
                        out.write(block)
                        frames += len(block)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        if frames == 0:
            tmp.unlink(missing_ok=True)
            paths.part.unlink(missing_ok=True)
            return None
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, paths.final)
        paths.part.unlink(missing_ok=True)
        _fsync_dir(paths.final.parent)
        return frames, rate, channels

    # -- rows -------------------------------------------------------------------------

    def save(self, facts: RecordingFacts, call: Call | None) -> None:
        """Write the row of a recording (keyed by its path: repeating it updates, never duplicates).

        With ``call`` the call row is upserted first, so the recording's foreign
        key holds even when the storage observer has not written the call yet;
        the upsert never moves a stored call backwards. Then the ``.call.json``
        marker is removed: the recording is fully accounted for.

        :raises StorageError: the database refused the write.
        """
        if self._sessions is not None and self.engine is not None:
            session: Session
            doing = f"writing the recording of call {facts.call_uuid}"
            with storage_errors(self.engine, doing), self._sessions.begin() as session:
                if call is not None:
                    upsert_call(session, call)
                self._upsert_row(session, facts)
        if not facts.path.endswith(PART_SUFFIX):
            final = self.resolve(facts.path)
            final.with_name(final.name + META_SUFFIX).unlink(missing_ok=True)

    @staticmethod
    def _upsert_row(session: Session, facts: RecordingFacts) -> None:
        # A row may point at the .part of a recording that could not be finished (no disk space
        # for a repaired copy); its recovery later moves the same row to the final file.
        final = facts.path.removesuffix(PART_SUFFIX)
        candidates = (final, final + PART_SUFFIX)
        row = session.scalars(select(Recording).where(Recording.path_or_uri.in_(candidates))).first()
        if row is None:
            row = Recording(call_uuid=facts.call_uuid, path_or_uri=facts.path)
            session.add(row)
        row.path_or_uri = facts.path
        row.codec = facts.codec
        row.sample_rate = facts.sample_rate
        row.channels = facts.channels
        # To the sample at 8 kHz and above (6 decimals), so seconds * rate gives back the frame count.
        row.seconds = round(facts.seconds, 6)
        row.bytes = facts.bytes
        row.sha256 = facts.sha256
        row.status = facts.status
        row.flags = ",".join(facts.flags) or None

    # -- start-up recovery --------------------------------------------------------------

    def leftovers(self) -> Iterator[RecordingPaths]:
        """Recordings a previous run did not finish: a ``.part`` file, or a ``.call.json`` without row."""
        if not self.root.is_dir():
            return
        seen: set[Path] = set()
        for path in sorted(self.root.glob(f"*/*/*/*{PART_SUFFIX}")):
            match = _PART_NAME.match(path.name)
            if match is None or match["ext"] not in _BY_EXT:
                continue
            final = path.with_name(path.name[: -len(PART_SUFFIX)])
            seen.add(final)
            yield self._paths_of(final, match["uuid"], match["ext"])
        for meta in sorted(self.root.glob(f"*/*/*/*{META_SUFFIX}")):
            final = meta.with_name(meta.name[: -len(META_SUFFIX)])
            uuid, _, ext = final.name.rpartition(".")
            if final in seen or ext not in _BY_EXT:
                continue
            yield self._paths_of(final, uuid, ext)

    @staticmethod
    def _paths_of(final: Path, uuid: str, ext: str) -> RecordingPaths:
        return RecordingPaths(
            final=final,
            part=final.with_name(final.name + PART_SUFFIX),
            meta=final.with_name(final.name + META_SUFFIX),
            codec=_BY_EXT[ext],
            call_uuid=uuid,
        )

    def recover(self) -> list[RecordingFacts]:
        """Repair every leftover recording and write its row; returns what was recovered.

        A ``.part`` becomes a playable file with status ``recovered`` and its real
        duration; a finished file whose row is missing gets its row (``complete``).
        One that cannot be repaired is logged and left for the next start.
        """
        out: list[RecordingFacts] = []
        for paths in self.leftovers():
            call = _read_meta_call(paths.meta)
            try:
                facts = self._recover_one(paths)
            except (OSError, sf.LibsndfileError, RuntimeError) as exc:
                logger.error("recording of call %s could not be repaired: %s", paths.call_uuid, exc)
                continue
            if facts is None:
                logger.warning("recording of call %s held no audio; removed", paths.call_uuid)
                paths.meta.unlink(missing_ok=True)
                continue
            try:
                self.save(facts, call)
            except StorageError as exc:
                logger.error(
                    "recording of call %s repaired but not recorded in the database: %s", facts.call_uuid, exc
                )
                continue
            logger.info(
                "recovered the recording of call %s: %.1f s (%s)",
                facts.call_uuid,
                facts.seconds,
                facts.status,
            )
            out.append(facts)
        return out

    def _recover_one(self, paths: RecordingPaths) -> RecordingFacts | None:
        status = "complete"
        audio_until: datetime | None = None
        if paths.part.exists():
            # Before the repair rewrites it: the last block the dead run wrote.
            audio_until = datetime.fromtimestamp(paths.part.stat().st_mtime, UTC)
            repaired = self.repair(paths)
            if repaired is None:
                return None
            frames, rate, channels = repaired
            status = "recovered"
        elif paths.final.exists():
            info = sf.info(str(paths.final))
            frames, rate, channels = info.frames, info.samplerate, info.channels
        else:
            return None
        return RecordingFacts(
            call_uuid=paths.call_uuid,
            path=self.relative(paths.final),
            codec=paths.codec.name,
            sample_rate=rate,
            channels=channels,
            seconds=frames / rate,
            bytes=paths.final.stat().st_size,
            sha256=sha256_of(paths.final),
            status=status,
            audio_until=audio_until,
        )

    # -- retention ----------------------------------------------------------------------

    @staticmethod
    def by_ids(session: Session, ids: list[int]) -> list[Recording]:
        """The rows with these ids."""
        return list(session.scalars(select(Recording).where(Recording.id.in_(ids))))

    @staticmethod
    def oldest(session: Session) -> datetime | None:
        """When the oldest recording was made (for the retention age metric), or None."""
        return session.scalar(select(func.min(Recording.created_at)))

    def delete(self, session: Session, row: Recording) -> int:
        """Delete a recording's file and row; returns the bytes freed (0 when the file was gone)."""
        path = self.resolve(row.path_or_uri) if row.path_or_uri else None
        freed = 0
        if path is not None and path.is_file():
            freed = path.stat().st_size
            path.unlink()
        session.delete(row)
        return freed


def audit(
    session: Session, action: str, target: str | None, detail: dict[str, Any], user: str | None
) -> None:
    """Add an ``audit_log`` row (``detail`` as JSON) through :func:`storage.repository.add_audit`."""
    add_audit(session, action, user=user, target=target, detail=json.dumps(detail))


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    """How to read every decodable frame of a file: ``(up to frame, in blocks of)`` steps, in order.

    libsndfile loses the whole block of a read that meets a torn tail, so the
    plan found by :func:`_decodable` is followed exactly when copying: the same
    reads succeed again.
    """

    steps: tuple[tuple[int, int], ...]

    @property
    def frames(self) -> int:
        """The frames the plan reads."""
        return self.steps[-1][0] if self.steps else 0

    def blocks(self, source: sf.SoundFile) -> Iterator[np.ndarray[Any, Any]]:
        """The blocks of int16 frames of ``source`` (opened at its start), as planned."""
        total = 0
        for until, size in self.steps:
            while total < until:
                block = source.read(min(size, until - total), dtype="int16", always_2d=True)
                if len(block) == 0:
                    return
                total += len(block)
                yield block


def _decodable(path: Path) -> _ReadPlan:
    """The plan that reads every frame of ``path`` up to its end or its first undecodable spot.

    :raises sf.LibsndfileError: the file cannot be opened at all.
    """
    steps: list[tuple[int, int]] = []
    for size in REPAIR_PASSES:
        plan = _ReadPlan(tuple(steps))
        with sf.SoundFile(path) as source:
            try:
                good = sum(len(block) for block in plan.blocks(source))
            except (sf.LibsndfileError, RuntimeError) as exc:  # pragma: no cover - it read before
                logger.debug("repair: %s no longer reads to frame %d: %s", path, plan.frames, exc)
                return plan
            ended = False
            while good < REPAIR_MAX_FRAMES:
                try:
                    block = source.read(size, dtype="int16", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    logger.debug("repair of %s: blocks of %d stop at frame %d: %s", path, size, good, exc)
                    break
                if len(block) == 0:
                    ended = True
                    break
                good += len(block)
            else:
                ended = True  # as long as any recording may be
        steps.append((good, size))
        if ended:
            break
    return _ReadPlan(tuple(steps))


def _read_meta_call(meta: Path) -> Call | None:
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return Call.from_dict(data["call"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s is unreadable (%s): the recording is linked by its file name only", meta, exc)
        return None


__all__ = [
    "CODECS",
    "Codec",
    "RecordingFacts",
    "RecordingPaths",
    "RecordingStore",
    "audit",
    "sha256_of",
    "write_atomically",
]
