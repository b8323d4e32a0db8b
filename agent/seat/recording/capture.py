"""One call's capture as the writer thread holds it: pre-roll, file, levels, resamplers, listeners.

Everything here runs on the writer thread (:mod:`.writer`) and nowhere else;
the event loop learns what happened only from the :class:`Outcome` a
``Finish`` command answers with.

Life of a capture: made when the call's source is about to open (blocks that
come while it opens are held in ``early``), given its format once the source
is open (:meth:`Capture.open`), fed blocks (:meth:`Capture.data`), started at
the trigger (:meth:`Capture.begin`: the ``.part`` file is created and the
pre-roll written first), and finished (:meth:`Capture.finish`: closed and
renamed, or repaired when a failure cut it short). Audio goes to the file in
batches of about half a second (:mod:`.batching`), and its levels are analysed
per batch. A write error or a source
that stops or goes quiet closes the file with what was written
(:meth:`Capture.fail`); later blocks still reach live listeners when there are any.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from agent.events import Call, RecordingFacts
from agent.seat.audio import Block, LevelStats, PreRoll, Resampler
from agent.seat.recording.batching import Batcher
from agent.seat.recording.counters import RecordingCounters
from agent.seat.recording.policy import Take
from agent.seat.recording.tap import LIVE_RATE, LiveTap, live_pcm
from storage.recordings import RecordingPaths, RecordingStore, sha256_of

logger = logging.getLogger(__name__)

#: Seconds of audio between flushes of an open file (how much a power cut may lose at most, roughly).
FLUSH_SECONDS = 1.0
#: Free space below which a write error counts as a full disk.
DISK_FULL_BYTES = 64 * 1024
#: Seconds of activity a channel needs not to count as silent.
MIN_ACTIVE_SECONDS = 1.0
#: Blocks kept from a source that delivers before its capture is open (a few seconds of 20 ms blocks).
EARLY_BLOCKS = 500

_WRITE_ERRORS = (OSError, sf.LibsndfileError, RuntimeError)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A capture's end as the writer saw it: the row's facts (None: no file) and what the policy reads."""

    facts: RecordingFacts | None
    take: Take


@dataclass(frozen=True, slots=True)
class Format:
    """How a source's audio comes: the recording's rate and channels, and the device's own rate."""

    samplerate: int
    channels: int
    device_rate: int


