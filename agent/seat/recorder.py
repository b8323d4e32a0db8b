"""The call recorder: an observer that records each line's calls to disk.

Per call (``started`` → ``answered`` → ``ended``) on a line that has an audio
source (:mod:`agent.seat.audio`):

- ``started``: the line's source is opened (in a worker thread: PortAudio may
  take a second or two). Its blocks go to a pre-roll ring buffer, so the first
  words before the trigger are kept.
- the trigger (``[recording] start_on``: ``answered`` by default; ``off_hook``
  is the start of an outbound call or the answer of an inbound one; ``ring`` the
  start of any call): a ``.part`` file is created and the pre-roll written first.
- ``ended``: the source stops, the file is closed and renamed, and a
  ``recordings`` row is written with its codec, rate, length, size, SHA-256,
  status and flags.

Threads: the source's thread (PortAudio's callback) only copies a block into
one queue and returns; one writer thread owns every open file and encodes with
soundfile as audio arrives. The event loop never touches a file.

Live tap (listen-in): :meth:`Recorder.subscribe_live` gives an async iterator of
the call's audio as 16-bit mono PCM at :data:`LIVE_RATE` Hz. The writer thread
feeds it (mixed to mono, resampled when the recording rate differs) as it
handles each block, never the audio callback; each listener has a bounded queue
that drops its oldest block when the listener is slow, so a listener can never
hold up the recording. The stream ends when the call's recording ends. Only
calls the recorder captures (``[recording] enabled``, a line with an audio
source) can be listened to.

Failures close the recording with what was written: a write error (disk full,
I/O) or a source that stops or goes quiet (a box unplugged) marks it
``partial`` (``failed`` when nothing is playable), counts it, and the next call
opens the source afresh. Completeness: an answered call that should have a
recording and has none is counted as missing (a ``failed`` row flagged
``missing`` marks it); a recording much shorter than the call, silent, or with
one side silent is flagged and counted as suspect.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import soundfile as sf
from sqlalchemy import Engine

from agent.config import Config, RecordingSection
from agent.errors import AgentError
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition, Message, RecordingFacts
from agent.seat.audio import AudioSource, Block, LevelStats, PreRoll, Resampler, SoundDeviceSource
from storage.recordings import RecordingPaths, RecordingStore, sha256_of

logger = logging.getLogger(__name__)

#: Seconds of audio between flushes of an open file (how much a power cut may lose at most, roughly).
FLUSH_SECONDS = 1.0
#: A recording shorter than this share of the call's talk time (less a grace) is flagged ``short``.
SHORT_RATIO = 0.8
SHORT_GRACE_SECONDS = 2.0
#: Free space below which a write error counts as a full disk.
DISK_FULL_BYTES = 64 * 1024
#: Seconds of activity a channel needs not to count as silent.
MIN_ACTIVE_SECONDS = 1.0
#: The live tap's sample rate (telephone band, what listen-in streams).
LIVE_RATE = 8000
#: Blocks a live listener may fall behind before its oldest are dropped (about 2 s of 20 ms blocks).
LIVE_QUEUE_BLOCKS = 100


@runtime_checkable
class RecordingCounters(Protocol):
    """What the recorder counts (the metrics module implements it; every method must be thread-safe).

    - ``recording_bytes(n)`` → ``cti_recording_bytes_total``
    - ``recording_error(reason)`` → ``cti_recording_errors_total{reason}``: ``disk_full``, ``io_error``,
      ``device_lost``, ``device_open``, ``database``
    - ``recording_overrun()`` → ``cti_recording_overruns_total``: input dropped (device or queue)
    - ``recording_missing()`` → ``cti_recording_missing_total``
    - ``recording_suspect(reason)`` → ``cti_recording_suspect_total{reason}``: ``short``, ``silent``,
      ``one_sided``
    """

    def recording_bytes(self, n: int) -> None:
        """Count ``n`` bytes of finished recording files."""

    def recording_error(self, reason: str) -> None:
        """Count one recording that failed or stopped early for ``reason``."""

    def recording_overrun(self) -> None:
        """Count one overrun: audio lost because the device or the writer fell behind."""

    def recording_missing(self) -> None:
        """Count one call that should have a recording and has none."""

    def recording_suspect(self, reason: str) -> None:
        """Count one recording flagged ``reason`` by the completeness checks."""


SourceFactory = Callable[[Call], AudioSource | None]
"""Gives the audio source of a call's line, or None when the line has no audio input."""


