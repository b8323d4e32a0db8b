"""The writer: the one thread that owns every open recording, driven only by commands.

The event loop and the sources' threads talk to it by putting commands
(:mod:`.commands`) on its queue; it handles them in order with one ``match`` and is
the only code that touches a :class:`~agent.seat.recording.capture.Capture`
(files, pre-roll, levels, listeners). A command that needs an answer carries
a :class:`concurrent.futures.Future` the writer resolves (``await
asyncio.wrap_future(...)`` on the loop).

A source's thread (PortAudio's callback) only enqueues a :class:`BlockIn` and
returns (see :meth:`Writer.sink`); when the queue is ``max_pending_blocks``
deep it enqueues :class:`Dropped` instead, so a writer that falls behind costs
counted audio, never a stalled callback. Whenever it has caught up with its
queue (and at least every 0.25 s when idle) the writer checks for sources gone
quiet (by when it last handled a block of theirs: a backlog it works
through is never mistaken for a quiet source).

The thread starts in :meth:`Writer.start` (never in the constructor) and stops
after what was queued before :meth:`Writer.close`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass

from agent.events import Call
from agent.seat.audio import Block, BlockSink
from agent.seat.recording.capture import Capture, Format, Outcome
from agent.seat.recording.commands import (
    Begin,
    BlockIn,
    Command,
    Dropped,
    Finish,
    Listen,
    Open,
    Overrun,
    Prepare,
    SourceError,
    Stop,
    Unlisten,
)
from agent.seat.recording.counters import RecordingCounters
from storage.recordings import RecordingPaths, RecordingStore

logger = logging.getLogger(__name__)

#: Seconds the writer waits for a command before it checks for quiet sources anyway.
IDLE_CHECK_SECONDS = 0.25


@dataclass
class WriterStats:
    """What the writer thread measured (read by benchmarks and tests)."""

    blocks: int = 0
    frames: int = 0
    dropped_frames: int = 0
    max_latency: float = 0.0
    total_latency: float = 0.0


class _Sink:
    """A source's :class:`~agent.seat.audio.BlockSink`: turns its callbacks into commands."""

    def __init__(self, writer: Writer, key: int) -> None:
        self._writer = writer
        self._key = key

    def block(self, data: Block) -> None:
        """Hand a block to the writer, or drop it (counted) when the writer is too far behind."""
        self._writer.offer(self._key, data)

    def overrun(self) -> None:
        """The device dropped input."""
        self._writer.put(Overrun(self._key))

    def error(self, reason: str) -> None:
        """The source stopped by itself."""
        self._writer.put(SourceError(self._key, reason))


class Writer:
    """The recording thread (see the module docstring)."""

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
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: The writer thread's own: by key.
        self._captures: dict[int, Capture] = {}

    # -- any thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
            self._thread.start()

    def put(self, command: Command) -> None:
        """Enqueue a command (never blocks); refused before :meth:`start`, where it would wait forever."""
        if self._thread is None:
            raise RuntimeError("the recording writer is not started (call start() first)")
        self._queue.put(command)

    def open(
        self, key: int, paths: RecordingPaths, fmt: Format, pre_roll_seconds: float
    ) -> concurrent.futures.Future[None]:
        """Enqueue :class:`Open`; the future resolves once it is handled."""
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.put(Open(key, paths, fmt, pre_roll_seconds, reply))
        return reply

    def begin(self, key: int, call: Call) -> concurrent.futures.Future[None]:
        """Enqueue :class:`Begin`; the future resolves once it is handled."""
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.put(Begin(key, call, reply))
        return reply

    def finish(self, key: int) -> concurrent.futures.Future[Outcome | None]:
        """Enqueue :class:`Finish`; the future gives the capture's outcome (None: no such capture)."""
        reply: concurrent.futures.Future[Outcome | None] = concurrent.futures.Future()
        self.put(Finish(key, reply))
        return reply

    def sink(self, key: int) -> BlockSink:
        """Where capture ``key``'s source delivers (its methods only enqueue)."""
        return _Sink(self, key)

    def offer(self, key: int, data: Block) -> None:
        """Enqueue a block from a source's thread; drop it when the writer is that far behind."""
        if self._queue.qsize() >= self.max_pending_blocks:
            self._queue.put(Dropped(key, len(data)))
            return
        self._queue.put(BlockIn(key, data, time.monotonic()))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread once everything queued before is handled."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(Stop())
        thread.join(timeout)

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                command = self._queue.get(timeout=IDLE_CHECK_SECONDS)
            except queue.Empty:
                self._check_stalls()
                continue
            if isinstance(command, Stop):
                return
            try:
                self._handle(command)
            except Exception as exc:  # the writer must survive any one recording's bug
                logger.exception(
                    "recorder: capture %s: unexpected writer error", getattr(command, "key", "?")
                )
                reply = getattr(command, "reply", None)
                if isinstance(reply, concurrent.futures.Future) and not reply.done():
                    reply.set_exception(exc)
            if self._queue.empty():  # caught up: a backlog of our own is no quiet source
                self._check_stalls()

    def _handle(self, command: Command) -> None:  # noqa: C901 - the writer's one match over its commands
        captures = self._captures
        match command:
            case BlockIn(key, data, queued_at):
                latency = time.monotonic() - queued_at
                self.stats.blocks += 1
                self.stats.total_latency += latency
                self.stats.max_latency = max(self.stats.max_latency, latency)
                if (capture := captures.get(key)) is not None:
                    self.stats.frames += capture.data(data, time.monotonic())
            case Prepare(key, call):
                captures[key] = Capture(call, self.store, self.counters)
            case Open(key, paths, fmt, pre_roll_seconds, reply):
                if (capture := captures.get(key)) is not None:
                    capture.open(paths, fmt, pre_roll_seconds, time.monotonic())
                reply.set_result(None)
            case Begin(key, call, reply):
                if (capture := captures.get(key)) is not None:
                    capture.begin(call)
                reply.set_result(None)
            case Finish(key, reply):
                capture = captures.pop(key, None)
                reply.set_result(capture.finish() if capture is not None else None)
            case Dropped(key, frames):
                self.stats.dropped_frames += frames
                if (capture := captures.get(key)) is not None:
                    capture.overrun(frames)
            case Overrun(key):
                if (capture := captures.get(key)) is not None:
                    capture.overrun(0)
            case SourceError(key, reason):
                if (capture := captures.get(key)) is not None:
                    capture.fail("device_lost", reason)
            case Listen(key, tap):
                if (capture := captures.get(key)) is not None:
                    capture.listen(tap)
                else:
                    tap.finish()  # over already: nothing to listen to
            case Unlisten(key, tap):
                if (capture := captures.get(key)) is not None:
                    capture.unlisten(tap)
            case Stop():
                pass

    def _call_of(self, command: Command) -> str:
        capture = self._captures.get(getattr(command, "key", -1))
        return capture.call.uuid if capture is not None else "?"

    def _check_stalls(self) -> None:
        now = time.monotonic()
        for capture in self._captures.values():
            capture.check_stall(
                now, first_block_timeout=self.first_block_timeout, stall_timeout=self.stall_timeout
            )


__all__ = ["Writer", "WriterStats"]
