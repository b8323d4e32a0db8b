"""The call recorder: the observer that records each line's calls to disk.

Per call (``started`` → ``answered`` → ``ended``) on a line that has an audio
source (:mod:`agent.seat.audio`):

- ``started``: when the policy opens the call (:mod:`agent.seat.recording.policy`),
  the line's source is opened (in a worker thread: PortAudio may take a second
  or two). Its blocks go to a pre-roll ring buffer, so the first words before
  the trigger are kept.
- the trigger (``[recording] start_on``): a ``.part`` file is created and the
  pre-roll written first.
- ``ended``: the source stops, the file is closed and renamed, and what the
  policy decides is done: the recording is discarded, or a ``recordings`` row
  is written with its codec, rate, length, size, SHA-256, status and flags (a
  ``failed`` row flagged ``missing`` when an answered call that should have a
  recording has none).

Threads: the source's thread only hands blocks to the writer
(:mod:`agent.seat.recording.writer`), the one thread that owns every open file;
this observer, on the event loop, talks to it only through its commands and
never touches a file. Failures close the recording with what was written (see
:mod:`agent.seat.recording.capture`); the next call opens the source afresh.

Live tap (listen-in): :meth:`Recorder.subscribe_live` gives an
:class:`~agent.seat.recording.tap.LiveTap` fed by the writer thread as it
handles each block. Only calls the recorder captures (``[recording] enabled``,
a line with an audio source) can be listened to.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from agent.config import Config, RecordingSection
from agent.errors import AgentError
from agent.events import Call, CallEvent, CallEventKind, Message, RecordingFacts
from agent.seat.audio import AudioSource
from agent.seat.recording.capture import Format
from agent.seat.recording.commands import Listen, Prepare, Unlisten
from agent.seat.recording.counters import RecordingCounters
from agent.seat.recording.policy import EndingKind, RecordingPolicy
from agent.seat.recording.sources import SourceFactory, line_sources
from agent.seat.recording.tap import LIVE_QUEUE_BLOCKS, LIVE_RATE, LiveTap, live_pcm
from agent.seat.recording.writer import Writer, WriterStats
from storage.recordings import RecordingPaths, RecordingStore

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Capturing:
    """A call being captured, as the event loop knows it (the writer holds the rest)."""

    key: int
    call: Call
    source: AudioSource
    paths: RecordingPaths | None = None
    open_failure: str | None = None


class Recorder:
    """An :class:`agent.seat.observers.Observer` that records calls (see the module docstring).

    ``sources`` gives a call's audio source (None: the line is not recorded).
    ``counters`` receives the metrics (see :class:`RecordingCounters`).
    ``on_finished(call, facts)`` is called (in a worker thread) after each
    recording's row is written, for the ``recording_finished`` hook.
    Call :meth:`start` before the first message and :meth:`aclose` at the end.
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
        self.policy = RecordingPolicy.from_settings(settings)
        self.store = store
        self._sources = sources
        self.counters = counters
        self._on_finished = on_finished
        self._writer = Writer(
            store,
            counters,
            stall_timeout=stall_timeout,
            first_block_timeout=first_block_timeout,
            max_pending_blocks=max_pending_blocks,
        )
        self._keys = itertools.count(1)
        self._calls: dict[str, _Capturing] = {}  # by call uuid
        self._busy_lines: dict[tuple[str, str], str] = {}  # (device, line) -> call uuid

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        self._writer.start()

    @property
    def writer_stats(self) -> WriterStats:
        """What the writer thread measured so far."""
        return self._writer.stats

    def subscribe_live(self, call_uuid: str, *, max_blocks: int = LIVE_QUEUE_BLOCKS) -> LiveTap | None:
        """Listen to a call in progress (see :class:`LiveTap`); None when it is not being captured.

        Call on the event loop. The tap ends when the call's recording ends (at
        once when its recording already failed); close it when done listening.
        """
        capturing = self._calls.get(call_uuid)
        if capturing is None or capturing.open_failure is not None:
            return None
        key, writer = capturing.key, self._writer
        tap = LiveTap(
            asyncio.get_running_loop(), max_blocks, on_close=lambda gone: writer.put(Unlisten(key, gone))
        )
        writer.put(Listen(key, tap))
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
            return
        if message.kind is CallEventKind.ENDED:
            await self._end(call)
            return
        capturing = self._calls.get(call.uuid)
        if capturing is not None:
            capturing.call = call
            if capturing.open_failure is None and self.policy.begins(message.kind, call):
                await asyncio.wrap_future(self._writer.begin(capturing.key, call))

    async def aclose(self) -> None:
        """End what is still recording (as if its call ended now) and stop the writer thread."""
        for capturing in list(self._calls.values()):
            await self._end(capturing.call, force=True)
        await asyncio.to_thread(self._writer.close)

    # -- life of a capture ------------------------------------------------------------

    async def _start(self, call: Call) -> None:
        if call.uuid in self._calls or not self.policy.opens(call):
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
        capturing = _Capturing(next(self._keys), call, source)
        self._writer.put(Prepare(capturing.key, call))  # first: a writer never started refuses it
        self._busy_lines[line] = call.uuid
        self._calls[call.uuid] = capturing
        try:
            await asyncio.to_thread(source.start, self._writer.sink(capturing.key))
        except AgentError as exc:
            logger.error("recorder: call %s: cannot open the audio input: %s", call.uuid, exc)
            self._open_failed(capturing)
            return
        except Exception:
            logger.exception("recorder: call %s: the audio source failed to start", call.uuid)
            self._open_failed(capturing)
            return
        capturing.paths = self.store.paths(call.uuid, call.started_at, self.settings.codec)
        # Read after start(): a source may learn its rates only when the device opens.
        device_rate = getattr(source, "device_rate", source.samplerate) or source.samplerate
        fmt = Format(source.samplerate, source.channels, device_rate)
        await asyncio.wrap_future(
            self._writer.open(capturing.key, capturing.paths, fmt, self.settings.pre_roll)
        )
        if self.policy.begins(CallEventKind.STARTED, call):
            await asyncio.wrap_future(self._writer.begin(capturing.key, call))

    def _open_failed(self, capturing: _Capturing) -> None:
        capturing.open_failure = "device_open"
        if self.counters is not None:
            self.counters.recording_error("device_open")

    async def _end(self, call: Call, *, force: bool = False) -> None:
        capturing = self._calls.pop(call.uuid, None)
        if capturing is None:
            if self.policy.unrecorded(call) and self._sources(call) is not None:
                await self._missing(call, None, "not_started")
            return
        self._busy_lines.pop((call.device_id, call.line), None)
        capturing.call = call
        await asyncio.to_thread(capturing.source.stop)
        # After the source stopped: every block it gave is queued ahead of this.
        outcome = await asyncio.wrap_future(self._writer.finish(capturing.key))
        facts = outcome.facts if outcome is not None else None
        ending = self.policy.ending(
            call,
            outcome.take if outcome is not None else None,
            open_failure=capturing.open_failure,
            forced=force,
        )
        match ending.kind:
            case EndingKind.NOTHING:
                return
            case EndingKind.DISCARD:
                if capturing.paths is not None:
                    await asyncio.to_thread(self.store.discard, capturing.paths)
                    logger.info("recorder: call %s not kept (policy %s)", call.uuid, self.settings.policy)
            case EndingKind.MISSING:
                await self._missing(call, capturing.paths, ending.reason or "no_audio")
            case EndingKind.SAVE:
                assert facts is not None
                self._report_suspects(call, facts, ending.suspects)
                await self._save(call, RecordingFacts(**{**_as_dict(facts), "flags": ending.flags}))

    def _report_suspects(self, call: Call, facts: RecordingFacts, suspects: tuple[str, ...]) -> None:
        for reason in suspects:
            logger.warning(
                "recorder: call %s: recording looks %s (%.1f s recorded, %.1f s talk)",
                call.uuid,
                reason,
                facts.seconds,
                call.talk_seconds or 0.0,
            )
            if self.counters is not None:
                self.counters.recording_suspect(reason)

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
    "live_pcm",
    "make_recorder",
]