@dataclass
class WriterStats:
    """What the writer thread measured (read by benchmarks and tests)."""

    blocks: int = 0
    frames: int = 0
    dropped_frames: int = 0
    max_latency: float = 0.0
    total_latency: float = 0.0


class LiveTap:
    """One listener's view of a call's live audio: ``async for chunk in tap`` gives PCM bytes.

    Each chunk is 16-bit little-endian mono PCM at :data:`LIVE_RATE` Hz (one
    recorder block, typically 20 ms). The writer thread hands chunks over with
    ``loop.call_soon_threadsafe`` (it never waits); the queue keeps at most
    ``max_blocks`` chunks and drops the oldest beyond that (counted in
    :attr:`dropped`). Iteration ends when the call's recording ends or
    :meth:`close` is called.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_blocks: int = LIVE_QUEUE_BLOCKS) -> None:
        self._loop = loop
        self._blocks: collections.deque[bytes] = collections.deque(maxlen=max(max_blocks, 1))
        self._ready = asyncio.Event()
        self._ended = False
        self._detach: Callable[[LiveTap], None] | None = None
        self.dropped = 0

    # -- the writer thread ------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Queue a chunk from any thread (never blocks)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._push, chunk)

    def finish(self) -> None:
        """End the stream from any thread, after the chunks fed before."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._end)

    # -- the event loop ---------------------------------------------------------------

    def _push(self, chunk: bytes) -> None:
        if self._ended:
            return
        if len(self._blocks) == self._blocks.maxlen:
            self.dropped += 1
        self._blocks.append(chunk)
        self._ready.set()

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    def close(self) -> None:
        """Stop listening: detach from the call and end the iteration."""
        detach, self._detach = self._detach, None
        if detach is not None:
            detach(self)
        self._end()
        self._blocks.clear()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while not self._blocks:
            if self._ended:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._blocks.popleft()


def live_pcm(data: Block, resampler: Resampler | None) -> bytes:
    """A block as 16-bit little-endian mono PCM: channels averaged, then resampled if given."""
    mono = data.astype(np.int32).mean(axis=1) if data.ndim == 2 else data.astype(np.float64)
    mono = np.asarray(mono, dtype=np.float64).reshape(-1, 1)
    if resampler is not None:
        mono = resampler.process(np.clip(np.rint(mono), -32768, 32767).astype(np.int16))
    return np.clip(np.rint(mono[:, 0]), -32768, 32767).astype("<i2").tobytes()


@dataclass
class _Outcome:
    """A session's end as the writer saw it."""

    facts: RecordingFacts | None
    failure: str | None
    overruns: int
    verdicts: list[str]


@dataclass(eq=False)
class _Session:
    """One call's capture. Fields below ``call`` belong to the writer thread."""

    call: Call
    source: AudioSource
    writer: _Writer
    pre_roll_seconds: float
    paths: RecordingPaths | None = None
    opened_at: float = 0.0
    last_block_at: float | None = None
    preroll: PreRoll | None = None
    stats: LevelStats | None = None
    file: sf.SoundFile | None = None
    resampler: Resampler | None = None
    began: bool = False
    frames: int = 0
    unflushed: int = 0
    overruns: int = 0
    failure: str | None = None
    ended: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: Live listeners; replaced whole on the event loop, read by the writer thread.
    listeners: tuple[LiveTap, ...] = ()
    live_resampler: Resampler | None = None

    # -- BlockSink: called on the source's thread; only enqueue -----------------------

    def block(self, data: Block) -> None:
        """Hand a block to the writer, or drop it (counted) when the writer is too far behind."""
        self.writer.offer(self, data)

    def overrun(self) -> None:
        """The device dropped input."""
        self.writer.put(("overrun", self, None))

    def error(self, reason: str) -> None:
        """The source stopped by itself."""
        self.writer.put(("source_error", self, reason))