class Capture:
    """One call's recording on the writer thread (see the module docstring)."""

    def __init__(self, call: Call, store: RecordingStore, counters: RecordingCounters | None) -> None:
        self.call = call
        self._store = store
        self._counters = counters
        self.early: collections.deque[Block] = collections.deque(maxlen=EARLY_BLOCKS)
        self.paths: RecordingPaths | None = None
        self.format: Format | None = None
        self.opened_at = 0.0
        self.last_block_at: float | None = None
        self.failure: str | None = None
        self.listeners: tuple[LiveTap, ...] = ()
        self._preroll: PreRoll | None = None
        self._stats: LevelStats | None = None
        self._resampler: Resampler | None = None
        self._live_resampler: Resampler | None = None
        self._file: sf.SoundFile | None = None
        self._began = False
        self.frames = 0
        self._unflushed = 0
        self._batcher: Batcher | None = None
        self.overruns = 0

    # -- commands -------------------------------------------------------------------------

    def open(self, paths: RecordingPaths, fmt: Format, pre_roll_seconds: float, now: float) -> None:
        """The source is open: make the buffers and take the blocks that came while it opened."""
        self.paths, self.format, self.opened_at = paths, fmt, now
        self._batcher = Batcher(fmt.samplerate)
        self._preroll = PreRoll(int(pre_roll_seconds * fmt.samplerate), fmt.channels)
        self._stats = LevelStats(fmt.channels, fmt.samplerate)
        if fmt.device_rate != fmt.samplerate:
            self._resampler = Resampler(fmt.device_rate, fmt.samplerate, fmt.channels)
        early, self.early = list(self.early), collections.deque(maxlen=EARLY_BLOCKS)
        for data in early:
            self.data(data, now)

    def data(self, data: Block, at: float) -> int:
        """Take one block, handled at ``at``; returns its frames at the recording's rate."""
        if self._preroll is None:
            self.early.append(data)
            return 0
        if self._resampler is not None:
            data = self._resampler.process(data)
        self.last_block_at = at
        self._feed_live(data)
        if self.failure is not None:
            return len(data)
        if not self._began:
            self._preroll.push(data)
        else:
            self._write(data)
        return len(data)

    def begin(self, call: Call) -> None:
        """The trigger: create the ``.part`` file and write the pre-roll into it."""
        self.call = call
        if self._began or self.failure is not None or self._preroll is None or self.format is None:
            return
        assert self.paths is not None
        try:
            self._file = self._store.open_part(self.paths, call, self.format.samplerate, self.format.channels)
        except _WRITE_ERRORS as exc:
            self.failure = _reason(exc, self.paths.part.parent)
            self._count_error(self.failure, str(exc))
            return
        self._began = True
        head = self._preroll.take()
        if len(head):
            self._write(head)

    def overrun(self, frames: int) -> None:
        """Input was lost: ``frames`` dropped by the writer's queue (0: by the device)."""
        self.overruns += 1
        if self._counters is not None:
            self._counters.recording_overrun()
        if self.overruns == 1 or self.overruns % 100 == 0:
            logger.warning(
                "recorder: call %s: audio input overrun #%d (%d frames dropped by the writer)",
                self.call.uuid,
                self.overruns,
                frames,
            )

    def fail(self, reason: str, detail: str, *, write_batch: bool = True) -> None:
        """Stop writing for ``reason`` (the first reason wins) and close the file with what it has.

        The batch gathered so far is written first, unless writing is what failed.
        """
        if self.failure is not None:
            return
        if write_batch:
            self._write_gathered()
            if self.failure is not None:  # that write failed: counted already
                self._close_file()
                return
        self.failure = reason
        self._count_error(reason, detail)
        self._close_file()

    def check_stall(self, now: float, *, first_block_timeout: float, stall_timeout: float) -> None:
        """Fail as ``device_lost`` when the open source has been quiet too long."""
        if self.failure is not None or self.format is None:
            return
        if self.last_block_at is None:
            quiet, limit = now - self.opened_at, first_block_timeout
        else:
            quiet, limit = now - self.last_block_at, stall_timeout
        if quiet > limit:
            self.fail("device_lost", f"no audio for {quiet:.1f} s")

    def listen(self, tap: LiveTap) -> None:
        """Feed ``tap`` from now on; a capture that failed ends it at once."""
        if self.failure is not None:
            tap.finish()
            return
        self.listeners = (*self.listeners, tap)

    def unlisten(self, tap: LiveTap) -> None:
        """Stop feeding ``tap``."""
        self.listeners = tuple(t for t in self.listeners if t is not tap)

    def finish(self) -> Outcome:
        """Close (or repair) the file and say what it holds; ends every listener's stream."""
        listeners, self.listeners = self.listeners, ()
        try:
            return self._finish()
        finally:
            for tap in listeners:  # after every chunk fed before: the loop runs them in order
                tap.finish()

    # -- inside -------------------------------------------------------------------------------

    def _feed_live(self, data: Block) -> None:
        if not self.listeners or not len(data) or self.format is None:
            return
        rate = self.format.samplerate
        if rate != LIVE_RATE and self._live_resampler is None:
            self._live_resampler = Resampler(rate, LIVE_RATE, 1)
        chunk = live_pcm(data, self._live_resampler)
        if chunk:
            for tap in self.listeners:
                tap.feed(chunk)

    def _write(self, data: Block) -> None:
        assert self._batcher is not None
        batch = self._batcher.add(data)
        if batch is not None:
            self._write_batch(batch)

    def _write_gathered(self) -> None:
        batch = self._batcher.drain() if self._batcher is not None else None
        if batch is not None:
            self._write_batch(batch)

    def _write_batch(self, batch: Block) -> None:
        if self._file is None:
            return
        assert self._stats is not None
        assert self.format is not None
        try:
            self._file.write(batch)
            self.frames += len(batch)
            self._unflushed += len(batch)
            if self._unflushed >= FLUSH_SECONDS * self.format.samplerate:
                self._file.flush()
                self._unflushed = 0
        except _WRITE_ERRORS as exc:
            self.fail(_reason(exc, self._folder()), str(exc), write_batch=False)
            return
        self._stats.add(batch)

    def _folder(self) -> Path | None:
        return self.paths.part.parent if self.paths is not None else None

    def _count_error(self, reason: str, detail: str) -> None:
        rate = self.format.samplerate if self.format is not None else 0
        logger.error(
            "recorder: call %s: recording stopped (%s) after %.1f s: %s",
            self.call.uuid,
            reason,
            self.frames / max(rate, 1),
            detail,
        )
        if self._counters is not None:
            self._counters.recording_error(reason)

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except _WRITE_ERRORS as exc:
            # The header or last block may not be on disk: the end of the call repairs the file.
            logger.warning("recorder: call %s: closing the file failed: %s", self.call.uuid, exc)
            if self.failure is None:
                self.failure = _reason(exc, self._folder())

    def _take(self, written: bool, facts: RecordingFacts | None = None) -> Take:
        verdicts = self._stats.verdicts(min_active=MIN_ACTIVE_SECONDS) if self._stats and written else []
        return Take(
            written=written and facts is not None,
            seconds=facts.seconds if facts is not None else 0.0,
            status=facts.status if facts is not None else "failed",
            failure=self.failure,
            overruns=self.overruns,
            verdicts=tuple(verdicts),
        )

    def _finish(self) -> Outcome:
        if not self._began:
            return Outcome(None, self._take(False))
        assert self.paths is not None
        assert self.format is not None
        paths = self.paths
        rate, channels = self.format.samplerate, self.format.channels
        self._write_gathered()
        failure_before_close = self.failure
        self._close_file()
        if self.failure is None:
            size, digest = self._store.finish(paths)
            return self._outcome(self._facts(self.frames, rate, channels, size, digest, "complete"))
        if failure_before_close is None:
            # Only the close failed (a full disk at the very end): count it like any write error.
            self._count_error(self.failure, "closing the file failed")
        try:
            repaired = self._store.settle(paths)
        except _WRITE_ERRORS as exc:
            # No room for a repaired copy: the row points at the .part (readable up to its last
            # whole block) and the next start's recovery repairs it into the final file.
            logger.error("recorder: call %s: repair deferred to the next start: %s", self.call.uuid, exc)
            frames = self._store.readable_frames(paths.part)
            if frames == 0:
                return Outcome(None, self._take(False))
            size = paths.part.stat().st_size
            return self._outcome(self._facts(frames, rate, channels, size, None, "partial", part=True))
        if repaired is None:
            return self._outcome(self._facts(0, rate, channels, 0, None, "failed"))
        frames, rate, channels = repaired
        size = paths.final.stat().st_size
        return self._outcome(self._facts(frames, rate, channels, size, sha256_of(paths.final), "partial"))

    def _outcome(self, facts: RecordingFacts) -> Outcome:
        return Outcome(facts, self._take(True, facts))

    def _facts(
        self,
        frames: int,
        rate: int,
        channels: int,
        size: int,
        digest: str | None,
        status: str,
        *,
        part: bool = False,
    ) -> RecordingFacts:
        assert self.paths is not None
        return RecordingFacts(
            call_uuid=self.call.uuid,
            path=self._store.relative(self.paths.part if part else self.paths.final),
            codec=self.paths.codec.name,
            sample_rate=rate,
            channels=channels,
            seconds=frames / rate if rate else 0.0,
            bytes=size,
            sha256=digest,
            status=status,
        )


def _reason(exc: BaseException, folder: Path | None = None) -> str:
    """``disk_full`` or ``io_error``; libsndfile reports a full disk only as "System error"."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if folder is not None:
        try:
            fs = os.statvfs(folder)
        except OSError:
            return "io_error"
        if fs.f_bavail * fs.f_frsize < DISK_FULL_BYTES:
            return "disk_full"
    return "io_error"


__all__ = ["FLUSH_SECONDS", "Capture", "Format", "Outcome"]