class _Writer:
    """The one thread that owns every open recording file."""

    def __init__(
        self,
        store: RecordingStore,
        counters: RecordingCounters | None,
        *,
        stall_timeout: float,
        first_block_timeout: float,
        max_pending_blocks: int,
    ) -> None:
        self.store = store
        self.counters = counters
        self.stall_timeout = stall_timeout
        self.first_block_timeout = first_block_timeout
        self.max_pending_blocks = max_pending_blocks
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        self._sessions: set[_Session] = set()
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()

    # -- any thread ---------------------------------------------------------------------

    def put(self, item: tuple[str, Any, Any]) -> None:
        """Enqueue a command (never blocks)."""
        self._queue.put(item)

    def offer(self, session: _Session, data: Block) -> None:
        """Enqueue a block from a source's thread; drop it when the writer is that far behind."""
        if self._queue.qsize() >= self.max_pending_blocks:
            self._queue.put(("dropped", session, len(data)))
            return
        self._queue.put(("data", session, (data, time.monotonic())))

    def call(self, kind: str, session: _Session) -> concurrent.futures.Future[Any]:
        """Enqueue a command whose result the caller awaits."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((kind, session, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread once everything queued before is handled."""
        self._queue.put(("stop", None, None))
        self._thread.join(timeout)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                kind, session, arg = self._queue.get(timeout=0.25)
            except queue.Empty:
                self._check_stalls()
                continue
            if kind == "stop":
                return
            try:
                self._handle(kind, session, arg)
            except Exception as exc:  # the writer must survive any one recording's bug
                logger.exception("recorder: call %s: unexpected writer error", session.call.uuid)
                if isinstance(arg, concurrent.futures.Future) and not arg.done():
                    arg.set_exception(exc)
            self._check_stalls()

    def _handle(self, kind: str, session: _Session, arg: Any) -> None:
        if kind == "data":
            data, queued_at = arg
            latency = time.monotonic() - queued_at
            self.stats.blocks += 1
            self.stats.total_latency += latency
            self.stats.max_latency = max(self.stats.max_latency, latency)
            self._data(session, data)
        elif kind == "open":
            session.opened_at = time.monotonic()
            self._buffers(session)
            self._sessions.add(session)
            arg.set_result(None)
        elif kind == "begin":
            self._begin(session)
            arg.set_result(None)
        elif kind == "end":
            self._sessions.discard(session)
            arg.set_result(self._end(session))
        elif kind == "overrun":
            self._overrun(session, 0)
        elif kind == "dropped":
            self.stats.dropped_frames += arg
            self._overrun(session, arg)
        elif kind == "source_error" and not session.ended:
            self._fail(session, "device_lost", arg)

    @staticmethod
    def _buffers(session: _Session) -> PreRoll:
        # Made on first use: a device's first blocks may come before "open" is handled.
        if session.preroll is None:
            source = session.source
            session.preroll = PreRoll(int(session.pre_roll_seconds * source.samplerate), source.channels)
            session.stats = LevelStats(source.channels, source.samplerate)
            device_rate = getattr(source, "device_rate", source.samplerate) or source.samplerate
            if device_rate != source.samplerate:
                session.resampler = Resampler(device_rate, source.samplerate, source.channels)
        return session.preroll

    def _data(self, session: _Session, data: Block) -> None:
        if session.ended:
            return
        preroll = self._buffers(session)
        if session.resampler is not None:
            data = session.resampler.process(data)
        session.last_block_at = time.monotonic()
        self.stats.frames += len(data)
        self._feed_live(session, data)
        if session.failure is not None:
            return
        if not session.began:
            preroll.push(data)
            return
        self._write(session, data)

    @staticmethod
    def _feed_live(session: _Session, data: Block) -> None:
        listeners = session.listeners
        if not listeners or not len(data):
            return
        rate = session.source.samplerate
        if rate != LIVE_RATE and session.live_resampler is None:
            session.live_resampler = Resampler(rate, LIVE_RATE, 1)
        chunk = live_pcm(data, session.live_resampler)
        if chunk:
            for tap in listeners:
                tap.feed(chunk)

    def _write(self, session: _Session, data: Block) -> None:
        assert session.file is not None
        assert session.stats is not None
        try:
            session.file.write(data)
            session.frames += len(data)
            session.unflushed += len(data)
            if session.unflushed >= FLUSH_SECONDS * session.source.samplerate:
                session.file.flush()
                session.unflushed = 0
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self._fail(session, _reason(exc, _folder(session)), str(exc))
            return
        session.stats.add(data)

    def _begin(self, session: _Session) -> None:
        if session.began or session.failure is not None or session.preroll is None:
            return
        assert session.paths is not None
        try:
            session.file = self.store.open_part(
                session.paths, session.call, session.source.samplerate, session.source.channels
            )
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            session.failure = _reason(exc, _folder(session))
            self._count_error(session, session.failure, str(exc))
            return
        session.began = True
        head = session.preroll.take()
        if len(head):
            self._write(session, head)

    def _overrun(self, session: _Session, frames: int) -> None:
        session.overruns += 1
        if self.counters is not None:
            self.counters.recording_overrun()
        if session.overruns == 1 or session.overruns % 100 == 0:
            logger.warning(
                "recorder: call %s: audio input overrun #%d (%d frames dropped by the writer)",
                session.call.uuid,
                session.overruns,
                frames,
            )

    def _fail(self, session: _Session, reason: str, detail: str) -> None:
        if session.failure is not None:
            return
        session.failure = reason
        self._count_error(session, reason, detail)
        self._close_file(session)

    def _count_error(self, session: _Session, reason: str, detail: str) -> None:
        logger.error(
            "recorder: call %s: recording stopped (%s) after %.1f s: %s",
            session.call.uuid,
            reason,
            session.frames / max(session.source.samplerate, 1),
            detail,
        )
        if self.counters is not None:
            self.counters.recording_error(reason)

    @staticmethod
    def _close_file(session: _Session) -> None:
        file, session.file = session.file, None
        if file is None:
            return
        try:
            file.close()
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            # The header or last block may not be on disk: the end of the call repairs the file.
            logger.warning("recorder: call %s: closing the file failed: %s", session.call.uuid, exc)
            if session.failure is None:
                session.failure = _reason(exc, _folder(session))

    def _check_stalls(self) -> None:
        now = time.monotonic()
        for session in list(self._sessions):
            if session.failure is not None or session.ended:
                continue
            if session.last_block_at is None:
                quiet, limit = now - session.opened_at, self.first_block_timeout
            else:
                quiet, limit = now - session.last_block_at, self.stall_timeout
            if quiet > limit:
                self._fail(session, "device_lost", f"no audio for {quiet:.1f} s")

    def _end(self, session: _Session) -> _Outcome:
        session.ended = True
        verdicts = session.stats.verdicts(min_active=MIN_ACTIVE_SECONDS) if session.stats else []
        if not session.began:
            return _Outcome(None, session.failure, session.overruns, [])
        assert session.paths is not None
        paths = session.paths
        rate, channels = session.source.samplerate, session.source.channels
        failure_before_close = session.failure
        self._close_file(session)
        if session.failure is None:
            size, digest = self.store.finish(paths)
            facts = self._facts(session, paths, session.frames, rate, channels, size, digest, "complete")
            return _Outcome(facts, None, session.overruns, verdicts)
        if failure_before_close is None:
            # Only the close failed (a full disk at the very end): count it like any write error.
            self._count_error(session, session.failure, "closing the file failed")
        try:
            repaired = self.store.settle(paths)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            # No room for a repaired copy: the row points at the .part (readable up to its last
            # whole block) and the next start's recovery repairs it into the final file.
            logger.error("recorder: call %s: repair deferred to the next start: %s", session.call.uuid, exc)
            frames = self.store.readable_frames(paths.part)
            if frames == 0:
                return _Outcome(None, session.failure, session.overruns, verdicts)
            facts = self._facts(
                session, paths, frames, rate, channels, paths.part.stat().st_size, None, "partial", part=True
            )
            return _Outcome(facts, session.failure, session.overruns, verdicts)
        if repaired is None:
            facts = self._facts(session, paths, 0, rate, channels, 0, None, "failed")
            return _Outcome(facts, session.failure, session.overruns, verdicts)
        frames, rate, channels = repaired
        size = paths.final.stat().st_size
        facts = self._facts(session, paths, frames, rate, channels, size, sha256_of(paths.final), "partial")
        return _Outcome(facts, session.failure, session.overruns, verdicts)

    def _facts(
        self,
        session: _Session,
        paths: RecordingPaths,
        frames: int,
        rate: int,
        channels: int,
        size: int,
        digest: str | None,
        status: str,
        *,
        part: bool = False,
    ) -> RecordingFacts:
        return RecordingFacts(
            call_uuid=session.call.uuid,
            path=self.store.relative(paths.part if part else paths.final),
            codec=paths.codec.name,
            sample_rate=rate,
            channels=channels,
            seconds=frames / rate if rate else 0.0,
            bytes=size,
            sha256=digest,
            status=status,
        )


def _folder(session: _Session) -> Path | None:
    return session.paths.part.parent if session.paths is not None else None


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


class Recorder:
    """An :class:`agent.seat.observers.Observer` that records calls (see the module docstring).

    ``sources`` gives a call's audio source (None: the line is not recorded).
    ``counters`` receives the metrics (see :class:`RecordingCounters`).
    ``on_finished(call, facts)`` is called (in a worker thread) after each
    recording's row is written, for the ``recording_finished`` hook.
    """

    name = "recorder"
    must_deliver = False

    def __init__(
        self,
        settings: RecordingSection,
        store: RecordingStore,
        sources: SourceFactory,
        counters: RecordingCounters | None = None,
        *,
        on_finished: Callable[[Call, RecordingFacts], None] | None = None,
        stall_timeout: float = 3.0,
        first_block_timeout: float = 5.0,
        max_pending_blocks: int = 4000,
    ) -> None:
        self.settings = settings
        self.store = store
        self._sources = sources
        self.counters = counters
        self._on_finished = on_finished
        self._writer = _Writer(
            store,
            counters,
            stall_timeout=stall_timeout,
            first_block_timeout=first_block_timeout,
            max_pending_blocks=max_pending_blocks,
        )
        self._sessions: dict[str, _Session] = {}  # by call uuid
        self._busy_lines: dict[tuple[str, str], str] = {}  # (device, line) -> call uuid

    @property
    def writer_stats(self) -> WriterStats:
        """What the writer thread measured so far."""
        return self._writer.stats

    def subscribe_live(self, call_uuid: str, *, max_blocks: int = LIVE_QUEUE_BLOCKS) -> LiveTap | None:
        """Listen to a call in progress (see :class:`LiveTap`); None when it is not being captured.

        Call on the event loop. The tap ends when the call's recording ends; close
        it when done listening.
        """
        session = self._sessions.get(call_uuid)
        if session is None or session.failure is not None or session.ended:
            return None
        tap = LiveTap(asyncio.get_running_loop(), max_blocks)

        def detach(gone: LiveTap) -> None:
            session.listeners = tuple(t for t in session.listeners if t is not gone)

        tap._detach = detach
        session.listeners = (*session.listeners, tap)
        return tap

    def recover(self) -> list[RecordingFacts]:
        """Repair recordings a crash left behind (blocking: run in a worker thread at start-up)."""
        return self.store.recover()

    async def notify(self, message: Message) -> None:
        """Start, trigger and finish recordings from call events."""
        if not isinstance(message, CallEvent):
            return
        call = message.call
        if message.kind is CallEventKind.STARTED:
            await self._start(call)
        if message.kind is CallEventKind.ENDED:
            await self._end(call)
            return
        session = self._sessions.get(call.uuid)
        if session is not None:
            session.call = call
            if self._is_trigger(message.kind, call):
                await asyncio.wrap_future(self._writer.call("begin", session))

    async def aclose(self) -> None:
        """End what is still recording (as if its call ended now) and stop the writer thread."""
        for session in list(self._sessions.values()):
            await self._end(session.call, force=True)
        await asyncio.to_thread(self._writer.close)

    # -- decisions ----------------------------------------------------------------------

    def _is_trigger(self, kind: CallEventKind, call: Call) -> bool:
        start_on = self.settings.start_on
        if start_on == "ring":
            return kind is CallEventKind.STARTED
        if start_on == "off_hook" and call.direction is Direction.OUT:
            return kind is CallEventKind.STARTED
        return kind is CallEventKind.ANSWERED

    def _may_record(self, call: Call) -> bool:
        """Whether a call that just started can end up kept (decides whether to open the source)."""
        return not call.waiting and (self.settings.policy != "outbound" or call.direction is Direction.OUT)

    def _keep(self, call: Call) -> bool:
        """Whether the ended call's recording is kept under the policy and the minimum talk time."""
        policy = self.settings.policy
        if policy == "answered" and call.disposition is not Disposition.ANSWERED:
            return False
        if policy == "outbound" and call.direction is not Direction.OUT:
            return False
        return (call.talk_seconds or 0.0) >= self.settings.min_talk_seconds

    def _should_have(self, call: Call) -> bool:
        """An answered call the policy wants recorded: having no recording is a loss."""
        return not call.waiting and call.disposition is Disposition.ANSWERED and self._keep(call)

    # -- life of a session ----------------------------------------------------------

    async def _start(self, call: Call) -> None:
        if call.uuid in self._sessions or not self._may_record(call):
            return
        line = (call.device_id, call.line)
        if line in self._busy_lines:
            logger.info(
                "recorder: line %s busy with another call; call %s not recorded", call.line, call.uuid
            )
            return
        source = self._sources(call)
        if source is None:
            return
        session = _Session(call, source, self._writer, self.settings.pre_roll)
        self._busy_lines[line] = call.uuid
        self._sessions[call.uuid] = session
        try:
            await asyncio.to_thread(source.start, session)
        except AgentError as exc:
            logger.error("recorder: call %s: cannot open the audio input: %s", call.uuid, exc)
            session.failure = "device_open"
            if self.counters is not None:
                self.counters.recording_error("device_open")
            return
        except Exception as exc:
            logger.exception("recorder: call %s: the audio source failed to start", call.uuid)
            session.failure = "device_open"
            session.extra["error"] = str(exc)
            if self.counters is not None:
                self.counters.recording_error("device_open")
            return
        session.paths = self.store.paths(call.uuid, call.started_at, self.settings.codec)
        await asyncio.wrap_future(self._writer.call("open", session))
        if self._is_trigger(CallEventKind.STARTED, call):
            await asyncio.wrap_future(self._writer.call("begin", session))

    async def _end(self, call: Call, *, force: bool = False) -> None:
        session = self._sessions.pop(call.uuid, None)
        if session is None:
            if call.ended and self._should_have(call) and self._may_record(call) and self._has_source(call):
                # Never started (the line was busy, or the agent started mid-call).
                await self._missing(call, None, "not_started")
            return
        self._busy_lines.pop((call.device_id, call.line), None)
        session.call = call
        await asyncio.to_thread(session.source.stop)
        outcome: _Outcome | None = None
        if session.paths is not None:
            outcome = await asyncio.wrap_future(self._writer.call("end", session))
        # After the writer's "end": every chunk it fed before is already queued ahead of this.
        listeners, session.listeners = session.listeners, ()
        for tap in listeners:
            tap.finish()
        facts = outcome.facts if outcome else None
        if not force and not self._keep(call):
            if facts is not None and session.paths is not None:
                await asyncio.to_thread(self.store.discard, session.paths)
                logger.info("recorder: call %s not kept (policy %s)", call.uuid, self.settings.policy)
            return
        if facts is None or facts.status == "failed" and facts.seconds == 0:
            if self._should_have(call):
                await self._missing(call, session.paths, session.failure or "no_audio")
            return
        flags = self._flags(call, facts, outcome)
        facts = RecordingFacts(**{**_as_dict(facts), "flags": tuple(flags)})
        await self._save(call, facts)

    def _has_source(self, call: Call) -> bool:
        return self._sources(call) is not None

    def _flags(self, call: Call, facts: RecordingFacts, outcome: _Outcome | None) -> list[str]:
        flags: list[str] = []
        if outcome is not None and outcome.failure:
            flags.append(outcome.failure)
        if outcome is not None and outcome.overruns:
            flags.append("overrun")
        suspects: list[str] = []
        talk = call.talk_seconds or 0.0
        if (
            call.disposition is Disposition.ANSWERED
            and facts.seconds < talk * SHORT_RATIO - SHORT_GRACE_SECONDS
        ):
            suspects.append("short")
        if outcome is not None:
            suspects.extend(outcome.verdicts)
        for reason in suspects:
            logger.warning(
                "recorder: call %s: recording looks %s (%.1f s recorded, %.1f s talk)",
                call.uuid,
                reason,
                facts.seconds,
                talk,
            )
            if self.counters is not None:
                self.counters.recording_suspect(reason)
        return flags + suspects

    async def _missing(self, call: Call, paths: RecordingPaths | None, reason: str) -> None:
        logger.error("recorder: call %s was answered but has no recording (%s)", call.uuid, reason)
        if self.counters is not None:
            self.counters.recording_missing()
        paths = paths or self.store.paths(call.uuid, call.started_at, self.settings.codec)
        facts = RecordingFacts(
            call_uuid=call.uuid,
            path=self.store.relative(paths.final),
            codec=paths.codec.name,
            sample_rate=0,
            channels=0,
            seconds=0.0,
            bytes=0,
            sha256=None,
            status="failed",
            flags=("missing", reason),
        )
        await self._save(call, facts)

    async def _save(self, call: Call, facts: RecordingFacts) -> None:
        try:
            await asyncio.to_thread(self.store.save, facts, call)
        except AgentError as exc:
            # The file is safe and its .call.json stays: the next start writes the row.
            logger.error("recorder: call %s: the recording row could not be written: %s", call.uuid, exc)
            if self.counters is not None:
                self.counters.recording_error("database")
            return
        if self.counters is not None and facts.bytes:
            self.counters.recording_bytes(facts.bytes)
        if self._on_finished is not None:
            try:
                await asyncio.to_thread(self._on_finished, call, facts)
            except Exception:
                logger.exception("recorder: call %s: recording_finished failed", call.uuid)
        logger.info(
            "recorder: call %s: %s, %.1f s, %d bytes (%s)",
            call.uuid,
            facts.path,
            facts.seconds,
            facts.bytes,
            facts.status,
        )


def line_sources(config: Config, devices: Mapping[str, Any]) -> SourceFactory:
    """The production source factory: a line's ``audio_device``, else its device's own audio.

    A ``[[lines]]`` table with ``audio_device`` records from that sound input
    (:class:`agent.seat.audio.SoundDeviceSource`, its ``audio_channels``). Otherwise a
    device that offers ``audio_source(line, call_uuid, samplerate)`` (the
    simulator's synthetic speech) is used. ``devices`` is read at call time.
    """
    rate = config.recording.sample_rate

    def source(call: Call) -> AudioSource | None:
        for line in config.lines:
            if line.id == call.line and line.device == call.device_id and line.audio_device is not None:
                return SoundDeviceSource(line.audio_device, line.audio_channels, rate)
        offer = getattr(devices.get(call.device_id), "audio_source", None)
        if callable(offer):
            made: AudioSource = offer(call.line, call.uuid, rate or 8000)
            return made
        return None

    return source


def make_recorder(
    config: Config,
    engine: Engine | None,
    devices: Mapping[str, Any],
    metrics: object,
    *,
    on_finished: Callable[[Call, RecordingFacts], None] | None = None,
) -> Recorder | None:
    """The agent's recorder when ``[recording] enabled``, counting into ``metrics`` if it can."""
    if not config.recording.enabled:
        return None
    counters = metrics if isinstance(metrics, RecordingCounters) else None
    store = RecordingStore(config.agent.data_dir, engine)
    return Recorder(config.recording, store, line_sources(config, devices), counters, on_finished=on_finished)


def _as_dict(facts: RecordingFacts) -> dict[str, Any]:
    return {name: getattr(facts, name) for name in RecordingFacts.__slots__}


__all__ = [
    "LIVE_RATE",
    "LiveTap",
    "Recorder",
    "RecordingCounters",
    "SourceFactory",
    "WriterStats",
    "line_sources",
    "make_recorder",
]
